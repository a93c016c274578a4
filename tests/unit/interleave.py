"""Deterministic interleavings of real threads: a gate that stops a thread at a chosen point until the test lets
it go, and a lock that says when a thread waits on it. Every wait is bounded (BOUND); nothing waits for time
to pass."""

from __future__ import annotations

import threading

BOUND = 20.0  # seconds any single wait may take before the test fails


class Gate:
    """Stops the threads that call ``stop()`` until ``open()``; ``entered`` is set once one has stopped."""

    def __init__(self):
        self.entered = threading.Event()
        self._go = threading.Event()

    def stop(self) -> None:
        self.entered.set()
        assert self._go.wait(BOUND), "the gate was never opened"

    def open(self) -> None:
        self._go.set()


class SpyLock:
    """A lock (or re-entrant lock) that sets ``contended`` when a thread has to wait for it."""

    def __init__(self, lock, contended: threading.Event):
        self._lock = lock
        self.contended = contended

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(blocking=False):
            return True
        if not blocking:
            return False
        self.contended.set()
        return self._lock.acquire(True, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def run(target, *args) -> tuple[threading.Thread, threading.Event, list]:
    """``target(*args)`` in a thread of its own: (the thread, set when it returned or raised, [exception])."""
    done, failed = threading.Event(), []

    def body():
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, done, failed


def either(*events: threading.Event) -> None:
    """Wait (bounded) until one of the events is set."""
    any_set = threading.Event()
    for event in events:  # the events are plain: watch each in a bounded waiter thread
        threading.Thread(target=lambda e=event: e.wait(BOUND) and any_set.set(), daemon=True).start()
    assert any_set.wait(BOUND), "none of the awaited events happened"


def finish(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(BOUND)
        assert not thread.is_alive(), f"{thread.name} did not finish"
