"""lucid-gateway's thin gevent proxy: the enforcement point in front of the backends."""

from servicekit import __version__

__all__ = ["__version__"]
