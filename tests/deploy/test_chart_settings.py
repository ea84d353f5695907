"""The chart's environment against the PDP's own settings table (pdp/config.py).

Every variable the chart sets must be one the PDP reads, and every rendered
value must pass the PDP's startup validation: a chart that renders fine but
stops the PDP at start would only show up in a cluster otherwise.
"""

import base64
import re

import pytest
import yaml

from .conftest import CHART, CI_VALUES, container

config = pytest.importorskip("pdp.config", reason="the PDP is not merged into this tree yet")

PDP = "t-lucid-gateway-pdp"
ALL_VALUES = [None, *CI_VALUES]
# Stand-ins for Secrets the chart only references (existingSecret).
EXTERNAL_SECRETS = {
    "JWT_SECRET_KEY": "e" * 48,
    "REDIS_URL": "redis://redis:6379/0",
    "MONGODB_URI": "mongodb://mongodb:27017/db",
    "SMTP_URL": "smtp://mail:25",
    "TOTP_ENCRYPTION_KEYS": "k1:" + "A" * 43,
}


def _pdp_environ(rendered) -> dict:
    """The PDP container's env as the kubelet would build it, Secrets resolved."""
    secrets = {s["metadata"]["name"]: s["data"] for s in rendered.of_kind("Secret")}
    spec = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    environ = {}
    for entry in container(spec, "pdp")["env"]:
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            environ[entry["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        else:
            environ[entry["name"]] = EXTERNAL_SECRETS[entry["name"]]
    return environ


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=[f.name if f else "default" for f in ALL_VALUES])
def test_rendered_pdp_env_passes_the_pdp_startup_validation(helm, values_file):
    environ = _pdp_environ(helm.render([values_file] if values_file else []))
    known = {s.env for s in config.SETTINGS}
    assert set(environ) <= known, f"the PDP does not read {sorted(set(environ) - known)}"
    settings = config.load_settings(environ)
    assert settings.port == int(environ["AUTH_PORT"])
    assert settings.policy_dir == "/policies"


def test_rs256_with_a_jwks_url_passes_the_pdp_validation(helm):
    rendered = helm.render(sets=["jwt.algorithm=RS256", "jwt.jwksUrl=https://issuer.test/jwks.json"])
    settings = config.load_settings(_pdp_environ(rendered))
    assert settings.jwt_algorithms == ("RS256",)


def test_chart_defaults_match_the_pdp_defaults():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults = {s.env: s.default_value for s in config.SETTINGS}
    assert values["pdp"]["port"] == defaults["AUTH_PORT"]
    assert values["pdp"]["workers"] == defaults["PDP_WORKERS"]
    assert values["pdp"]["engine"] == defaults["PDP_ENGINE"]
    assert values["rateLimit"] == {
        "enabled": defaults["RATE_LIMIT_ENABLED"],
        "requestsPerMinute": defaults["RATE_LIMIT_REQUESTS_PER_MINUTE"],
        "burstSize": defaults["RATE_LIMIT_BURST_SIZE"],
    }
    assert values["jwt"]["accessTokenExpireMinutes"] == defaults["JWT_ACCESS_TOKEN_EXPIRE_MINUTES"]
    assert (values["jwt"]["algorithm"],) == defaults["JWT_ALGORITHM"]
    assert values["logLevel"] == defaults["LOG_LEVEL"]
    assert f"http://127.0.0.1:{values['pdp']['opa']['port']}" == defaults["OPA_URL"]


def test_schema_allows_exactly_the_algorithms_the_pdp_allows(helm):
    schema = (CHART / "values.schema.json").read_text()
    pattern = re.search(r'"pattern": "\^\(([A-Z0-9|]+)\)\(,', schema).group(1)
    for alg in pattern.split("|"):
        settings = config.load_settings(
            {"JWT_ALGORITHM": alg, "JWT_SECRET_KEY": "s" * 40, "JWKS_URL": "https://issuer.test/jwks.json"}
        )
        assert settings.jwt_algorithms == (alg,)
    for bad in ("none", "HS1", "EdDSA"):
        with pytest.raises(config.ConfigError):
            config.load_settings({"JWT_ALGORITHM": bad, "JWT_SECRET_KEY": "s" * 40})
        assert helm.run("template", "t", str(CHART), "--set", f"jwt.algorithm={bad}", check=False).returncode


def test_mixing_hs_and_asymmetric_algorithms_fails_in_the_chart_as_in_the_pdp(helm):
    with pytest.raises(config.ConfigError):
        config.load_settings({"JWT_ALGORITHM": "HS256,RS256", "JWT_SECRET_KEY": "s" * 40})
    proc = helm.run(
        "template",
        "t",
        str(CHART),
        "--set",
        "jwt.algorithm=HS256\\,RS256",
        "--set",
        "jwt.jwksUrl=https://issuer.test/jwks.json",
        check=False,
    )
    assert proc.returncode != 0 and "do not mix" in proc.stderr


def test_sign_in_settings_from_values_pass_the_pdp_validation(helm):
    rendered = helm.render(
        sets=[
            "mongodb.uri=mongodb://mongodb:27017/lucid_gateway",
            "signin.publicBaseUrl=https://api.example.test",
            "signin.smtpUrl=smtp://mail:25",
            "signin.totpKeys=k1:" + "B" * 43,
            "signin.signupMode=open",
        ]
    )
    environ = _pdp_environ(rendered)
    settings = config.load_settings(environ)
    assert settings.public_base_url == "https://api.example.test" and settings.signup_mode == "open"
    assert settings.totp_encryption_keys[0][0] == "k1"
    # The SMTP URL and the keys come from the chart's Secret, never as plain values.
    spec = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    plain = {e["name"] for e in container(spec, "pdp")["env"] if "value" in e}
    assert not plain & {"SMTP_URL", "TOTP_ENCRYPTION_KEYS", "MONGODB_URI"}


def _typed(row):
    """A row's default as a values file would write it (the schema's type)."""
    kind = row.schema.get("type")
    if kind == "integer":
        return int(row.default)
    if kind == "number":
        return float(row.default)
    if kind == "boolean":
        return row.default_value
    return row.default


def _passed_through(table):
    return [row for row in table if row.chart is None and row.default]


def test_every_other_setting_can_be_set_through_the_pass_through_maps(helm, tmp_path):
    """pdp.settings / proxy.settings take every setting without a values path, each at its
    default as a values file writes it; the schema accepts them, the env carries them as
    the services read them (whole numbers without an exponent), and both start on it."""
    from proxy.config import SETTINGS as PROXY_SETTINGS
    from proxy.config import load as load_proxy

    pdp_rows, proxy_rows = _passed_through(config.SETTINGS), _passed_through(PROXY_SETTINGS)
    values = tmp_path / "all.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "pdp": {"settings": {r.env: _typed(r) for r in pdp_rows}},
                "proxy": {"settings": {r.env: _typed(r) for r in proxy_rows}},
            }
        )
    )
    rendered = helm.render([values])
    environ = _pdp_environ(rendered)
    for row in pdp_rows:
        assert row.value_of(environ[row.env]) == row.default_value, row.env
    config.load_settings(environ)
    spec = rendered.get("Deployment", "t-lucid-gateway-proxy")["spec"]["template"]["spec"]
    proxy_env = {e["name"]: e["value"] for e in container(spec, "proxy")["env"]}
    assert proxy_env["MAX_BODY_BYTES"] == "10485760"  # not 1.048576e+07
    for row in proxy_rows:
        assert row.value_of(proxy_env[row.env]) == row.default_value, row.env
    load_proxy(proxy_env)


