"""The federation's hand-over pauses (bgp/federation.py ``_hand_over``, bgp/early.py ``carry``): the publish whose View
took only some of the vports bound while its pass ran carries the routes announced at bind of the others, ~170
bytecodes a route, in one stretch under ``_origins_lock`` (10,000 ports, 9,000 carried: 1,534,786 bytecodes, ~30 ms of
CPU, the longest stretch of evpn_routes' announce and of the bursts' ports, docs/benchmarks.md "Branch perf47"; ~130 a
route now, ``Origins.add_vport``). Now it pauses a pacer's run at a time, holding the lock: State's changes during its pauses reach the Federation's subscriber
(which waits for the lock) after it, and it reads State's locations before its first pause, so the result is what
the hand-over and then those changes give, one after the other."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from tests.bytecodes import Bytecodes

WAIT = 30.0  # seconds a test waits for its other thread (to be blocked on the lock, or to end): a bound, not a timing


def _report(indices, host: str = "kvm1"):
    """kvm1's report (tests/benchmarks/evpn_announce.py ``report``) with evpn_routes' vports ``indices`` only; or
    kvm2's (``host``), a second switch of its own VTEP IP (w1 is on kvm1 only)."""
    import dataclasses

    from controller.discovery import PortInfo
    from tests.benchmarks import evpn_announce as ea
    from tests.benchmarks.evpn_routes import out_vport

    whole = ea.report(0)
    ports = list(whole.ports)
    if host != "kvm1":
        ports = ports[:1]  # (the tunnel port)
        whole = dataclasses.replace(whole, session="vrs:kvm2", peer="10.250.0.6:1", chassis="kvm2",
                                    vtep_ip="10.251.0.6", datapath_id=6)
    for vport in map(out_vport, indices):
        ports.append(PortInfo(name=vport["name"], mac=vport["mac"],
                              external_ids=(("attached-mac", vport["mac"]), ("iface-id", vport["name"]))))
    return dataclasses.replace(whole, ports=tuple(ports))


def _world(n: int, taken: int, bound: int, kvm2: bool = False):
    """evpn_announce's world of ``n`` vports, announcing at bind: a pass's View (compiled) of the first ``taken``
    bound, then the first ``bound`` bound (the rest of them announced at bind, not in that View): (state, programmer,
    federation, the View). ``kvm2``: a second switch, without vports, in that View."""
    from tests.benchmarks import evpn_announce as ea

    state, programmer, federation = ea.world(n)
    federation.early = True
    if kvm2:  # (in the View: a vport that moves there may be announced at bind)
        state.vrs_update(_report((), "kvm2"))
    state.vrs_update(_report(range(taken)))
    reach = programmer.live.apply(programmer.journal.take())
    view = programmer.view
    work = {s: o for s, o in reach.owners.items() if o and s not in reach.rebuild and s in view.switches}
    programmer._recompile(view, work, set().union(*reach.owners.values()))
    state.vrs_update(_report(range(bound)))
    return state, programmer, federation, view


def _longest_hand_over_stretch(n: int, every: int = 200) -> tuple:
    """The most bytecodes the first publish's hand-over runs between two pauses of a Pacer pausing every ``every``
    units, in ``_world(n, n // 10, n)`` (9 in 10 routes carried), and its pauses."""
    import bgp.federation as federation_module
    from controller.pacer import Pacer

    state, programmer, federation, view = _world(n, n // 10, n)
    counter, most, pauses, inside = Bytecodes(), [0], [0], [False]

    def pause():
        if inside[0]:
            most[0], counter.count = max(most[0], counter.count), 0
            pauses[0] += 1

    hand_over = federation_module.Federation._hand_over

    def counted(self, *args):
        inside[0], counter.count = True, 0
        try:
            counter.run(lambda: hand_over(self, *args))
        finally:
            inside[0] = False
        most[0] = max(most[0], counter.count)

    federation.pacer = Pacer(pause, every)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federation_module.Federation, "_hand_over", counted)
        federation.publish(view, complete=False)
    assert sum(1 for route in federation.speaker.desired.values() if route.TYPE == 2) == n + 1  # (and w1's)
    return most[0], pauses[0]


