"""lucid-gateway's thin gevent proxy: the enforcement point in front of the backends."""
__version__ = "0.1.0"
