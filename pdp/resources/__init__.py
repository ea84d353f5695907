"""Falcon resources of the PDP's HTTP API, one module per noun."""