def test_the_hand_over_carrying_9_000_routes_pauses_and_its_stretches_do_not_grow_with_them():
    """1,000 and 10,000 ports, 9 in 10 carried: the longest stretch of the hand-over is the same, a pacer's run of
    routes (~130 bytecodes a route carried, 200 a run) and the rest of the hand-over: 26,137 bytecodes. On main
    (95a4b671) one stretch: 154,186 and 1,534,786 bytecodes."""
    small, small_pauses = _longest_hand_over_stretch(1_000)
    big, big_pauses = _longest_hand_over_stretch(10_000)
    assert big <= 60_000 and big <= small + 10_000, (small, big)
    assert big_pauses >= 40, big_pauses


class _SeenLock:
    """The Federation's lock, first come first served as the controller's (eventlet's Lock, a Semaphore, wakes its
    waiters in turn), telling how many threads found it held (``waited``) and whether one holds it."""

    def __init__(self):
        self._turns = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._held = False
        self.waited = 0

    def __enter__(self):
        me = object()
        with self._turns:
            self._queue.append(me)
            if self._held or self._queue[0] is not me:
                self.waited += 1
                self._turns.notify_all()
            self._turns.wait_for(lambda: not self._held and self._queue[0] is me)
            self._queue.popleft()
            self._held = True
        return self

    def __exit__(self, *_exc):
        with self._turns:
            self._held = False
            self._turns.notify_all()

    def locked(self) -> bool:
        return self._held

    def wait_waited(self, count: int, thread: threading.Thread) -> bool:
        """Until ``count`` threads found it held, or ``thread`` ended (WAIT at most): whether they did."""
        deadline = time.monotonic() + WAIT
        with self._turns:
            while self.waited < count and thread.is_alive() and time.monotonic() < deadline:
                self._turns.wait(0.05)  # (the thread's end is not notified: looked at again)
            return self.waited >= count


