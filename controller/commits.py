"""What a policy commit reaches, read before State takes it (controller/state.py ``State.policy_committed``).

Reading a commit of 10,000 vports (each change's old and new object, the vport's binding keys, the journal's records)
took ~30 ms; State then updated its binding index from it in the same stretch. ``read_changes`` does the reading
alone, ticking a pacer (controller/pacer.py) per change: it reads only the two policies and the change list (never
changed once committed), so State is untouched and whole during its pauses, and takes what was read in one short
stretch afterwards (``CommitRead``: the index updates with their keys computed, the records; the index takes them in
C loops, controller/binding.py ``take_vports``). ``OneAtATime`` keeps a second commit from landing in those pauses:
it waits until the first is taken, then is read against it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, eq, itemgetter, methodcaller, ne

from controller.model import binding_key, esxi_static_key
from controller.pacer import NEVER, Pacer, runs
from controller.policy import Policy
from controller.store import Change

_KIND, _ID = attrgetter("kind"), attrgetter("id")
_BINDING, _FLAVOUR, _SUBNET_ID = itemgetter("binding"), itemgetter("flavour"), itemgetter("subnet_id")
RECORDS = ("vports", "vport_policies", "subnets", "domains", "acls", "groups", "floating_ips", "external_networks")


@dataclass
class CommitRead:
    """What a commit changes in State: ``vports`` (before, after, after's (binding key, ESXi static key)) per vport
    change in order, for the binding index; ``reached``: the vports to re-resolve; ``records``: the journal's, by
    name (controller/journal.py); ``security``/``external``: whether security policy or external networks changed."""

    vports: list[tuple] = field(default_factory=list)
    reached: set[str] = field(default_factory=set)
    records: dict[str, set] = field(default_factory=lambda: {name: set() for name in RECORDS})
    security: bool = False
    external: bool = False


class CommitBusy(Exception):
    """A write refused because State's commit section stayed busy for its whole bounded wait (``waited`` seconds):
    ``holder`` says what held it (a replicated batch being applied, another write). Nothing was changed."""

    def __init__(self, holder: str, waited: float):
        self.holder, self.waited = holder, waited
        super().__init__(f"commit section busy: {holder}; this write waited {waited:g} s and was refused, nothing "
                         "was changed; retry")


class OneAtATime:
    """Policy commits into State one after another. ``held`` covers State taking one commit, from its paced read until
    State has taken it: a commit read while another landed in its pauses would be taken on the policy it was read
    against, and the other's changes would be in the binding index but not in State's policy. ``section`` covers a
    whole commit, from reading State's policy to build the candidate until State has taken it (``held`` inside it,
    in the same thread, is part of it): a commit that lands between that read and State taking the candidate would
    be lost, the candidate being built without it (a REST write and the HA applier's batch during a takeover).
    ``threading``'s lock is eventlet's under ryu-manager (a green thread waits, the hub runs on). A commit started
    inside a pause of another in the same thread would wait for itself: refused with an error instead. A REST write
    waits a bounded time (``wait``) and is refused with CommitBusy past it, naming what holds the section
    (``holder``, with how long it has held it): the applier holds it for a whole replicated message, seconds for a
    batch of 10,000 under load."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holder: int | None = None
        self._what = ""  # what holds the section (``holder`` of ``section``)
        self._since = 0.0  # time.monotonic() when it took the section
        self._taking = False  # the holder is inside ``held`` (State taking its commit)

    def busy(self) -> str | None:
        """What holds the section and for how long, or None: read without waiting (status, errors)."""
        if self._holder is None:
            return None
        return f"{self._what}, held for {time.monotonic() - self._since:.1f} s"

    @contextmanager
    def section(self, wait: float | None = None, holder: str = "a policy commit"):
        """The whole commit; ``wait``: at most this many seconds for the section (None: as long as it takes), then
        CommitBusy. ``holder``: what this commit is, for the error a waiting write gets."""
        me = threading.get_ident()
        if self._holder == me:
            raise RuntimeError("a policy commit into State started inside a pause of another, in the same thread")
        if not self._lock.acquire(timeout=-1 if wait is None else max(0.0, wait)):
            raise CommitBusy(self.busy() or "another commit (it has just finished)", wait)
        try:
            self._holder, self._what, self._since = me, holder, time.monotonic()
            yield
        finally:
            self._holder = None
            self._lock.release()

    @contextmanager
    def held(self):
        if self._holder == threading.get_ident() and not self._taking:  # inside this thread's section
            with self._taking_one():
                yield
            return
        with self.section(), self._taking_one():
            yield

    @contextmanager
    def _taking_one(self):
        self._taking = True
        try:
            yield
        finally:
            self._taking = False


def read_changes(old: Policy, new: Policy, changes, pacer: Pacer = NEVER) -> CommitRead:
    """What the commit of ``changes`` from ``old`` to ``new`` reaches (recorded once per kind: an apply of 10,000
    vports is one record, not 10,000). Without a change list (a policy replaced wholesale: a snapshot restore) the two
    policies are compared. ``pacer`` is ticked per change; vport changes are read a run at a time (``_read_vports``)."""
    changes = list(changes or policy_diff(old, new))
    read = CommitRead()
    others = list(compress(range(len(changes)), map(ne, map(_KIND, changes), repeat("vport"))))
    start = 0
    for at in [*others, len(changes)]:
        for run in runs(pacer, changes[start:at]):  # (the vport changes before the next other one)
            _read_vports(read, old, new, run)
            pacer.tick(len(run))
        if at < len(changes):
            _read_change(read, old, new, changes[at])
            pacer.tick()
        start = at + 1
    return read


def _read_vports(read: CommitRead, old: Policy, new: Policy, run: list) -> None:
    """Vport changes ``run`` read into ``read``, in C loops but each new vport's binding keys: an apply of 10,000
    vports was ~230 bytecodes a vport here (stop 47), ~60 now."""
    ids = list(map(_ID, run))
    befores, afters = list(map(old.objects["vport"].get, ids)), list(map(new.objects["vport"].get, ids))
    both = list(filter(None, befores + afters))
    if any(map(methodcaller("get", "policy_groups"), both)):
        read.security = True  # security policy (controller/security.py) reaches beyond one vport
    read.vports += zip(befores, afters, map(_keys, afters))
    read.reached.update(ids)
    records = read.records
    records["vports"].update(ids)
    records["vport_policies"].update(ids)
    bare = compress(both, map(eq, map(_FLAVOUR, map(_BINDING, both)), repeat("baremetal")))
    records["subnets"].update(map(_SUBNET_ID, bare))


def _keys(vport: dict | None) -> tuple | None:
    """A vport's (binding key, ESXi static key), None for none."""
    return None if vport is None else (binding_key(vport), esxi_static_key(vport))


def _read_change(read: CommitRead, old: Policy, new: Policy, change) -> None:
    """A change of anything but a vport read into ``read``."""
    records = read.records
    before, after = old.get(change.kind, change.id), new.get(change.kind, change.id)
    if change.kind in ("external_network", "floating_ip"):
        read.external = True  # external networks (controller/extnet.py); no security policy there
        records["floating_ips" if change.kind == "floating_ip" else "external_networks"].add(change.id)
        return
    if change.kind not in ("vtep_binding", "tenant") or \
            any(o.get("policy_groups") for o in (before, after) if o is not None):
        read.security = True  # security policy (controller/security.py) reaches beyond one vport
    if change.kind in ("subnet", "domain"):
        records[change.kind + "s"].add(change.id)
    elif change.kind == "vtep_binding":
        records["subnets"].update(o["subnet_id"] for o in (before, after) if o is not None)
    elif change.kind in ("acl", "policy_group"):
        records["acls" if change.kind == "acl" else "groups"].add(change.id)


def policy_diff(old: Policy, new: Policy) -> list[Change]:
    """The changes between two policies (no change list at hand)."""
    out = []
    for kind in new.objects:
        before, after = old.objects[kind], new.objects[kind]
        if before is after:
            continue
        out += [Change(kind, oid, "put", None) for oid in set(before) | set(after)
                if before.get(oid) is not after.get(oid) and before.get(oid) != after.get(oid)]
    return out
