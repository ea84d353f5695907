"""The bench waits for a quiet machine before each run, boundedly, and reads
our proxy's failure counters by kind. Real /proc/stat and real busy
processes; no claim about speed is made."""

import os
import subprocess
import sys
import time

import pytest

from bench.prom import counts_by
from bench.settle import busy_share, cpu_times, wait_for_quiet

_STAT = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"


def test_cpu_times_counts_iowait_as_idle():
    assert cpu_times(_STAT) == (150, 1000)


def test_busy_share_between_two_samples():
    later = "cpu  200 0 100 850 50 0 0 0 0 0\n"
    assert busy_share(cpu_times(_STAT), cpu_times(later)) == pytest.approx(150 / 200)


def test_refuses_text_that_is_not_proc_stat():
    with pytest.raises(ValueError, match="not /proc/stat"):
        cpu_times("intr 1 2 3\n")


def test_reads_this_machine():
    busy, total = cpu_times(open("/proc/stat").read())
    assert 0 <= busy <= total and total > 0


def test_gives_up_on_a_machine_that_stays_busy():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        quiet, waited = wait_for_quiet(1.0)
        took = time.monotonic() - started
    finally:
        for p in burners:
            p.kill()
            p.wait()
    assert not quiet
    assert 1.0 <= waited <= took < 3.0


def test_returns_once_two_windows_in_a_row_were_quiet():
    # A scripted /proc/stat: busy, quiet, busy, quiet, quiet.
    shares = [0.9, 0.1, 0.9, 0.1, 0.1]
    samples = ["cpu  0 0 0 0 0 0 0 0\n"]
    busy = total = 0
    for share in shares:
        busy, total = busy + int(share * 100), total + 100
        samples.append(f"cpu  {busy} 0 0 {total - busy} 0 0 0 0\n")
    reads = iter(samples)
    quiet, _ = wait_for_quiet(60, read_stat=lambda: next(reads), sleep=lambda s: None)
    assert quiet
    assert next(reads, None) is None  # it read exactly up to the second quiet window in a row


def test_counts_a_counter_by_label():
    page = (
        "# TYPE lucid_proxy_pdp_errors_total counter\n"
        'lucid_proxy_pdp_errors_total{kind="shed"} 3.0\n'
        'lucid_proxy_pdp_errors_total{kind="timeout"} 1.0\n'
        'lucid_proxy_pdp_errors_created{kind="shed"} 1.7e9\n'
        'lucid_proxy_other_total{kind="shed"} 9.0\n'
    )
    assert counts_by(page, "lucid_proxy_pdp_errors", "kind") == {"shed": 3.0, "timeout": 1.0}
