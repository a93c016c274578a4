"""Duplicate MAC flags in the programming passes (bgp/duplicates.py, Federation.tend_flags, controller/routepass.py):
a pass's work on the flags is what changed and what is due, not every flag held (counted in Python bytecodes, not
timed), and a recovery that falls due, or a DELETE, takes effect in every state: also during the start-up hold and
while a peer's routes are still awaited (was: at the next change of the View, the role or the policy)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bgp import duplicates as duplicates_mod
from bgp.dupkeep import FILE_NAME
from bgp.federation import Federation
from controller import loglimit
from controller.routepass import RoutePass
from tests.bytecodes import opcodes
from tests.unit.test_duplicate_macs import MAC, Timers, announced, bgp_settings, federation, flagged, moved_twice
from tests.unit.test_endofrib import up
from tests.unit.test_evpn import place
from tests.unit.test_routepass import ImportingSpeaker


def holding_flags(tmp_path, flags: int, counted: int, now, expired: int = 0):
    """A Federation (recovery 600 s, window 60 s) holding ``flags`` flags set at 1000.000, 1000.001, ..., ``expired``
    MACs moved once 1,000 s before ``now[0]`` and ``counted`` MACs moved once now; its clocks ``now[0]``."""
    fed = federation(tmp_path, now, recovery=600)
    duplicates = fed.mobility.duplicates
    duplicates.replace([{"subnet_id": "s", "mac": _mac(0, i), "took": 1.0, "last_move": "away", "window": 60.0,
                         "since": 1000 + i / 1000} for i in range(flags)])
    at = now[0]
    now[0] -= 1000
    for i in range(expired):
        duplicates.moved(("v", _mac(3, i)), "away")
    now[0] = at
    for i in range(counted):
        duplicates.moved(("t", _mac(1, i)), "away")
    return fed


def _mac(kind: int, i: int) -> str:
    return f"02:00:{kind:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"


@pytest.mark.parametrize("flags", [10_000, 30_000])
def test_a_pass_with_nothing_due_costs_the_same_at_10_flags_as_at_many(tmp_path, monkeypatch, flags):
    """Each pass takes the active's flags, clears the due ones, forgets the moves out of the window, writes and sends
    what changed and arms the timer (tend_flags; MAC mobility's prune again): with nothing due, the same bytecodes
    whether 10 flags are held or tens of thousands (was: every flag walked three times a pass, and every MAC being
    counted once: ~700,000 bytecodes at 10,000 flags, ~2,100,000 at 30,000; now 456 at either, as at 10)."""
    costs = []
    for n, where in ((10, "small"), (flags, "big")):
        now = [1050.0]
        fed = holding_flags(tmp_path / where, n, n, now)
        fed.tend_flags()  # the first pass: writes the file, arms the timer
        now[0] = 1100.0
        monkeypatch.setattr(loglimit, "_last_logged", {})  # the same lines logged in both
        costs.append(opcodes(lambda: (fed.tend_flags(), fed.mobility.duplicates.prune())))
        assert len(fed.mobility.duplicates.flagged) == n and len(fed.mobility.duplicates.moves) == n
    small, big = costs
    assert big <= small + 100, costs


def test_clearing_the_due_flags_costs_what_is_due_not_what_is_held(tmp_path, monkeypatch):
    """Three flags due, three set "in the future" (a clock set back), the moves of three MACs out of the window: the
    same work at 10 flags as at 10,000 (each due, restamped or expired one looked at, and one more)."""
    costs = []
    for n, where in ((10, "small"), (10_000, "big")):
        now = [1100.0]
        fed = holding_flags(tmp_path / where, n, n, now, expired=3)
        duplicates = fed.mobility.duplicates
        for i in range(3):  # set at 5000: later than the clock will say
            duplicates.moved(("u", _mac(2, i)), "away")
            duplicates.moved(("u", _mac(2, i)), "away")
        duplicates.replace([dict(row, since=5000.0) if row["subnet_id"] == "u" else row
                            for row in duplicates.rows(None)])
        duplicates.clock = lambda: 1100.0  # the moves' clock (monotonic) stays: those made now are in the window
        now[0] = 1600.0022  # the flags' (wall): 1000.000, .001 and .002 are 600 s old
        monkeypatch.setattr(loglimit, "_last_logged", {})  # the same lines logged in both
        costs.append(opcodes(lambda: (duplicates.prune(), duplicates.next_recovery())))
        assert len(duplicates.flagged) == n and len(duplicates.moves) == n  # 3 cleared, 3 expired
        assert sorted(row["since"] for row in duplicates.rows(None))[-3:] == [1600.002] * 3  # restamped to now
        assert duplicates.next_recovery() == pytest.approx(0.0008)  # 1000.003 + 600 - now
    small, big = costs
    assert big <= small + 100, costs


@pytest.mark.parametrize("change, most", [("recover", 110), ("restamp", 80), ("clear", 80), ("clear subnet", 100)])
def test_many_flags_changed_at_once_cost_little_per_flag(tmp_path, monkeypatch, change, most):
    """A loop flags every local MAC within a pass, so they all fall due together, or a DELETE clears them all: the
    flags leave their order in one slice or one rebuild, not one SortedList.remove each (was: ~190 bytecodes a flag
    to recover, ~230 to restamp, ~145 to clear, ~150 to clear a subnet's: 10,000 flags held the event loop 50-100
    ms; now ~67, ~28, ~40 and ~62; fewer than 64, or under an eighth of those held, are removed one by one). Less
    than half the work a flag of the same change made one flag at a time (``MANY`` out of reach), in the same run
    (docs/evpn.md says so)."""
    cost, changed = changed_at_once(tmp_path / "many", monkeypatch, change)
    assert cost <= most * changed, cost / changed
    monkeypatch.setattr(duplicates_mod, "MANY", float("inf"))
    one_by_one, _changed = changed_at_once(tmp_path / "one", monkeypatch, change)
    assert 2 * cost < one_by_one, (cost / changed, one_by_one / changed)


def changed_at_once(tmp_path, monkeypatch, change: str) -> tuple[int, int]:
    """The bytecodes of ``change`` made to 4,000 flags at once (half of them in subnet t), and the flags it changed;
    the flags and their order checked after it."""
    n = 4000
    now = [1000.0]
    fed = holding_flags(tmp_path, n, 0, now)  # set at 1000.000 ... 1003.999
    duplicates = fed.mobility.duplicates
    duplicates.replace([dict(row, subnet_id="t") if i % 2 else row for i, row in enumerate(duplicates.rows(None))])
    monkeypatch.setattr(loglimit, "_last_logged", {})
    now[0] = {"recover": 1700.0, "restamp": 900.0}.get(change, 1000.0)
    run = {"clear": duplicates.clear, "clear subnet": lambda: duplicates.clear("t")}.get(change, duplicates.prune)
    version = duplicates.version
    cost = opcodes(run)
    left = {"recover": 0, "restamp": n, "clear": 0, "clear subnet": n // 2}[change]
    assert len(duplicates.flagged) == len(duplicates._order) == left and duplicates.version > version
    assert [(since, (row["subnet_id"], row["mac"])) for since, row in
            ((row["since"], row) for row in duplicates.oldest(n))] == list(duplicates._order)
    if change == "restamp":
        assert {row["since"] for row in duplicates.rows(None)} == {900.0}
    return cost, (n - left if change != "restamp" else n)


def test_the_oldest_are_kept_and_listed_in_order_after_restamps_recoveries_and_clears(tmp_path):
    """The order the flags are kept in (``since``, then subnet and MAC) follows every change: what is written and
    sent (``oldest``), and what the next recovery is."""
    now = [1000.0]
    fed = holding_flags(tmp_path, 6, 0, now)
    duplicates = fed.mobility.duplicates
    duplicates.clear("s", "02:00:00:00:00:01")
    duplicates.moved(("a", MAC), "away")
    duplicates.moved(("a", MAC), "away")  # set at 1000.0: the oldest with the first
    assert [(r["subnet_id"], r["mac"][-2:]) for r in duplicates.oldest(3)] == [("a", "01"), ("s", "00"), ("s", "02")]
    now[0] = 1000.0032  # the clock set back below 1000.004 and .005
    duplicates.prune()
    assert [r["since"] for r in duplicates.oldest(10)] == [1000.0, 1000.0, 1000.002, 1000.003, 1000.003, 1000.003]
    now[0] = 1600.0
    duplicates.prune()
    assert [r["since"] for r in duplicates.oldest(10)] == [1000.002, 1000.003, 1000.003, 1000.003]
    assert duplicates.next_recovery() == pytest.approx(0.002)


# ------------------------------------------------------------------------------------ every state

def held_routes(tmp_path, now, placement=None):
    """A Federation restarted on ``tmp_path`` (its flags' file there), behind a RoutePass during the start-up hold
    whose View has vm1 on hv1; its peer's routes awaited until ``up``."""
    state_fed = federation(tmp_path, now, recovery=600)
    moved_twice(state_fed)  # vm1 flagged at 1000, written to the file
    now[0] = 1300.0  # restarted
    fed = Federation(bgp_settings(recovery=600), str(tmp_path), state_fed.state, speaker=ImportingSpeaker())
    fed.mobility.duplicates.clock = fed.mobility.duplicates.wall = lambda: now[0]
    fed.later, fed.keeper.file.later = Timers(), Timers()  # the recovery timer, a failed write's retry: none started
    fed._received_changed()  # its peer 127.0.0.1 is not up: its routes awaited
    programmer = SimpleNamespace(view=place(fed.state, placement or {"hv1": [("vm1", 10)]}))
    routes = RoutePass(fed, programmer, SimpleNamespace(holding=True), lambda: True)
    return fed, routes


def peer_up(fed):
    up(fed.speaker.book, "127.0.0.1")  # up, without graceful restart: its routes not awaited any more
    fed._received_changed()


@pytest.fixture
def ready(tmp_path):
    """(fed, routes, now): ``held_routes`` with its peer up and its first pass's View ready (vm1 flagged, so not
    announced); ``now[0]`` 1300."""
    now = [1000.0]
    fed, routes = held_routes(tmp_path, now)
    peer_up(fed)
    routes.import_remote()
    routes.view_ready()
    return fed, routes, now


def unchanged_pass(routes):
    """A pass during the hold whose View did not change (a timer woke it): no view_ready."""
    routes.import_remote()
    routes.held()


@pytest.mark.parametrize("awaited, standby", [(False, False), (True, False), (False, True)],
                         ids=["announcing", "peer-awaited", "standby"])
def test_a_recovery_falling_due_during_the_hold_takes_effect_in_the_pass_its_timer_wakes(tmp_path, awaited, standby):
    now = [1000.0]
    fed, routes = held_routes(tmp_path, now)
    fed.originating = not standby
    if not awaited:
        peer_up(fed)
    routes.import_remote()  # the first pass after the restart
    routes.view_ready()
    assert flagged(fed) and not announced(fed)
    [(delay, wake)] = fed.later.asked  # armed by the first pass, whether it published or not
    assert delay == 300
    now[0] = 1600.0
    wake()
    unchanged_pass(routes)
    assert not flagged(fed)
    assert not json.loads((tmp_path / FILE_NAME).read_text())["flags"]  # written: a restart keeps it cleared
    assert announced(fed) is not (awaited or standby)  # announced at once, or when the peer's routes are in
    if awaited:
        peer_up(fed)
        unchanged_pass(routes)
        assert announced(fed)


def test_a_delete_during_the_hold_announces_the_mac_in_the_pass_it_wakes(ready):
    fed, routes, _ = ready
    assert not announced(fed)
    fed.clear_duplicates()
    unchanged_pass(routes)
    assert announced(fed)
    routes.hold.holding = False  # the releasing pass: the publish during the hold is the complete set
    calls = []
    publish = fed.publish
    fed.publish = lambda *args, **kwargs: (calls.append(1), publish(*args, **kwargs))[1]
    routes.import_remote()
    routes.hand_out()
    assert calls == [] and fed.speaker.book.eor.handed


def test_an_unchanged_pass_during_the_hold_with_no_flag_change_publishes_nothing_again(ready):
    fed, routes, now = ready
    calls = []
    update = fed.mobility.update
    fed.mobility.update = lambda *args: (calls.append(1), update(*args))[1]
    now[0] = 1599.0
    unchanged_pass(routes)  # a timer too early (none due yet): nothing changed, nothing published
    assert calls == [] and flagged(fed)


def test_a_write_that_raises_in_the_pool_thread_stops_neither_the_recovery_nor_the_routes(tmp_path, monkeypatch,
                                                                                         caplog):
    """eventlet's pool raises the thread's exception in the caller: one that is no OSError (write_file returns those)
    is logged like a failed write. Was: out of every pass's publish too (no route announced) until a write succeeded,
    and the timer for the next recovery not armed."""
    now = [1000.0]
    fed, routes = held_routes(tmp_path, now)
    duplicates = fed.mobility.duplicates
    later = dict(duplicates.rows(None)[0], mac="02:00:00:00:00:99", since=1200.0)
    duplicates.replace(duplicates.rows(None) + [later])  # due at 1800
    peer_up(fed)
    routes.import_remote()
    routes.view_ready()

    def broken(function, *args):
        raise RuntimeError("the pool thread failed")

    fed.keeper.file.offload = broken
    monkeypatch.setattr(loglimit, "_last_logged", {})  # the warning logged here, whatever other tests logged before
    now[0] = 1600.0
    fed.later.asked[-1][1]()
    unchanged_pass(routes)  # vm1's flag recovered: the flags written (raises), the routes published
    assert not flagged(fed) and announced(fed)
    assert fed.later.asked[-1][0] == pytest.approx(200.0)  # armed for the flag set at 1200
    assert "not written to" in caplog.text and "the pool thread failed" in caplog.text
    assert [delay for delay, _ in fed.keeper.file.later.asked] == [5.0]  # the write tried again later (no thread
    # left behind: a real timer here fired after the test and logged to a closed stream)
    routes.hold.holding = False
    routes.import_remote()
    assert routes.publish() and announced(fed)  # and after the hold, in full
