"""The chart's proxy containers against the proxy's own startup checks.

`python -m proxy --check` validates every setting, loads the routes (or builds
the sidecar table from --upstream) and the TLS pair, then exits: exactly what
a pod would do before serving. It runs here on the env and args the chart
renders, with the files the kubelet would mount written to a temp folder.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

from .conftest import CHART, CI_VALUES, ROOT, container

pytest.importorskip("proxy.config", reason="the proxy is not merged into this tree yet")
from proxy.config import SETTINGS  # noqa: E402
from proxy.routes import DEFAULT_ROUTES_FILE  # noqa: E402

DEFAULT_ROUTES = __import__("pathlib").Path(DEFAULT_ROUTES_FILE)

ALL_VALUES = [None, *CI_VALUES]


def _self_signed_pair(folder):
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl not installed (scripts/bootstrap.sh installs it)")
    crt, key = folder / "tls.crt", folder / "tls.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return crt, key


def _proxy_pods(rendered):
    """(pod spec, proxy container) for every pod that runs the proxy."""
    found = []
    for _, spec in rendered.pod_specs():
        names = [c["name"] for c in spec["containers"]]
        if "proxy" in names:
            found.append((spec, container(spec, "proxy")))
    return found


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=[f.name if f else "default" for f in ALL_VALUES])
def test_rendered_proxy_passes_the_proxy_startup_checks(helm, values_file, tmp_path):
    rendered = helm.render([values_file] if values_file else [])
    pods = _proxy_pods(rendered)
    assert pods, "every mode here runs the proxy"
    for _spec, proxy in pods:
        env = {e["name"]: e["value"] for e in proxy["env"]}
        # The files the kubelet would mount, at temp paths.
        if env.get("SSL_ENABLED") == "true":
            env["SSL_CERT_PATH"], env["SSL_KEY_PATH"] = map(str, _self_signed_pair(tmp_path))
        routes_text = DEFAULT_ROUTES.read_text()
        if env.get("ROUTES_FILE"):
            routes = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-routes")]
            path = tmp_path / "routes.yaml"
            routes_text = routes[0]["data"]["routes.yaml"]
            path.write_text(routes_text)
            env["ROUTES_FILE"] = str(path)
        # What the proxy reads: its settings, and the ${VAR}s of its routes file (the backends).
        known = {s.env for s in SETTINGS}
        if "--upstream" not in proxy.get("args", []):
            known |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", routes_text))
        assert set(env) <= known, f"the proxy does not read {sorted(set(env) - known)}"
        argv = [sys.executable, "-m", "proxy", *proxy.get("args", []), "--check"]
        # Only the rendered env (plus how to find programs and modules): nothing
        # from the test's own environment may make a bad render pass.
        base = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
        proc = subprocess.run(argv, env={**base, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        mode = "sidecar" if "--upstream" in proxy.get("args", []) else "gateway"
        assert f"configuration ok ({mode}," in proc.stdout


def test_chart_defaults_match_the_proxy_defaults():
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = {s.env: s.default for s in SETTINGS}
    assert str(values["proxy"]["httpPort"]) == defaults["HTTP_PORT"]
    assert str(values["proxy"]["httpsPort"]) == defaults["HTTPS_PORT"]
    assert values["proxy"]["tls"]["minVersion"] == defaults["SSL_MIN_VERSION"]
    # The backends' defaults live in the shipped routes file (${VAR:-default}) only: the chart sets none.
    assert values["proxy"]["backends"] == {}


ORDERS_ROUTES = """\
clusters:
  orders: {endpoints: "${ORDERS_URL}"}
routes:
  - {name: meta-public, match: {glob: "/api/v1/meta/{health,info,version}", methods: [GET, HEAD]}, meta: true,
     fail_mode: open}
  - {match: {prefix: /api/v1/orders}, cluster: orders}
