"""proxy/leases.py on its own: counts, expiry, revision changes, renewal and
the lease size, with an injected clock (the end-to-end properties with real
Redis and workers are in tests/quota/test_leases_chain.py)."""

from proxy.leases import LeaseStore
from proxy.pdp import Decision


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _allow(units, revision="r1", lease_id="L1", remaining=50):
    return Decision(
        allow=True,
        status=200,
        reason="ok",
        policy_revision=revision,
        response_headers={"ratelimit": f'"d";r={remaining};t=60'},
        lease={"id": lease_id, "units": units, "ttl_s": 1.0},
    )


def _store():
    clock, returned = Clock(), []
    store = LeaseStore(clock, lambda lease_id, unused: returned.append((lease_id, unused)))
    return store, clock, returned


def test_a_lease_admits_exactly_its_units_and_counts_the_headers_down():
    store, _, returned = _store()
    assert store.take("k") is None
    store.observe("k", _allow(3))
    seen = [store.take("k") for _ in range(4)]
    assert [d.response_headers["ratelimit"] for d in seen[:3]] == ['"d";r=49;t=60', '"d";r=48;t=60', '"d";r=47;t=60']
    assert all(d.cached for d in seen[:3]) and seen[3] is None
    assert returned == []  # all used: nothing to give back


def test_unused_units_go_back_on_expiry_and_on_a_new_revision():
    store, clock, returned = _store()
    store.observe("a", _allow(5, lease_id="A"))
    store.take("a")
    clock.now += 1.01
    store.sweep()
    assert returned == [("A", 4)] and len(store) == 0
    store.observe("b", _allow(5, lease_id="B"))
    store.observe("other", Decision(allow=False, status=403, reason="no", policy_revision="r2"))
    assert returned[-1] == ("B", 5) and store.take("b") is None


def test_a_renewal_is_asked_once_at_a_quarter_left_and_used_after_the_current_lease():
    store, _, returned = _store()
    store.observe("k", _allow(8, lease_id="first"))
    renew = []
    for _ in range(6):
        store.take("k")
        renew.append(store.should_renew("k"))
    assert renew == [False, False, False, False, False, True]  # 2 of 8 left
    assert not store.should_renew("k")
    store.observe("k", _allow(4, lease_id="second", remaining=40), renewal=True)
    used = [store.take("k") for _ in range(7)]
    assert all(d is not None for d in used[:6]) and used[6] is None
    assert used[2].response_headers["ratelimit"] == '"d";r=39;t=60'  # the renewal's own count
    assert returned == []


def test_a_renewal_that_is_refused_ends_the_lease():
    store, _, returned = _store()
    store.observe("k", _allow(8, lease_id="first"))
    store.take("k")
    store.observe("k", Decision(allow=False, status=401, reason="revoked", policy_revision="r1"), renewal=True)
    assert store.take("k") is None and returned == [("first", 7)]


def test_a_slow_key_asks_for_one_unit_and_a_hot_key_for_more():
    store, clock, _ = _store()
    assert store.want("slow") == 1
    clock.now += 5
    assert store.want("slow") == 1
    assert store.want("hot") == 1
    clock.now += 0.01
    assert store.want("hot") > 50
