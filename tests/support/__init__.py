"""Helpers that start real processes for the tests (redis-server, OPA, gunicorn)."""
