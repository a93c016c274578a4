"""Duplicate MAC flags as an operator of an EVPN fabric expects them (RFC 7432 section 15.1; docs/evpn.md): cleared by
themselves after ``bgp.duplicate_mac.recovery`` seconds if set (FRR's ``freeze <secs>``, Junos's
``auto-recovery-time``), kept across a restart and handed to the HA standby (bgp/dupkeep.py), bounded, and
``bgp.duplicate_mac`` applied by SIGHUP while ExaBGP is up (only Canopy uses it)."""

from __future__ import annotations

import cProfile
import json
import logging
import pstats

import pytest

from bgp import dupkeep
from bgp.dupkeep import FILE_NAME, MESSAGE
from bgp.federation import Federation
from controller import lifecycle, loglimit, resttoken, runtime, writebehind
from controller import settings as settings_mod
from controller.yamldoc import Doc
from tests.unit.fifo import fifo_without_writer
from tests.unit.replication_pair import free_port, link, wait_for
from tests.unit.test_evpn import place, setup_view
from tests.unit.test_evpn_early_withdraw import BookedSpeaker

MAC = "02:00:00:00:00:01"  # vm1's


class Timers:
    """Federation.later: the timers asked for, (delay, function), none started."""

    def __init__(self):
        self.asked = []

    def __call__(self, delay, function):
        self.asked.append((delay, function))
        return self

    def cancel(self):
        pass


def bgp_settings(**duplicate_mac):
    return settings_mod.from_doc(Doc("<t>", {"bgp": {"router_id": "10.250.0.1", "neighbors": [
        {"address": "10.250.0.2", "asn": 65002}],
        "duplicate_mac": {"max_moves": 2, "window": 60, **duplicate_mac}}})).bgp


def federation(data_dir, now, state=None, **duplicate_mac):
    """A Federation on ``data_dir`` (its flags' file there) with a speaker without a process, its clocks ``now[0]``
    (both the moves' and the flags' wall clock), and no timer started."""
    state = state or setup_view()[0]
    data_dir.mkdir(exist_ok=True)
    fed = Federation(bgp_settings(**duplicate_mac), str(data_dir), state, speaker=BookedSpeaker())
    duplicates = fed.mobility.duplicates
    duplicates.clock = duplicates.wall = lambda: now[0]
    fed.later = Timers()
    if fed.keeper.file is not None:
        fed.keeper.file.later = Timers()  # a failed write's retry (controller/writebehind.py), none started
    return fed


def at(fed, host):
    """One pass's publish with vm1 on ``host``."""
    fed.publish(place(fed.state, {host: [("vm1", 10)]}))


def moved_twice(fed):
    """vm1 on hv1, hv2, then hv1 again: two moves within the window, a duplicate under bgp_settings' max_moves 2."""
    for host in ("hv1", "hv2", "hv1"):
        at(fed, host)


def announced(fed) -> bool:
    return any(getattr(route, "mac", None) == MAC for route in fed.speaker.desired.values())


def key_of(fed):
    return fed.state.policy.find("subnet", "acme/web")["id"], MAC


def flagged(fed) -> bool:
    return key_of(fed) in fed.mobility.duplicates


@pytest.fixture(autouse=True)
def fresh_log_limits(monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})


# ------------------------------------------------------------------------------------ recovery

def test_a_flag_older_than_recovery_is_cleared_at_a_pass_a_timer_wakes_and_the_mac_is_counted_anew(tmp_path, caplog):
    now = [1000.0]
    fed = federation(tmp_path / "a", now, recovery=600)
    moved_twice(fed)  # two moves within the window: a duplicate
    assert flagged(fed) and not announced(fed)
    [(delay, wake)] = fed.later.asked  # no pass may come otherwise: a timer wakes one when the flag is due
    assert delay == 600
    now[0] = 1599.0
    at(fed, "hv1")
    assert flagged(fed) and fed.later.asked == [(delay, wake)]  # not due yet; the timer armed stays
    now[0] = 1600.0
    woken = []
    fed.state.subscribe(lambda what, detail: woken.append(what))
    wake()  # the timer, due
    assert woken == ["bgp"]
    with caplog.at_level(logging.INFO, logger="canopy.bgp"):
        at(fed, "hv1")  # the pass it woke
    assert not flagged(fed) and announced(fed)
    assert f"duplicate MAC {MAC} in subnet {key_of(fed)[0]}: flag cleared after 600s (bgp.duplicate_mac.recovery): " \
           "announced again, its moves counted anew" in caplog.text
    at(fed, "hv2")  # one move: counted from zero, not a duplicate
    assert announced(fed) and not flagged(fed)
    at(fed, "hv1")  # the second within the window
    assert flagged(fed) and not announced(fed)
    assert fed.later.asked[-1][0] == 600  # armed again for the new flag


