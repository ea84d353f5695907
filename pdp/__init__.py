"""lucid-gateway policy decision point: authenticate, evaluate Rego, spend quota."""

from servicekit import __version__

__all__ = ["__version__"]