def _events(case: str, n: int, state) -> list:
    """What happens to kvm1's vports in ``case``: functions changing State (and telling the Federation), in order,
    each in a thread of its own, one a switch (an OVSDB session's: each waits for the lock behind the last). A change
    of a few vports (60) is one chunk of State's, told once at its end."""
    from tests.benchmarks.evpn_routes import out_vport

    def report(indices, host="kvm1"):
        return lambda: state.vrs_update(_report(list(indices), host))

    some = range(0, n, 15)  # 60 vports (7 in the View, the rest carried)
    rest = [i for i in range(n) if i % 15]
    new = range(n, n + 60)  # 60 not bound yet
    return {
        "unbound": [report([i for i in range(n) if i % 3])],  # a third of the ports gone: in the View and carried
        "bound": [report(range(n + n // 2))],  # the ports not bound yet, bound
        "moved": [report([i for i in range(n + n // 4) if i % 4])],  # some gone, some new
        "leaving": [lambda: state.vrs_leaving("vrs:kvm1", [out_vport(i)["name"] for i in range(0, n, 5)])],
        # the same vports changed twice in one pause, by two switches:
        "moved away": [report(rest), report(some, "kvm2")],  # gone from kvm1, then bound at kvm2
        "moved in": [report(some, "kvm2"), report(rest)],  # seen at kvm2 too (still at kvm1), then gone from kvm1
        "bound at both": [report(range(n + 60)), report(new, "kvm2")],  # new at kvm1, then seen at kvm2 too
        "bound at kvm2, then at kvm1": [report(new, "kvm2"), report(range(n + 60))],
        "moved away and new": [report(rest), report([*some, *new], "kvm2")],
    }[case]


def _after(case: str, at_pause: int | None) -> tuple:
    """A world of 900 vports bound of 1,350, the View with 100: its publish, then the ``case``'s changes: during the
    hand-over's pause ``at_pause`` (each in another thread, waiting for the lock while the hand-over goes on), or after
    the publish, one after the other (None). What the speaker holds then, what the Origins says of every route and
    vport, and after the next pass's publish the speaker's routes and what a publish from scratch makes."""
    from bgp.evpn import originate
    from bgp.federation import Federation
    from bgp.mobility import Mobility
    from controller.pacer import Pacer
    from tests.unit.helpers import flagging
    from tests.unit.test_originator_oracle import said

    n = 900
    state, programmer, federation, view = _world(n + n // 2, 100, n, kvm2=True)
    lock, changes, inside = _SeenLock(), _events(case, n, state), [False]
    federation._origins_lock = lock
    threads, pauses = [], [0]

    def pause():
        if not inside[0]:
            return
        pauses[0] += 1
        if pauses[0] == at_pause:
            for change in changes:  # (a change the Federation was not told of would not wait: it ends)
                thread, waited = threading.Thread(target=change, daemon=True), lock.waited
                threads.append(thread)
                thread.start()
                lock.wait_waited(waited + 1, thread)

    federation.pacer = Pacer(pause, 50)
    with flagging(Federation, "_hand_over", inside):
        federation.publish(view, complete=False)
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    if at_pause is None:
        for change in changes:
            change()
    else:
        assert threads and lock.waited, (pauses, "no change waited for the hand-over")
    origins = federation._origins
    keys = set(federation.speaker.desired) | set(origins._count) | set(origins._pins)
    vports = set(origins._keys_of) | set(federation.originator._eps) | set(state.locations)
    name = {vid: state.policy.get("vport", vid)["name"] for vid in vports | set(federation._leaving)}  # (ids are new
    # in every world)
    behind, counts = said(origins, keys, vports)
    first = (dict(federation.speaker.desired), {name[vid]: keys for vid, keys in behind.items()}, counts,
             dict(federation._told), {name[vid] for vid in federation._leaving})
    federation.pacer = Pacer()
    programmer.refresh()
    federation.publish(programmer.view, complete=False)
    scratch = originate(programmer.view, state.policy, Mobility().update(programmer.view, state.remote_index))
    return first, dict(federation.speaker.desired), scratch


MOVES = ("moved away", "moved in", "moved away and new")  # (their MAC mobility sequence numbers grow: not from scratch)


@pytest.mark.parametrize("case", ["unbound", "bound", "moved", "leaving", *MOVES])
@pytest.mark.parametrize("at_pause", [1, 7])
def test_a_change_of_state_during_the_hand_over_s_pauses_lands_as_if_after_it(case, at_pause):
    """kvm1's ports unbound, bound, some of each, or told leaving, in a pause of the hand-over (the first, a later);
    or the same vports moved from kvm1 to kvm2 in one pause by the two switches (each in a thread of its own, waiting
    in turn): gone, then bound there; seen there, then gone; and new ones bound at kvm2 too. The speaker's routes,
    what the Origins says stands behind every route and vport (what unbinding withdraws), the keys told and the vports
    leaving are what the hand-over and then the changes give, in their order; the next pass's publish hands over what
    it does after them (and, nothing having moved, what a publish from scratch makes)."""
    paused = _after(case, at_pause)
    serial = _after(case, None)
    for what, got, want in zip(("routes", "vports' keys", "keys' vports", "told", "leaving"), paused[0], serial[0]):
        assert got == want, (what, _differ(got, want))
    assert paused[1] == serial[1]
    assert case in MOVES + ("leaving",) or paused[1] == paused[2]  # (the vports told leaving are still located)


@pytest.mark.parametrize("case", ["bound at both", "bound at kvm2, then at kvm1"])
def test_vports_bound_by_two_switches_in_one_pause_are_announced_where_state_locates_them_after_it(case):
    """New vports bound at one switch, then seen at the other too (State locates them at the newest) in one pause:
    the first change's subscriber runs after the hand-over, when State has taken the second too, and announces them
    where State locates them then (one after the other, the first announced them where they were bound, and the pass
    moved them); the next pass's publish hands over the same as one after the other, what a publish from scratch
    makes."""
    paused, serial = _after(case, 1), _after(case, None)
    assert paused[1] == serial[1] == paused[2]
    got, want = paused[0][0], serial[0][0]
    differ = {key for key in got.keys() | want.keys() if got.get(key) != want.get(key)}
    assert len(differ) == 60 and got.keys() == want.keys(), _differ(got, want)
    assert {got[key].next_hop for key in differ} == {paused[1][key].next_hop for key in differ}  # (where they are)
    assert {want[key].next_hop for key in differ} != {paused[1][key].next_hop for key in differ}


def _differ(got, want) -> list:
    """A few of the entries where two dicts (or sets) differ."""
    if isinstance(got, dict):
        return [(k, got.get(k, "-"), want.get(k, "-")) for k in sorted(got.keys() ^ want.keys() | {
            k for k in got.keys() & want.keys() if got[k] != want[k]}, key=repr)[:5]]
    return sorted(got ^ want, key=repr)[:5]


class _Killed(BaseException):
    """A green thread killed at a pause (GreenletExit, at a stop)."""


def test_a_hand_over_killed_at_a_pause_finishes_first():
    """A pause of the hand-over that raises (its thread killed) ends its pauses: the hand-over goes on to its end
    (``Finishing``), the speaker told all of it, then the publish raises: nothing is left half handed over."""
    from bgp.federation import Federation
    from controller.pacer import Pacer
    from tests.unit.helpers import flagging

    def hand_over(kill: bool) -> dict:
        state, programmer, federation, view = _world(1_000, 100, 1_000)
        inside, raised = [False], []

        def pause():
            if inside[0] and kill:
                raised.append(True)
                raise _Killed()

        federation.pacer = Pacer(pause, 50)
        with flagging(Federation, "_hand_over", inside):
            try:
                federation.publish(view, complete=False)
            except _Killed:
                assert raised == [True]  # (one pause raised; none after it)
        assert not federation._origins_lock.locked()
        return dict(federation.speaker.desired)

    killed = hand_over(True)
    assert sum(1 for route in killed.values() if route.TYPE == 2) == 1_001
    assert killed == hand_over(False)


def _hand_over_after_withdrawals(n: int) -> int:
    """The bytecodes of the hand-over of the publish after ``n`` ports' routes were withdrawn at unbind (all of
    hv1's ports gone: tests/unit/test_originator_oracle.py ``_bulk``)."""
    import bgp.federation as federation_module
    from tests.unit.test_evpn import HV1, snapshot
    from tests.unit.test_originator_oracle import _bulk

    state, prog, fed = _bulk(n, n)
    state.vrs_update(snapshot("hv1", HV1, []))
    assert len(fed._told) >= n  # (told withdrawn at unbind: each looked at again by this hand-over)
    prog.refresh()
    counted, real = [], federation_module.Federation._hand_over

    def hand_over(self, *args):
        counter = Bytecodes()
        counter.run(lambda: real(self, *args))
        counted.append(counter.count)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federation_module.Federation, "_hand_over", hand_over)
        fed.publish(prog.view)
    return counted[0]


def test_the_hand_over_after_ports_withdrawn_at_unbind_looks_at_their_keys_in_c():
    """1,000 and 4,000 ports gone, their routes withdrawn at unbind: the next publish's hand-over looks at every key
    told (what the speaker holds for it: nothing) in C loops (``_settle``); a Python loop per key not carried before
    (10,000 ports in evpn_withdraw: 170,622 bytecodes on main 95a4b671, 585 now)."""
    small, big = _hand_over_after_withdrawals(1_000), _hand_over_after_withdrawals(4_000)
    assert big <= 2_000 and big <= small + 200, (small, big)
