"""The start-up hold: released when every remembered switch has reported or the hold time is over, the
memory kept in the store as switches come and go, and what /v1/status shows."""

from controller.startup_hold import KEY, StartupHold
from controller.store import Change, Store
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def hold(store, clock, hold_time=15.0, hold_max=60.0):
    return StartupHold(store, hold_time, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now, hold_max=hold_max)


def test_first_start_remembers_nothing_and_does_not_hold(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    h = hold(store, clock)
    assert not h.holding and h.seconds_left() is None
    assert h.status()["state"] == "synced" and "no switch was connected before" in h.status()["message"]
    h.remember({"hv1", "hv2"}, {"tor1"})
    assert store.get_meta(KEY) == {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]}


def test_holds_until_every_remembered_switch_has_reported(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock)
    assert h.holding and h.seconds_left() == 15.0
    assert not h.check({"hv1"}, set())
    status = h.status()
    assert status["state"] == "syncing" and status["message"] == "waiting for 2 of 3 switches"
    assert status["waiting_for"] == [{"kind": "vrs", "name": "hv2"}, {"kind": "vtep", "name": "tor1"}]
    assert status["until"].endswith("+00:00")
    h.remember({"hv1"}, set())  # nothing is recorded while holding
    assert store.get_meta(KEY) == {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]}
    clock.now += 5
    assert h.seconds_left() == 10.0
    assert h.check({"hv1", "hv2", "hv9"}, {"tor1"})  # the one that releases
    assert not h.holding and not h.check(set(), set())  # released for good
    assert h.status()["message"] == "all 3 switches connected before have reported"


def test_the_hold_time_ends_the_hold_and_a_switch_that_stayed_away_is_forgotten(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "gone"], "vteps": []})
    h = hold(store, clock)
    assert not h.check({"hv1"}, set())
    clock.now += 15
    assert h.check({"hv1"}, set())
    assert "still missing vrs gone" in h.status()["message"]
    h.remember({"hv1"}, set())
    assert store.get_meta(KEY) == {"vrs": ["hv1"], "vteps": []}
    assert not hold(store, Clock()).check(set(), set())  # the next start waits for hv1 only
    assert hold(store, Clock()).check({"hv1"}, set())


def test_a_hold_time_over_waits_for_the_pass_that_sees_switches_state_already_has(tmp_path):
    """On a loaded machine a pass can outlast the hold time: the switches that reported while it ran are in
    State (``arrived``), not in that pass's desired state. Releasing then would remove their VMs' flows on every
    switch; the hold waits for the next pass instead, and only for switches that did arrive (past hold_max too:
    before it, their arrival moves the hold's end anyway)."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock, hold_max=15.0)
    clock.now += 16
    assert not h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, {"tor1"}))
    assert h.holding and h.seconds_left() == 0
    assert h.check({"hv1", "hv2"}, {"tor1"}, arrived=({"hv1", "hv2"}, {"tor1"}))
    assert h.status()["message"] == "all 3 switches connected before have reported"


def test_past_hold_max_the_hold_waits_for_one_more_pass_not_for_a_switch_that_keeps_leaving(tmp_path):
    """Past hold_max the hold waits for the pass that sees the switches State has, once: a switch whose session
    keeps dropping and coming back (in State when a pass ends, gone when the next one began) would otherwise be
    "arriving" at every check, and the hold, which writes nothing anywhere, would never end."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "flaps"], "vteps": []})
    h = hold(store, clock, hold_max=20.0)
    clock.now += 1
    assert not h.check({"hv1"}, set())
    clock.now += 20
    assert not h.check({"hv1"}, set(), arrived=({"hv1", "flaps"}, set()))  # the next pass may have it: wait for it
    for _ in range(3):  # it has not: it left before that pass began, and is back again
        clock.now += 2
        if h.check({"hv1"}, set(), arrived=({"hv1", "flaps"}, set())):
            break
    assert not h.holding
    assert "restart.hold_max of 20 s reached" in h.status()["message"] and "still missing vrs flaps" in \
        h.status()["message"]


