"""The chart's Grafana dashboard and PrometheusRule alerts: toggles, PromQL, metric names.

promtool (built by scripts/tools.sh from the Go module proxy) checks every rule
and every dashboard query, and runs unit tests of each alert on synthetic series.
"""

import json
import subprocess

import pytest
import yaml

from tests.support.tools import require_tool

from .conftest import CHART
from .promql import exported_series, metric_names

MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
SIDECAR_VALUES = CHART / "ci" / "sidecar-values.yaml"
PDP_JOB = 'job="t-lucid-gateway-pdp",namespace="gw"'
PROXY_JOB = 'job="t-lucid-gateway-proxy",namespace="gw"'
ALERTS = {
    "LucidGatewayPdpUnavailable",
    "LucidGatewayHighErrorRatio",
    "LucidGatewayRedisFallbackActive",
    "LucidGatewayPolicyReloadFailing",
}
# What Grafana puts in for its variables, so promtool can parse the queries.
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$namespace": "gw",
    "$pdp_job": "t-lucid-gateway-pdp",
    "$proxy_job": "t-lucid-gateway-proxy",
}


@pytest.fixture(scope="module")
def monitoring(helm):
    return helm.render([MONITORING_VALUES])


@pytest.fixture(scope="module")
def promtool():
    return require_tool("promtool")


def dashboard_of(render) -> dict:
    cm = render.get("ConfigMap", "t-lucid-gateway-dashboard")
    return json.loads(cm["data"]["lucid-gateway.json"])


def dashboard_exprs(dashboard) -> list:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def rules_of(render) -> list:
    return [r for g in render.get("PrometheusRule", "t-lucid-gateway")["spec"]["groups"] for r in g["rules"]]


def test_off_by_default(default_render):
    kinds = default_render.kinds()
    assert "PrometheusRule" not in kinds and "ConfigMap" not in kinds


def test_dashboard_configmap_carries_the_sidecar_label(monitoring, helm):
    cm = monitoring.get("ConfigMap", "t-lucid-gateway-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Gateways"}
    relabelled = helm.render(
        sets=[
            "grafanaDashboards.enabled=true",
            "grafanaDashboards.label=dash",
            "grafanaDashboards.labelValue=yes",
            "grafanaDashboards.namespace=monitoring",
        ]
    )
    cm = relabelled.get("ConfigMap", "t-lucid-gateway-dashboard")
    assert cm["metadata"]["labels"]["dash"] == "yes" and cm["metadata"]["namespace"] == "monitoring"


def test_dashboard_has_the_panels_operators_asked_for(monitoring):
    dash = dashboard_of(monitoring)
    assert dash["uid"] == "lucid-gateway"
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for topic in (
        "request rate",
        "errors",
        "p50 / p99",
        "decisions by reason",
        "quota rejections",
        "dependency health",
    ):
        assert topic in titles, topic
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(dashboard_exprs(dash))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    # The job placeholders became this release's Service names.
    consts = {v["name"]: v["query"] for v in dash["templating"]["list"] if v["type"] == "constant"}
    assert consts == {"pdp_job": "t-lucid-gateway-pdp", "proxy_job": "t-lucid-gateway-proxy"}


def test_sidecar_dashboard_scrapes_the_app_service(helm):
    dash = dashboard_of(helm.render([SIDECAR_VALUES]))
    consts = {v["name"]: v["query"] for v in dash["templating"]["list"] if v["type"] == "constant"}
    assert consts["proxy_job"] == "t-lucid-gateway-app"


def test_dashboard_and_rules_use_only_metrics_the_services_export(monitoring):
    exported = exported_series() | {"up"}  # up: Prometheus' own per-target series
    used = set()
    for expr in dashboard_exprs(dashboard_of(monitoring)) + [r["expr"] for r in rules_of(monitoring)]:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{expr}: {names - exported} not exported"
        used |= names
    assert {"lucid_pdp_decisions_total", "lucid_proxy_requests_total", "lucid_pdp_quota_decisions_total"} <= used


