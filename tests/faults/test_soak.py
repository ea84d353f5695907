"""A short `make soak` (60 s, 1,000 connections) and the growth criterion it applies."""

from pathlib import Path

from bench import soak


def test_growth_criterion_flags_a_leak_and_not_a_plateau():
    t = [float(i) for i in range(40)]
    leak = {"rss_mb:leaky": [(x, 50 + 1.0 * x) for x in t]}  # +1 MB per sample, to the end
    warmup = {"rss_mb:warm": [(x, 50 + min(x, 15.0)) for x in t]}  # grows, then flat
    noisy = {"fds:noisy": [(x, 100 + (5 if i % 2 else -5)) for i, x in enumerate(t)]}
    verdict = {c["series"]: c["unbounded"] for c in soak.verdicts({**leak, **warmup, **noisy})}
    assert verdict == {"rss_mb:leaky": True, "rss_mb:warm": False, "fds:noisy": False}


def test_short_soak_through_the_chain(tmp_path):
    report = soak.run_soak(60, connections=1000, rate=100, sample_s=2.0, out=tmp_path, log=lambda m: None)
    print("\n" + soak.format_report(report))
    totals = {k: sum(b[k] for b in report["latency"]) for k in ("requests", "2xx", "5xx", "err")}
    assert totals["requests"] >= 100 * 60 * 0.8, totals  # the load really ran, 1,000 connections held
    assert totals["err"] <= 0.01 * totals["requests"], totals  # connections were not dropped
    assert totals["2xx"] >= 0.8 * totals["requests"], totals
    kinds = {c["series"].split(":")[0] for c in report["checks"]}
    assert kinds == {"rss_mb", "fds", "redis_mb", "p99_ms"}
    assert [c for c in report["checks"] if c["unbounded"]] == [], report["checks"]
    assert Path(report["plots"][0]).stat().st_size > 10_000
    held = max(v for t, v in report["series"]["fds:proxy-worker-1"])
    assert held >= 1000  # the proxy really held the connections
