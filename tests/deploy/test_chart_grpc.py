"""pdp.grpc in the chart: the PDP container also serves Envoy's ext_authz over gRPC."""

from .conftest import container, env_of, port_number

PDP = "t-lucid-gateway-pdp"


def test_off_by_default(default_render):
    pod = default_render.get("Deployment", PDP)["spec"]["template"]["spec"]
    assert "PDP_GRPC_ENABLED" not in env_of(container(pod, "pdp"))
    ports = {p["name"] for p in default_render.get("Service", PDP)["spec"]["ports"]}
    assert ports == {"http"}


def test_enabled_adds_the_setting_the_container_port_and_the_service_port(helm):
    rendered = helm.render(
        sets=["pdp.grpc.enabled=true", "pdp.grpc.port=9292", "pdp.grpc.workers=3", "networkPolicy.enabled=true"]
    )
    pod = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    env = env_of(container(pod, "pdp"))
    assert env["PDP_GRPC_ENABLED"]["value"] == "true"
    assert env["PDP_GRPC_PORT"]["value"] == "9292"
    assert env["PDP_GRPC_WORKERS"]["value"] == "3"
    service = rendered.get("Service", PDP)
    grpc_port = [p for p in service["spec"]["ports"] if p["name"] == "grpc"][0]
    assert grpc_port["port"] == 9292 and port_number(pod, grpc_port["targetPort"]) == 9292
    assert grpc_port["appProtocol"] == "grpc"
    policy = rendered.get("NetworkPolicy", PDP)
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {"http", "grpc"}


def test_schema_refuses_unknown_grpc_keys(helm):
    done = helm.run(*helm.template_args(sets=["pdp.grpc.enabled=true", "pdp.grpc.prot=1"]), check=False)
    assert done.returncode != 0 and "prot" in done.stderr


def test_grpc_port_colliding_with_the_http_or_opa_port_fails_the_render(helm):
    for sets, message in (
        (["pdp.grpc.enabled=true", "pdp.grpc.port=8082"], "pdp.port and pdp.grpc.port collide"),
        (["pdp.grpc.enabled=true", "pdp.engine=opa", "pdp.grpc.port=8181"], "pdp.grpc.port and pdp.opa.port collide"),
    ):
        done = helm.run(*helm.template_args(sets=sets), check=False)
        assert done.returncode != 0 and message in done.stderr, done.stderr
    # The same number is fine while gRPC is off (no second listener).
    helm.render(sets=["pdp.grpc.port=8082"])


def test_grpc_port_matches_the_image_and_the_pdp_setting(helm):
    """The chart's default gRPC port is the one Dockerfile.pdp exposes and `pdp serve-grpc` listens on."""
    import yaml

    from pdp.config import SETTINGS
    from tests.deploy.conftest import CHART

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["pdp"]["grpc"]["port"] == {s.env: s.default_value for s in SETTINGS}["PDP_GRPC_PORT"] == 9191
    rendered = helm.render(sets=["pdp.grpc.enabled=true"])
    pod = rendered.get("Deployment", PDP)["spec"]["template"]["spec"]
    assert {"name": "grpc", "containerPort": 9191, "protocol": "TCP"} in container(pod, "pdp")["ports"]
    # The HTTP probes stay on the HTTP port: with PDP_GRPC_ENABLED a dead gRPC server stops the whole PDP.
    assert port_number(pod, container(pod, "pdp")["readinessProbe"]["httpGet"]["port"]) == 8082