def test_metric_names_finds_selectors_not_labels_or_functions():
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job="x",le=~"0.1"}[5m])))'
        ' / on (job) group_left b_total offset 5m > bool 0.5 and absent(up{job="p"} == 1)'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def test_each_alert_has_its_toggle_and_settings(monitoring, helm):
    rules = {r["alert"]: r for r in rules_of(monitoring)}
    assert set(rules) == ALERTS
    ratio = rules["LucidGatewayHighErrorRatio"]
    assert ratio["expr"].rstrip().endswith("> 0.02") and ratio["for"] == "10m"
    assert ratio["labels"] == {"severity": "critical", "team": "platform"}
    assert rules["LucidGatewayPdpUnavailable"]["labels"] == {"severity": "critical", "team": "platform"}
    for name in ("pdpUnavailable", "errorRatio", "redisFallback", "policyReloadFailing"):
        fewer = helm.render([MONITORING_VALUES], sets=[f"prometheusRule.rules.{name}.enabled=false"])
        assert len(rules_of(fewer)) == len(ALERTS) - 1, name
    rule_cr = monitoring.get("PrometheusRule", "t-lucid-gateway")
    assert rule_cr["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_bad_rule_settings_are_refused_by_the_schema(helm):
    for bad in (
        "prometheusRule.rules.errorRatio.threshold=2",
        "prometheusRule.rules.pdpUnavailable.for=soon",
        "prometheusRule.rules.nosuch.enabled=true",
        "grafanaDashboards.label=a b",
    ):
        proc = helm.run(*helm.template_args(sets=["prometheusRule.enabled=true", bad]), check=False)
        assert proc.returncode != 0 and "schema" in proc.stderr, bad


def _promtool(promtool, *args, cwd):
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_accepts_the_rules(monitoring, promtool, tmp_path):
    spec = monitoring.get("PrometheusRule", "t-lucid-gateway")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    proc = _promtool(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout + proc.stderr


def test_promtool_parses_every_dashboard_query(monitoring, promtool, tmp_path):
    rules = []
    for i, expr in enumerate(dashboard_exprs(dashboard_of(monitoring))):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "dash.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _promtool(promtool, "check", "rules", "dash.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _series(name, labels, values):
    return {"series": f"{name}{{{labels}}}", "values": values}


def test_alerts_fire_on_the_failures_they_name_and_not_before(monitoring, promtool, tmp_path):
    """promtool's rule unit tests: 10 minutes of healthy series, then 15 of each failure."""
    spec = monitoring.get("PrometheusRule", "t-lucid-gateway")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    team = {"team": "platform"}
    series = [
        # PDP scraped fine for 10 minutes, then down for 15.
        _series("up", PDP_JOB + ',instance="10.0.0.1:8082"', "1x10 0x15"),
        # 1% 5xx for 10 minutes, then 10%: over the 2% threshold for the last 15 (its `for` is 10m).
        _series("lucid_proxy_requests_total", PROXY_JOB + ',route="app",status="200"', "0+99x10 990+90x15"),
        _series("lucid_proxy_requests_total", PROXY_JOB + ',route="app",status="503"', "0+1x10 10+10x15"),
        # Quota descriptors decided without Redis from minute 10 on.
        _series("lucid_pdp_quota_fallback_total", PDP_JOB + ',mode="closed"', "0x10 0+6x15"),
        # A policy edit that does not load from minute 10 on.
        _series("lucid_pdp_policy_last_reload_failed", PDP_JOB + ',instance="10.0.0.1:8082"', "0x10 1x15"),
    ]
    healthy = [{"eval_time": "9m", "alertname": a, "exp_alerts": []} for a in sorted(ALERTS)]
    notes = {r["alert"]: r["annotations"] for r in rules_of(monitoring)}
    # The summary's template, expanded: 10 of every 100 responses are 503s.
    notes["LucidGatewayHighErrorRatio"]["summary"] = notes["LucidGatewayHighErrorRatio"]["summary"].replace(
        "{{ $value | humanizePercentage }}", "10%"
    )
    failing = [
        {
            "eval_time": "25m",
            "alertname": "LucidGatewayPdpUnavailable",
            "exp_alerts": [
                {"exp_annotations": notes["LucidGatewayPdpUnavailable"], "exp_labels": {"severity": "critical", **team}}
            ],
        },
        {
            "eval_time": "25m",
            "alertname": "LucidGatewayHighErrorRatio",
            "exp_alerts": [
                {"exp_annotations": notes["LucidGatewayHighErrorRatio"], "exp_labels": {"severity": "critical", **team}}
            ],
        },
        {
            "eval_time": "25m",
            "alertname": "LucidGatewayRedisFallbackActive",
            "exp_alerts": [
                {
                    "exp_annotations": notes["LucidGatewayRedisFallbackActive"],
                    "exp_labels": {"severity": "warning", **team},
                }
            ],
        },
        {
            "eval_time": "25m",
            "alertname": "LucidGatewayPolicyReloadFailing",
            "exp_alerts": [
                {
                    "exp_annotations": notes["LucidGatewayPolicyReloadFailing"],
                    "exp_labels": {"severity": "warning", **team},
                }
            ],
        },
    ]
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": healthy + failing}],
    }
    (tmp_path / "rules_test.yaml").write_text(yaml.safe_dump(tests))
    proc = _promtool(promtool, "test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
