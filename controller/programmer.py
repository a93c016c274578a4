"""Keeps every switch's desired flows current: drain State's change journal, update the View for what it
reaches, recompile only the owners it reaches.

``refresh()`` takes the journal (``controller.journal``: the vports, subnets, domains, switches, hardware VTEPs
and EVPN scopes that changed), has ``controller.viewdelta.LiveView`` update the derived View in place for just
those, and recompiles the owners that delta reaches (switch, subnet, domain, vport, remote MAC, ACL, uplink,
floating IP, port address translation) on the switches where they are or were present; a switch that connected
or whose own facts (VTEP IP, tunnel port) changed is compiled whole, the others only for what its change reaches.
The same delta keeps each hardware VTEP's desired rows (``vteps``, controller/viewvteps.py): only the VTEPs it
reaches are computed again. ``refresh(full=True)`` (at start, on request, and after a failed pass) derives and
compiles everything from scratch, VTEP rows included: it is the oracle the incremental path is tested against
(tests/unit/test_incremental_oracle.py).

Compile once, share: the programmer keeps one ``compiler.Shared``, so an owner's flows that are the same on
many switches (a remote vport's L2, ARP and host-route entries; a subnet's and a domain's flows) are compiled
once and every switch's ``Desired`` holds the same frozenset. Per switch it also records which owners
changed since the switch was last handed its state (``take_changes``), so its reconciler plans only those.

Never a stalled loop: compiling ticks ``pacer`` (controller/pacer.py; the app's pauses with ``hub.sleep(0)``) for
each owner variant compiled, by the flows it builds (``compiler.Shared``), each switch compiled whole or compared,
and each ``COMPARE_UNIT`` owners compared, so a full compile of 10,000 vports gives the event loop a turn every few
milliseconds; and once between ``on_view`` and the compile. Only the View and the programmer's own data are read
while compiling, and nothing else changes them (``refresh`` runs in the programming loop only; one started inside
another's pause is refused); ``desired`` is replaced, not rebuilt in place, by a full compile, so REST readers
meanwhile see the previous one whole, and a switch's owners that changed are noted before the next pause, so a
switch handed its state in a pause (it connected) is told every change it holds.
"""

from __future__ import annotations

import logging
import time
from itertools import compress, repeat
from operator import attrgetter, is_not, ne

from controller.derive import View, derive
from controller.pacer import NEVER, Pacer, collector_paused, release, release_list
from controller.viewdelta import LiveView
from controller.viewvteps import LiveVteps
from openflow.compiler import Desired, Shared, compile_owners, compile_switch
from openflow.floodlimits import FloodWatch

_NONE = frozenset()  # an owner's flows where it has none
_KIND = attrgetter("kind")
log = logging.getLogger("canopy.programmer")
SWITCH_UNITS = 20  # pacer units for compiling one switch whole (merging its shared owner sets) beyond its owners
COMPARE_UNIT = 200  # owners compared (old desired against new) per pacer unit


