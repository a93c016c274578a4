"""A switch's flows by owner, desired and installed, and the plan that makes the second equal to the first.

The reconciler's record (openflow/reconciler.py), kept compact and planned by owner:

- ``desired`` and ``installed`` map each owner to a frozenset of its flows: references to the compiler's sets
  (openflow/compiler.py ``Shared``), so a switch holding 30,000 flows of 10,000 owners keeps 10,000 references,
  no copies and no per-flow keys;
- ``set_desired(flows_by_owner, changed)`` is told which owners changed; ``plan()`` then looks only at those
  (adds: their new flows not installed; deletes: their installed flows no longer desired);
- after a read-back (``read_back``), or when the changed owners are not known, the plan is a full diff by
  ``Flow.key`` (table, priority, cookie) of everything desired against everything installed, as the reconciler
  always did on (re)connect: what is read back and desired stays, what is missing is added, the rest removed;
- ``loose`` holds installed flows no installed owner accounts for: read back and not desired, kept
  (``keep``), or a delete the switch refused; a full plan and every later plan without ``keep`` try to delete them,
  and an owner that comes to want one takes it over as the switch holds it (not added again);
- two owners of one kind whose ids' 20-bit hints collide (openflow/flows.py, the cookie's owner hint) and that want
  a flow of the same content want one flow (one key): it stays while either wants it, and is not added again when
  one comes to want it while the other holds it. ``sharing`` knows the installed owners whose cookies share their
  upper half (mark, kind, hint) with another's; a plan looks only at those among its owners (none on most switches,
  a few dozen pairs among 10,000 owners of one kind), and at its owners not installed yet that want adds.

A plan (and a listing, ``listing``, and a count, ``counts``) may pause: ``tick(n)`` is called after every ``CHUNK``
flows (a controller/pacer.py ``Pacer.tick``). Other green threads then run and may call ``set_desired`` or
``retry_rejected``: a plan works on the desired state and the rejected flows as they were when it began (copies of
the maps; the frozensets and Flows in them are immutable) and the changed owners taken then; later changes are
planned next time, or at once when the reconciler drops the plan unsent (``unplan``: its owners are planned again).
``applied`` leaves out of the installed record what the plan left out as rejected, even if a retry cleared the
rejected flows meanwhile: the installed record stays what the switch holds. ``installed``, ``loose`` and the plan's
results change only in the reconciler's own thread (``read_back``, ``applied``), never while its plan is paused; a
listing or a count, run in another thread, copies them first.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import itemgetter, not_, truth

from openflow.flowkeys import OwnersByBits, flow_keys, flow_orders, owner_bits
from openflow.pacedsort import sorted_paced

EMPTY: frozenset = frozenset()
CHUNK = 512  # flows between two ticks of a paced plan, diff or listing (each ``tick(CHUNK)``)
OWNERS_RUN = 64  # planned owners looked at in C loops between two ticks (a gone owner's flows deleted whole)


_KEY_OF_PAIR = itemgetter(0)


def _no_tick(units: int) -> None:
    pass


def paced(items, tick, chunk: int = CHUNK):
    """``items`` as they are, calling ``tick(n)`` after every ``chunk`` of them (and for the rest at the end)."""
    n = 0
    for item in items:
        yield item
        n += 1
        if n == chunk:
            tick(n)
            n = 0
    if n:
        tick(n)


def chunked(items: list, tick, chunk: int = CHUNK):
    """``items`` (a list) a slice of ``chunk`` at a time, calling ``tick(n)`` after each: for loops that run in C
    (``dict.update`` of a ``zip``) over each slice, where ``paced``'s resumption per item would be most of their cost
    (a read-back's keying: 50 switches of 16,000 flows after a restart)."""
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        yield part
        tick(len(part))


def key_slices(mapping: dict, tick, chunk: int = CHUNK):
    """Iterators over ``mapping``'s keys, ``chunk`` at a time (one iterator of the dict, ``itertools.islice``: no
    item made), calling ``tick(n)`` after each: a comprehension over each runs without ``paced``'s resumption per
    key (a full plan's walk of 16,000 flows desired and as many read back). ``mapping`` must not change meanwhile."""
    keys = iter(mapping)
    for start in range(0, len(mapping), chunk):
        yield itertools.islice(keys, chunk)
        tick(min(chunk, len(mapping) - start))


def release(items: list, tick, chunk: int = CHUNK) -> None:
    """Empty ``items`` from the end a chunk at a time, calling ``tick(n)`` after each: a plan's deletes hold the last
    references to the flows they replace, and 20,000 of them freed at once held the event loop for ~40 ms (200,000
    rows of a REST answer: ~0.1 s, controller/rest/paced.py). Other references keep what they hold."""
    while items:
        del items[-chunk:]
        tick(chunk)


def _missing(keys: dict, present: dict, left_out: dict, tick, chunk: int = CHUNK) -> int:
    """How many keys of ``keys`` neither ``present`` nor ``left_out`` holds, a chunk at a time with a tick after each:
    ``len(keys.keys() - present.keys() - left_out.keys())`` made and hashed sets of every key in one stretch: a switch
    just read back (16,000 flows desired, as many held), ~10 ms of CPU (vrs_scale's restart: its longest stretches, a
    scrape's count; docs/benchmarks.md "pace45"). A chunk's keys are hashed once, as its set is made; its lookups in
    the dicts use those hashes: one dict a ``difference`` (given two, it iterates the second whole and hashes its keys
    again, every chunk: a switch's refused flows, ``left_out``, tests/unit/test_paced_wiring.py)."""
    return sum(len(set(part).difference(present).difference(left_out)) for part in key_slices(keys, tick, chunk))


def paced_sets(sets, tick, chunk: int = CHUNK, flows=len):
    """The items of ``sets`` as they are, calling ``tick(n)`` after every ``chunk`` flows they hold (``flows(item)``:
    its frozenset's size). A flow's first key computes its cookie: the unit of work is a flow, whatever the owners
    hold."""
    n = 0
    for item in sets:
        yield item
        n += flows(item) or 1
        if n >= chunk:
            tick(n)
            n = 0
    if n:
        tick(n)


def _pair_size(pair) -> int:
    return len(pair[1])


def flow_order(item) -> int:
    """A (Flow.key, ...) pair's key (table, priority, cookie) as one int that sorts as the tuple does (OpenFlow's
    8-bit table, 16-bit priority, 64-bit cookie): a plan sorts every flow of a switch, and ints compare several times
    faster than tuples (16,000 flows: ~17 -> ~5 ms of CPU, tests/benchmarks/push_cpu.py)."""
    table, priority, cookie = item[0]
    return (table << 80) | (priority << 64) | cookie


def listing_order(key: tuple) -> int:
    """A Flow.key (table, priority, cookie) as one int in a listing's order, as ``dump-flows`` shows a table: tables
    ascending, the highest priority first, then the cookie (``flow_order``'s packing, the priority inverted)."""
    table, priority, cookie = key
    return (table << 80) | ((0xFFFF - priority) << 64) | cookie


@dataclass
class FlowPlan:
    """Flow adds (downstream tables first) and deletes (upstream first), and the owners it brings up to date."""

    adds: list = field(default_factory=list)  # (key, Flow)
    deletes: list = field(default_factory=list)  # (key, Flow or read-back stats entry)
    owners: dict = field(default_factory=dict)  # owner -> its desired frozenset as planned
    full: bool = False
    rejected: dict = field(default_factory=dict)  # Flow.key -> error text: left out, as rejected when it began
    kept: list = field(default_factory=list)  # (key, item) not deleted because of keep
    adopted: list = field(default_factory=list)  # keys in ``loose`` a planned owner wants: held, not added again


def _delete_all(flows: list, rejected: dict, deletes: dict, kept: dict) -> None:
    """``flows`` (gone owners' installed flows) into ``deletes`` by key, those of a key the switch refused into
    ``kept``: keyed and filed in C loops (10,000 withdrawn MACs: 30,000 deletes, ~20 bytecodes each a flow at a
    time; flows installed were keyed when planned: ``flowkeys.flow_keys``)."""
    if not flows:
        return
    pairs = list(zip(flow_keys(flows), flows))
    if not rejected:
        deletes.update(pairs)
        return
    refused = list(map(rejected.__contains__, map(_KEY_OF_PAIR, pairs)))
    kept.update(compress(pairs, refused))
    deletes.update(compress(pairs, map(not_, refused)))


ALL = frozenset({None})  # FlowBook._planning of a full plan: every owner (compared by identity)


def shared_flows(flows_by_owner: dict, tick=_no_tick) -> dict:
    """Flow.key -> the owners (two or more, sorted) of ``flows_by_owner`` (owner -> frozenset of flows) that each have
    the flow of that key: owners whose hints collide and want a flow of the same content want one flow (module
    docstring). Looks at each owner once (``owner_bits``: a cookie already computed) and intersects only the sets of
    owners with the same bits, in C: a few dozen pairs among 10,000 owners of one kind, most often none."""
    by_bits: dict = {}
    for owner, flows in paced_sets(flows_by_owner.items(), tick, flows=_one):
        if flows:
            by_bits.setdefault(owner_bits(flows), []).append(owner)
    shared: dict = {}
    for owners in by_bits.values():
        for at, owner in enumerate(owners):
            for other in owners[at + 1:]:
                for f in flows_by_owner[owner] & flows_by_owner[other]:
                    shared.setdefault(f.key, set()).update((owner, other))
    return {key: tuple(sorted(owners)) for key, owners in shared.items()}


def _one(_) -> int:
    return 1


class FlowBook:
    def __init__(self):
        self.desired: dict | None = None  # owner -> frozenset of Flow; None until the first set_desired
        self.installed: dict = {}  # owner -> frozenset of Flow confirmed installed
        self.loose: dict = {}  # Flow.key -> Flow or stats entry: installed, owned by no installed owner
        self.sharing = OwnersByBits()  # the installed owners by their cookies' owner bits (as ``installed``)
        self.dirty: set | None = None  # owners to plan; None: every owner (a full diff)
        self.rejected: dict = {}  # Flow.key -> error text (the switch refused it: not sent again until a retry)
        self.version = 0  # bumped when a plan in flight goes out of date (``_outdates``): the reconciler drops it
        self._planning: set | None = None  # owners of the plan in flight (ALL: a full plan; None: no plan in flight)
        self._changes = 0  # bumped by every input, plan and apply: the key of the cached counts
        self._counted: tuple | None = None  # (key, counts()) as last counted

    # ------------------------------------------------------------------------------ inputs

    def set_desired(self, flows_by_owner, changed=None) -> None:
        """The switch's desired flows by owner; ``changed``: the owners that changed since the last call
        (None: not known, diff everything)."""
        self._changes += 1
        if self._outdates(changed):
            self.version += 1
        if changed is None or self.desired is None:
            self.desired = {o: fs for o, fs in flows_by_owner.items() if fs}
            self.dirty = None
            return
        given, changed = changed, changed if type(changed) is list else list(changed)  # (walked in C: 10,000 gone)
        flows = list(map(flows_by_owner.get, changed))
        self.desired.update(compress(zip(changed, flows), map(truth, flows)))
        deque(map(self.desired.pop, compress(changed, map(not_, flows)), repeat(None)), 0)
        if self.dirty is not None:
            self.dirty.update(given if type(given) is set else changed)  # (a set: its hashes kept, none hashed again)

    def _outdates(self, changed) -> bool:
        """Whether a new desired state with ``changed`` owners makes the plan in flight out of date: it changes one of
        the plan's owners (or it is not known which changed, or the plan is full). A change of other owners only
        waits for the next plan (they are dirty): the plan in flight is still exactly right for its own owners, and
        dropping it (planned, encoded, thrown away) for a change it does not contain would only send both later. A
        stream of EVPN withdrawals (each pass removing other MACs) made the reconciler drop, plan and encode again
        thousands of deletes, on a loaded machine the largest part of the wait after the last withdrawal. A changed
        owner whose hint collides with a planned installed owner's changes it too: the plan may delete a flow of the
        same content, one key, that the changed owner now wants (``OwnersByBits``)."""
        if changed is None:
            return True
        if not changed or self._planning is None:
            return False
        if self._planning is ALL or not self._planning.isdisjoint(changed):
            return True
        return self.sharing.any_twin_in(changed, self._planning)

    def read_back(self, entries: dict) -> None:
        """What the switch holds (Flow.key -> stats entry) replaces the installed record; the next plan is full."""
        self._changes += 1
        self.installed, self.loose, self.dirty, self._planning = {}, dict(entries), None, None
        self.sharing.clear()
        self.rejected.clear()

    def retry_rejected(self) -> None:
        """Send what the switch refused again (say, a group it was missing now exists): a full plan."""
        if self.rejected:
            self._changes += 1
            self.rejected.clear()
            self.dirty = None

    def outdate(self) -> None:
        """The desired state changed outside the book (the switch's groups): a plan made before is out of date."""
        self.version += 1

    def unplan(self, plan: "FlowPlan") -> None:
        """``plan`` was dropped unsent (say, a newer desired state came during its pauses): its owners are planned
        again with those changed since (a full plan: the next one is full)."""
        self._changes += 1
        self._planning = None
        if plan.full:
            self.dirty = None
        elif self.dirty is not None:
            self.dirty |= plan.owners.keys()

    # ------------------------------------------------------------------------------ planning

    def plan(self, keep: bool = False, tick=_no_tick) -> FlowPlan:
        """The flow changes still to send; ``keep``: delete nothing (they are kept, installed, in ``loose``).
        Starts a new round of changed owners: those set after this call (even during its pauses, ``tick``: module
        docstring) are planned next time."""
        if self.desired is None:
            return FlowPlan()
        self._changes += 1
        dirty, self.dirty = self.dirty, set()
        self._planning = ALL if dirty is None else dirty  # until applied or unplanned (``_outdates``)
        desired, rejected = dict(self.desired), dict(self.rejected)  # as they are now, whatever a pause brings
        plan = self._full(desired, rejected, tick) if dirty is None else \
            self._by_owner(dirty, desired, rejected, tick, keep=keep)
        plan.rejected = rejected
        if keep:
            plan.kept += plan.deletes
            plan.deletes = []
        plan.adds = sorted_paced(plan.adds, tick, reverse=True, keys_of=flow_orders)
        plan.deletes = sorted_paced(plan.deletes, tick, keys_of=flow_orders)
        return plan

    def _full(self, desired: dict, rejected: dict, tick) -> FlowPlan:
        want = self.desired_by_key(tick, desired)
        have = self._installed_by_key(tick)
        for key in [k for k in self.rejected if k not in want and k not in have]:  # the book's, as it is now
            del self.rejected[key]
        if have or rejected:
            adds = [(k, want[k]) for part in key_slices(want, tick) for k in part
                    if k not in have and k not in rejected]
        else:  # a switch that holds nothing of Canopy's (a cold start): everything, a copy in C
            adds = list(want.items())
            tick(len(adds))
        stale = [(k, have[k]) for part in key_slices(have, tick) for k in part if k not in want]
        return FlowPlan(adds=adds, deletes=[(k, v) for k, v in stale if k not in rejected],
                        kept=[(k, v) for k, v in stale if k in rejected], owners=desired, full=True)

    def _by_owner(self, owners, desired: dict, rejected: dict, tick=_no_tick, installed=None, loose=None,
                  keep: bool = False) -> FlowPlan:
        """The plan of ``owners``' changes; ``keep``: ``loose`` stays as it is, not walked into deletes that ``plan``
        would only turn into kept ones (10,000 flows kept: ~8 ms of CPU a change, each ``applied`` putting them back
        too)."""
        adds, deletes, kept, planned = {}, {}, {}, {}
        arrivals = []  # planned owners not installed: one may want a flow a colliding owner holds
        installed = self.installed if installed is None else installed
        loose = self.loose if loose is None else loose
        owners = owners if type(owners) is list else list(owners)
        for start in range(0, len(owners), OWNERS_RUN):
            part = owners[start:start + OWNERS_RUN]
            news, olds = list(map(desired.get, part, repeat(EMPTY))), list(map(installed.get, part, repeat(EMPTY)))
            planned.update(zip(part, news))
            went = list(map(not_, news))
            gone = list(compress(olds, went))
            _delete_all(list(chain.from_iterable(gone)), rejected, deletes, kept)
            tick(sum(map(len, gone)) + len(gone))  # a flow keyed, an owner looked at (as for those staying)
            self._plan_staying(compress(zip(part, news, olds), map(truth, news)), rejected, tick, adds, deletes, kept,
                               arrivals)
        if not keep:
            deletes.update((k, v) for k, v in paced(loose.items(), tick) if k not in rejected)
        for key in adds.keys() & deletes.keys():  # moved between owners with the same cookie: keep it
            del deletes[key]
        adopted = self._adopt_loose(adds, loose) if loose and adds else []
        if self.sharing.involved:
            self._keep_shared(planned, desired, installed, adds, deletes)  # (a dict: looked up, not walked)
        if arrivals and adds:
            self._skip_arrivals(paced(arrivals, tick), desired, installed, adds)
        return FlowPlan(adds=list(adds.items()), deletes=list(deletes.items()), owners=planned,
                        kept=list(kept.items()), adopted=adopted)

    @staticmethod
    def _plan_staying(triples, rejected: dict, tick, adds: dict, deletes: dict, kept: dict, arrivals: list) -> None:
        """``_by_owner``'s adds and deletes of the planned owners that want flows: (owner, new, old) of each."""
        for owner, new, old in triples:
            tick(len(new) + len(old) + 1)  # a flow keyed (its cookie computed the first time), an owner looked at
            if new is old:
                continue
            if not old:  # the owner came (10,000 ports bound: their flows, no key map)
                arrivals.append(owner)
                for f in new:
                    key = f.key
                    if key not in rejected:
                        adds[key] = f
                continue
            new_keys = {f.key: f for f in new}
            old_keys = {f.key: f for f in old}
            adds.update((k, f) for k, f in new_keys.items() if k not in old_keys and k not in rejected)
            for key, item in old_keys.items():
                if key not in new_keys:
                    (kept if key in rejected else deletes)[key] = item

    def kept_count(self, plan: FlowPlan) -> int:
        """The flows kept (not deleted) once ``plan``, made with ``keep``, is applied: a full plan's ``kept`` holds the
        loose ones too; a plan of owners leaves ``loose`` as it is but for what it adopts."""
        return len(plan.kept) + (0 if plan.full else len(self.loose) - len(plan.adopted))

    @staticmethod
    def _adopt_loose(adds: dict, loose: dict) -> list:
        """Leave out of ``adds`` every flow the switch holds as ``loose`` (kept while ``keep`` was on, or a refused
        delete): a planned owner that comes to want it again takes it over as it is (``applied`` moves it to the
        owner's installed record), as a full plan would; an add would only replace it with itself. The keys taken
        over (their deletes were dropped above, being added)."""
        adopted = [key for key in adds.keys() & loose.keys()]
        for key in adopted:
            del adds[key]
        return adopted

    def _keep_shared(self, owners, desired: dict, installed: dict, adds: dict, deletes: dict) -> None:
        """Of the planned owners' deletes, keep every flow another owner with the same bits (a hint collision) still
        has after the plan: in its desired set if it is planned too, else in its installed one (one flow on the
        switch for both; a flow that moves to an owner not installed yet is an add, kept above); of their adds, leave
        out what another holds (``_skip_held``). Looks only at the planned owners involved in a collision, walking
        the smaller of the two (``owners``: a dict or set of them)."""
        involved = self.sharing.involved
        mine = filter(owners.__contains__, involved) if len(involved) < len(owners) else \
            filter(involved.__contains__, owners)
        for owner in list(mine):
            old = installed.get(owner)
            if not old:  # a count's copy, taken while ``applied`` paused
                continue
            others = self.sharing.others(owner, old)
            for other in others:
                after = desired.get(other, EMPTY) if other in owners else installed.get(other, EMPTY)
                for f in old & after:  # in C: the flows both want, most often none
                    deletes.pop(f.key, None)
            new = desired.get(owner)
            if new and adds:
                self._skip_held(new, others, installed, adds)

    def _skip_arrivals(self, arrivals, desired: dict, installed: dict, adds: dict) -> None:
        """``_skip_held`` for planned owners not installed yet (with adds): one may collide with an installed owner."""
        for owner in arrivals:
            new = desired[owner]
            others = self.sharing.others(owner, new)
            if others:
                self._skip_held(new, others, installed, adds)

    @staticmethod
    def _skip_held(new, others, installed: dict, adds: dict) -> None:
        """Leave out of ``adds`` every flow of ``new`` (a planned owner's) that one of ``others`` (installed owners
        with the same bits) holds installed: the switch holds it (one key for both) and, being added, it is not
        deleted in this plan (a delete of an added key is dropped above); a full plan would not send it either."""
        for other in others:
            for f in new & installed.get(other, EMPTY):
                adds.pop(f.key, None)

    def applied(self, plan: FlowPlan, tick=_no_tick) -> None:
        """The switch confirmed the plan, minus what it rejected (``rejected``). ``tick``: may pause, in the
        reconciler's own thread (nothing else changes ``installed`` or ``loose``); a ``set_desired`` meanwhile
        touches neither."""
        self._changes += 1
        self._planning = None
        rejected = {**plan.rejected, **self.rejected} if plan.rejected else self.rejected  # what was not sent
        if plan.full:
            self.installed = {}
            self.loose = {}
            self.sharing.clear()
        owners, sets = list(plan.owners), list(plan.owners.values())
        for start in range(0, len(owners), CHUNK):
            part, wanted = owners[start:start + CHUNK], sets[start:start + CHUNK]
            gone = list(compress(part, map(not_, wanted)))
            self._uninstall(gone)  # (a gone owner's set is empty: no flow of it can be rejected)
            tick(len(gone))
            for owner, flows in paced_sets(compress(zip(part, wanted), wanted), tick, flows=_pair_size):
                if rejected and any(f.key in rejected for f in flows):
                    flows = frozenset(f for f in flows if f.key not in rejected)
                if flows:
                    if owner not in self.installed:
                        self.sharing.add(owner, flows)
                    self.installed[owner] = flows
                else:
                    self._uninstall((owner,))
        for key in plan.adopted:  # now an owner's (planned): no longer loose
            self.loose.pop(key, None)
        if rejected or self.loose:  # else nothing deleted can be loose: no need to look each delete up
            for key, item in paced(plan.deletes, tick):
                if key in rejected:
                    self.loose[key] = item
                else:
                    self.loose.pop(key, None)
        self.loose.update(plan.kept)
        self._changes += 1  # a count taken in a pause above saw the record half written: not the book's now

    def _uninstall(self, owners) -> None:
        """``owners`` (distinct) no longer installed: out of ``installed`` and ``sharing``, in C loops."""
        olds = list(map(self.installed.pop, owners, repeat(None)))
        held = list(map(truth, olds))  # (an installed set is never empty)
        self.sharing.discard_all(list(compress(owners, held)), list(compress(olds, held)))

    # ------------------------------------------------------------------------------ reading

    def _installed_by_key(self, tick=_no_tick, installed=None, loose=None) -> dict:
        have = dict(self.loose if loose is None else loose)
        tick(len(have))
        for flows in paced_sets((self.installed if installed is None else installed).values(), tick):
            for f in flows:
                have[f.key] = f
        return have

    def desired_by_key(self, tick=_no_tick, desired=None) -> dict:
        want = {}
        for flows in paced_sets(((self.desired or {}) if desired is None else desired).values(), tick):
            for f in flows:  # a plain loop: a third cheaper than update() from a generator (every flow, every plan)
                want[f.key] = f
        return want

    def counts(self, tick=_no_tick, keep: bool = False) -> tuple[int, int, int]:
        """(desired, installed, pending) flows: ``tally`` without the kept ones."""
        return self.tally(tick, keep)[:3]

    def tally(self, tick=_no_tick, keep: bool = False) -> tuple[int, int, int, int]:
        """(desired, installed, pending: still to add or remove, rejected left out, kept) flows; ``keep`` (the
        reconciler's keep_stale): what a plan would delete is kept, not pending (a switch holding only kept flows
        is in sync), and counted as ``kept``. A full diff only while one is due (after a read-back), else the
        changed owners' differences. Counted once per state of the book: every REST status and Prometheus scrape
        asks each switch, and between a read-back and its plan a scrape of 50 switches of 16,000 flows cost the
        controller about a second (tests/benchmarks/vrs_scale.py). ``tick``: may pause (10,000 owners changed:
        ~0.4 s of CPU the first time, their cookies computed), on copies of the records taken first; the count is
        that of the book as it was then."""
        key = (self._changes, len(self.rejected), keep)
        if self._counted is None or self._counted[0] != key:
            counted = self._count(tick, keep)
            self._counted = (key, counted)
            return counted
        return self._counted[1]

    def _count(self, tick, keep: bool) -> tuple[int, int, int, int]:
        desired, installed, loose = dict(self.desired or {}), dict(self.installed), dict(self.loose)
        dirty, rejected = (None if self.dirty is None else set(self.dirty)), dict(self.rejected)
        desired_count = sum(len(fs) for fs in desired.values())
        installed_count = sum(len(fs) for fs in installed.values()) + len(loose)
        if self.desired is None:
            return 0, installed_count, 0, 0
        if dirty is None:
            want, have = self.desired_by_key(tick, desired), self._installed_by_key(tick, installed, loose)
            adds, stale = _missing(want, have, rejected, tick), _missing(have, want, {}, tick)
        else:  # with keep, ``loose`` is not planned as deletes: every loose flow not refused is kept
            plan = self._by_owner(dirty, desired, rejected, tick, installed, loose, keep=keep)
            adds, stale = len(plan.adds), len(plan.deletes)
            if keep:
                stale += len(loose.keys() - rejected.keys()) - len(plan.adopted)
        return desired_count, installed_count, adds + (0 if keep else stale), stale if keep else 0

    def listing(self, tick=_no_tick) -> tuple[list, dict]:
        """(rows, sharers) of one moment: rows, (key, desired Flow or None, installed item or None) of every desired
        or installed flow; sharers maps the key of a flow two or more owners share (a hint collision,
        ``shared_flows``) to those that want it or, a flow no owner wants, those that hold it. ``tick``: may pause
        (module docstring), on copies of the records taken first."""
        desired, installed, loose = dict(self.desired or {}), dict(self.installed), dict(self.loose)
        want, have = self.desired_by_key(tick, desired), self._installed_by_key(tick, installed, loose)
        rows = [(key, want.get(key), have.get(key)) for key in paced(want.keys() | have.keys(), tick)]
        sharers = {key: owners for key, owners in shared_flows(installed, tick).items() if key not in want}
        sharers.update(shared_flows(desired, tick))
        return rows, sharers