def test_a_clock_set_back_delays_a_recovery_by_recovery_at_most(tmp_path, caplog):
    """Wall-clock ages (they go on across a restart): a clock set back leaves a flag set in the future; its age then
    counts from the pass that sees it (was: the recovery came as much later as the clock went back, years for a
    clock corrected by years)."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now, recovery=600)
    moved_twice(fed)
    now[0] = 1000.0 - 86400 * 365  # set back a year
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        at(fed, "hv1")
    assert flagged(fed) and "1 duplicate MAC flag(s) set later than this host's clock" in caplog.text
    assert fed.later.asked[-1][0] == 600
    assert json.loads((tmp_path / "a" / FILE_NAME).read_text())["flags"][0]["since"] == now[0]  # written, sent
    now[0] += 600
    at(fed, "hv1")
    assert not flagged(fed) and announced(fed)


def test_without_recovery_a_flag_is_permanent_until_cleared(tmp_path, caplog):
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        moved_twice(fed)
    assert "until cleared (DELETE /v1/bgp/duplicate-macs)\n" in caplog.text + "\n"
    now[0] += 10 * 86400
    at(fed, "hv1")
    assert flagged(fed) and not announced(fed) and fed.later.asked == []
    fed.clear_duplicates()
    at(fed, "hv1")
    assert announced(fed)


def test_the_warning_says_when_a_flag_clears_itself(tmp_path, caplog):
    now = [1000.0]
    fed = federation(tmp_path / "a", now, recovery=300)
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        moved_twice(fed)
    assert "until cleared (DELETE /v1/bgp/duplicate-macs) or 300s old (bgp.duplicate_mac.recovery)" in caplog.text


@pytest.mark.parametrize("value, expected", [
    ("permanent", "permanent"), ("off", "permanent"), ("false", "permanent"), ("600", 600), ("1", 1),
    ("604800", 604800)])
def test_recovery_takes_seconds_or_permanent(tmp_path, value, expected):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"bgp:\n  duplicate_mac:\n    recovery: {value}\n")  # YAML reads an unquoted off as false
    assert settings_mod.load(str(path)).bgp.duplicate_mac.recovery == expected
    assert settings_mod.defaults().bgp.duplicate_mac.recovery == "permanent"


@pytest.mark.parametrize("value", ["0", "604801", "-5", "soon", "true", "1.5", "[600]", "null"])
def test_a_bad_recovery_is_refused_naming_the_field(tmp_path, value):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"bgp:\n  duplicate_mac:\n    recovery: {value}\n")
    with pytest.raises(settings_mod.SettingsError) as refused:
        settings_mod.load(str(path))
    reason = "must not be null" if value == "null" else \
        "must be seconds (an integer from 1 to 604800), or permanent (also off)"
    assert f"canopy.yaml:3: bgp.duplicate_mac.recovery: {reason}" in str(refused.value)


# ------------------------------------------------------------------------------------ restart

def test_flags_survive_a_restart_and_their_age_goes_on(tmp_path, caplog):
    now = [1000.0]
    fed = federation(tmp_path / "a", now, recovery=600)
    moved_twice(fed)
    assert flagged(fed)
    now[0] = 1300.0  # restarted: a new process, State and Federation on the same data directory
    with caplog.at_level(logging.INFO, logger="canopy.bgp"):
        again = federation(tmp_path / "a", now, fed.state, recovery=600)
    assert flagged(again) and f"1 duplicate MAC flag(s) read from {tmp_path / 'a' / FILE_NAME}" in caplog.text
    at(again, "hv1")
    assert not announced(again)
    assert again.later.asked[0][0] == 300  # set at 1000: 300 s left
    now[0] = 1600.0
    at(again, "hv1")
    assert announced(again) and not flagged(again)
    assert not flagged(federation(tmp_path / "a", now, fed.state))  # the clearing was written too


def test_a_stop_writes_the_flags_a_pass_handed_over_and_a_restart_reads_them(tmp_path):
    """A pass hands its flags to the writer and goes on (controller/writebehind.py); the stop (Federation.stop, from
    the app's shut-down) waits for the writer: a restart after a clean stop reads the newest flags back."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    writers = []
    fed.keeper.file.spawn = writers.append  # the writer's green thread: not run by the pass
    moved_twice(fed)
    assert flagged(fed) and not (tmp_path / "a" / FILE_NAME).exists() and len(writers) == 1
    fed.keeper.file.sleep = lambda _seconds: writers and writers.pop()()  # its turn comes while the stop waits
    fed.speaker.stop = lambda: None
    fed.stop()
    assert flagged(federation(tmp_path / "a", now, fed.state))


def test_a_stop_writes_the_flags_changed_after_the_last_pass(tmp_path):
    """The app's stop kills the programming loop before BGP stops (controller/app.py ``_shut_down``): a flag cleared
    (a DELETE) or set after the last pass's ``sync`` is handed to the file by the stop itself, not left unwritten
    (a restart would read the older flags back)."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    moved_twice(fed)
    assert flagged(federation(tmp_path / "a", now, fed.state))  # written by the pass (the writer runs at once here)
    fed.clear_duplicates()  # the pass it wakes never runs: the loop is stopped
    fed.speaker.stop = lambda: None
    fed.stop()
    assert not flagged(federation(tmp_path / "a", now, fed.state))


def test_a_stop_before_any_flag_changed_writes_no_file(tmp_path):
    fed = federation(tmp_path / "a", [1000.0])
    fed.speaker.stop = lambda: None
    fed.stop()
    assert not (tmp_path / "a" / FILE_NAME).exists()


def test_passes_that_change_no_flag_write_no_file(tmp_path):
    """The file is written after a pass that changed a flag, never on every pass: a flagged MAC still flapping (a
    peer winning it and losing it again, or a loop) moves in each pass, and nothing is written."""
    fed = federation(tmp_path / "a", [1000.0], recovery=600)
    moved_twice(fed)
    path = tmp_path / "a" / FILE_NAME
    path.unlink()
    for host in ("hv2", "hv1") * 50:
        at(fed, host)
    assert flagged(fed) and not path.exists()


def test_a_flag_cleared_by_rest_stays_cleared_after_a_restart(tmp_path):
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    moved_twice(fed)
    fed.clear_duplicates()
    at(fed, "hv1")  # the pass the DELETE wakes
    assert announced(fed) and not flagged(federation(tmp_path / "a", now, fed.state))


@pytest.mark.parametrize("content", ["{not json", "[]", '{"flags": 7}', "\x00" * 10,
                                     pytest.param('{"flags": ' + "[" * 100000, id="nested-too-deep")])
def test_an_unreadable_flags_file_is_logged_and_ignored_never_a_failed_start(tmp_path, caplog, content):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / FILE_NAME).write_text(content)
    now = [1000.0]
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        fed = federation(tmp_path / "a", now)
    assert not fed.mobility.duplicates.flagged and "duplicate MAC flag" in caplog.text
    at(fed, "hv1")
    assert announced(fed)


def test_a_flags_file_that_cannot_be_written_is_logged_and_the_flags_hold_in_memory(tmp_path, caplog):
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    (tmp_path / "a" / FILE_NAME).mkdir()  # a directory where the file goes: the rename fails
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        moved_twice(fed)
    assert flagged(fed) and not announced(fed)
    assert f"duplicate MAC flags not written to {tmp_path / 'a' / FILE_NAME} (they hold in memory; tried again " \
           "in 5s or with the next change; a restart meanwhile reads the file last written)" in caplog.text
    assert [p.name for p in (tmp_path / "a").iterdir()] == [FILE_NAME]  # no part file left


def test_a_flags_write_that_failed_is_tried_again_later_without_a_new_change(tmp_path):
    """Before, a failed write counted as written: the file kept the older flags until the next change of flags, and
    a restart meanwhile read them back (a cleared flag came back). Now the writer's timer tries it again."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    (tmp_path / "a" / FILE_NAME).mkdir()
    moved_twice(fed)
    assert flagged(fed) and fed.keeper.file.behind()
    (tmp_path / "a" / FILE_NAME).rmdir()  # the fault is gone; the flags have not changed since
    version = fed.mobility.duplicates.version
    at(fed, "hv1")  # vm1 stays on hv1: no move, no flag change, no write
    assert fed.mobility.duplicates.version == version and not (tmp_path / "a" / FILE_NAME).exists()
    delay, retry = fed.keeper.file.later.asked[-1]
    assert delay == writebehind.RETRY
    retry()
    written = json.loads((tmp_path / "a" / FILE_NAME).read_text())["flags"]
    assert [(row["subnet_id"], row["mac"]) for row in written] == [key_of(fed)]
    assert not fed.keeper.file.behind() and fed.keeper.file.written == version


def test_malformed_rows_are_dropped_and_counted_the_good_ones_kept(tmp_path):
    now = [1000.0]
    good = {"subnet_id": "s1", "mac": "02:00:00:00:00:AA", "took": 3, "last_move": "away", "window": 60,
            "since": 900.5}
    bad = [{**good, "mac": "nope"}, {**good, "since": "NaN"}, {**good, "subnet_id": ""}, "row", None,
           {k: v for k, v in good.items() if k != "took"}, {**good, "since": 10 ** 400}]  # an int beyond a float
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / FILE_NAME).write_text(json.dumps({"flags": [good] + bad}))
    fed = federation(tmp_path / "a", now)
    assert fed.mobility.duplicates.rows() == [{**good, "mac": "02:00:00:00:00:aa", "took": 3.0, "window": 60.0}]
    assert fed.keeper.counts() == {"not_kept": 0, "dropped": len(bad)}


