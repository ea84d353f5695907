"""The fault matrix (bench/faults.py), short phases: every row's invariants.

One gateway (Redis, SecantusDB, mail sink, PDP, two upstreams, proxy on HTTP
and HTTPS), open-loop load at 30 req/s, each fault 2 s then 2 s of recovery;
the opa-killed row on a second gateway (PDP_ENGINE=opa, a real OPA server).
`make faults` runs the same rows longer. docs/reliability.md has the figures.
"""

import pytest

from bench import faults

RATE, FAULT_S, RECOVER_S = 30.0, 2.0, 2.0
NO_FAILURES_DURING = {
    "redis-kill9",
    "redis-sigstop",
    "redis-flushall",
    "proxy-graceful-restart",
    "routes-bad-reload",
    "cert-broken",
    "mongodb-kill9",
    "smtp-down",
}
# A few 503s, measured and stated as known limits in docs/reliability.md: requests
# in flight on the killed worker; requests already sent to the hung upstream (read
# timeout 30 s by default, client gives up at 3 s); the resetting upstream's 502s
# until it is ejected (5 consecutive failures by default); a request in flight on the
# killed upstream (its response breaks after it was sent: a 502, not retried).
FEW_FAILURES_DURING = {"pdp-one-worker": 0.05, "upstream-hung": 0.05, "upstream-reset": 0.25, "upstream-killed": 0.05}
TIMEOUTS_ALLOWED = {"upstream-hung"}
# Known limit (docs/reliability.md): reload stalls can outlast the 2 s phase on a loaded machine.
RECOVERY_NOT_ASSERTED = {"policy-broken"}


@pytest.fixture(scope="module")
def matrix():
    rows = faults.run_matrix(None, RATE, FAULT_S, RECOVER_S, log=lambda m: None)
    print("\n" + faults.format_table(rows))
    return {r.name: r for r in rows}


def test_every_row_ran(matrix):
    assert set(matrix) == {f.name for f in faults.FAULTS}
    for row in matrix.values():
        assert sum(row.during.values()) >= RATE * FAULT_S * 0.8, row  # the load really ran
        assert row.not_sent == 0, row


@pytest.mark.parametrize("name", [f.name for f in faults.FAULTS])
def test_fail_closed_recovered_and_never_a_500(matrix, name):
    row = matrix[name]
    assert row.wrongly_admitted == 0, row  # the revoked token never got through
    if name not in RECOVERY_NOT_ASSERTED:
        assert row.recover_s is not None, row  # all 2xx again before the end
    assert row.after["2xx"] > 0, row
    assert "500" not in row.statuses, row  # no stream of any row ever saw a 500


@pytest.mark.parametrize("name", [f.name for f in faults.FAULTS])
def test_no_decision_log_line_lost(matrix, name):
    # Every 401 the revoked stream got was decided by the PDP and has its line.
    row = matrix[name]
    assert row.decision_log["revoked_401"] > 0, row
    assert row.decision_log["missing"] == 0, row


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
    assert row.during["4xx"] == 0, row  # nobody was told "forbidden" because the PDP was gone


# --- quota over-admission (a tight key, limit TIGHT_LIMIT a day, spent in the lead-in) ---


def test_tight_key_spent_before_each_fault(matrix):
    # Redis refuses the key once its 40 units are spent; some of them sit unused in
    # leases for a lifetime (the under-admission docs/leases.md bounds), so fewer than
    # 40 2xx come before the fault. Never more: no fault yet.
    for row in matrix.values():
        if row.tight:
            assert row.tight["admitted_before_fault"] >= faults.TIGHT_LIMIT * 0.5, row.tight
            assert row.tight["admitted_before_fault"] <= faults.TIGHT_LIMIT, row.tight


def test_sigstop_over_admits_at_most_one_allowance_per_extra_worker(matrix):
    # Known limit (docs/quotas.md, docs/reliability.md): Redis frozen, each of the 2 PDP
    # workers' local fallback goes on from the level Redis last reported *to it*, so a
    # key may pass up to (workers x limit) per window in an outage.
    tight = matrix["redis-sigstop"].tight
    assert tight["over"] <= faults.TIGHT_LIMIT, tight


