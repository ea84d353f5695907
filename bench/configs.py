"""Generated configurations for the comparison chains (nginx, Envoy).

Each function returns the text of one config; `write_*` puts it in a work
folder. Everything listens on 127.0.0.1 only. The same functions serve the
benchmark and the tests that check these configs are valid and enforce.
"""

from pathlib import Path

from servicekit.identity import IDENTITY_HEADERS

# The comparison chains copy the identity headers (servicekit/identity.py) from
# the PDP's answer onto the upstream request, and drop the client's, as our proxy does.

# The shipped nginx snippets (deploy/nginx), which the nginx chain includes as is.
NGINX_SNIPPETS = Path(__file__).resolve().parents[1] / "deploy" / "nginx"

# A static JSON body so the upstream is never the bottleneck.
UPSTREAM_BODY = '{"ok":true,"served_by":"bench-upstream"}'


def nginx_conf(workdir: Path, http_body: str, workers: str = "auto", worker_connections: int = 8192) -> str:
    """A whole nginx.conf: pid, logs and temp files inside workdir, http_body inside http {}."""
    # Explicit temp paths inside the work folder: nginx -p alone still wants
    # its compiled-in /var/lib/nginx paths to exist.
    temp_paths = "\n".join(
        f"  {kind}_temp_path {workdir}/{kind}_temp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
master_process on;
worker_processes {workers};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
  access_log off;
{temp_paths}
{http_body}
}}
"""


def upstream_nginx_conf(workdir: Path, port: int) -> str:
    """nginx answering every request with the same small JSON body."""
    return nginx_conf(
        workdir,
        f"""  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{
      default_type application/json;
      return 200 '{UPSTREAM_BODY}\\n';
    }}
  }}""",
    )


def front_nginx_conf(workdir: Path, proxy_port: int, auth_port: int, upstream_port: int, pdp_port: int) -> str:
    """nginx with two servers: plain proxy_pass, and auth_request to the PDP.

    The auth_request server is the shipped way to put our PDP behind nginx,
    deploy/nginx/lucid-auth.conf included as a user would: a subrequest to
    /v1/forward-auth with X-Original-Method/-URI, the identity headers copied
    from its answer onto the upstream request (every client-sent one
    replaced), and the decided status answered as problem+json.
    """
    keepalive_upstream = """      proxy_http_version 1.1;
      proxy_set_header Connection "";"""
    return nginx_conf(
        workdir,
        f"""  keepalive_requests 1000000;
  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
  upstream lucid_pdp {{ server 127.0.0.1:{pdp_port}; keepalive 256; }}

  server {{
    listen 127.0.0.1:{proxy_port} reuseport backlog=4096;
    location / {{
      proxy_pass http://backend;
{keepalive_upstream}
    }}
  }}

  server {{
    listen 127.0.0.1:{auth_port} reuseport backlog=4096;
    include {NGINX_SNIPPETS}/lucid-auth.conf;
    location / {{
      # Its own proxy_set_header (keep-alive), so the snippet's identity lines again.
      include {NGINX_SNIPPETS}/lucid-upstream-headers.conf;
      proxy_pass http://backend;
{keepalive_upstream}
    }}
  }}""",
    )


# -- Envoy ------------------------------------------------------------------------
# Every Envoy config here (ours over HTTP and over gRPC, and the reference
# chain's in bench/reference.py) is one listener built by envoy_gateway from
# the same parts, so a safety setting is written once and holds for all.


def envoy_cluster(name: str, port: int, http2: str | None = None) -> str:
    """A static cluster of one endpoint on 127.0.0.1; http2 (its
    http2_protocol_options, e.g. "{}") makes it a gRPC / HTTP/2 cluster."""
    protocol = ""
    if http2 is not None:
        protocol = f"""    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
{http2}
"""
    return f"""  - name: {name}
    type: STATIC
    connect_timeout: 1s
{protocol}    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"""


def envoy_strip_identity(setter: str) -> str:
    """The header_mutation filter removing every identity header the client sent."""
    removals = "\n".join(f"                - remove: {h}" for h in sorted(IDENTITY_HEADERS))
    return f"""          # Client-sent identity headers never reach the upstream: only {setter} sets them.
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
{removals}
"""


def envoy_gateway(
    listen_port: int, http_filters: str, clusters: list[str], admin_port: int | None = None, route: str = ""
) -> str:
    """One listener on listen_port routing everything to the `upstream` cluster
    (the first of clusters) through http_filters and then the router.

    Envoy normalizes the path (dot segments, merged slashes) before any filter
    reads it and rejects escaped slashes, so the authorization service judges
    the very path the upstream gets: without it Envoy asked with the raw
    `/admin/%2e%2e/public`, the PDP judged /public, and an upstream that does
    not resolve `%2e%2e` got a path under /admin. route: more of the route
    (the reference chain's rate_limits)."""
    admin = ""
    if admin_port is not None:
        admin = f"""admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
"""
    return (
        admin
        + f"""static_resources:
  listeners:
  - name: gateway
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            name: all
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: upstream
{route}          http_filters:
{http_filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
"""
        + "".join(clusters)
    )


def envoy_conf(listen_port: int, upstream_port: int, pdp_port: int, admin_port: int | None = None) -> str:
    """Envoy with the HTTP ext_authz filter asking the PDP's /v1/ext-authz.

    Envoy sends the method and the normalized path (after path_prefix) with
    the allowed headers and no body; on 200 it copies the identity headers onto
    the upstream request, otherwise it answers the client with the PDP's
    status, body and problem headers.
    """
    upstream_headers = "\n".join(f"                    - exact: {h}" for h in sorted(IDENTITY_HEADERS))
    filters = (
        envoy_strip_identity("the PDP")
        + f"""          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              failure_mode_allow: false
              allowed_headers:
                patterns:
                - exact: authorization
                - exact: x-request-id
              http_service:
                server_uri:
                  uri: http://127.0.0.1:{pdp_port}
                  cluster: pdp
                  timeout: 1s
                path_prefix: /v1/ext-authz
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
{upstream_headers}
                  allowed_client_headers:
                    patterns:
                    - exact: content-type
                    - exact: www-authenticate
                    - exact: retry-after
                    - prefix: ratelimit
"""
    )
    clusters = [envoy_cluster("upstream", upstream_port), envoy_cluster("pdp", pdp_port)]
    return envoy_gateway(listen_port, filters, clusters, admin_port)


GRPC_STREAMS_PER_CONNECTION = 8  # Envoy -> `pdp serve-grpc`, see envoy_grpc_conf


def envoy_grpc_conf(
    listen_port: int, upstream_port: int, grpc_port: int, admin_port: int | None = None, timeout: str = "1s"
) -> str:
    """Envoy with the gRPC ext_authz filter asking `pdp serve-grpc` (Authorization/Check).

    The PDP answers OkHttpResponse with the identity headers to set and the
    client's own identity headers to remove, or DeniedHttpResponse with the
    status, headers and problem+json body. failure_mode_allow is false: the
    PDP down is a 503 from Envoy, never a pass. Envoy normalizes the path
    (envoy_gateway) before asking, so the upstream gets the path the policy judged.
    """
    filters = f"""          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              # The PDP unreachable (or erroring) answers 503 to the client, like our proxy.
              status_on_error: {{ code: ServiceUnavailable }}
              include_peer_certificate: true
              grpc_service:
                envoy_grpc: {{ cluster_name: pdp_grpc }}
                timeout: {timeout}
"""
    # Each Envoy worker multiplexes its Checks over one HTTP/2 connection, and
    # SO_REUSEPORT spreads connections, not streams, over the PDP's processes:
    # with two connections both often land on one process and the others idle.
    # A cap on streams makes Envoy open a connection per
    # GRPC_STREAMS_PER_CONNECTION Checks in flight, so every process gets some.
    streams = f"          http2_protocol_options: {{ max_concurrent_streams: {GRPC_STREAMS_PER_CONNECTION} }}"
    clusters = [envoy_cluster("upstream", upstream_port), envoy_cluster("pdp_grpc", grpc_port, streams)]
    return envoy_gateway(listen_port, filters, clusters, admin_port)


def write_config(workdir: Path, name: str, text: str) -> Path:
    """Writes one config into workdir (with nginx's temp folders) and returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / f"{kind}_temp").mkdir(exist_ok=True)
    path = workdir / name
    path.write_text(text)
    return path
