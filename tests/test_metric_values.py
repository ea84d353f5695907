"""servicekit/metric_values.py: prometheus_client's values without their per-update lock and pid check.

Each case runs in a fresh interpreter: install() swaps prometheus_client's
value class for the whole process, and multiprocess mode is chosen from the
environment when a metric is made.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, env_dir: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if env_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(env_dir)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


FORKED = """
    import gevent.monkey
    gevent.monkey.patch_all()
    import os
    from gevent.monkey import get_original
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
    from servicekit import metric_values

    metric_values.install()
    metric_values.install()  # twice: still one writer per file
    print("class", values.ValueClass.__module__)
    requests = Counter("t_requests", "r", ["route"])
    seconds = Histogram("t_seconds", "s", buckets=(0.1, 1.0))
    live = Gauge("t_live", "l", multiprocess_mode="livesum")
    recent = Gauge("t_recent", "m", multiprocess_mode="mostrecent")
    requests.labels("a").inc()
    seconds.observe(0.05)
    live.inc(2)
    recent.set(7)
    fork, waitpid = get_original("os", "fork"), get_original("os", "waitpid")
    pid = fork()
    if pid == 0:
        requests.labels("a").inc(5)
        requests.labels("b").inc()
        seconds.observe(0.5)
        live.inc(3)
        recent.set(9)
        os._exit(0)
    waitpid(pid, 0)
    requests.labels("a").inc(10)
    names = os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    print("files", sorted(f.rsplit("_", 1)[0] + ("_child" if str(pid) in f else "_parent") for f in names))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("t_"):
            print(line)
    multiprocess.mark_process_dead(pid)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    print("after", [l for l in generate_latest(registry).decode().splitlines() if l.startswith("t_live")])
"""


def test_forked_workers_write_their_own_files_and_the_collector_sums_them(tmp_path):
    out = _run(FORKED, tmp_path)
    assert "class servicekit.metric_values" in out
    lines = set(out.splitlines())
    # One file per type (and gauge mode) per process, named as prometheus_client names them.
    assert (
        "files ['counter_child', 'counter_parent', 'gauge_livesum_child', 'gauge_livesum_parent', "
        "'gauge_mostrecent_child', 'gauge_mostrecent_parent', 'histogram_child', 'histogram_parent']"
    ) in lines
    # The child starts from zero in its own file (as with prometheus_client's
    # value): what the parent counted before the fork is not counted twice.
    assert 't_requests_total{route="a"} 16.0' in lines  # 1 + 10 (parent) + 5 (child)
    assert 't_requests_total{route="b"} 1.0' in lines
    assert 't_seconds_bucket{le="0.1"} 1.0' in lines
    assert 't_seconds_bucket{le="1.0"} 2.0' in lines
    assert "t_seconds_count 2.0" in lines
    assert "t_live 5.0" in lines  # 2 + 3
    assert "t_recent 9.0" in lines  # the most recent set wins
    assert "after ['t_live 2.0']" in lines  # a dead worker's live gauge is dropped


def test_one_process_gets_a_float_under_an_unpatched_lock():
    out = _run(
        """
        import gevent.monkey
        gevent.monkey.patch_all()
        from prometheus_client import CollectorRegistry, Counter, generate_latest, values
        from servicekit import metric_values
        metric_values.install()
        registry = CollectorRegistry()
        c = Counter("t_one", "o", ["k"], registry=registry)
        c.labels("x").inc(2)
        child = c.labels("x")
        print(type(child._value).__name__, type(child._value._lock).__module__)
        print([l for l in generate_latest(registry).decode().splitlines() if l.startswith("t_one_total")])
        """,
        None,
    )
    name, lock_module = out.splitlines()[0].split()
    assert name == "LockedValue"
    assert not lock_module.startswith("gevent")  # a C lock, never a greenlet-switching one
    assert "['t_one_total{k=\"x\"} 2.0']" in out


def test_children_are_made_once_per_label_values():
    out = _run(
        """
        from prometheus_client import CollectorRegistry, Counter
        from servicekit.metric_values import Children
        registry = CollectorRegistry()
        c = Counter("t_kids", "k", ["route", "status"], registry=registry)
        kids = Children(c)
        first = kids("a", "200")
        first.inc()
        kids("a", "200").inc()
        kids("a", "404").inc()
        print(first is kids("a", "200"), registry.get_sample_value("t_kids_total", {"route": "a", "status": "200"}),
              registry.get_sample_value("t_kids_total", {"route": "a", "status": "404"}))
        """,
        None,
    )
    assert out.split() == ["True", "2.0", "1.0"]


def test_the_proxy_and_the_pdp_install_it_before_their_first_metric(tmp_path):
    out = _run(
        """
        from prometheus_client import values
        from proxy.metrics import Metrics
        m = Metrics()
        print(type(m.requests.labels("r", "200")._value).__module__)
        from pdp.metrics import PdpMetrics
        p = PdpMetrics()
        print(type(p.decision_seconds._sum).__module__)
        """,
        tmp_path,
    )
    assert out.split() == ["servicekit.metric_values", "servicekit.metric_values"]
