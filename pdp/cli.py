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
    p = sub.add_parser("check", help="compile the policies and check every builtin they call")
    p.add_argument("path", nargs="?", default=None)
    p = sub.add_parser("test", help="run the test_* rules of *_test.rego on the embedded engine")
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


def cmd_serve(args) -> int:
    from .policy.errors import PolicyError
    from .app import policy_settings
    from .engines.embedded import EmbeddedEngine
    from .policy.bundle import load_bundle
    settings = _settings()
    # Fail fast with one line, before any worker starts. The checked bundle is
    # also what a worker serves if the files break before it boots.
    try:
        bundle = load_bundle(settings.policy_dir, policy_settings(settings))
        if settings.engine == "embedded":
            EmbeddedEngine().compile(bundle)
    except PolicyError as err:
        print(f"pdp: POLICY_DIR: {err}", file=sys.stderr)
        return 2
    from .server import serve
    serve(settings, bundle)
    return 0


def cmd_check(args) -> int:
    from .engines.embedded import EmbeddedEngine, new_interpreter
    from .policy.bundle import load_bundle
    from .policy.errors import PolicyError
    path = _policy_dir(args.path)
    try:
        bundle = load_bundle(path)
        EmbeddedEngine().compile(bundle)
        if bundle.test_modules:
            new_interpreter(bundle, bundle.all_modules)
    except PolicyError as err:
        print(f"{err}", file=sys.stderr)
        return 1
    print(f"ok: {len(bundle.modules)} modules, {len(bundle.test_modules)} test modules, revision {bundle.revision}")
    return 0


def cmd_test(args) -> int:
    from .policy.errors import PolicyError
    from .policy.testing import run_tests
    try:
        results = run_tests(_policy_dir(args.path))
    except PolicyError as err:
        print(f"{err}", file=sys.stderr)
        return 1
    failed = [r for r in results if not r.passed]
    for r in results:
        if args.verbose or not r.passed:
            status = "PASS" if r.passed else "FAIL"
            extra = f" ({r.detail})" if r.detail else ""
            print(f"{r.location}: data.{r.package}.{r.name}: {status} ({r.ms:.1f}ms){extra}")
    print("-" * 80)
    print(f"PASS: {len(results) - len(failed)}/{len(results)}")
    if failed:
        print(f"FAIL: {len(failed)}/{len(results)}")
    return 1 if failed or not results else 0


def cmd_eval(args) -> int:
    from .engines.embedded import EmbeddedEngine
    from .policy.bundle import load_bundle
    from .policy.errors import PolicyError
    try:
        raw = sys.stdin.read() if args.input == "-" else open(args.input).read()
        input_doc = json.loads(raw)
    except (OSError, ValueError) as err:
        print(f"pdp eval: cannot read input: {err}", file=sys.stderr)
        return 2
    try:
        engine = EmbeddedEngine()
        compiled = engine.compile(load_bundle(_policy_dir(args.policies)))
        started = time.perf_counter()
        result = engine.evaluate(compiled, input_doc)
        ms = (time.perf_counter() - started) * 1000
    except PolicyError as err:
        print(f"{err}", file=sys.stderr)
        return 1
    print(json.dumps({"result": result, "eval_ms": round(ms, 3)}, indent=2, sort_keys=True))
    return 0


def cmd_token(args) -> int:
    from .authn.tokens import mint_with_settings
    settings = _settings()
    try:
        token = mint_with_settings(settings, sub=args.sub, roles=[r for r in args.roles.split(",") if r],
                                   plan=args.plan, mfa=args.mfa, minutes=args.minutes, jti=args.jti)
    except ValueError as err:
        print(f"pdp token: {err}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_settings(args) -> int:
    from .config import describe
    print(describe())
    return 0


_COMMANDS = {"serve": cmd_serve, "check": cmd_check, "test": cmd_test, "eval": cmd_eval,
             "token": cmd_token, "settings": cmd_settings}
