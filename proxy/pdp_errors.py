"""What asking the PDP can fail with (proxy/pdp.py, proxy/pdp_batch.py)."""

from __future__ import annotations


class PdpUnavailable(Exception):
    """No usable decision (down, slow, malformed answer): fail closed unless the route opts out.

    `kind` is one of: deadline, queue, shed (the PDP client's predicted wait was too long),
    unreachable, tls (the handshake with an https:// PDP failed), bad_answer, status (a
    metric label). The metric's kind "admission" is the worker's own admission queue
    (proxy/admission.py), which sheds before a request reaches the PDP client.
    """

    def __init__(self, message: str, kind: str = "bad_answer"):
        super().__init__(message)
        self.kind = kind


class PdpRejected(Exception):
    """The PDP refused the question itself as malformed (400/413): the client's request is at fault."""
