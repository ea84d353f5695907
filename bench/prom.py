"""Reading a Prometheus /metrics page: histogram buckets, quantiles between two scrapes, counters."""

import re

_SAMPLE = re.compile(r'^(\w+)_bucket\{(.*?)le="([^"]+)"(.*?)\} ([0-9.e+-]+)$', re.M)


def buckets(text: str) -> dict:
    """{metric: {le: cumulative count}} summed over every other label."""
    out: dict = {}
    for name, _, le, _, value in _SAMPLE.findall(text):
        bound = float("inf") if le == "+Inf" else float(le)
        per = out.setdefault(name, {})
        per[bound] = per.get(bound, 0.0) + float(value)
    return out


def counts_by(text: str, metric: str, label: str) -> dict:
    """{label value: count} of one counter, from a /metrics page."""
    pattern = re.compile(rf'^{metric}_total\{{[^}}]*?{label}="([^"]*)"[^}}]*\}} ([0-9.e+-]+)$', re.M)
    out: dict = {}
    for value, count in pattern.findall(text):
        out[value] = out.get(value, 0.0) + float(count)
    return out


def quantile(before: dict, after: dict, q: float) -> float | None:
    """q-quantile in ms of what was observed between two scrapes of one histogram."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    low, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts):
        if cumulative >= rank:
            if bound == float("inf"):
                return low * 1000
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return (low + (bound - low) * share) * 1000
        low, below = bound, cumulative
    return low * 1000