def test_a_hold_time_over_does_not_wait_for_a_switch_state_does_not_have(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock)
    clock.now += 1
    assert not h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, set()))
    clock.now += 15
    assert h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, set()))  # tor1 has not come back: no reason to wait
    assert "still missing vrs hv2, vtep tor1" in h.status()["message"]


def test_while_remembered_switches_keep_coming_back_the_hold_waits_for_the_rest(tmp_path):
    """A loaded machine brings switches back slowly (vrs_scale at load 19: the last ones reported at 18.6 s of a
    15 s hold): each remembered switch that comes back moves the hold's end to hold_time from then, and the hold
    ends at once when the last one is back."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2", "hv3"], "vteps": ["tor1"]})
    h = hold(store, clock)
    clock.now += 10
    assert not h.check({"hv1"}, set())  # back at 10 s: the hold lasts until 25 s
    assert h.seconds_left() == 15.0 and h.status()["until"] == "2027-01-15T08:02:05+00:00"
    clock.now += 14
    assert not h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, set()))  # State has hv2 (24 s): until 39 s
    assert h.holding and h.seconds_left() == 15.0
    assert h.status()["latest"] == "2027-01-15T08:02:40+00:00" and h.status()["hold_max"] == 60.0
    clock.now += 5
    assert h.check({"hv1", "hv2", "hv3"}, {"tor1"})  # all back at 29 s: released at once
    assert h.status()["message"] == "all 4 switches connected before have reported"


def test_the_hold_ends_when_no_remembered_switch_came_back_for_the_hold_time(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "gone"], "vteps": []})
    h = hold(store, clock)
    clock.now += 5
    assert not h.check({"hv1"}, set())
    clock.now += 14.9
    assert not h.check({"hv1"}, set())
    clock.now += 0.1
    assert h.check({"hv1"}, set())
    assert h.status()["message"] == "no switch connected before came back for 15 s (hold time); still missing vrs gone"


def test_the_hold_never_outlasts_hold_max(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": [f"hv{i}" for i in range(10)], "vteps": []})
    h = hold(store, clock, hold_time=15.0, hold_max=40.0)
    back = set()
    for i in range(9):  # one every 5 s, never all
        clock.now += 5
        back.add(f"hv{i}")
        released = h.check(back, set())
        assert released == (clock.now - 100.0 >= 40.0), (i, clock.now)
        if released:
            break
    assert "restart.hold_max of 40 s reached while switches were coming back; still missing" in h.status()["message"]
    assert not h.holding


def test_closing_keeps_the_memory_of_a_stopping_controller(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    h = hold(store, clock)
    h.remember({"hv1"}, {"tor1"})
    h.close()  # stop() closes every OVSDB session: these are not switches leaving
    h.remember(set(), set())
    assert store.get_meta(KEY) == {"vrs": ["hv1"], "vteps": ["tor1"]}


def test_a_store_that_refuses_the_memory_logs_one_traceback_not_one_per_pass(tmp_path, caplog, monkeypatch):
    """remember() runs after every programming pass and tries again while the store refuses (read-only, full): one
    traceback, then at most a line per LOG_EVERY; a success, then a new refusal, is traced again (review38b)."""
    import sqlite3

    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    store, clock = Store(str(tmp_path)), Clock()
    h = hold(store, clock)
    set_meta = store.set_meta

    def refused(*args):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store, "set_meta", refused)
    with caplog.at_level("WARNING", logger="canopy.hold"):
        for i in range(50):
            h.remember({"hv1", f"hv{i % 3 + 2}"}, set())
    records = [r for r in caplog.records if r.name == "canopy.hold"]
    assert [bool(r.exc_info) for r in records] == [True, False], [r.getMessage() for r in records]
    assert "readonly database" in records[1].getMessage()
    monkeypatch.setattr(store, "set_meta", set_meta)
    h.remember({"hv1"}, set())
    assert store.get_meta(KEY) == {"vrs": ["hv1"], "vteps": []}
    monkeypatch.setattr(store, "set_meta", refused)
    caplog.clear()
    with caplog.at_level("WARNING", logger="canopy.hold"):
        h.remember({"hv2"}, set())
    assert [bool(r.exc_info) for r in caplog.records if r.name == "canopy.hold"] == [True]


def test_hold_time_zero_never_holds_and_garbage_in_the_store_is_ignored(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"]})
    assert not hold(store, clock, hold_time=0).holding
    store.set_meta(KEY, {"vrs": "hv1", "vteps": [3, None, "tor1"]})
    h = hold(store, clock)
    assert h.expected == {"vrs": frozenset(), "vtep": frozenset({"tor1"})}
    store.set_meta(KEY, ["not", "a", "map"])
    assert not hold(store, clock).holding


def test_a_standby_holds_for_the_switches_it_knew_not_for_those_the_active_knew(tmp_path):
    """Each node of a pair remembers what connected to it: the active's record, copied by replication (batches and
    snapshots), would make a restarted standby wait for switches that never come to it, or release without its
    own. A snapshot replacing the standby's store keeps the standby's record."""
    active, standby = Store(str(tmp_path / "active")), Store(str(tmp_path / "standby"))
    mine = hold(standby, Clock())
    mine.remember({"hv1", "hv2"}, {"tor1"})
    active.set_meta(KEY, {"vrs": ["hv1", "hv9"], "vteps": []})
    active.commit([Change("tenant", "a", "put", {"id": "a", "name": "acme"})], meta={"counters": {"vni": 1}})
    assert standby.apply_replicated(active.changes_since(0), active.replicated_meta()) == 1
    assert standby.get_meta("counters") == {"vni": 1}  # the batch's meta came with it
    mine.remember({"hv1", "hv2"}, {"tor1"})  # unchanged in memory: nothing written again
    active.commit([Change("tenant", "b", "put", {"id": "b", "name": "b"})])
    standby.restore(active.snapshot())
    assert standby.load_objects() == active.load_objects()
    restarted = hold(standby, Clock())
    assert restarted.expected == {"vrs": {"hv1", "hv2"}, "vtep": {"tor1"}}
    assert not restarted.check({"hv1", "hv9"}, set())
    assert restarted.check({"hv1", "hv2"}, {"tor1"})


def test_the_hold_awaits_switches_not_reported_until_its_end_and_never_once_released(tmp_path):
    """``awaits`` (the programming loop's wait for first reads, controller/app.py): True while a remembered switch is
    not among those that have reported, the hold's end not reached; False at its end (the pass then may end it),
    with every switch reported, and once released."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock)
    assert h.awaits({"hv1"}, {"tor1"}) and h.awaits({"hv1", "hv2"}, set())
    assert not h.awaits({"hv1", "hv2", "hv9"}, {"tor1"})
    clock.now += 15
    assert not h.awaits({"hv1"}, set())  # hold_time over: a pass must run now
    h = hold(store, clock)
    assert h.check({"hv1", "hv2"}, {"tor1"}) and not h.awaits(set(), set())


def test_a_switch_partly_taken_in_has_not_reported_and_holds_the_hold_hold_time_past_hold_max_at_most(tmp_path):
    """``partial`` (controller/app.py ``_partial``: State was taking hv2's first report when the View was computed):
    hv2 has not reported; the hold does not end on that pass, at its end nor past hold_max, and it has come back (the
    end moves); hold_time past hold_max it ends, on the pass after (hv2's first reports keep coming, every pass sees one
    partly)."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"]})
    h = hold(store, clock)
    clock.now += 5
    assert not h.check({"hv1", "hv2"}, set(), partial={"hv2"}) and h.waiting() == {"vrs": 1, "vtep": 0}
    assert h.seconds_left() == 15  # hv2 came back: hold_time from now
    clock.now += 60
    assert not h.check({"hv1", "hv2"}, set(), partial={"hv2", "hv9"})  # past hold_max
    assert not h.check({"hv1", "hv2"}, set(), partial={"hv2"})  # again (no one pass only, as for an arrived switch)
    clock.now += 10  # hold_max + hold_time: it waits as for an arrived switch, for one pass past hold_max
    assert not h.check({"hv1", "hv2"}, set(), partial={"hv2"})
    assert h.check({"hv1", "hv2"}, set(), partial={"hv2"})
    assert h.reason.endswith("still missing vrs hv2")
    h = hold(store, clock)
    clock.now += 5
    assert h.check({"hv1", "hv2"}, set(), partial={"hv9"})  # a switch not remembered: as before
