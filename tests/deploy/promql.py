"""Metric names in PromQL expressions, and the series names our services export.

Not a PromQL parser (promtool checks the syntax): this finds the selectors'
metric names, so a test can check that a dashboard or an alert refers only
to series the PDP and the proxy really export.
"""

import json
import re
import subprocess
import sys

from tests.support.processes import ROOT

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:(])(?!\s*\()")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "Inf",
    "NaN",
}


def metric_names(expr: str) -> set:
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


_EXPORTED = r"""
import json
from prometheus_client import REGISTRY
from pdp.metrics import PdpMetrics
from pdp.quota.metrics import QuotaMetrics
from proxy.metrics import Metrics

pdp = PdpMetrics()
QuotaMetrics(registry=pdp.registry)
Metrics()  # the proxy's metrics live in the default registry
suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
            "gauge": [""], "summary": ["", "_sum", "_count", "_created"], "info": ["_info"]}
names = set()
for registry in (pdp.registry, REGISTRY):
    for family in registry.collect():
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
print(json.dumps(sorted(names)))
"""


def exported_series() -> set:
    """Every series name the PDP (with quotas) and the proxy export, from their own metric classes.

    In a child process: the proxy registers into prometheus_client's global
    registry, which a second instance in this process would clash with."""
    out = subprocess.run(
        [sys.executable, "-c", _EXPORTED], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    ).stdout
    return set(json.loads(out))
