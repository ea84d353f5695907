# Kubernetes packaging: the Helm chart and the two container images.
CHART := helm/lucid-gateway
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' $(CHART)/Chart.yaml)

.PHONY: chart-lint chart-render dockerfile-lint images settings test-deploy

chart-lint: bootstrap  ## helm lint --strict with the defaults and every ci/*-values.yaml
	helm lint --strict $(CHART)
	@for f in $(CHART)/ci/*-values.yaml; do helm lint --strict $(CHART) -f $$f || exit 1; done

settings: bootstrap  ## regenerate docs/settings.md, the chart's _settings.tpl and values.schema.json from the settings tables
	$(PY) scripts/gen_settings.py

chart-render: bootstrap  ## print the manifests for VALUES=<file> (defaults without it)
	helm template lucid-gateway $(CHART) $(if $(VALUES),-f $(VALUES))

dockerfile-lint: bootstrap  ## hadolint both Dockerfiles
	$(VENV)/bin/hadolint Dockerfile.pdp Dockerfile.proxy

images:  ## build both images (needs a Docker engine; not used by the tests)
	docker build -f Dockerfile.pdp -t lucid-gateway/pdp:$(IMAGE_TAG) .
	docker build -f Dockerfile.proxy -t lucid-gateway/proxy:$(IMAGE_TAG) .

test-deploy: bootstrap  ## the chart and Dockerfile tests only
	$(PY) -m pytest tests/deploy -q
