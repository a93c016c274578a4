"""The start-up hold: released when every remembered switch has reported or the hold time is over, the
memory kept in the store as switches come and go, and what /v1/status shows."""

from controller.startup_hold import KEY, StartupHold
from controller.store import Store


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def hold(store, clock, hold_time=15.0):
    return StartupHold(store, hold_time, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now)


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
    switch; the hold waits for the next pass instead, and only for switches that did arrive."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock)
    clock.now += 16
    assert not h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, {"tor1"}))
    assert h.holding and h.seconds_left() == 0
    assert h.check({"hv1", "hv2"}, {"tor1"}, arrived=({"hv1", "hv2"}, {"tor1"}))
    assert h.status()["message"] == "all 3 switches connected before have reported"


def test_a_hold_time_over_does_not_wait_for_a_switch_state_does_not_have(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    h = hold(store, clock)
    clock.now += 16
    assert h.check({"hv1"}, set(), arrived=({"hv1", "hv2"}, set()))  # tor1 has not come back: no reason to wait
    assert "still missing vrs hv2, vtep tor1" in h.status()["message"]


def test_closing_keeps_the_memory_of_a_stopping_controller(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    h = hold(store, clock)
    h.remember({"hv1"}, {"tor1"})
    h.close()  # stop() closes every OVSDB session: these are not switches leaving
    h.remember(set(), set())
    assert store.get_meta(KEY) == {"vrs": ["hv1"], "vteps": ["tor1"]}


def test_hold_time_zero_never_holds_and_garbage_in_the_store_is_ignored(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"]})
    assert not hold(store, clock, hold_time=0).holding
    store.set_meta(KEY, {"vrs": "hv1", "vteps": [3, None, "tor1"]})
    h = hold(store, clock)
    assert h.expected == {"vrs": frozenset(), "vtep": frozenset({"tor1"})}
    store.set_meta(KEY, ["not", "a", "map"])
    assert not hold(store, clock).holding
