"""Replicated data checked with the rules of a REST write, before it touches a standby's store or State
(controller.replication.Applier): every object body through controller.model.normalise (with the id and source
the store keeps), a put of an object the standby holds through the update rule of a REST write (its immutable
fields keep their value: controller.model.immutable_problems), the resulting policy through controller.policy's
checks, the replicated meta values' types. What fails raises InvalidReplica naming the object and the reason."""

from __future__ import annotations

from contextlib import contextmanager

from controller import policy as pol
from controller.model import KINDS, MANAGED, PolicyError, immutable_problems, normalise
from controller.pacer import NEVER, Pacer
from controller.policy import Policy
from controller.store import Change

MAX_ID = 255                     # the longest object id a replica accepts


class InvalidReplica(ValueError):
    """Replicated data that a REST write with the same content would be refused for; ``change``: the change of a
    batch that broke the rule, when one can be named (None: the batch as a whole, or a snapshot)."""

    def __init__(self, message: str, change: Change | None = None):
        super().__init__(message)
        self.change = change


@contextmanager
def _naming(change: Change):
    """An InvalidReplica raised inside names ``change`` (unless it names one already)."""
    try:
        yield
    except InvalidReplica as exc:
        exc.change = exc.change or change
        raise


def stored_object(kind, oid, body, current: dict | None = None, held: bool = False) -> dict:
    """A replicated object body checked as a REST write would check it, with the managed fields (id, source)
    the store keeps: as a creation, or as an update of ``current`` (the object as the standby holds it), whose
    immutable fields then keep their value; raises InvalidReplica naming the object and the reason. A list may
    keep its length over its limit (controller/model.py MAX_ITEMS) when ``current`` holds it so, or (``held``: an
    object of a snapshot, as the active holds it) always: the active may hold one stored before the limit."""
    _check_ref(kind, oid)
    where = f"{kind} {oid!r}"
    if not isinstance(body, dict):
        raise InvalidReplica(f"{where}: the body is not an object")
    if body.get("id") != oid:
        raise InvalidReplica(f"{where}: id: the body's id {body.get('id')!r:.80} differs")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        raise InvalidReplica(f"{where}: source: must be a string or null")
    try:
        obj = normalise(kind, {k: v for k, v in body.items() if k not in MANAGED}, ref=str(body.get("name", "")),
                        stored=body if held else current)
    except PolicyError as exc:
        raise InvalidReplica(f"{where}: " + "; ".join(p.describe() for p in exc.problems)) from None
    if current is not None:
        _check_unchanged(where, kind, obj, current)
    obj.update(id=oid, source=source)
    return obj


def _check_unchanged(where, kind, obj, current) -> None:
    """Raise InvalidReplica if the put changes a field a REST update may not change, naming each with both values."""
    changed = immutable_problems(kind, obj, current, ref=str(obj.get("name", "")))
    if changed:
        raise InvalidReplica(f"{where}: " + "; ".join(
            f"{p.describe()} (held here: {current.get(p.field)!r:.80}, replicated: {obj[p.field]!r:.80})"
            for p in changed))


def _check_ref(kind, oid) -> None:
    if kind not in KINDS:
        raise InvalidReplica(f"unknown kind {kind!r:.40}")
    if not isinstance(oid, str) or not oid or len(oid) > MAX_ID:
        raise InvalidReplica(f"{kind}: id {oid!r:.80} is not an object id")


def _one_kind(policy: Policy, kind: str, oid: str) -> None:
    """Raise InvalidReplica if ``oid`` is also the id of an object of another kind. A REST write never makes one (the
    controller gives each object a new UUID; "id" is not writable), and Canopy keys some things by id alone: a
    domain's and an L2-only subnet's IPs share one namespace per id (controller/viewremote.py, controller/derive.py:
    the "scope"): one id made them one (a VM's IP in the domain took it from a remote MAC in the subnet)."""
    for other, objects in policy.objects.items():
        if oid in objects and other != kind:
            raise InvalidReplica(_two_kinds(kind, oid, other))


def _two_kinds(kind, oid, other) -> str:
    return f"{kind} {oid!r:.80}: id: also the id of a {other} (an id names one object)"