def test_a_thousand_flags_are_written_with_a_few_calls_not_a_few_per_row(tmp_path):
    """The file is written on the event loop, after a pass that changed a flag: C's JSON encoder, not json.dump's
    Python one (~170 calls a row: 1,000 flags held the loop ~20 ms). Counted in calls, not timed."""
    fed = federation(tmp_path / "a", [1000.0])
    rows = [{"subnet_id": "s", "mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", "took": 1.5,
             "last_move": "away, to 10.251.0.9", "window": 60.0, "since": 999.5} for i in range(dupkeep.KEPT)]
    profile = cProfile.Profile()
    profile.runcall(fed.keeper._write, 1, rows)
    assert json.loads((tmp_path / "a" / FILE_NAME).read_text())["flags"] == rows
    assert pstats.Stats(profile).total_calls < 100


def test_stored_flags_are_bounded_the_oldest_kept_and_the_rest_counted(tmp_path, monkeypatch, caplog):
    """A hostile peer flapping many MACs: at most KEPT flags go to the file (and the standby), those set first; the
    others hold in memory until the process ends, counted in GET /v1/bgp/peers and /metrics and logged."""
    from controller.metrics import _bgp

    monkeypatch.setattr(dupkeep, "KEPT", 3)
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    duplicates = fed.mobility.duplicates
    for i in range(5):
        now[0] += 1
        for _ in range(2):
            duplicates.moved(("s", f"02:00:00:00:01:{i:02x}"), "away, to 10.251.0.9")
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        at(fed, "hv1")
    stored = json.loads((tmp_path / "a" / FILE_NAME).read_text())["flags"]
    assert [row["mac"] for row in stored] == [f"02:00:00:00:01:{i:02x}" for i in range(3)]
    assert len(duplicates.flagged) == 5 and fed.keeper.counts()["not_kept"] == 2
    assert "2 duplicate MAC flag(s) beyond the 3 kept across a restart and sent to the HA standby" in caplog.text
    fed.speaker.peers, fed.speaker.status = list, lambda: {"announced": 0, "restarts": 0}
    assert {m.name: m.samples[0].value for m in _bgp(fed) if m.name.startswith("canopy_evpn_duplicate_mac")} == {
        "canopy_evpn_duplicate_macs": 5, "canopy_evpn_duplicate_macs_not_kept": 2,
        "canopy_evpn_duplicate_mac_flags_dropped": 0}
    (tmp_path / "a" / FILE_NAME).write_text(json.dumps({"flags": [dict(stored[0], mac=f"02:00:00:00:02:{i:02x}")
                                                                  for i in range(5)]}))
    assert len(federation(tmp_path / "a", now).mobility.duplicates.flagged) == 3  # a longer file: KEPT taken