def test_flushall_costs_at_most_one_allowance(matrix):
    # FLUSHALL resets the counter: the key gets its allowance back once (known limit,
    # docs/reliability.md), plus at most what its leases had reserved; never more.
    tight = matrix["redis-flushall"].tight
    lease_units = max(1, int(0.05 * faults.TIGHT_LIMIT))
    assert tight["over"] <= faults.TIGHT_LIMIT + lease_units, tight


def test_kill9_costs_at_most_one_allowance(matrix):
    # kill -9 loses counters written since the last RDB snapshot (a reset), and the two
    # workers' local fallbacks each continue from the level they last saw: at most one
    # allowance from the reset and one from the second worker.
    tight = matrix["redis-kill9"].tight
    assert tight["over"] <= 2 * faults.TIGHT_LIMIT, tight


# --- the rows' own checks ---------------------------------------------------------------


def test_slow_policy_sheds_with_503_and_recovers(matrix):
    # Every request is answered, allowed or a 503 (deadline, queue or shed), within
    # PDP_QUEUE_TIMEOUT_MS + PDP_TIMEOUT_MS (3 s + 1 s; the load waits 5 s): no hang, no 500.
    row = matrix["policy-slow"]
    assert row.checks["slow_decisions"] > 0, row.checks  # the slow policy was really served
    assert row.during["4xx"] == 0 and row.during["err"] == 0 and row.after["err"] == 0, row
    assert set(row.statuses) <= {"200", "401", "503"}, row.statuses
    assert row.cold["during"]["err"] == 0 and row.cold["after"]["err"] == 0, row.cold
    # Whether the PDP is overloaded depends on the machine: on a quiet one it absorbed the
    # cold stream (60 2xx, slowest 0.8 s in a fresh-clone run), on a busy one it shed with
    # 503s. Either way only 200/401/503 within the bound; slow_decisions shows the fault was real.
    assert row.slowest_answer_ms <= 4800, row


def test_opa_killed_fails_closed_and_recovers(matrix):
    row = matrix["opa-killed"]
    assert row.checks["admitted_without_policy"] == 0, row
    assert row.during["4xx"] == 0 and row.during["err"] == 0, row
    assert row.during["5xx"] > 0, row  # the fault really bit


def test_reset_upstream_502_no_retry_no_hang(matrix):
    # Which requests reach the resetter before it is ejected (5 in a row) is chance: the
    # POST path is shown for certain by tests/proxy/test_proxy_upstream_reset.py.
    c = matrix["upstream-reset"].checks
    assert c["posts_reaching_reset"] + c["gets_reaching_reset"] > 0, c
    assert c["posts_retried"] == 0, c
    assert c["posts_502_problem_json"] == c["posts_reaching_reset"], c
    assert c["posts_no_answer"] == 0 and c["slowest_post_s"] < 2.5, c


def test_bad_routes_file_keeps_the_last_good(matrix):
    c = matrix["routes-bad-reload"].checks
    assert c == {"bad_file_refused": True, "good_file_reloaded": True}, c


def test_broken_certificate_keeps_the_last_good(matrix):
    row = matrix["cert-broken"]
    assert row.checks["bad_cert_refused"], row.checks
    assert row.checks["serial_during"] == 1001 and row.checks["serial_after"] == 1001, row.checks
    assert row.https["2xx"] > 0 and row.https["5xx"] == 0 and row.https["err"] == 0, row.https


def test_mongodb_killed_sign_ups_503_and_nothing_half_made(matrix):
    c = matrix["mongodb-kill9"].checks
    assert c["lost_users"] == 0 and c["incomplete_users"] == 0, c
    assert c["admin_users_unaudited"] == 0, c
    assert set(c["signups"]) <= {201, 503}, c
    assert c["signups"].get(503, 0) > 0 and c["problem_json_503s"] == c["signups"][503], c
    assert c["no_answer"] == 0, c
    assert c["auth_ready_after_s"] is not None, c  # sign-in came back
    # ... through the gateway too, though the outage ejected the auth cluster's only instance
    assert c["gateway_login_after_s"] is not None, c


def test_smtp_down_login_503_and_no_link_without_mail(matrix):
    c = matrix["smtp-down"].checks
    assert c["links_without_mail"] == 0, c
    assert set(c["logins_during"]) <= {503}, c
    assert c["logins"].get(503, 0) > 0 and c["problem_json_503s"] == c["logins"][503], c
    assert c["logins"].get(202, 0) > 0, c
    assert c["auth_ready_after_s"] is not None, c
    assert c["gateway_login_after_s"] is not None, c
