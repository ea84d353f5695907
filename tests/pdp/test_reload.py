"""Hot reload: edits live within 2 s, broken edits keep the last good policy, nothing dropped."""

import threading
import time

import requests

POLICY = "gateway/decision.rego"


def status_of(server, path="/public"):
    resp = requests.post(server.url + "/v1/check", json={"request": {"method": "GET", "path": path}}, timeout=5)
    assert resp.status_code == 200
    return resp.json()


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    return None


def test_edit_is_live_within_two_seconds(pdp_factory, policy_copy):
    folder = policy_copy()
    server = pdp_factory(workers=2, POLICY_DIR=folder)
    assert status_of(server)["allow"] is True
    before = status_of(server)["policy_revision"]
    src = (folder / POLICY).read_text()
    (folder / POLICY).write_text(src.replace('parsed_path[0] == "public"', 'parsed_path[0] == "open"'))
    edited = time.monotonic()
    # Every worker must serve the new policy: ask several times per poll.
    done = wait_until(
        lambda: all(status_of(server)["status"] == 401 and status_of(server, "/open")["allow"] for _ in range(4)),
        timeout=5,
    )
    assert done is not None and done - edited < 2.0
    assert status_of(server)["policy_revision"] != before


def test_broken_edit_keeps_last_good_policy(pdp_factory, policy_copy):
    folder = policy_copy()
    server = pdp_factory(POLICY_DIR=folder)
    good = status_of(server)["policy_revision"]
    (folder / POLICY).write_text((folder / POLICY).read_text() + "\nbroken := {\n")
    assert wait_until(lambda: requests.get(server.url + "/v1/health", timeout=5).json()["policy_error"], 3)
    health = requests.get(server.url + "/v1/health", timeout=5).json()
    assert health["status"] == "ok" and "gateway/decision.rego:" in health["policy_error"]
    d = status_of(server)
    assert d["allow"] is True and d["policy_revision"] == good
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'lucid_pdp_policy_reloads_total{result="error"}' in metrics
    assert "lucid_pdp_policy_last_reload_failed 1.0" in metrics
    assert "policy reload failed" in server.output() and "gateway/decision.rego:" in server.output()
    # Mending the file clears the error.
    (folder / POLICY).write_text((folder / POLICY).read_text().replace("\nbroken := {\n", "\n"))
    assert wait_until(lambda: requests.get(server.url + "/v1/health", timeout=5).json()["policy_error"] is None, 3)


def test_unsupported_builtin_edit_is_refused(pdp_factory, policy_copy):
    folder = policy_copy()
    server = pdp_factory(POLICY_DIR=folder)
    # Reachable from the decision: OPA compiles only what the entrypoint needs.
    (folder / "gateway" / "extra.rego").write_text(
        'package gateway\n\nallowed if http.send({"method": "GET", "url": "http://127.0.0.1:1"}).status_code == 200\n'
    )
    assert wait_until(lambda: requests.get(server.url + "/v1/health", timeout=5).json()["policy_error"], 3)
    assert "gateway/extra.rego:3" in requests.get(server.url + "/v1/health", timeout=5).json()["policy_error"]
    assert status_of(server)["allow"] is True


def test_no_request_dropped_during_reloads(pdp_factory, policy_copy):
    folder = policy_copy()
    server = pdp_factory(workers=2, POLICY_DIR=folder)
    results, stop = [], threading.Event()

    def hammer():
        session = requests.Session()
        while not stop.is_set():
            r = session.post(
                server.url + "/v1/check", json={"request": {"method": "GET", "path": "/public"}}, timeout=5
            )
            results.append(r.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        src = (folder / POLICY).read_text()
        for i in range(6):
            (folder / POLICY).write_text(src + f"\nedit_{i} := {i}\n")
            time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(results) > 50
    assert set(results) == {200}


def _worker_pids(master_pid):
    import os

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                pids.append(int(entry))
    return pids


def test_worker_restarted_after_a_broken_edit_still_serves(pdp_factory, policy_copy):
    import os
    import signal

    folder = policy_copy()
    server = pdp_factory(POLICY_DIR=folder)
    assert status_of(server)["allow"] is True
    (folder / POLICY).write_text("package gateway\n\ndecision := {\n")
    old = _worker_pids(server.proc.pid)
    assert old
    for pid in old:
        os.kill(pid, signal.SIGKILL)  # gunicorn boots a new worker, which finds broken files
    assert wait_until(lambda: set(_worker_pids(server.proc.pid)) - set(old), 10)
    assert wait_until(lambda: _answers(server), 10)
    d = status_of(server)
    assert d["allow"] is True  # the startup policy, not a dead PDP
    assert server.proc.poll() is None
    assert "gateway/decision.rego:" in requests.get(server.url + "/v1/health", timeout=5).json()["policy_error"]


def _answers(server):
    try:
        return requests.get(server.url + "/v1/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