"""


def _check_rendered_proxy(rendered, tmp_path):
    ((_, proxy),) = _proxy_pods(rendered)
    env = {e["name"]: e["value"] for e in proxy["env"]}
    if env.get("ROUTES_FILE"):
        routes = [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-routes")]
        (tmp_path / "routes.yaml").write_text(routes[0]["data"]["routes.yaml"])
        env["ROUTES_FILE"] = str(tmp_path / "routes.yaml")
    base = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
    return env, subprocess.run(
        [sys.executable, "-m", "proxy", "--check"],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_new_backend_is_a_routes_file_and_a_value_only(helm, tmp_path):
    # No template names a backend: proxy.backends become env, the routes file reads them.
    import yaml

    values = tmp_path / "orders-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"proxy": {"routes": ORDERS_ROUTES, "backends": {"ORDERS_URL": "http://orders:8080,http://orders-2:8080"}}}
        )
    )
    env, proc = _check_rendered_proxy(helm.render([values]), tmp_path)
    assert env["ORDERS_URL"] == "http://orders:8080,http://orders-2:8080"
    assert proc.returncode == 0, proc.stderr
    # Without the value, the pod would stop at startup with one line naming the variable.
    values.write_text(yaml.safe_dump({"proxy": {"routes": ORDERS_ROUTES}}))
    env, proc = _check_rendered_proxy(helm.render([values]), tmp_path)
    assert "ORDERS_URL" not in env
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lucid-proxy: {tmp_path / 'routes.yaml'}: clusters.orders.endpoints: unknown variable ${{ORDERS_URL}}: "
        "not set in the environment (expected comma-separated http(s):// URLs; or write ${ORDERS_URL:-default})"
    ]


def test_the_seed_backends_are_values_like_any_other(helm, tmp_path):
    rendered = helm.render(sets=["proxy.backends.BLOCKCHAIN_CORE_URL=http://core.chain:8084"])
    env, proc = _check_rendered_proxy(rendered, tmp_path)
    assert env["BLOCKCHAIN_CORE_URL"] == "http://core.chain:8084"
    assert not {"SESSION_MANAGEMENT_URL", "AUTH_SERVICE_URL", "TRON_PAYMENT_URL"} & set(env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "value,path",
    [
        ("proxy.backends.orders_url=http://orders:8080", "/proxy/backends"),
        ("proxy.backends.ORDERS_URL=orders:8080", "/proxy/backends/ORDERS_URL"),
    ],
)
def test_the_schema_refuses_a_bad_backend(helm, value, path):
    proc = helm.run("template", "t", str(CHART), "--set-string", value, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "schema" in proc.stderr and path in proc.stderr, proc.stderr


PDP_TLS = [
    "proxy.pdp.url=https://pdp.mesh.internal:8443",
    "proxy.pdp.tls.secretName=pdp-link",
    "proxy.pdp.tls.clientCert=true",
    "proxy.pdp.tls.serverName=pdp.internal",
]


@pytest.mark.parametrize("values_file", [None, CHART / "ci" / "sidecar-values.yaml"], ids=["gateway", "sidecar"])
def test_tls_to_the_pdp_mounts_its_secret_and_passes_the_startup_checks(helm, values_file, tmp_path):
    """proxy.pdp.tls: the Secret's ca.crt/tls.crt/tls.key at /pdp-tls, the settings naming them,
    accepted by `python -m proxy --check` with the files where the kubelet would put them."""
    from tests.support.certs import CertAuthority

    rendered = helm.render([values_file] if values_file else [], sets=PDP_TLS)
    pods = _proxy_pods(rendered)
    assert pods
    ca = CertAuthority(tmp_path / "ca", "pdp link CA")
    client_cert, client_key = ca.issue("lucid-proxy", client=True)
    files = {"/pdp-tls/ca.crt": str(ca.cert_path), "/pdp-tls/tls.crt": client_cert, "/pdp-tls/tls.key": client_key}
    for spec, proxy in pods:
        env = {e["name"]: e["value"] for e in proxy["env"]}
        assert env["PDP_URL"] == "https://pdp.mesh.internal:8443"
        assert env["PDP_TLS_SERVER_NAME"] == "pdp.internal"
        assert {env["PDP_CA_FILE"], env["PDP_CLIENT_CERT"], env["PDP_CLIENT_KEY"]} == set(files)
        assert {"name": "pdp-tls", "mountPath": "/pdp-tls", "readOnly": True} in proxy["volumeMounts"]
        assert {"name": "pdp-tls", "secret": {"secretName": "pdp-link"}} in spec["volumes"]
        for name in ("PDP_CA_FILE", "PDP_CLIENT_CERT", "PDP_CLIENT_KEY"):
            env[name] = files[env[name]]
        env.pop("ROUTES_FILE", None)
        base = {k: os.environ[k] for k in ("PATH", "PYTHONPATH") if k in os.environ}
        proc = subprocess.run(
            [sys.executable, "-m", "proxy", *proxy.get("args", []), "--check"],
            env={**base, **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr


def test_pdp_link_is_plain_http_to_the_charts_pdp_by_default(default_render):
    for _, proxy in _proxy_pods(default_render):
        env = {e["name"]: e.get("value") for e in proxy["env"]}
        assert env["PDP_URL"] == "http://t-lucid-gateway-pdp:8082"
        assert not {"PDP_CA_FILE", "PDP_CLIENT_CERT", "PDP_CLIENT_KEY", "PDP_TLS_SERVER_NAME"} & set(env)
        assert all(m["name"] != "pdp-tls" for m in proxy["volumeMounts"])


@pytest.mark.parametrize(
    "sets, message",
    [
        (["proxy.pdp.tls.secretName=pdp-link"], "proxy.pdp.tls needs an https:// proxy.pdp.url"),
        (["proxy.pdp.url=http://pdp:8082", "proxy.pdp.tls.serverName=pdp"], "proxy.pdp.tls needs an https://"),
        (
            ["proxy.pdp.url=https://pdp:8443", "proxy.pdp.tls.clientCert=true"],
            "proxy.pdp.tls.clientCert needs proxy.pdp.tls.secretName",
        ),
        (["proxy.pdp.url=pdp:8082"], "url"),
        (["proxy.pdp.tls.caFile=/x"], "caFile"),
    ],
)
def test_bad_pdp_link_values_fail_the_render_with_one_line(helm, sets, message):
    done = helm.run(*helm.template_args(sets=sets), check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_the_proxy_gets_the_pdps_decision_header_names(helm, tmp_path):
    # One list, set once in pdp.settings: every proxy drops a client's copies of those names.
    import yaml

    names = "x-user-id,x-tenant,ratelimit*"
    values = tmp_path / "headers-values.yaml"
    values.write_text(yaml.safe_dump({"pdp": {"settings": {"DECISION_HEADER_NAMES": names}}}))
    env, proc = _check_rendered_proxy(helm.render([values]), tmp_path)
    assert env["DECISION_HEADER_NAMES"] == names
    assert proc.returncode == 0, proc.stderr


def test_without_a_pdp_list_the_proxy_keeps_its_default_which_is_the_pdps(default_render):
    from pdp.config import SETTINGS as PDP_SETTINGS

    def default(settings):
        return next(s.default for s in settings if s.env == "DECISION_HEADER_NAMES")

    assert default(SETTINGS) == default(PDP_SETTINGS)
    for _, proxy in _proxy_pods(default_render):
        assert "DECISION_HEADER_NAMES" not in {e["name"] for e in proxy["env"]}