# ------------------------------------------------------------------------------------ HA

def test_the_standby_holds_the_actives_flags_over_a_real_link_and_a_takeover_keeps_them(tmp_path):
    """The active sends its flags when they change and on each new connection; the standby holds exactly those (and
    writes them to its own file), so a takeover does not announce a MAC the active flagged, and a clear on the
    active reaches the standby, also one restarted meanwhile with the flag still in its file."""
    now = [1000.0]
    active = federation(tmp_path / "a", now)
    standby = federation(tmp_path / "b", now, active.state)  # one policy (replicated), so one subnet id
    standby.originating = False
    roles = {"a": "active", "b": "standby"}
    port_a, port_b = free_port(), free_port()

    def node_link(name, fed, port, peer_port):
        made = link(name, port, peer_port, on_message=lambda msg: fed.keeper.on_peer_message(msg, roles[name]))
        fed.keeper.link = made
        made.start()
        return made

    link_a, link_b = node_link("a", active, port_a, port_b), node_link("b", standby, port_b, port_a)
    try:
        wait_for(lambda: link_a.connected_out and link_b.connected_out, "both directions")
        at(standby, "hv1")  # its own pass: vm1 at hv1, where it stays (no move)
        moved_twice(active)  # the active flags vm1
        # (each heartbeat before made the active offer its flags, none then: the standby may have those first)
        wait_for(lambda: (standby.keeper._incoming or [[]])[0], "the active's flag at the standby")
        at(standby, "hv1")  # the pass the message woke
        assert flagged(standby) and (tmp_path / "b" / FILE_NAME).exists()
        roles.update(a="standby", b="active")  # a takeover
        standby.originating = True
        at(standby, "hv1")
        assert not announced(standby)
        roles.update(a="active", b="standby")  # back, and b restarted while a's flag is cleared
        standby.originating = False
        link_b.stop()
        active.clear_duplicates()
        at(active, "hv1")
        assert announced(active)
        restarted = federation(tmp_path / "b", now, active.state)
        restarted.originating = False
        assert flagged(restarted)  # its file still has it
        link_b = node_link("b", restarted, port_b, port_a)
        wait_for(lambda: restarted.keeper._incoming is not None, "the active's flags after the standby's restart")
        at(restarted, "hv1")
        assert not flagged(restarted) and not flagged(federation(tmp_path / "b", now, active.state))
    finally:
        link_a.stop()
        link_b.stop()


