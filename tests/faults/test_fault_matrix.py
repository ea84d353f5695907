"""The fault matrix (bench/faults.py), short phases: every row's invariants.

One gateway (Redis, PDP, two upstreams, proxy), open-loop load at 30 req/s,
each fault 2 s then 2 s of recovery. `make faults` runs the same rows longer.
"""
import pytest

from bench import faults

RATE, FAULT_S, RECOVER_S = 30.0, 2.0, 2.0
NO_FAILURES_DURING = {"redis-kill9", "redis-sigstop", "redis-flushall", "upstream-killed", "proxy-graceful-restart"}
# A few 503s, measured and stated as known limits in docs/reliability.md: requests
# in flight on the killed worker; the reload that reads a broken policy; requests
# already sent to the hung upstream (read timeout 30 s by default, client gives up at 3 s).
FEW_FAILURES_DURING = {"pdp-one-worker": 0.05, "upstream-hung": 0.05}
TIMEOUTS_ALLOWED = {"upstream-hung"}


@pytest.fixture(scope="module")
def matrix():
    rows = faults.run_matrix(None, RATE, FAULT_S, RECOVER_S, log=lambda m: None)
    print("\n" + faults.format_table(rows))
    return {r.name: r for r in rows}


def test_every_row_ran(matrix):
    assert set(matrix) == {f.name for f in faults.FAULTS}
    for row in matrix.values():
        assert sum(row.during.values()) >= RATE * FAULT_S * 0.8, row   # the load really ran
        assert row.not_sent == 0, row


@pytest.mark.parametrize("name", [f.name for f in faults.FAULTS])
def test_fail_closed_and_recovered(matrix, name):
    row = matrix[name]
    assert row.wrongly_admitted == 0, row          # the revoked token never got through
    if name != "policy-broken":   # known limit: reload stalls can outlast the 2 s phase on a loaded machine
        assert row.recover_s is not None, row      # all 2xx again before the end
    assert row.after["2xx"] > 0, row


@pytest.mark.parametrize("name", sorted(NO_FAILURES_DURING))
def test_no_request_failed_during(matrix, name):
    row = matrix[name]
    assert row.during["5xx"] == 0 and row.during["err"] == 0, row


@pytest.mark.parametrize("name", sorted(FEW_FAILURES_DURING))
def test_few_requests_failed_during(matrix, name):
    row = matrix[name]
    total = sum(row.during.values())
    if name not in TIMEOUTS_ALLOWED:
        assert row.during["err"] == 0, row
    assert row.during["5xx"] + row.during["err"] <= FEW_FAILURES_DURING[name] * total, row
    assert row.after["5xx"] + row.after["err"] <= FEW_FAILURES_DURING[name] * sum(row.after.values()), row


def test_broken_policy_keeps_the_last_good_one(matrix):
    # Known limit (docs/reliability.md): each reload compiles in the worker and stalls
    # its loop past the proxy's PDP timeout, so a few 503s come in short spans; never an allow
    # of what the policy refuses, never a 4xx, and the broken policy is never served.
    row = matrix["policy-broken"]
    assert row.during["2xx"] >= 0.8 * sum(row.during.values()), row
    assert row.during["4xx"] == 0 and row.after["4xx"] == 0, row
    assert row.wrongly_admitted == 0, row


def test_nothing_lost_but_unsaved_quota_counters(matrix):
    for row in matrix.values():
        assert "revocation" not in row.lost, row
        # kill -9: counters since the last RDB snapshot go; FLUSHALL: all of them (docs/reliability.md)
        if row.name not in ("redis-kill9", "redis-flushall"):
            assert row.lost == "", row


def test_pdp_down_is_503_never_a_connection_error(matrix):
    row = matrix["pdp-all-workers"]
    assert row.during["err"] == 0 and row.after["err"] == 0, row
    assert row.during["4xx"] == 0, row   # nobody was told "forbidden" because the PDP was gone
