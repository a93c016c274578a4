"""The machinery every writer to a VRS database shares: plan, one transaction in flight, back-off.

A ``RowReconciler`` keeps one thing in one hypervisor's Open_vSwitch database as Canopy wants it (the
tunnel port, ovsdb/tunnel.py; the integration bridge's fail-secure settings, ovsdb/bridge.py). The
session loop (ovsdb/peersession.py) calls ``step(snapshot)`` after each ``Replica.run()``; a subclass says
what to change (``_plan``) and how to write it (``_apply``).

- It re-plans when the replica changes, and has at most one transaction in flight.
- A change that has not settled (its transaction failed, or succeeded but the replica still differs)
  is retried no sooner than ``backoff_delay(attempts)`` later; reaching the desired state resets it.
- A change of kind ``CONFLICT`` is never written: it is logged once (again only if it changes).
- An unexpected error (a bug, an unexpected schema) is logged and backed off like a failed write: it
  never ends the session.

The transaction in flight and the back-off (``OneInFlight``) are shared with the hardware VTEPs' reconciler
(ovsdb/vtep_sync.py), which plans its own way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

BACKOFF_BASE_S = 0.5  # delay before the second attempt at an unsettled change
BACKOFF_MAX_S = 30.0
CONFLICT = "conflict"  # a change kind that is reported, never written


def backoff_delay(attempts: int) -> float:
    """Seconds to wait before attempt number ``attempts + 1`` of a change that has not settled."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempts - 1))


class OneInFlight:
    """At most one transaction in flight, and the back-off after one that failed: what ``RowReconciler`` and the
    hardware VTEPs' reconciler (ovsdb/vtep_sync.py ``VtepReconciler``) share. The subclass holds ``_replica``,
    ``_peer``, ``_log``, ``_clock``, ``_pending``, ``_attempts``, ``_not_before``, ``_replan``, ``state`` and
    ``last_error``, and says what names it in logs (``_name``) and what the transaction in flight did
    (``_committed``, ``_transaction``)."""

    def _name(self) -> str:
        raise NotImplementedError

    def _committed(self) -> str:
        """The log's words for the transaction in flight, committed."""
        raise NotImplementedError

    def _transaction(self) -> str:
        """The log's words for the transaction in flight, failed."""
        raise NotImplementedError

    def _failed(self, what: str, error: str) -> None:
        """Called after a failure was logged (a subclass may report it further)."""

    def wake_in_ms(self) -> int | None:
        """How soon ``step`` has work even if the peer stays silent (a back-off ending), or None."""
        if self._pending is not None or not self._replan:
            return None
        return max(0, int((self._not_before - self._clock()) * 1000))

    def _finish_pending(self) -> bool:
        """True once the transaction in flight has an outcome, which is handled here."""
        result = self._pending.poll()
        if result is None:
            return False
        self._pending = None
        if result.ok:
            self._log.info("ovsdb %s: %s: %s", self._peer, self._name(), self._committed())
            self.last_error, self._replan = "", True
            # If the replica still differs once the update is in, the next attempt waits.
            self._not_before = self._clock() + backoff_delay(self._attempts)
        else:
            error = result.status + (": " + result.detail if result.detail else "")
            self._fail(self._transaction(), error, result.transient)
        return True

    def _fail(self, what: str, error: str, transient: bool = False) -> None:
        """Log the failure of ``what`` with the peer; the next attempt waits for the back-off."""
        delay = backoff_delay(max(1, self._attempts))
        self.last_error, self.state, self._replan = error, "backoff", True
        self._not_before = self._clock() + delay
        self._log.log(logging.WARNING if transient else logging.ERROR,
                      "ovsdb %s: %s: %s failed (%s); retrying in %.1fs",
                      self._peer, self._name(), what, error, delay)
        self._failed(what, error)