def test_a_pass_through_setting_reaches_the_container(helm):
    rendered = helm.render(sets=["pdp.settings.JWT_LEEWAY_S=60", "pdp.settings.FORWARD_AUTH_FRONT=traefik"])
    settings = config.load_settings(_pdp_environ(rendered))
    assert settings.jwt_leeway_s == 60 and settings.forward_auth_front == "traefik"


@pytest.mark.parametrize(
    "setting,path",
    [
        ("pdp.settings.NO_SUCH_SETTING=1", "/pdp/settings"),  # unknown variable
        ("pdp.settings.JWT_LEEWAY_S=1000", "/pdp/settings/JWT_LEEWAY_S"),  # the row's own range
        ("pdp.settings.FORWARD_AUTH_FRONT=haproxy", "/pdp/settings/FORWARD_AUTH_FRONT"),
        ("pdp.settings.AUTH_PORT=9000", "/pdp/settings"),  # has its values path: pdp.port
        ("pdp.settings.REDIS_URL=redis://r:6379/0", "/pdp/settings"),  # the chart sets it (a Secret)
        ("proxy.settings.MAX_HEADER_BYTES=10", "/proxy/settings/MAX_HEADER_BYTES"),
        ("proxy.settings.PDP_URL=http://elsewhere:8082", "/proxy/settings"),
    ],
    ids=lambda v: v if "=" in v else "",
)
def test_the_schema_checks_the_pass_through_maps(helm, setting, path):
    done = helm.run(*helm.template_args(sets=[setting]), check=False)
    assert done.returncode != 0 and f"'{path}'" in done.stderr, done.stderr
