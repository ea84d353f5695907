"""The Helm chart, checked with the real helm binary: lint, schema, and the rendered objects."""

import base64
import json

import pytest
import yaml

from .conftest import CHART, CI_VALUES, container, env_of, port_number

PDP = "t-lucid-gateway-pdp"
PROXY = "t-lucid-gateway-proxy"
APP = "t-lucid-gateway-app"
SIDECAR_VALUES = CHART / "ci" / "sidecar-values.yaml"
OPA_VALUES = CHART / "ci" / "opa-values.yaml"
GATEWAY_VALUES = CHART / "ci" / "gateway-values.yaml"
SCALING_VALUES = CHART / "ci" / "scaling-values.yaml"
ALL_VALUES = [None, *CI_VALUES]


def _ids(files):
    return [f.name if f else "default" for f in files]


def test_ci_values_cover_the_four_scenarios():
    assert {f.name for f in CI_VALUES} >= {
        "gateway-values.yaml",
        "sidecar-values.yaml",
        "opa-values.yaml",
        "scaling-values.yaml",
    }


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_lint_passes_strict(helm, values_file):
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values_file)] if values_file else [])
    out = helm.run(*args).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_every_object_is_labelled_and_namespaced(helm, values_file):
    rendered = helm.render([values_file] if values_file else [])
    assert rendered.docs
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "lucid-gateway"
        assert labels["app.kubernetes.io/instance"] == "t"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert doc["metadata"].get("namespace") == "gw", doc["metadata"]["name"]


def test_default_is_gateway_mode_with_nothing_optional(default_render):
    assert default_render.kinds() == ["Deployment", "Deployment", "Secret", "Service", "Service", "ServiceAccount"]
    names = {d["metadata"]["name"] for d in default_render.of_kind("Deployment")}
    assert names == {PDP, PROXY}


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_every_pod_runs_nonroot_read_only_without_capabilities(helm, values_file):
    rendered = helm.render([values_file] if values_file else [])
    for name, spec in rendered.pod_specs():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["enableServiceLinks"] is False, name
        assert spec["automountServiceAccountToken"] is False, name
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], name
        for c in spec["containers"]:
            sc = c["securityContext"]
            where = f"{name}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], where
            assert c.get("resources") or c["name"] == "app", where


