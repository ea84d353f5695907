"""The Authorization servicer: one CheckRequest, one decision, never an exception."""

from __future__ import annotations

import logging
import re
import threading

from envoy.service.auth.v3 import external_auth_pb2_grpc

from servicekit.logs import request_id_var

from ..problem import Problem
from ..resources.check import validate_check
from .mapping import check_request, check_response, denied_response

log = logging.getLogger("lucid.pdp.grpc")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):
    """Check calls arrive on grpc's thread pool; the Decider's caches (token LRU,
    decision memo) were written for greenlets, which never switch between two
    bytecodes, so one decision at a time runs per process (the GIL allowed no
    more CPU than that anyway; more processes give more)."""

    def __init__(self, decider):
        self._decider = decider
        self._one_at_a_time = threading.Lock()

    def Check(self, request, context):  # noqa: N802 (the gRPC method's name)
        try:
            raw, headers = check_request(request)
            rid = headers.get("x-request-id", "")
            rid = rid if _VALID_REQUEST_ID.match(rid) else ""
            request_id_var.set(rid)
            try:
                check = validate_check({"request": raw})
            except Problem as err:
                return denied_response(400, f"malformed_check: {err.description}")
            with self._one_at_a_time:
                decision = self._decider.decide(check, rid)
            return check_response(decision, headers)
        except Exception:  # fail closed: Envoy answers the client, never allows on our bug
            log.exception("ext_authz check failed")
            return denied_response(503, "pdp_error")


def add_to_server(server, decider) -> None:
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationService(decider), server)