class RowReconciler(OneInFlight):
    """Keeps one thing in a VRS database as desired; subclasses implement ``_plan`` and ``_apply``.

    ``replica``: an ``ovsdb.idl.Replica`` (``rows``, ``change_seqno``, ``transact``); ``label``
    names the thing in logs and transaction comments (e.g. "tunnel vxlan0").
    """

    def __init__(self, replica, peer: str, label: str, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._replica = replica
        self._peer = peer
        self.label = label
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self.transactions = 0  # transactions this reconciler started
        self.state = "waiting"  # waiting | in-sync | pending | backoff | conflict
        self.last_error = ""
        self._pending = None  # ovsdb.idl.PendingTransaction
        self._change = None
        self._attempts = 0  # transactions since the replica last matched the desired state
        self._not_before = 0.0  # no transaction starts before this clock time
        self._planned_seqno = None  # replica.change_seqno at the last plan
        self._replan = True  # plan again even if the replica did not change
        self._conflict = ""  # the conflict last logged

    # ------------------------------------------------------------------ for subclasses
    def _plan(self, snap) -> tuple:
        """(the change to make or None, the state to report when there is none: in-sync | waiting)."""
        raise NotImplementedError

    def _apply(self, change, writer) -> None:
        """Write ``change`` through ``writer`` (an ``ovsdb.idl.RowWriter``)."""
        raise NotImplementedError

    def _starting(self, change) -> None:
        """Called as a transaction for ``change`` starts (extra logging)."""

    def _name(self) -> str:
        return self.label

    def _committed(self) -> str:
        return "%s committed" % self._change.kind

    def _transaction(self) -> str:
        return "%s transaction" % self._change.kind

    # ------------------------------------------------------------------ the session loop's side
    def describe(self) -> dict:
        """JSON-ready summary for sessions()."""
        return {"state": self.state, "transactions": self.transactions, "last_error": self.last_error or None}

    def step(self, snap) -> None:
        """Finish the transaction in flight, or plan and (back-off permitting) start the next one."""
        if self._pending is not None and not self._finish_pending():
            return
        seqno = self._replica.change_seqno
        if not self._replan and seqno == self._planned_seqno:
            return
        self._replan, self._planned_seqno = False, seqno
        try:
            self._reconcile(snap)
        except Exception:  # a bug or an unexpected schema must not end discovery for this VRS
            self._log.exception("ovsdb %s: %s: unexpected error", self._peer, self.label)
            self._fail("reconciling", "internal error")

    def _reconcile(self, snap) -> None:
        change, idle = self._plan(snap)
        if change is None:
            self._settled(idle)
        elif change.kind == CONFLICT:
            self._report_conflict(change.reason)
        elif self._clock() < self._not_before:
            self._replan, self.state = True, "backoff"  # wake_in_ms brings us back
        else:
            self._start(change)

    def _settled(self, state: str) -> None:
        if self._conflict:
            self._log.info("ovsdb %s: %s: conflict resolved", self._peer, self.label)
        self.state, self._conflict = state, ""
        self._attempts, self._not_before = 0, 0.0

    def _report_conflict(self, reason: str) -> None:
        """Log a conflict once (again only if it changes); nothing is written while it lasts."""
        if reason != self._conflict:
            self._log.error("ovsdb %s: %s: %s; leaving it alone", self._peer, self.label, reason)
        self.state, self._conflict = "conflict", reason
        self._attempts, self._not_before = 0, 0.0

    def _start(self, change) -> None:
        self.transactions += 1
        self._attempts += 1
        self._change, self._conflict = change, ""
        what = change.kind + (" (%s)" % change.reason if change.reason else "")
        self._log.info("ovsdb %s: %s: %s, transaction %d", self._peer, self.label, what, self.transactions)
        self._starting(change)
        comment = "canopy: %s: %s" % (self.label, change.kind)
        self._pending = self._replica.transact(lambda writer: self._apply(change, writer), comment)
        self.state = "pending"