def test_pdp_probes_hit_health_and_ready_on_auth_port(default_render):
    spec = default_render.get("Deployment", PDP)["spec"]["template"]["spec"]
    pdp = container(spec, "pdp")
    assert pdp["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert pdp["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    assert pdp["startupProbe"]["httpGet"]["path"] == "/v1/health"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert port_number(spec, pdp[probe]["httpGet"]["port"]) == 8082
        assert pdp[probe]["periodSeconds"] > 0 and pdp[probe]["timeoutSeconds"] > 0
    assert env_of(pdp)["AUTH_PORT"]["value"] == "8082"


def test_proxy_probes_hit_meta_endpoints_on_http_port(default_render):
    spec = default_render.get("Deployment", PROXY)["spec"]["template"]["spec"]
    proxy = container(spec, "proxy")
    # The proxy's own endpoint: the aggregated /api/v1/meta/health answers 503
    # when any one backend cluster is down, which must not unready every proxy.
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/api/v1/meta/info"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/api/v1/meta/info"
    assert port_number(spec, proxy["readinessProbe"]["httpGet"]["port"]) == 8080
    assert env_of(proxy)["HTTP_PORT"]["value"] == "8080"
    assert env_of(proxy)["PDP_URL"]["value"] == f"http://{PDP}:8082"


def test_probe_ports_follow_a_changed_port(helm):
    rendered = helm.render(sets=["pdp.port=9090"])
    spec = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    pdp = container(spec, "pdp")
    assert port_number(spec, pdp["readinessProbe"]["httpGet"]["port"]) == 9090
    assert env_of(pdp)["AUTH_PORT"]["value"] == "9090"


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_every_service_targets_a_port_of_the_pods_it_selects(helm, values_file):
    rendered = helm.render([values_file] if values_file else [])
    deployments = rendered.of_kind("Deployment")
    for svc in rendered.of_kind("Service"):
        selector = svc["spec"]["selector"]
        pods = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1, f"{svc['metadata']['name']} selects {len(pods)} Deployments"
        for port in svc["spec"]["ports"]:
            port_number(pods[0]["spec"]["template"]["spec"], port["targetPort"])


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_deployment_selectors_match_only_their_own_pods(helm, values_file):
    deployments = helm.render([values_file] if values_file else []).of_kind("Deployment")
    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        assert selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for other in deployments:
            if other is not d:
                assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_pdp_is_never_exposed_outside_the_cluster_by_default(helm, default_render):
    for rendered in (default_render, helm.render([GATEWAY_VALUES])):
        assert rendered.get("Service", PDP)["spec"]["type"] == "ClusterIP"
        assert not rendered.of_kind("Ingress")
    # Even with the gateway on a LoadBalancer, only the proxy is.
    gateway = helm.render([GATEWAY_VALUES])
    assert gateway.get("Service", PROXY)["spec"]["type"] == "LoadBalancer"


def test_sidecar_mode_puts_the_proxy_in_front_of_the_app(helm):
    rendered = helm.render([SIDECAR_VALUES])
    assert {d["metadata"]["name"] for d in rendered.of_kind("Deployment")} == {PDP, APP}
    spec = rendered.get("Deployment", APP)["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["proxy", "app"]
    proxy = container(spec, "proxy")
    assert proxy["args"] == ["--upstream", "http://127.0.0.1:9000"]
    assert "BLOCKCHAIN_CORE_URL" not in env_of(proxy)
    svc = rendered.get("Service", APP)
    assert port_number(spec, svc["spec"]["ports"][0]["targetPort"]) == 8080


def test_sidecar_toggle_off_sends_the_service_straight_to_the_app(helm):
    rendered = helm.render([SIDECAR_VALUES], sets=["app.proxySidecar=false"])
    spec = rendered.get("Deployment", APP)["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    svc = rendered.get("Service", APP)
    assert port_number(spec, svc["spec"]["ports"][0]["targetPort"]) == 9000


def test_opa_engine_adds_a_loopback_opa_sidecar(helm, default_render):
    spec = helm.render([OPA_VALUES]).get("Deployment", PDP)["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["pdp", "opa"]
    opa = container(spec, "opa")
    assert opa["image"] == "openpolicyagent/opa:1.22.4"
    assert opa["args"][:2] == ["run", "--server"]
    assert "--addr=127.0.0.1:8181" in opa["args"]
    assert opa["readinessProbe"]["httpGet"]["path"] == "/health"
    assert port_number(spec, opa["readinessProbe"]["httpGet"]["port"]) == 8282
    env = env_of(container(spec, "pdp"))
    assert env["PDP_ENGINE"]["value"] == "opa"
    assert env["OPA_URL"]["value"] == "http://127.0.0.1:8181"
    assert env["DECISION_LOG"]["value"] == "0.1"

    default = default_render.get("Deployment", PDP)["spec"]["template"]["spec"]
    assert [c["name"] for c in default["containers"]] == ["pdp"]
    assert env_of(default["containers"][0])["PDP_ENGINE"]["value"] == "wasm"
    assert "OPA_URL" not in env_of(default["containers"][0])


CREDENTIAL_ENV = ("JWT_SECRET_KEY", "REDIS_URL", "MONGODB_URI")


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=_ids(ALL_VALUES))
def test_credentials_reach_containers_only_through_secret_refs(helm, values_file):
    rendered = helm.render([values_file] if values_file else [])
    spec = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    env = env_of(container(spec, "pdp"))
    assert "secretKeyRef" in env["JWT_SECRET_KEY"]["valueFrom"]
    for _, pod in rendered.pod_specs():
        for c in pod["containers"]:
            for name, entry in env_of(c).items():
                if name in CREDENTIAL_ENV or "SECRET" in name or "PASSWORD" in name:
                    assert "value" not in entry, f"{c['name']} has {name} as a plain value"


def test_given_jwt_secret_lands_only_in_the_secret(helm):
    key = "k" * 20 + "-given-secret-0123456789"
    text = helm.template_text(sets=[f"jwt.secretKey={key}"])
    rendered = [d for d in yaml.safe_load_all(text) if d]
    secret = [d for d in rendered if d["kind"] == "Secret"][0]
    assert base64.b64decode(secret["data"]["jwt-secret-key"]).decode() == key
    others = [d for d in rendered if d["kind"] != "Secret"]
    assert key not in yaml.safe_dump_all(others)
    ref = env_of(
        container(
            [d for d in rendered if d["metadata"]["name"] == PDP and d["kind"] == "Deployment"][0]["spec"]["template"][
                "spec"
            ],
            "pdp",
        )
    )
    assert ref["JWT_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "jwt-secret-key",
    }


def test_without_a_jwt_secret_a_strong_random_one_is_generated(default_render):
    key = base64.b64decode(default_render.of_kind("Secret")[0]["data"]["jwt-secret-key"])
    assert len(key) >= 32


def test_existing_secrets_are_referenced_and_not_created(helm):
    rendered = helm.render(sets=["jwt.existingSecret=my-jwt", "redis.existingSecret=my-redis"])
    assert not rendered.of_kind("Secret")
    env = env_of(container(rendered.get("Deployment", PDP)["spec"]["template"]["spec"], "pdp"))
    assert env["JWT_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "my-jwt", "key": "jwt-secret-key"}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "redis-url"}


BAD_VALUES = [
    (["--set-string", "pdp.replicaCount=two"], "/pdp/replicaCount"),
    (["--set", "replicaCount=2"], "replicaCount"),
    (["--set", "mode=mesh"], "/mode"),
    (["--set", "pdp.engine=embedded"], "/pdp/engine"),
    (["--set", "jwt.algorithm=none"], "/jwt/algorithm"),
    (["--set", "jwt.secretKey=too-short"], "/jwt/secretKey"),
    (["--set", "pdp.port=70000"], "/pdp/port"),
    (["--set", "redis.url=http://redis:6379"], "/redis/url"),
    (["--set-string", "pdp.decisionLog=sometimes"], "/pdp/decisionLog"),
    (["--set", "pdp.readinessProbe.httpGet.path=v1/ready"], "/pdp/readinessProbe"),
]


@pytest.mark.parametrize("args,path", BAD_VALUES, ids=[p for _, p in BAD_VALUES])
def test_schema_rejects_bad_values(helm, args, path):
    for command in (["template", "t", str(CHART)], ["lint", str(CHART)]):
        proc = helm.run(*command, *args, check=False)
        assert proc.returncode != 0, f"helm {command[0]} accepted {args}"
        output = proc.stderr + proc.stdout
        assert "schema" in output and path in output, output


@pytest.mark.parametrize(
    "sets,message",
    [
        (["proxy.tls.enabled=true"], "proxy.tls.secretName"),
        (["mode=sidecar"], "app.image.repository"),
        (["mode=sidecar", "app.image.repository=x", "app.port=8080"], "app.port 8080 collides"),
        (["policies.existingConfigMap=a", "policies.files.x\\.rego=package x"], "not both"),
        (
            ["mongodb.uri=mongodb://m:27017/db", "signin.smtpUrl=smtp://mail:25", "signin.totpKeys=k1:" + "A" * 43],
            "signin.publicBaseUrl is required with mongodb",
        ),
    ],
    ids=[
        "tls-without-secret",
        "sidecar-without-app",
        "port-collision",
        "two-policy-sources",
        "signin-without-base-url",
    ],
)
def test_inconsistent_values_fail_with_one_clear_line(helm, sets, message):
    args = ["template", "t", str(CHART)] + [a for s in sets for a in ("--set", s)]
    proc = helm.run(*args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_hpa_pdb_and_servicemonitor_only_when_enabled(helm, default_render):
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "NetworkPolicy"):
        assert not default_render.of_kind(kind), kind

    rendered = helm.render([SCALING_VALUES])
    hpas = {h["metadata"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")}
    assert set(hpas) == {PDP, PROXY}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        # The HPA owns the replica count: the Deployment must not fight it.
        assert "replicas" not in rendered.get("Deployment", name)["spec"]
    assert hpas[PROXY]["spec"]["minReplicas"] == 3
    pdp_metrics = {m["resource"]["name"] for m in hpas[PDP]["spec"]["metrics"]}
    assert pdp_metrics == {"cpu", "memory"}

    pdbs = {p["metadata"]["name"]: p for p in rendered.of_kind("PodDisruptionBudget")}
    assert set(pdbs) == {PDP, PROXY}
    assert pdbs[PDP]["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdbs[PDP]["spec"]
    assert pdbs[PROXY]["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdbs[PROXY]["spec"]
    for name, pdb in pdbs.items():
        pod_labels = rendered.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    monitors = {m["metadata"]["name"]: m for m in rendered.of_kind("ServiceMonitor")}
    assert set(monitors) == {PDP, PROXY}
    assert monitors[PDP]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitors[PROXY]["spec"]["endpoints"][0]["path"] == "/api/v1/meta/metrics"
    assert monitors[PROXY]["spec"]["endpoints"][0]["authorization"]["type"] == "Bearer"
    assert monitors[PDP]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for name, monitor in monitors.items():
        svc = rendered.get("Service", name)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}


def test_network_policy_lets_only_proxies_reach_the_pdp(helm):
    for values, client in ((GATEWAY_VALUES, PROXY), (SIDECAR_VALUES, APP)):
        rendered = helm.render([values])
        policy = rendered.get("NetworkPolicy", PDP)
        pdp_labels = rendered.get("Deployment", PDP)["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pdp_labels.items()
        allowed = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
        client_labels = rendered.get("Deployment", client)["spec"]["template"]["metadata"]["labels"]
        assert allowed.items() <= client_labels.items()
        assert not allowed.items() <= pdp_labels.items()
        front = rendered.get("NetworkPolicy", client)
        assert {p["port"] for p in front["spec"]["ingress"][0]["ports"]} <= {"http", "https"}


def test_policies_configmap_is_mounted_whole_for_hot_reload(helm):
    rendered = helm.render([GATEWAY_VALUES])
    cm = rendered.get("ConfigMap", "t-lucid-gateway-policies")
    assert set(cm["data"]) == {"gateway__decision.rego", "gateway__data.json"}
    assert cm["data"]["gateway__decision.rego"].startswith("package gateway")
    spec = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    volume = [v for v in spec["volumes"] if v["name"] == "policies"][0]["configMap"]
    assert volume["name"] == "t-lucid-gateway-policies"
    assert {i["path"] for i in volume["items"]} == {"gateway/decision.rego", "gateway/data.json"}
    mount = [m for m in container(spec, "pdp")["volumeMounts"] if m["name"] == "policies"][0]
    # subPath mounts never see ConfigMap updates: the directory must be mounted whole.
    assert mount == {"name": "policies", "mountPath": "/policies", "readOnly": True}
    assert env_of(container(spec, "pdp"))["POLICY_DIR"]["value"] == "/policies"


def _checksum(rendered):
    return rendered.get("Deployment", PDP)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_policy_edits_need_no_restart_but_secret_changes_roll_pods(helm):
    base = helm.render([GATEWAY_VALUES])
    edited = helm.render([GATEWAY_VALUES], sets=["policies.files.gateway/extra\\.rego=package gateway"])
    assert "gateway__extra.rego" in edited.get("ConfigMap", "t-lucid-gateway-policies")["data"]
    assert _checksum(base) == _checksum(edited)
    rotated = helm.render([GATEWAY_VALUES], sets=["redis.existingSecret=other-redis"])
    assert _checksum(base) != _checksum(rotated)


def test_image_tag_defaults_to_app_version_and_digest_wins(helm, default_render):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["pdp"]["image"]["tag"] == "" and values["proxy"]["image"]["tag"] == ""
    pdp = container(default_render.get("Deployment", PDP)["spec"]["template"]["spec"], "pdp")
    assert pdp["image"] == f"lucid-gateway/pdp:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    rendered = helm.render(sets=["proxy.image.tag=9.9.9", f"pdp.image.digest={digest}"])
    assert (
        container(rendered.get("Deployment", PROXY)["spec"]["template"]["spec"], "proxy")["image"]
        == "lucid-gateway/proxy:9.9.9"
    )
    assert (
        container(rendered.get("Deployment", PDP)["spec"]["template"]["spec"], "pdp")["image"]
        == f"lucid-gateway/pdp@{digest}"
    )


def test_prestop_sleep_only_where_kubernetes_supports_it(helm):
    new = helm.render(kube_version="1.31.0").get("Deployment", PROXY)["spec"]["template"]["spec"]
    assert container(new, "proxy")["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    old = helm.render(kube_version="1.29.0").get("Deployment", PROXY)["spec"]["template"]["spec"]
    assert "lifecycle" not in container(old, "proxy")


def test_tls_mounts_the_certificate_secret_and_exposes_https(helm):
    rendered = helm.render([GATEWAY_VALUES])
    spec = rendered.get("Deployment", PROXY)["spec"]["template"]["spec"]
    proxy = container(spec, "proxy")
    env = env_of(proxy)
    assert env["SSL_ENABLED"]["value"] == "true"
    assert env["SSL_CERT_PATH"]["value"] == "/certs/tls.crt"
    assert {"name": "certs", "mountPath": "/certs", "readOnly": True} in proxy["volumeMounts"]
    assert {"name": "certs", "secret": {"secretName": "lucid-gateway-tls"}} in spec["volumes"]
    ports = {p["name"]: p for p in rendered.get("Service", PROXY)["spec"]["ports"]}
    assert ports["https"]["port"] == 8081 and port_number(spec, ports["https"]["targetPort"]) == 8081
    assert env["ROUTES_FILE"]["value"] == "/etc/lucid-gateway/routes.yaml"
    assert "routes.yaml" in rendered.get("ConfigMap", "t-lucid-gateway-routes")["data"]


def test_schema_file_is_valid_json_with_strict_top_level():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # Every documented top-level value is declared in the schema.
    assert set(values) <= set(schema["properties"])


def test_asymmetric_algorithm_without_a_key_fails_clearly(helm):
    proc = helm.run("template", "t", str(CHART), "--set", "jwt.algorithm=RS256", check=False)
    assert proc.returncode != 0 and "jwt.publicKey" in proc.stderr
    rendered = helm.render(sets=["jwt.algorithm=RS256", "jwt.jwksUrl=https://issuer.test/jwks.json"])
    env = env_of(container(rendered.get("Deployment", PDP)["spec"]["template"]["spec"], "pdp"))
    assert env["JWKS_URL"]["value"] == "https://issuer.test/jwks.json"


def test_proxy_drain_fits_in_the_pod_grace_period(helm, default_render):
    spec = default_render.get("Deployment", PROXY)["spec"]["template"]["spec"]
    grace = int(env_of(container(spec, "proxy"))["GRACE_PERIOD_S"]["value"])
    assert grace + 5 <= spec["terminationGracePeriodSeconds"]
    longer = helm.render(sets=["proxy.terminationGracePeriodSeconds=120"])
    spec = longer.get("Deployment", PROXY)["spec"]["template"]["spec"]
    assert int(env_of(container(spec, "proxy"))["GRACE_PERIOD_S"]["value"]) == 110


def test_sidecar_mode_scales_and_protects_the_app_deployment(helm):
    rendered = helm.render(
        [SIDECAR_VALUES], sets=["app.autoscaling.enabled=true", "app.podDisruptionBudget.enabled=true"]
    )
    assert [h["metadata"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")] == [APP]
    assert [p["metadata"]["name"] for p in rendered.of_kind("PodDisruptionBudget")] == [APP]
    assert "replicas" not in rendered.get("Deployment", APP)["spec"]
    assert not [d for d in rendered.docs if d["metadata"]["name"] == PROXY]


def test_notes_warn_about_a_generated_key_and_an_unenforced_app(notes):
    default = notes()
    assert "a random JWT_SECRET_KEY" in default and "svc/t-lucid-gateway-proxy" in default
    assert "a random JWT_SECRET_KEY" not in notes("--set", "jwt.existingSecret=my-jwt")
    unguarded = notes("-f", str(SIDECAR_VALUES), "--set", "app.proxySidecar=false")
    assert "requests are not enforced" in unguarded
    # A Redis URL may carry a password: the notes never print it.
    assert "hunter2" not in notes("--set", "redis.url=redis://:hunter2@redis:6379/0")


def test_the_https_redirect_needs_a_public_host(helm):
    # The proxy refuses HTTP_REDIRECT_TO_HTTPS without PUBLIC_HOST; the chart says so at render time.
    failed = helm.run(*helm.template_args([GATEWAY_VALUES], sets=["proxy.tls.redirectHttp=true"]), check=False)
    assert failed.returncode != 0 and "proxy.tls.publicHost" in failed.stderr
    rendered = helm.render(
        [GATEWAY_VALUES], sets=["proxy.tls.redirectHttp=true", "proxy.tls.publicHost=gw.example.com"]
    )
    env = env_of(container(rendered.get("Deployment", PROXY)["spec"]["template"]["spec"], "proxy"))
    assert env["HTTP_REDIRECT_TO_HTTPS"]["value"] == "true"
    assert env["PUBLIC_HOST"]["value"] == "gw.example.com"
