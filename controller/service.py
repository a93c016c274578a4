"""Policy mutations: validate the whole candidate, allocate, commit durably, then update State.

Every write (REST create/update/delete, declarative apply) goes through here and follows one path, one
write at a time: copy the policy -> change the copy -> check every rule the change can break (from the
changed objects, through the policy's index: controller/policyindex.py) -> number the changes ->
``replicate`` (the HA pair gets them onto the standby there, or refuses the write with NotActive) ->
commit to the store in one transaction -> swap the copy into State. So a write is acknowledged only once
it is on both nodes, and a refused or failed write changes nothing, in memory or on disk: a store that refuses
the transaction (StoreFault: a full or failing disk) raises before State is touched. On a node that
does not take writes (the standby), ``writable`` says why and every write raises NotActive up front.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from typing import Callable

from controller import policy as pol
from controller import policydoc
from controller.commits import CommitBusy
from controller.model import KINDS, PolicyError, Problem, normalise
from controller.pacer import NEVER, Pacer, collector_paused
from controller.store import Change

log = logging.getLogger("canopy.policy")
FREEZE_CHANGES = 1000  # an apply committing this many changes freezes what exists out of the cyclic collector


class NotFound(Exception):
    def __init__(self, kind, oid):
        self.kind, self.oid = kind, oid
        super().__init__(f"no {kind} with id {oid!r}")


class NotActive(Exception):
    """A write this node will not acknowledge (REST: 503 with ``code``): it does not take writes
    (``not_active``; ``reason`` says where they go instead) or the standby did not confirm it
    (``not_replicated``). Nothing was changed."""

    def __init__(self, reason: str, code: str = "not_active"):
        self.reason, self.code = reason, code
        super().__init__(reason)


def _one_at_a_time(method):
    """Run a write under the service's lock: a write waiting for the standby keeps the next one from
    building on a policy that may still be refused. A node that does not take writes refuses it there (NotActive);
    otherwise it runs in State's commit section (``State.committing``), so no other commit into State (the HA
    applier's last replicated batch, while this node takes over) lands between reading State's policy to build
    the candidate and State taking it: that commit would be in the store but missing from State. The wait for both
    (the lock: writes before this one; the section: also the applier's batch in hand) is bounded together by
    ``write_wait`` (rest.write_wait_ms): past it the write is refused with CommitBusy and changes nothing."""

    @functools.wraps(method)
    def serialised(self, *args, **kwargs):
        deadline = time.monotonic() + self.write_wait
        if not self._write_lock.acquire(timeout=self.write_wait):
            raise CommitBusy(self.state.commit_busy() or "another write being committed", self.write_wait)
        try:
            self._check_writable()
            left = max(0.0, deadline - time.monotonic())
            with self.state.committing(left, f"a REST write ({method.__name__}) being committed"):
                return method(self, *args, **kwargs)
        except CommitBusy as exc:  # the section's wait was what was left of the bound: name the whole bound
            raise CommitBusy(exc.holder, self.write_wait) from None
        finally:
            self._write_lock.release()

    return serialised


class PolicyService:
    # called with (numbered changes, meta) before they are committed; raises NotActive to refuse the write
    replicate: Callable[[list[Change], dict], None] | None = None
    # None or a function returning None (writes allowed) or the reason this node refuses them
    writable: Callable[[], str | None] | None = None
    # called with a write this node did not commit: ``replicate`` refused it or failed, or the commit failed
    unreplicated: Callable[[list[Change]], None] | None = None
    # called with a write ``replicate`` took once this node committed it (the store holds it now)
    committed: Callable[[list[Change]], None] | None = None

    def __init__(self, store, state, settings):
        self.store = store
        self.state = state
        self.settings = settings
        self.pacer: Pacer = NEVER  # an apply's planning pauses (the app: hub.sleep(0)) under the write lock
        self.write_wait = settings.limits.rest_write_wait  # seconds a write waits for those before it (CommitBusy)
        self._write_lock = threading.RLock()

    def _check_writable(self):
        """Raise NotActive if this node does not take writes now."""
        reason = self.writable() if self.writable is not None else None
        if reason:
            raise NotActive(reason)

    # ------------------------------------------------------------------ helpers
    def _allocator(self):
        return pol.Allocator(self.store.get_meta("counters") or {}, self.settings.asn, self.settings.vni_range)

    def _commit(self, candidate: pol.Policy, changes: list[Change], allocator) -> list[Change]:
        if not changes:
            return []
        meta = {"counters": allocator.counters}
        if self.replicate is None:
            done = self.store.commit(changes, meta=meta)
        else:  # numbered here, on the standby first (or refused), then committed with the same numbers
            done = self._numbered(changes)
            meta["last_txn"] = done[-1].txn
            self._commit_replicated(done, meta)
        self.state.policy_committed(candidate, done)
        log.info("committed %d change(s), seq %d-%d", len(done), done[0].seq, done[-1].seq)
        return done

    def _commit_replicated(self, done: list[Change], meta: dict) -> None:
        """Get a numbered write onto the standby (``replicate``), then commit it. If either fails (NotActive: refused;
        StoreFault: nothing written here; or any other error, the wait for the standby's confirmation included),
        ``unreplicated`` tells the pair, which gives the standby this store back (its next report is not on our
        history any more: a snapshot) and stops counting the write as one the standby must hold, so the pair neither
        keeps nor sends on a write the active did not commit. Once committed, ``committed`` tells the pair, whose
        store holds the write's position from then on."""
        try:
            self.replicate(done, meta)
            self.store.apply_replicated(done, meta, what="a write")
        except BaseException:  # any failure: the write's REST caller is told it failed, so no node may keep it
            if self.unreplicated is not None:
                self.unreplicated(done)
            raise
        if self.committed is not None:
            self.committed(done)

    def _numbered(self, changes: list[Change]) -> list[Change]:
        """The changes with the seq, txn and ts the store's next commit would give them."""
        seq, txn, ts = self.store.last_seq(), (self.store.get_meta("last_txn") or 0) + 1, time.time()
        return [Change(c.kind, c.id, c.op, c.body, seq + i, txn, ts) for i, c in enumerate(changes, 1)]

    def _checked(self, candidate, focus, changed):
        """Raise PolicyError if the candidate breaks a rule; problems about ``focus`` first. ``changed``: the
        (kind, id) the write put or removed (the rules are checked from them, controller/policyindex.py)."""
        problems = pol.check_changes(candidate, changed)
        if problems:
            problems.sort(key=lambda p: p.ref != focus)
            raise PolicyError(problems)

    def get(self, kind, oid):
        obj = self.state.policy.get(kind, oid)
        if obj is None:
            raise NotFound(kind, oid)
        return obj

    # ------------------------------------------------------------------ object writes
    @_one_at_a_time
    def create(self, kind: str, body) -> dict:
        candidate = self.state.policy.copy()
        obj = normalise(kind, body, ref=_guess_ref(body))
        obj["id"] = str(uuid.uuid4())
        obj["source"] = None
        allocator = self._allocator()
        problems = allocator.fill(candidate, kind, obj)
        if problems:
            raise PolicyError(problems)
        candidate.put(kind, obj)
        self._checked(candidate, candidate.ref(kind, obj), [(kind, obj["id"])])
        self._commit(candidate, [Change(kind, obj["id"], "put", obj)], allocator)
        return obj

    @_one_at_a_time
    def update(self, kind: str, oid: str, body) -> dict:
        current = self.get(kind, oid)
        candidate = self.state.policy.copy()
        obj = normalise(kind, body, current=current, ref=candidate.ref(kind, current))
        if obj == current:
            return current
        candidate.put(kind, obj)
        self._checked(candidate, candidate.ref(kind, obj), [(kind, oid)])
        self._commit(candidate, [Change(kind, oid, "put", obj)], self._allocator())
        return obj

    @_one_at_a_time
    def delete(self, kind: str, oid: str, cascade: bool = False) -> list[dict]:
        """Delete an object; with ``cascade`` also what belongs to it (children first)."""
        current = self.get(kind, oid)
        candidate = self.state.policy.copy()
        order: list[tuple[str, dict]] = []
        self._collect(candidate, kind, current, cascade, order)
        changes = []
        for k, obj in order:
            candidate.remove(k, obj["id"])
            changes.append(Change(k, obj["id"], "delete", None))
        summary = [{"op": "delete", "kind": k, "ref": self.state.policy.ref(k, o), "id": o["id"]} for k, o in order]
        self._checked(candidate, None, [(k, o["id"]) for k, o in order])
        self._commit(candidate, changes, self._allocator())
        return summary

    def _collect(self, policy, kind, obj, cascade, order):
        for child_kind, child in policy.children(kind, obj["id"]):
            referenced = (kind in ("acl", "policy_group", "external_network")  # never cascaded
                          or (kind, child_kind) in (("subnet", "acl"), ("vport", "floating_ip")))
            if not cascade or referenced:
                what = "remove it from" if referenced else "delete"
                raise PolicyError([Problem(kind, policy.ref(kind, obj), "", f"{child_kind} "
                                   f"{policy.ref(child_kind, child)!r} depends on it; {what} that first"
                                   + ("" if referenced else " or delete with cascade=true"),
                                   "has_dependents")],
                                  status=409)
            if all(child["id"] != o["id"] for _, o in order):
                self._collect(policy, child_kind, child, cascade, order)
        order.append((kind, obj))

    # ------------------------------------------------------------------ declarative apply
    @_one_at_a_time
    def apply(self, data, source: str, prune: bool = False, dry_run: bool = False, adopt: bool = False) -> dict:
        """Make the policy match a document; a dry run only plans. Both refused where writes are (NotActive):
        a plan made on the standby could be stale by the replication lag. ``adopt``: take over objects that
        another source or a REST create owns (refused otherwise, see controller/policydoc.py)."""
        allocator = self._allocator()
        with collector_paused() as collector:  # no full collection in the middle of a big plan
            plan = policydoc.plan(self.state.policy, data, source, allocator, prune=prune, adopt=adopt,
                                  pacer=self.pacer)
            done = [] if dry_run else self._commit(plan.policy, plan.changes, allocator)
            collector.freeze = len(done) >= FREEZE_CHANGES  # the new policy is long-lived: never scan it
        return {"source": plan.source, "dry_run": dry_run, "changes": plan.summary,
                "seq": done[-1].seq if done else self.state.last_seq}

    def counts(self):
        return {kind: self.state.policy.count(kind) for kind in KINDS}


def _guess_ref(body):
    return body.get("name", "") if isinstance(body, dict) and isinstance(body.get("name"), str) else ""