def checked_changes(changes: list[Change], policy: Policy, pacer: Pacer = NEVER) -> tuple[list[Change], Policy]:
    """The changes with checked bodies, and the policy they lead to from ``policy`` (which passed the checks:
    the standby's policy only ever holds checked data), checked with the rules a REST write is checked with
    (controller.policy.check_changes); raises InvalidReplica naming the change that broke a rule (its ``change``:
    the put or delete refused, or for a policy rule ``_change_of``: the batch's last put of the object the rule names,
    else its delete of an object that one refers to). A put of an object the candidate (the policy with the batch's
    earlier changes) or ``policy`` holds is an update: its immutable fields keep their value, also when the batch
    deleted it first (State, comparing each object before and after the batch, would see it changed in place, and
    check_changes presumes they stay: a subnet deleted and put again in another tenant or domain escaped the rules a
    deletion is checked with). ``pacer`` is ticked per change (twice per put)."""
    candidate, out = policy.copy(), []
    for change in changes:
        pacer.tick()
        with _naming(change):
            body = _checked_change(change, candidate, policy)
        out.append(Change(change.kind, change.id, change.op, body, change.seq, change.txn, change.ts))
    for change in out:  # once all are in: a batch may delete one object and put another kind's with its id
        if change.op == "put":
            pacer.tick()
            with _naming(change):
                _one_kind(candidate, change.kind, change.id)
    problems = pol.check_changes(candidate, [(c.kind, c.id) for c in out], pacer)
    _report(problems, _change_of(problems[0], out, candidate) if problems else None)
    return out, candidate


def _checked_change(change: Change, candidate: Policy, policy: Policy) -> dict | None:
    """One change's checked body (None for a delete), applied to ``candidate``; raises InvalidReplica."""
    if change.op == "put":
        _check_ref(change.kind, change.id)
        held = candidate.get(change.kind, change.id) or policy.get(change.kind, change.id)
        body = stored_object(change.kind, change.id, change.body, held)
        candidate.put(change.kind, body)
        return body
    if change.op == "delete" and change.body is None:
        _check_ref(change.kind, change.id)
        candidate.remove(change.kind, change.id)
        return None
    raise InvalidReplica(f"change {change.seq}: op {change.op!r:.40} is not put or delete")


def _change_of(problem, changes: list[Change], candidate: Policy) -> Change | None:
    """The batch's change a policy problem is about: its last put of the object the problem names (its kind and name
    path), else its last delete of an object that one refers to (a deletion that left a reference dangling); None if
    neither. The second looks through the problem's kind once (a refusal's cost, not every batch's)."""
    for change in reversed(changes):
        if (change.op == "put" and change.kind == problem.kind
                and candidate.ref(change.kind, change.body) == problem.ref):
            return change
    deleted = {change.id for change in changes if change.op == "delete"}
    if not deleted:
        return None
    named = [obj for obj in candidate.objects.get(problem.kind, {}).values()
             if candidate.ref(problem.kind, obj) == problem.ref]
    referred = set().union(*(_strings(obj) for obj in named)) & deleted
    return next((change for change in reversed(changes) if change.op == "delete" and change.id in referred), None)


def _strings(value) -> set[str]:
    """Every string in a stored body (the ids it refers to among them)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return set()
    return set().union(*map(_strings, value))


def checked_snapshot(snapshot) -> Policy:
    """The policy a snapshot holds, every object and the whole checked; raises InvalidReplica."""
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("objects"), dict):
        raise InvalidReplica("the snapshot has no objects map")
    objects = {}
    for kind, bodies in snapshot["objects"].items():
        if not isinstance(bodies, dict):
            raise InvalidReplica(f"snapshot: {kind!r:.40}: not a map of objects")
        objects[kind] = {oid: stored_object(kind, oid, body, held=True) for oid, body in bodies.items()}
    check_meta(snapshot.get("meta"))
    kinds: dict[str, str] = {}  # id -> the kind first seen with it: one pass over the objects
    for kind, bodies in objects.items():
        for oid in bodies:
            if kinds.setdefault(oid, kind) != kind:
                raise InvalidReplica(_two_kinds(kind, oid, kinds[oid]))
    policy = Policy(objects)
    _check_policy(policy)
    snapshot["objects"] = objects  # what the store restores: the checked bodies
    return policy


def check_meta(meta) -> None:
    """The replicated meta values the write path reads back (allocation counters, last_txn) have their type."""
    if not isinstance(meta, dict):
        raise InvalidReplica("meta is not a map")
    counters = meta.get("counters", {})
    if not isinstance(counters, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in counters.items()):
        raise InvalidReplica(f"meta: counters: {counters!r:.80} is not a map of non-negative integers")
    txn = meta.get("last_txn", 0)
    if not isinstance(txn, int) or isinstance(txn, bool) or txn < 0:
        raise InvalidReplica(f"meta: last_txn: {txn!r:.40} is not a non-negative integer")


def _check_policy(policy: Policy) -> None:
    _report(pol.check(policy))


def _report(problems, change: Change | None = None) -> None:
    """Raise InvalidReplica for ``problems`` (if any); ``change``: the batch's change they are about, named first."""
    if problems:
        where = f"{change.kind} {change.id!r}: " if change is not None else ""
        raise InvalidReplica(where + "; ".join(p.describe() for p in problems[:5])
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""), change)