def test_a_standby_drops_malformed_flags_from_the_active_and_an_active_takes_none(tmp_path):
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    row = {"subnet_id": key_of(fed)[0], "mac": MAC, "took": 1, "last_move": "away", "window": 60, "since": 999}
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row, {"mac": 1}]}, "standby")
    at(fed, "hv1")
    assert flagged(fed) and fed.keeper.counts()["dropped"] == 1
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": []}, "active")  # two actives: never taken
    at(fed, "hv1")
    assert flagged(fed)


@pytest.mark.parametrize("message", [{"t": MESSAGE}, {"t": MESSAGE, "flags": None}, {"t": MESSAGE, "flags": {}},
                                     {"t": MESSAGE, "flags": "all"}])
def test_a_message_from_the_active_without_a_list_of_flags_leaves_the_standbys_flags(tmp_path, message):
    """Not a word on which flags the active holds (a malformed message, or another version's shape): the standby
    keeps its own (was: it held none, and a takeover announced the MACs the active had flagged)."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    row = {"subnet_id": key_of(fed)[0], "mac": MAC, "took": 1, "last_move": "away", "window": 60, "since": 999}
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row]}, "standby")
    at(fed, "hv1")
    fed.keeper.on_peer_message(message, "standby")
    at(fed, "hv1")
    assert flagged(fed) and not announced(fed) and fed.keeper.counts()["dropped"] == 1


def test_the_same_flags_sent_again_write_no_file(tmp_path):
    """The active sends its flags again on each new connection of the HA link (one that flaps reconnects every
    0.2-2 s): the standby writes its file only when they differ from those it holds."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    row = {"subnet_id": key_of(fed)[0], "mac": MAC, "took": 1, "last_move": "away", "window": 60, "since": 999}
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row]}, "standby")
    at(fed, "hv1")
    path = tmp_path / "a" / FILE_NAME
    path.unlink()
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row]}, "standby")  # a new connection
    at(fed, "hv1")
    assert flagged(fed) and not path.exists()
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [{**row, "since": 998}]}, "standby")  # a change: written
    at(fed, "hv1")
    assert json.loads(path.read_text())["flags"][0]["since"] == 998


