"""lucid-gateway policy decision point: authenticate, evaluate Rego, spend quota."""

__version__ = "0.1.0"
