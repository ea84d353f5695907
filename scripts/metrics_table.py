"""Prints the table of every metric both services export (docs/metrics.md embeds it).

Run: .venv/bin/python scripts/metrics_table.py. tests/test_metrics_docs.py keeps
the docs current, so a new metric is documented by re-running this.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402


def families():
    from pdp.metrics import PdpMetrics
    from pdp.quota.metrics import QuotaMetrics
    from pdp.signin.business_metrics import BusinessMetrics
    from proxy.metrics import Metrics

    rows = []
    pdp = CollectorRegistry()
    PdpMetrics(pdp)
    QuotaMetrics(pdp)
    BusinessMetrics(None, pdp)
    proxy_metrics = Metrics()  # registers on the default registry, as in the proxy's workers
    for service, registry in (("pdp", pdp), ("proxy", None)):
        proxy_collectors = {c: None for c in vars(proxy_metrics).values() if hasattr(c, "describe")}
        collectors = registry._collector_to_names if registry else proxy_collectors
        for collector in collectors:
            for family in collector.describe():
                labels = getattr(collector, "_labelnames", ())
                rows.append((family.name, family.type, service, labels, family.documentation))
    return sorted(rows, key=lambda r: (r[2], r[0]))


def markdown() -> str:
    lines = ["| metric | type | service | labels | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, kind, service, labels, doc in families():
        suffix = "_total" if kind == "counter" else ""
        lines.append(f"| `{name}{suffix}` | {kind} | {service} | {', '.join(labels)} | {doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
