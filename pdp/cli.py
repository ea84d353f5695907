"""The `pdp` command: serve, and tools for policy authors (check, test, eval), and token."""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pdp", description="lucid-gateway policy decision point")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the decision API (gunicorn + gevent)")
    sub.add_parser("serve-grpc", help="serve Envoy's ext_authz gRPC API (envoy.service.auth.v3) on PDP_GRPC_PORT")
    p = sub.add_parser("check", help="compile the policies (and their tests) as the serving engine does")
    p.add_argument("path", nargs="?", default=None)
    p = sub.add_parser("test", help="run the test_* rules of *_test.rego with the pinned `opa test`")
    p.add_argument("path", nargs="?", default=None)
    p.add_argument("-v", "--verbose", action="store_true")
    p = sub.add_parser("eval", help="evaluate data.gateway.decision for one input document")
    p.add_argument("--input", required=True, help="a JSON file holding the policy input (or - for stdin)")
    p.add_argument("--policies", default=None)
    p = sub.add_parser("token", help="mint a development HS* access token (typ at+jwt) signed with JWT_SECRET_KEY")
    p.add_argument("--sub", required=True)
    p.add_argument("--roles", default="user")
    p.add_argument("--plan", default="free")
    p.add_argument("--mfa", action="store_true")
    p.add_argument("--minutes", type=int, default=None)
    p.add_argument("--jti", default=None)
    sub.add_parser("settings", help="list every setting, its variable and default")
    p = sub.add_parser("totp-qr", help="draw a TOTP enrolment's otpauth:// URI as a QR code in the terminal")
    p.add_argument("uri", help="the otpauth_uri that POST /api/v1/users/me/totp returned")
    args = parser.parse_args(argv)
    sys.exit(_COMMANDS[args.command](args))


def _settings():
    from .config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as err:
        print(f"pdp: configuration error: {err}", file=sys.stderr)
        sys.exit(2)


def _policy_dir(args_path):
    import os

    return args_path or os.environ.get("POLICY_DIR") or "policies"


def _engine_settings():
    """Only the engine's settings (check/test/eval need no JWT secret or Redis)."""
    import os

    from servicekit.settings import load

    from .config import SETTINGS, ConfigError, Settings

    wanted = {"engine", "opa_binary", "opa_url", "opa_timeout_ms", "opa_push_policies"}
    try:
        return Settings(load([s for s in SETTINGS if s.name in wanted], os.environ))
    except ConfigError as err:
        print(f"pdp: configuration error: {err}", file=sys.stderr)
        sys.exit(2)


def cmd_serve(args) -> int:
    settings = _settings()
    # Fail fast with one line, before any worker starts. The checked bundle is
    # also what a worker serves if the files break before it boots (and its
    # compiled Wasm is inherited by the workers, which then skip opa build).
    bundle = _checked_bundle(settings)
    from .server import serve

    serve(settings, bundle)
    return 0


def _checked_bundle(settings):
    """The policy loaded (and compiled) once before serving, or one line and exit 2."""
    from .app import policy_settings
    from .engines.wasm import WasmEngine
    from .policy.bundle import load_bundle
    from .policy.errors import PolicyError

    try:
        bundle = load_bundle(settings.policy_dir, policy_settings(settings))
        if settings.engine == "wasm":
            WasmEngine(settings.opa_binary).compile(bundle)
    except PolicyError as err:
        print(f"pdp: POLICY_DIR: {err}", file=sys.stderr)
        sys.exit(2)
    return bundle


def cmd_serve_grpc(args) -> int:
    settings = _settings()
    bundle = _checked_bundle(settings)
    from .grpc_authz.server import serve

    return serve(settings, bundle)


def cmd_check(args) -> int:
    """OPA's own compiler over every module, tests included (`opa check`), then the
    serving engine's load when that is wasm (it also refuses builtins the host lacks).
    With PDP_ENGINE=opa, `opa check` is the serving compiler: nothing is pushed."""
    from .engines.opa_build import check_modules, find_opa
    from .engines.wasm import WasmEngine
    from .policy.bundle import is_bundle_file, load_bundle
    from .policy.errors import PolicyError

    settings = _engine_settings()
    path = _policy_dir(args.path)
    try:
        bundle = load_bundle(path)
        if not is_bundle_file(path):
            check_modules(find_opa(settings.opa_binary), bundle.all_modules)
        if settings.engine == "wasm":
            WasmEngine(settings.opa_binary).compile(bundle)
    except PolicyError as err:
        print(f"{err}", file=sys.stderr)
        return 1
    print(f"ok: {len(bundle.modules)} modules, {len(bundle.test_modules)} test modules, revision {bundle.revision}")
    return 0


def cmd_test(args) -> int:
    """The pinned `opa test`: OPA's own semantics, the same compiler the wasm engine uses,
    over a private copy of what the PDP reads (a ConfigMap volume's ..data folders aside)."""
    from .engines.opa_build import find_opa, run_opa_test
    from .policy.bundle import load_bundle
    from .policy.errors import PolicyError

    try:
        bundle = load_bundle(_policy_dir(args.path))
        return run_opa_test(find_opa(_engine_settings().opa_binary), bundle.all_modules, bundle.data, args.verbose)
    except PolicyError as err:
        print(f"{err}", file=sys.stderr)
        return 1


def cmd_eval(args) -> int:
    from .engines import make_engine
    from .engines.base import EngineError
    from .policy.bundle import load_bundle
    from .policy.errors import PolicyError

    try:
        raw = sys.stdin.read() if args.input == "-" else open(args.input).read()
        input_doc = json.loads(raw)
    except (OSError, ValueError) as err:
        print(f"pdp eval: cannot read input: {err}", file=sys.stderr)
        return 2
    settings = _engine_settings()
    try:
        engine = make_engine(settings)
        compiled = engine.compile(load_bundle(_policy_dir(args.policies)))
        started = time.perf_counter()
        result = engine.evaluate(compiled, input_doc)
        ms = (time.perf_counter() - started) * 1000
    except (PolicyError, EngineError) as err:
        print(f"{err}", file=sys.stderr)
        return 1
    print(json.dumps({"result": result, "eval_ms": round(ms, 3), "engine": engine.name}, indent=2, sort_keys=True))
    return 0


def cmd_token(args) -> int:
    from .authn.tokens import mint_with_settings

    settings = _settings()
    try:
        token = mint_with_settings(
            settings,
            sub=args.sub,
            roles=[r for r in args.roles.split(",") if r],
            plan=args.plan,
            mfa=args.mfa,
            minutes=args.minutes,
            jti=args.jti,
        )
    except ValueError as err:
        print(f"pdp token: {err}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_settings(args) -> int:
    from .config import describe

    print(describe())
    return 0


def cmd_totp_qr(args) -> int:
    from .accounts.totp import qr_terminal

    if not args.uri.startswith("otpauth://totp/") or len(args.uri) > 1024:
        print("pdp totp-qr: expected the otpauth://totp/... URI of an enrolment", file=sys.stderr)
        return 2
    sys.stdout.write(qr_terminal(args.uri))
    return 0


_COMMANDS = {
    "totp-qr": cmd_totp_qr,
    "serve": cmd_serve,
    "serve-grpc": cmd_serve_grpc,
    "check": cmd_check,
    "test": cmd_test,
    "eval": cmd_eval,
    "token": cmd_token,
    "settings": cmd_settings,
}
