"""Every object the chart renders, for each ci/*-values.yaml, against Kubernetes' OpenAPI schemas.

Offline: kubernetes-validate ships the schemas. Strict mode refuses unknown
fields, the mistake `helm lint` does not see. The prometheus-operator kinds
(ServiceMonitor, PrometheusRule) have no schema there; test_monitoring.py and
promtool check those.
"""

import kubernetes_validate
import pytest

from .conftest import CI_VALUES, KUBE_VERSION

OPERATOR_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
ALL_VALUES = [None, *CI_VALUES]


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=[f.name if f else "default" for f in ALL_VALUES])
def test_every_rendered_object_matches_the_kubernetes_schema(helm, values_file):
    rendered = helm.render([values_file] if values_file else [])
    checked = 0
    for doc in rendered.docs:
        if (doc["apiVersion"], doc["kind"]) in OPERATOR_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {err.message} at {list(err.path)}")
        checked += 1
    assert checked >= 5  # Deployments, Services, Secret, ServiceAccount at least


def test_the_validator_refuses_a_wrong_field(helm):
    """The check has teeth: a misspelt field in a rendered Deployment is an error."""
    deployment = helm.render().of_kind("Deployment")[0]
    deployment["spec"]["replicass"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
