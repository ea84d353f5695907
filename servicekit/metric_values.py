"""prometheus_client's value class, without its per-update costs under gevent.

prometheus_client keeps every counter, gauge and histogram bucket in a value
object. Its multiprocess value takes a `threading.Lock` (a Python-level lock
once gevent has patched threading) and calls `os.getpid()` on every update to
notice a fork. A request's five or six updates cost about a tenth of the
proxy's CPU per request that way. The value here writes the same mmap files in
the same format, so `MultiProcessCollector` reads them as before, but takes an
unpatched C lock and resets after a fork through `os.register_at_fork`
instead of checking the pid each time. Without PROMETHEUS_MULTIPROC_DIR it is
a float under that C lock.

`install()` must run in the process before its first metric is created:
prometheus_client picks the value class when a metric (or labelled child) is
made.
"""

from __future__ import annotations

import os
import threading

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict, mmap_key


def _c_lock():
    # gevent may have patched threading: a lock that never yields is what we need (no update does I/O).
    try:
        from gevent.monkey import get_original

        return get_original("_thread", "allocate_lock")()
    except ImportError:  # pragma: no cover - gevent is a base dependency
        return threading.Lock()


class _Files:
    """This process's mmap files, one per metric type (and gauge mode), as prometheus_client names them."""

    def __init__(self, directory: str):
        self.directory = directory
        self.lock = _c_lock()
        self.pid = os.getpid()
        self.values: list = []
        self._by_prefix: dict[str, MmapedDict] = {}

    def file(self, prefix: str) -> MmapedDict:
        found = self._by_prefix.get(prefix)
        if found is None:
            path = os.path.join(self.directory, f"{prefix}_{self.pid}.db")
            found = self._by_prefix[prefix] = MmapedDict(path)
        return found

    def after_fork(self) -> None:
        # The child must not write into its parent's files: reopen under its own pid and re-read.
        self.lock = _c_lock()
        for f in self._by_prefix.values():
            f.close()
        self._by_prefix.clear()
        self.pid = os.getpid()
        for value in self.values:
            value._reset()


def multiprocess_value_class(directory: str):
    files = _Files(directory)
    os.register_at_fork(after_in_child=files.after_fork)

    class MmapedValue:
        _multiprocess = True

        def __init__(self, typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode="", **_):
            self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            with files.lock:
                self._reset()
                files.values.append(self)

        def _reset(self):
            self._file = files.file(self._prefix)
            self._value, self._timestamp = self._file.read_value(self._key)

        def inc(self, amount):
            with files.lock:
                self._value += amount
                self._timestamp = 0.0
                self._file.write_value(self._key, self._value, 0.0)

        def set(self, value, timestamp=None):
            with files.lock:
                self._value = value
                self._timestamp = timestamp or 0.0
                self._file.write_value(self._key, self._value, self._timestamp)

        def set_exemplar(self, exemplar):
            return  # prometheus_client keeps no exemplars in multiprocess mode either

        def get(self):
            with files.lock:
                return self._value

        def get_exemplar(self):
            return None

    return MmapedValue


class Children:
    """metric.labels(*values), remembered. labels() takes a lock and builds its
    key on every call; per-request metrics call it with few distinct values
    (routes, statuses, reasons), so their children are kept here."""

    def __init__(self, metric):
        self._metric = metric
        self._by_values: dict[tuple, object] = {}

    def __call__(self, *values):
        child = self._by_values.get(values)
        if child is None:
            child = self._by_values[values] = self._metric.labels(*values)
        return child


class LockedValue:
    """One process: a float under a C lock (prometheus_client's MutexValue, minus the patched lock)."""

    _multiprocess = False

    def __init__(self, *_, **__):
        self._value = 0.0
        self._exemplar = None
        self._lock = _c_lock()

    def inc(self, amount):
        with self._lock:
            self._value += amount

    def set(self, value, timestamp=None):
        with self._lock:
            self._value = value

    def set_exemplar(self, exemplar):
        with self._lock:
            self._exemplar = exemplar

    def get(self):
        with self._lock:
            return self._value

    def get_exemplar(self):
        with self._lock:
            return self._exemplar


_classes: dict[str, type] = {}  # one per directory: two writers of one file would corrupt it


def install(environ=os.environ) -> None:
    """Make metrics created from now on in this process use the values above (again: a no-op)."""
    directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        values.ValueClass = LockedValue
        return
    if directory not in _classes:
        _classes[directory] = multiprocess_value_class(directory)
    values.ValueClass = _classes[directory]
