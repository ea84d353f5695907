"""GET /v1/openapi.json: the API's OpenAPI 3.1 document (pdp/openapi.yaml)."""

from __future__ import annotations

import json
import pathlib

import yaml

from .. import __version__

SPEC_PATH = pathlib.Path(__file__).resolve().parent.parent / "openapi.yaml"


def load_spec() -> dict:
    """The spec as data, its version the package's own."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    spec["info"]["version"] = __version__
    return spec


class OpenApi:
    def __init__(self, spec: dict | None = None):
        # Serialized once: the document never changes while the process runs.
        self._body = json.dumps(spec or load_spec(), separators=(",", ":")).encode()

    def on_get(self, req, resp):
        resp.content_type = "application/json"
        resp.data = self._body
