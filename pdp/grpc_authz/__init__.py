"""Envoy's ext_authz over gRPC (envoy.service.auth.v3.Authorization/Check).

mapping.py turns a CheckRequest into the same policy input /v1/check builds
and a Decision into a CheckResponse; server.py serves it in its own process
(`pdp serve-grpc`, see docs/pdp.md for why not in the gunicorn workers).
"""
