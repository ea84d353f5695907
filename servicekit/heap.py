"""Garbage-collector settings for long-running gevent workers (PDP and proxy)."""

import gc


def settle() -> None:
    """Call once a worker has built everything it keeps for its lifetime.

    Freezing moves start-up objects (compiled policy, modules, pools) out of
    the collector's reach, and a larger first-generation threshold makes
    young collections rarer. Measured on the PDP (wrk, 64 connections, 2
    workers): about 3,400 -> 4,200 decisions/s and p99 93-128 -> 40-44 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 50, 100)
