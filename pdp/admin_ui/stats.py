"""The PDP's own Prometheus metrics (aggregated across workers) as numbers the page can show."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families


def read_metrics(exposition: bytes) -> dict:
    """Cumulative counts, by reason and by quota verdict, and the decision latency buckets."""
    out = {
        "decisions": {"allow": 0.0, "deny": 0.0},
        "reasons": {},
        "quota": {},
        "buckets": [],
        "errors": {},
        "reload_failed": 0.0,
    }
    for family in text_string_to_metric_families(exposition.decode("utf-8", "replace")):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "lucid_pdp_decisions_total":
                out["decisions"][labels.get("result", "?")] = out["decisions"].get(labels.get("result", "?"), 0) + value
                key = f"{labels.get('result')}:{labels.get('reason')}"
                out["reasons"][key] = out["reasons"].get(key, 0) + value
            elif name == "lucid_pdp_decision_seconds_bucket":
                out["buckets"].append([_le(labels["le"]), value])
            elif name == "lucid_pdp_quota_decisions_total":
                key = f"{labels.get('descriptor')}:{labels.get('result')}"
                out["quota"][key] = out["quota"].get(key, 0) + value
            elif name == "lucid_pdp_errors_total":
                out["errors"][labels.get("kind", "?")] = value
            elif name == "lucid_pdp_policy_last_reload_failed":
                out["reload_failed"] = max(out["reload_failed"], value)
    out["buckets"].sort()
    out["total"] = out["decisions"]["allow"] + out["decisions"]["deny"]
    out["quantiles_ms"] = {q: quantile_ms(out["buckets"], float(q)) for q in ("0.5", "0.9", "0.99")}
    # JSON has no Infinity: the +Inf bucket's bound is null.
    out["buckets"] = [[None if math.isinf(le) else le, count] for le, count in out["buckets"]]
    return out


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "inf") else float(text)


def quantile_ms(buckets: list, q: float) -> float | None:
    """histogram_quantile over cumulative [le, count] buckets (linear inside a bucket), in ms."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return round(lower_le * 1000, 3)
            span = count - lower_count
            frac = (rank - lower_count) / span if span else 1.0
            return round((lower_le + (le - lower_le) * frac) * 1000, 3)
        lower_le, lower_count = le, count
    return round(lower_le * 1000, 3)
