"""proxy/admission.py in process, with real greenlets: turns are strictly first
come, first served, and waits are bounded."""

import gevent

from proxy.admission import Admission


def test_a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer():
    admission = Admission(1, budget_s=5.0)
    assert admission.enter()  # the only slot
    order = []

    def waiter(name):
        if admission.enter():
            order.append(name)
            gevent.sleep(0.01)
            admission.leave()

    first = gevent.spawn(waiter, "first")
    gevent.sleep(0)  # first is queued
    assert admission.waiting == 1
    admission.leave()
    # A newcomer arriving before the woken waiter has run (here: at once, in the
    # same greenlet) must queue behind it; a plain semaphore let it take the slot,
    # and keep-alive connections barged ahead of those waiting.
    assert admission.enter()
    order.append("newcomer")
    admission.leave()
    first.join(5)
    assert order == ["first", "newcomer"]
    assert admission.waiting == 0


def test_a_wait_is_bounded_and_then_shed():
    admission = Admission(1, budget_s=0.05)
    assert admission.enter()
    started = gevent.get_hub().loop.now()
    assert admission.enter() is False  # waited its bound (1 s at least), then refused
    assert gevent.get_hub().loop.now() - started >= 0.9
    assert admission.waiting == 0 and admission.shed == 1
    # The average wait is now over budget: the next one is refused at once.
    assert admission.enter() is False and admission.shed == 2
    admission.leave()
    assert admission.enter()  # a free slot and nobody waiting: let in