def test_flags_the_old_active_sent_are_taken_after_a_takeover_unless_cleared_here_since(tmp_path):
    """A message taken by the pass after a takeover is still the old active's latest word; but a DELETE on the new
    active after it arrived is newer, and the pass must not bring the cleared flag back."""
    now = [1000.0]
    fed = federation(tmp_path / "a", now)
    row = {"subnet_id": key_of(fed)[0], "mac": MAC, "took": 1, "last_move": "away", "window": 60, "since": 999}
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row]}, "standby")
    at(fed, "hv1")  # as the active now: nothing changed here since it arrived
    assert flagged(fed)
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": [row]}, "standby")
    fed.clear_duplicates()  # the operator, on the node that just took over
    at(fed, "hv1")
    assert not flagged(fed) and announced(fed)


def test_the_pair_hands_the_peers_messages_to_the_flags_keeper(tmp_path):
    """controller.ha.Pair.listeners: how Federation.pair_with hears the HA peer (wired by the app)."""
    from tests.unit.test_ha_rules import rest_node

    now = [1000.0]
    fed = federation(tmp_path / "f", now)
    store, _, pair, _ = rest_node(tmp_path)
    try:
        fed.pair_with(pair)
        assert fed.keeper.link is pair.link and pair.role == "starting"
        pair._on_message({"t": MESSAGE, "flags": [{"subnet_id": key_of(fed)[0], "mac": MAC, "took": 1,
                                                   "last_move": "away", "window": 60, "since": 999}]})
        at(fed, "hv1")
        assert flagged(fed) and not announced(fed)
        sent = []
        pair.link.send = lambda msg: sent.append(msg) or True
        pair.role = "active"
        pair._on_message({"t": "hb", "role": "standby", "generation": 0, "seq": 0})
        assert sent == [{"t": MESSAGE, "flags": fed.mobility.duplicates.rows()}]
        pair._on_message({"t": "hb", "role": "standby", "generation": 0, "seq": 0})
        assert len(sent) == 1  # sent once per change and connection
        assert pair.status()["runtime"] == {"duplicate_macs": {"not_kept": 0, "dropped": 0}}  # GET /v1/ha
    finally:
        store.close()


def test_a_node_active_again_sends_its_flags_again(tmp_path):
    """Active, then standby (given the other's flags, the same as its own), then active again on the same link
    connection: it sends its flags anew (the other may have changed its own meanwhile and not sent them)."""
    fed = federation(tmp_path / "a", [1000.0])
    moved_twice(fed)
    sent = []

    class Link:
        out_epoch = 1

        def send(self, msg):
            sent.append(msg)
            return True

    fed.keeper.link = Link()
    fed.keeper.on_peer_message({"t": "hb"}, "active")
    fed.keeper.on_peer_message({"t": MESSAGE, "flags": fed.mobility.duplicates.rows()}, "standby")
    fed.originating = False
    at(fed, "hv1")
    fed.originating = True
    at(fed, "hv1")
    fed.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 2 and sent[0] == sent[1] and flagged(fed)


