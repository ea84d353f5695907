"""Coverage-guided fuzzing (atheris) of the PDP's /v1/check body parser.

    python tests/fuzz/fuzz_check_body.py [libFuzzer flags] [corpus dirs]

The body goes through a real falcon Request (WSGI environ), then the same
functions the resource calls: read_json_body, validate_check and build_request
(pdp/resources/check.py, pdp/policy_input.py). The only exceptions allowed out
are the ones mapped to answers: Problem 400/413/415 and AmbiguousPath (the
decider's 400 deny). Half the inputs are raw bytes, half are JSON documents
built field by field so that the validation itself is reached.
"""

import io
import json
import os
import sys

import atheris

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

with atheris.instrument_imports(include=["pdp.resources.check", "pdp.policy_input", "servicekit.request_path"]):
    from pdp.policy_input import build_request
    from pdp.problem import Problem
    from pdp.resources.check import read_json_body, validate_check
    from servicekit.request_path import AmbiguousPath

import falcon  # noqa: E402
from falcon import testing  # noqa: E402

MAX_BODY = 65536
MAPPED_STATUSES = {400, 413, 415}


def _value(fdp, depth=0):
    """A JSON value of any type (strings favoured, as the fields mostly are)."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 2 else 5)
    if kind <= 3:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 64))
    if kind == 4:
        return fdp.ConsumeInt(4)
    if kind == 5:
        return [None, True, False, 1.5][fdp.ConsumeIntInRange(0, 3)]
    if kind <= 7:
        return {fdp.ConsumeUnicode(8): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}
    return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]


def _structured(fdp) -> bytes:
    fields = {}
    for name in ("method", "path", "host", "scheme", "client_ip"):
        if fdp.ConsumeBool():
            fields[name] = (
                fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 48)) if fdp.ConsumeIntInRange(0, 3) else _value(fdp)
            )
    if fdp.ConsumeBool():
        fields["headers"] = {
            fdp.ConsumeUnicode(12): (fdp.ConsumeUnicode(32) if fdp.ConsumeIntInRange(0, 3) else _value(fdp))
            for _ in range(fdp.ConsumeIntInRange(0, 6))
        }
    doc = {"request": fields} if fdp.ConsumeIntInRange(0, 7) else _value(fdp)
    return json.dumps(doc).encode("utf-8")


def check_body(body: bytes) -> None:
    env = testing.create_environ(method="POST", path="/v1/check", headers={"Content-Type": "application/json"})
    env["wsgi.input"] = io.BytesIO(body)
    env["CONTENT_LENGTH"] = str(len(body))
    req = falcon.Request(env)
    try:
        check = validate_check(read_json_body(req, MAX_BODY))
    except Problem as problem:
        if problem.status_code not in MAPPED_STATUSES:
            raise AssertionError(f"unexpected problem status {problem.status_code}") from None
        return
    try:
        request = build_request(check)
    except AmbiguousPath:
        return
    # What reaches the policy and the decision log must be a plain JSON document.
    json.dumps(request)
    assert isinstance(request["method"], str) and isinstance(request["headers"], dict)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        check_body(fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        check_body(_structured(fdp))


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