class Programmer:
    def __init__(self, state):
        self.state = state
        self.live = LiveView(state)
        self.journal = state.journal() if hasattr(state, "journal") else None
        self._built = False
        self.desired: dict[str, Desired] = {}
        self.shared = Shared()
        self._changes: dict[str, set | None] = {}  # session -> owners changed since take_changes (None: all)
        self.full_recomputes = 0
        self.incremental_updates = 0
        self.timings: dict[str, float] = {}  # the last refresh: seconds in derive, finding owners, compiling (and CPU)
        self.pacer: Pacer = NEVER  # ticked while compiling (see the module docstring)
        self.on_view = _nothing  # called once a refresh's View is up to date, before it compiles (see refresh)
        self.partial: frozenset[str] = frozenset()  # the sessions State was taking a first report of when the last
        # refresh took its journal (State.partial): the View may hold them with only some of their vports
        self.partial_chassis: frozenset[str] = frozenset()  # their chassis (State.partial_chassis), in the View or not
        self.withheld: set[str] = set()  # sessions whose desired state is not handed out yet: partial, or due and not
        # handed yet (see due, handed)
        self.revision = 0  # the policy seq State had taken whole when the last refresh took its journal
        self._passing = False  # inside refresh()
        self.vteps = LiveVteps()  # each hardware VTEP's desired rows, by the same delta (controller/viewvteps.py)
        self.floods = FloodWatch(self._chassis_of, self._subnet_ref)  # subnets past OVS's flood limits (floodlimits)

    @property
    def view(self) -> View:
        return self.live.view

    def derive(self) -> View:
        """A View derived from scratch (``controller.derive``): what the maintained one must equal."""
        s = self.state
        return derive(s.policy, s.locations, s.vrs, s.vtep_ip_of, s.vteps, getattr(s, "remote", None),
                      getattr(s, "gateway_macs", None), getattr(s, "standby", None))

    def refresh(self, full: bool = False) -> set[str]:
        """Bring desired state up to date; returns the sessions whose desired flows or groups changed.

        ``on_view()`` is called when the View is up to date and nothing is compiled yet (not when nothing
        changed): what follows the View alone, as the EVPN routes do, need not wait for the compile (10,000 new
        vports: a second or more of it). It runs inside the pass: it may pause, and nothing changes the View
        meanwhile."""
        if self._passing:  # its pauses let other green threads run, never another pass (it would take the journal
            raise RuntimeError("a programming pass is already running")  # and change the View under this one)
        recomputes = self.full_recomputes
        self._passing = True
        try:
            with collector_paused() as after:
                touched = self._refresh(full)
                after.freeze = self.full_recomputes != recomputes
        finally:
            self._passing = False
        return touched

    def _refresh(self, full: bool) -> set[str]:
        started = time.perf_counter()
        self.shared.pacer = self.live.pacer = self.pacer
        journal = self.journal.take() if self.journal is not None else None
        self.revision = getattr(self.state, "settled_seq", 0)  # (with the journal: no pause between them)
        self.partial = frozenset(getattr(self.state, "partial", ()))  # (a full build reads State before any pause too)
        self.partial_chassis = frozenset(getattr(self.state, "partial_chassis", ()))
        policy = self.state.policy  # the one the View's pass reads (viewdelta._Pinned)
        if full or not self._built or journal is None:
            self._built = False
            self.live.build()
            self._built = True
            self.timings = {"derive": time.perf_counter() - started, "compile": 0.0}
            self._view_ready()
            touched = self._recompute_all(self.view, diff_all=full)
            self.vteps.build(self.view, policy, self.pacer)
            return touched
        self.incremental_updates += 1
        self.timings = {"derive": 0.0, "compile": 0.0}
        if journal.empty():
            return set()
        reach = self.live.apply(journal)
        self.timings["derive"] = time.perf_counter() - started
        self._view_ready()
        view = self.view
        touched = {session for session in reach.gone if self.desired.pop(session, None) is not None}
        for session in reach.gone:
            self._changes.pop(session, None)
            self.floods.forget(session)
        changed = _union(reach.touched, reach.owners.values(), self.pacer)  # (an owner gone from every switch too)
        work = {s: owners for s, owners in reach.owners.items()
                if owners and s not in reach.rebuild and s in view.switches}
        touched |= self._recompile(view, work, changed)
        touched |= self._rebuild(view, reach.rebuild)
        self.shared.drop_empty(changed)  # an owner that went leaves nothing behind
        self.timings["owners"] = time.perf_counter() - started - self.timings["derive"] - self.timings["compile"]
        self.vteps.update(view, policy, reach.vteps, self.pacer)
        return touched

    def _view_ready(self) -> None:
        """``on_view()``, then a turn of the event loop before the compile: what on_view does (the EVPN routes of
        10,000 new vports published) and the compile's first units ran as one stretch (38-55 ms in the bursts
        benchmark, each ending at the compile's first pause)."""
        self.on_view()
        self.pacer.tick(self.pacer.every)

    def _rebuild(self, view: View, sessions) -> set[str]:
        """Switches compiled whole (connected, or their own VTEP IP or tunnel port changed), alone."""
        touched = set()
        for session in sessions:
            before = self.desired.get(session)
            desired = compile_switch(view, session, self.shared)
            changed = _changed_owners(before, desired, {}, self.pacer)
            self.desired[session] = desired  # with its changes noted, before the next pause (see _recompile)
            if before is None or changed:
                touched.add(session)
                self._note(session, None if before is None else changed)
                self._check_floods(session, desired, None if before is None else changed)
            self.pacer.tick(SWITCH_UNITS)
        return touched

    def _recompile(self, view: View, work: dict, changed_owners) -> set[str]:
        """Recompile ``work`` (session -> owners) against ``view``; ``changed_owners``: the owners whose inputs
        changed (their shared flows are compiled again). Returns the sessions whose desired state changed."""
        started, cpu = time.perf_counter(), time.process_time()
        self.shared.forget(changed_owners)
        self.shared.begin(view)
        touched = set()
        for session, owners in work.items():
            current = self.desired.setdefault(session, Desired())
            owners = list(owners)  # (walked in C loops: 10,000 vports gone)
            before = _held(current, owners)
            current.update(compile_owners(view, session, owners, self.shared), owners)
            changed = set(compress(owners, map(ne, _held(current, owners), before)))  # (by identity first: tuples)
            if changed:  # noted before the pause: a switch connecting meanwhile is handed them with its state
                touched.add(session)
                self._note(session, changed)
                self._check_floods(session, current, changed)
            release_list(before, self.pacer)  # the owners' old flows, freed with pauses (10,000 removed: ~90 ms)
            self.pacer.tick(1 + len(owners) // COMPARE_UNIT)
        self.timings["compile"] = time.perf_counter() - started
        self.timings["compile_cpu"] = time.process_time() - cpu
        return touched

    def _recompute_all(self, view, diff_all: bool = False) -> set[str]:
        """Every owner on every switch from scratch (nothing kept from before): the oracle and the fallback.
        ``diff_all`` (a full refresh asked for: at start, after a failed pass): the switches' reconcilers are
        told to diff every owner, whatever was handed out before."""
        self.full_recomputes += 1
        started, cpu = time.perf_counter(), time.process_time()
        previous = self.desired
        self.shared.renew()  # what is compiled again unchanged is the object it was: compared by identity below
        self.shared.begin(view)
        desired = {}
        for session in view.switches:
            desired[session] = compile_switch(view, session, self.shared)
            self.pacer.tick(SWITCH_UNITS)
        release(self.shared.settle(), self.pacer)  # the sets compiled before that were not compiled again the same
        notes, same = {}, {}  # session -> its owners changed (None: all), compared before any is handed out
        for session in set(previous) | set(desired):
            if session not in previous:  # new (at start: every switch): all of it is new, nothing to compare
                notes[session] = None
                continue
            changed = _changed_owners(previous.get(session), desired.get(session), same, self.pacer)
            if changed:
                held = len(desired[session].flows) if session in desired else 0
                notes[session] = changed if len(changed) * 2 < held and not diff_all else None
        self.desired = desired  # and its changes noted, with no pause between (see the module docstring)
        if diff_all:
            for session in self.desired:
                self._note(session, None)
        for session, owners in notes.items():
            self._note(session, owners)
        self.floods.retake(desired, self.pacer.tick)  # (after the notes: it may pause)
        touched = set(notes)
        self.timings["compile"] = time.perf_counter() - started
        self.timings["compile_cpu"] = time.process_time() - cpu
        return touched

    def _check_floods(self, session: str, desired: Desired, owners: set | None) -> None:
        """The subnet owners of ``owners`` (None: all of the switch's) checked against OVS's flood limits."""
        groups, whole = desired.groups, owners is None
        owners = list(groups if whole else owners)
        subnets = list(compress(owners, map("subnet".__eq__, map(_KIND, owners))))  # (C loops: 10,000 vports changed)
        if whole:
            self.floods.keep(session, {owner.id for owner in subnets})
        for owner in subnets:
            self.floods.check(session, owner.id, groups.get(owner, ()))

    def _chassis_of(self, session: str) -> str:
        snap = self.state.vrs.get(session)
        return snap.chassis if snap is not None else session

    def _subnet_ref(self, subnet_id: str) -> str:
        policy = self.state.policy
        subnet = policy.get("subnet", subnet_id)
        return policy.ref("subnet", subnet) if subnet else subnet_id

    def _note(self, session: str, owners: set | None) -> None:
        if owners is None:
            self._changes[session] = None
            return
        pending = self._changes.setdefault(session, set())
        if pending is not None:
            pending.update(owners)

    def due(self, sessions) -> set[str]:
        """Of ``sessions`` (a pass's touched ones, every one at the start-up hold's end, one connecting over
        OpenFlow), those whose desired state may be handed out now, with those withheld before that now may. A switch
        in ``partial`` is withheld: its desired state lacks the VMs State has not located yet (a switch back after its
        reconnect grace is read again from scratch), and handed out it would delete their flows from the switch,
        where they still run, until the pass that sees them. It is handed out on the first pass that sees it whole
        (State wakes the loop for it), with every change it holds (``take_changes`` keeps them meanwhile). It stays in
        ``withheld`` until ``handed``: the hand-out pauses between switches, and meanwhile its reconciler, in sync
        with an older state, is not to be said to hold the last pass's seq (controller/programmed.py)."""
        partial, sessions = self.partial, set(sessions)
        due = (sessions | self.withheld) - partial
        self.withheld |= sessions & partial
        return due

    def handed(self, session: str) -> None:
        """``session``'s desired state is handed out now (or it has no switch to hand it to: it gets it on connecting)."""
        self.withheld.discard(session)

    def take_changes(self, session: str) -> set | None:
        """The owners whose desired flows or groups on this switch changed since the last call (and so since
        its reconciler was last handed its state); None: unknown or most of them, diff every owner."""
        return self._changes.pop(session, set())


def _held(desired: Desired, owners: list) -> list:
    """(flows, groups) of each of ``owners`` in ``desired``, in C loops."""
    return list(zip(map(desired.flows.get, owners, repeat(_NONE)), map(desired.groups.get, owners, repeat(()))))


def _union(first: set, others, pacer: Pacer) -> set:
    """``first`` and every set of ``others`` in one set, ticking ``pacer`` by the owners added: 10,000 new vports on
    100 switches are a million owners, one ~30 ms stretch as one ``set().union``."""
    out = set(first)
    for owners in others:
        out |= owners
        pacer.tick(1 + len(owners) // COMPARE_UNIT)
    return out


def _nothing() -> None:
    """``Programmer.on_view`` by default."""


def _changed_owners(old: Desired | None, new: Desired | None, same: dict, pacer: Pacer = NEVER) -> set:
    """Owners whose flows or groups differ between two desired states of one switch. An owner's set that is the
    same object is unchanged (switches share their flow sets, and a full recompute keeps the sets it compiled again
    unchanged: ``Shared.renew``), found in one pass over the owners without a comparison each; the others are
    compared, and ``same`` remembers comparisons by identity, so each pair of sets is compared once. The owners that
    came or went and those whose set is another object are found by C loops (``map``, ``compress``): a switch compiled
    whole (its connect) walked its thousands of owners in Python twice, one stretch that grew with the world (10-12 ms
    of CPU in vrs_scale, branch perf47; tests/unit/test_changed_owners_cost.py)."""
    old, new = old or Desired(), new or Desired()
    changed = set()
    for attr in ("flows", "groups"):
        before, after = getattr(old, attr), getattr(new, attr)
        pacer.tick(1 + (len(before) + len(after)) // COMPARE_UNIT)
        if before == after:  # in C, each value by identity first: what a full recompute mostly finds
            continue
        came_or_went = list(before.keys() ^ after.keys())  # of them, those with flows or groups
        changed.update(compress(came_or_went, map(any, zip(map(before.get, came_or_went),
                                                          map(after.get, came_or_went)))))
        owners, sets = list(after), list(after.values())
        other = list(compress(owners, map(is_not, map(before.get, owners, sets), sets)))  # (the same object: kept)
        for n, owner in enumerate(other, 1):
            if n % COMPARE_UNIT == 0:
                pacer.tick()
            a, b = before[owner], after[owner]
            pair = (id(a), id(b))
            equal = same.get(pair)
            if equal is None:
                equal = same[pair] = a == b
            if not equal:
                changed.add(owner)
    return changed