def test_a_standby_refuses_the_delete_the_active_replicates_it(tmp_path):
    from controller.rest import bgp as rest_bgp
    from tests.unit.test_ha_rules import rest_node

    fed = federation(tmp_path / "f", [1000.0])
    moved_twice(fed)
    store, _, pair, call = rest_node(tmp_path, extra_routes=rest_bgp.routes(fed))
    try:
        assert pair.writable()  # not the active
        status, body = call("DELETE", "/v1/bgp/duplicate-macs", None)
        assert status == 503 and body["error"]["code"] == "not_active" and flagged(fed)
    finally:
        store.close()


# ------------------------------------------------------------------------------------ SIGHUP

class UpSpeaker(BookedSpeaker):
    """ExaBGP up: the speaker takes no new bgp settings (Speaker.reconfigure)."""

    def reconfigure(self, config, check=None):
        return False


def _settings_file(tmp_path, extra=""):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"data_dir: {tmp_path}\nbgp:\n  router_id: 10.250.0.1\n{extra}"
                    "  neighbors:\n    - {address: 10.250.0.2, asn: 65002}\n")
    return str(path)


@pytest.fixture
def up(tmp_path):
    runtime.SETTINGS = resttoken.resolved(settings_mod.load(_settings_file(tmp_path)))
    fed = Federation(runtime.SETTINGS.bgp, str(tmp_path), setup_view()[0], speaker=UpSpeaker())
    runtime.FEDERATION = fed
    yield fed
    runtime.SETTINGS = runtime.FEDERATION = None


def test_sighup_applies_duplicate_mac_while_exabgp_is_up(tmp_path, up, caplog):
    woken = []
    up.state.subscribe(lambda what, detail: woken.append(what))
    with caplog.at_level(logging.INFO, logger="canopy.lifecycle"):
        lifecycle.reload(_settings_file(tmp_path, "  duplicate_mac: {max_moves: 3, recovery: 900}\n"))
    duplicates = up.mobility.duplicates
    assert (duplicates.max_moves, duplicates.window, duplicates.recovery) == (3, 180.0, 900.0)
    assert woken == ["bgp"]  # a pass: flags older than the new recovery clear now
    assert "bgp.duplicate_mac applied (max_moves 5 -> 3, recovery permanent -> 900)" in caplog.text
    assert "SIGHUP: bgp changed" not in caplog.text  # nothing else waits
    assert runtime.SETTINGS.bgp.duplicate_mac == settings_mod.DuplicateMacSettings(max_moves=3, recovery=900)


def test_sighup_applies_duplicate_mac_and_leaves_the_rest_of_bgp_for_a_restart_while_exabgp_is_up(tmp_path, up,
                                                                                                   caplog):
    with caplog.at_level(logging.INFO, logger="canopy.lifecycle"):
        lifecycle.reload(_settings_file(tmp_path, "  api_timeout: 7\n  duplicate_mac: {enabled: false}\n"))
    assert up.mobility.duplicates.enabled is False
    assert "bgp.duplicate_mac applied (enabled True -> False)" in caplog.text
    [line] = [r.getMessage() for r in caplog.records if "SIGHUP: bgp changed" in r.getMessage()]
    assert "(bgp.api_timeout changed); not applied" in line
    assert runtime.SETTINGS.bgp.api_timeout == 5 and runtime.SETTINGS.bgp.duplicate_mac.enabled is False


def test_a_fifo_at_the_flags_file_is_ignored_without_waiting_for_a_writer(tmp_path, caplog):
    """A FIFO put where the flags file goes held the controller's start until a writer came (review32d): the file
    is read only if it is a regular file, opened without waiting. A reader that blocks is released by the test
    (tests/unit/fifo.py) and the test fails."""
    (tmp_path / "a").mkdir()
    now = [1000.0]
    with caplog.at_level(logging.WARNING, logger="canopy.bgp"):
        with fifo_without_writer(tmp_path / "a" / FILE_NAME):
            fed = federation(tmp_path / "a", now)
    assert not fed.mobility.duplicates.flagged and "not a regular file" in caplog.text
    at(fed, "hv1")
    assert announced(fed)
