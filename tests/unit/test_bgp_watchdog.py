"""bgp.watchdog.ApiWatchdog's timing, on an injected clock (no wall clock), and RouteBook's probe lines."""

from __future__ import annotations

import pytest

from bgp.routebook import RouteBook
from bgp.routes import InclusiveMulticastRoute
from bgp.watchdog import OK, PROBE, PROBE_EVERY, PROBE_NOW, RESTART, RESTART_MAX, SILENT, ApiWatchdog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def watchdog(timeout=5.0, restart_after=30.0):
    clock = Clock()
    dog = ApiWatchdog(timeout, restart_after, clock=clock)
    dog.connected()
    return dog, clock


def pause(dog: ApiWatchdog, clock: Clock, seconds: float) -> None:
    """A pause of the speaker's own of ``seconds`` (its pacer gave the event loop a turn)."""
    dog.pause_begins()
    clock.now += seconds
    dog.pause_ends()


def test_nothing_is_watched_before_the_api_connects():
    dog = ApiWatchdog(clock=Clock())
    assert dog.check(waiting=True) == OK and dog.check(waiting=False) == OK


def test_an_idle_exabgp_is_probed_every_probe_interval():
    dog, clock = watchdog()
    assert dog.check(waiting=False) == OK
    clock.now += PROBE_EVERY
    assert dog.check(waiting=False) == PROBE_NOW
    dog.probed()
    clock.now += 0.1
    assert dog.acknowledged(waiting=False) is False
    clock.now += PROBE_EVERY - 0.01
    assert dog.check(waiting=False) == OK
    clock.now += 0.01
    assert dog.check(waiting=False) == PROBE_NOW


def test_unanswered_probe_is_silent_after_the_timeout_once_then_restart():
    dog, clock = watchdog(timeout=5.0, restart_after=30.0)
    clock.now += PROBE_EVERY
    dog.probed()
    clock.now += 4.99
    assert dog.check(waiting=True) == OK and dog.silent_for() is None
    clock.now += 0.01
    assert dog.check(waiting=True) == SILENT and dog.silent and dog.silent_for() == 5.0
    clock.now += 1
    assert dog.check(waiting=True) == OK  # reported once
    clock.now += 23.99
    assert dog.check(waiting=True) == OK
    clock.now += 0.01
    assert dog.check(waiting=True) == RESTART
    assert not dog.silent and dog.check(waiting=True) == OK  # disarmed until the next ExaBGP connects


def test_an_answer_before_the_restart_ends_the_silence():
    dog, clock = watchdog()
    dog.probed()
    clock.now += 10
    assert dog.check(waiting=True) == SILENT
    assert dog.acknowledged(waiting=False) is True
    assert not dog.silent and dog.silent_for() is None
    clock.now += 25
    assert dog.check(waiting=False) == PROBE_NOW  # idle again: probed, never restarted


def test_a_busy_exabgp_that_keeps_acknowledging_is_never_silent():
    """A 10,000-route burst: lines unacknowledged for a minute in all, but an acknowledgement every 0.5 s."""
    dog, clock = watchdog(timeout=5.0)
    for _ in range(120):
        clock.now += 0.5
        assert dog.check(waiting=True) == OK
        assert dog.acknowledged(waiting=True) is False
    assert dog.silent_for() is None


def test_silence_counts_from_the_first_command_after_an_idle_stretch():
    dog, clock = watchdog(timeout=5.0)
    clock.now += 0.5
    assert dog.check(waiting=False) == OK
    clock.now += 0.4  # commands queued now, long after the last acknowledgement
    assert dog.check(waiting=True) == OK
    clock.now += 4.99
    assert dog.check(waiting=True) == OK
    clock.now += 0.01
    assert dog.check(waiting=True) == SILENT


def test_restarts_that_do_not_help_back_off_up_to_the_maximum():
    dog, clock = watchdog(timeout=5.0, restart_after=30.0)
    bounds = []
    for _ in range(6):
        dog.connected()
        assert dog.check(waiting=True) == OK
        bounds.append(dog.restart_bound())
        clock.now += dog.restart_bound()
        assert dog.check(waiting=True) == RESTART
    assert bounds == [30.0, 60.0, 120.0, 240.0, RESTART_MAX, RESTART_MAX]
    dog.connected()
    dog.acknowledged(waiting=False)
    assert dog.restart_bound() == 30.0  # one that answered resets it


def test_disconnect_forgets_the_silence():
    dog, clock = watchdog()
    dog.probed()
    clock.now += 6
    assert dog.check(waiting=True) == SILENT
    dog.disconnected()
    assert not dog.silent and dog.check(waiting=True) == OK


def test_routebook_probe_is_acknowledged_in_order_and_changes_nothing():
    route = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
    book = RouteBook()
    book.connected = True
    sent = book.announce({route.key: route})
    assert book.probe(PROBE) == PROBE and len(sent) == 1 and len(book.pending) == 2
    assert book.handle_line("done") is False  # the announce's
    assert book.announced == {route.key: route} and book.acks == 1
    assert book.handle_line("error") is False  # the probe's: no route refused, no exception
    assert book.failed == {} and not book.pending and book.acks == 2


def test_the_probe_is_the_command_the_extension_registers():
    from bgp import exabgp_ext

    assert PROBE == exabgp_ext.PING


def test_a_silent_exabgp_shows_its_peers_down_in_rest_status_and_metrics(tmp_path):
    """Speaker.peers() (GET /v1/bgp/peers, /metrics) and /v1/status's bgp part, from a real Speaker (not started)
    whose watchdog runs on an injected clock."""
    from bgp.speaker import Neighbor, Speaker, SpeakerConfig
    from controller.metrics import _bgp
    from controller.rest.bgp import status_part
    from tests.unit.helpers import FederationStandIn

    speaker = Speaker(SpeakerConfig(asn=65000, router_id="192.0.2.9", workdir=str(tmp_path),
                                    neighbors=(Neighbor("192.0.2.1", 65001),)))
    speaker._book.peers["192.0.2.1"].change("up")
    speaker._watchdog, clock = watchdog(timeout=5.0)
    federation = FederationStandIn(speaker, speaker.peers)
    assert status_part(federation) == {"peers": {"192.0.2.1": "up"}, "api_silent_for": None, "restarts": 0,
                                        "failure": None}
    speaker._watchdog.probed()
    clock.now += 7
    assert speaker._watchdog.check(waiting=True) == SILENT
    assert status_part(federation) == {"peers": {"192.0.2.1": "down"}, "api_silent_for": 7.0, "restarts": 0,
                                        "failure": None}
    [row] = speaker.peers()
    assert row["last_error"] == "exabgp has not answered its API for 7s" and row["uptime"] is None
    [session_up] = [metric for metric in _bgp(federation) if metric.name == "canopy_bgp_session_up"]
    assert [(sample.labels["neighbor"], sample.value) for sample in session_up.samples] == [("192.0.2.1", 0)]
    speaker._watchdog.acknowledged(waiting=False)
    assert status_part(federation)["peers"] == {"192.0.2.1": "up"}


def test_an_exabgp_whose_api_never_connects_is_restarted_after_the_restart_bound():
    """ExaBGP started but its API relay never connected (hung before loading the API process): it is killed once
    the restart bound has passed since its start, that bound doubling while restarts do not help."""
    clock = Clock()
    dog = ApiWatchdog(5.0, 30.0, clock=clock)
    dog.started()
    clock.now += 29.9
    assert not dog.unconnected()
    clock.now += 0.1
    assert dog.unconnected() and not dog.unconnected()  # once: the restart follows
    dog.started()
    clock.now += 59.9
    assert not dog.unconnected()
    clock.now += 0.1
    assert dog.unconnected()
    dog.started()
    dog.connected()
    clock.now += RESTART_MAX
    assert not dog.unconnected()  # connected: the API watch (check) takes over


def test_the_speaker_kills_an_exabgp_whose_api_never_connected(tmp_path):
    """A real Speaker (not started) with a real child process standing in for an ExaBGP whose relay never connects:
    its process group is killed, and its exit is reported as why."""
    import subprocess
    import sys

    from bgp.speaker import Neighbor, Speaker, SpeakerConfig

    speaker = Speaker(SpeakerConfig(asn=65000, router_id="192.0.2.9", workdir=str(tmp_path),
                                    neighbors=(Neighbor("192.0.2.1", 65001),)))
    clock = Clock()
    speaker._watchdog = ApiWatchdog(5.0, 30.0, clock=clock)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        speaker._proc = child
        speaker._watchdog.started()
        clock.now += 29
        speaker._watch()
        assert child.poll() is None
        clock.now += 1
        speaker._watch()
        assert child.wait(timeout=10) == -9
        assert speaker.status()["last_error"].startswith("exabgp: its API relay never connected; killed")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_after_a_silent_spell_the_peers_stay_down_until_exabgp_has_had_its_peers_turn(tmp_path):
    """ExaBGP 5.0.15 resumed (SIGCONT) after its peer's hold time answers the lines it had read before it runs its
    peers: against GoBGP, "done" came, then 1 ms later the state "down" (notification received (4,0)). The
    speaker must not report the peer "up" from its state before the spell in between: it stays down until ExaBGP
    answers a probe sent after that "done". Here the relay's end of the API socket is one end of a socketpair, fed
    ExaBGP's lines in that order, one read each; the watchdog runs on an injected clock."""
    import socket

    from bgp.speaker import Neighbor, Speaker, SpeakerConfig
    from tests.unit.test_speaker import PEER, state_line

    speaker = Speaker(SpeakerConfig(asn=65000, router_id="192.0.2.9", workdir=str(tmp_path),
                                    neighbors=(Neighbor(PEER, 65001),)))
    ours, exabgp = socket.socketpair()
    ours.setblocking(False)
    speaker._conn, speaker._watchdog = ours, watchdog()[0]
    clock = speaker._watchdog.clock
    speaker._book.attach()

    def exabgp_says(*lines):
        exabgp.sendall("".join(line + "\n" for line in lines).encode())
        speaker._read()
        return speaker.peers()[0]

    assert exabgp_says(state_line("up"))["state"] == "up"
    with speaker._lock:
        speaker._queue([speaker._book.probe(PROBE)])
        speaker._watchdog.probed()
    speaker._outbuf.clear()  # "written"; frozen: never answered
    clock.now += 6
    assert speaker._watchdog.check(waiting=True) == SILENT and speaker.peers()[0]["state"] == "down"

    row = exabgp_says("done")  # SIGCONT: the probe it had read is answered first
    assert row["state"] == "down" and "waiting for it to report its peers" in row["last_error"], row
    assert speaker.status()["api_resuming"] and bytes(speaker._outbuf) == (PROBE + "\n").encode()
    row = exabgp_says(state_line("down", reason="notification received (4,0)"))  # its peers' turn
    assert row["state"] == "down" and speaker.status()["api_resuming"]
    row = exabgp_says("done")  # the probe sent after it answered again
    assert (row["state"], row["last_error"]) == ("down", "notification received (4,0)") and not (
        speaker.status()["api_resuming"])
    assert exabgp_says(state_line("up"))["state"] == "up"  # re-established: reported as ExaBGP says
    ours.close()
    exabgp.close()


def test_a_resumption_whose_probe_is_not_answered_is_silent_again():
    dog, clock = watchdog(timeout=5.0)
    dog.probed()
    clock.now += 6
    assert dog.check(waiting=True) == SILENT and dog.acknowledged(waiting=False)
    dog.probed()
    dog.resumed(mark=2)
    assert dog.resuming and dog.why_down().startswith("exabgp answers its API again")
    assert not dog.settled(acks=1)
    clock.now += 5
    assert dog.check(waiting=True) == SILENT and dog.why_down() == "exabgp has not answered its API for 5s"
    assert dog.settled(acks=2) and not dog.resuming


def test_the_longest_wait_leaves_out_the_speakers_own_pauses():
    """Acknowledgements 0.1 s apart, with a pause of the speaker's own of 0.5 s (its pacer gave the event loop a turn)
    inside one of those waits: the longest wait is 0.1 s, not 0.6; one that truly took 0.3 s counts whole. The longest
    quiet (real time) is 0.6 s."""
    dog, clock = watchdog()
    dog.probed()
    clock.now += 0.1
    dog.acknowledged(waiting=True)
    pause(dog, clock, 0.5)
    clock.now += 0.1
    dog.acknowledged(waiting=True)
    assert dog.longest_wait == pytest.approx(0.1)
    clock.now += 0.3
    dog.acknowledged(waiting=False)
    assert dog.longest_wait == pytest.approx(0.3) and dog.longest_quiet == pytest.approx(0.6)
    pause(dog, clock, 2.0)  # paused while nothing was waited for: no wait begun then is shortened by it
    assert dog.check(waiting=True) == OK
    clock.now += 0.2
    dog.acknowledged(waiting=False)
    assert dog.longest_wait == pytest.approx(0.3) and dog.longest_quiet == pytest.approx(0.6)


def test_the_speakers_own_pauses_are_no_silence_of_exabgps():
    """The speaker handling a burst of ExaBGP's lines pauses between runs (its pacer gives the event loop a turn); an
    acknowledgement written meanwhile waits unread. Those pauses counted as silence: 6 s of them under load reported
    the peers down (``timeout`` 5 s), 31 s killed ExaBGP. Only ExaBGP's own silence counts now."""
    dog, clock = watchdog(timeout=5.0, restart_after=30.0)
    dog.probed()
    for _ in range(32):  # (binary fractions: the clock's sums are exact)
        clock.now += 0.125
        pause(dog, clock, 0.875)
        assert dog.check(waiting=True) == OK  # 4 s of its own silence
    clock.now += 0.875
    assert dog.check(waiting=True) == OK and dog.silent_for() is None
    clock.now += 0.125
    assert dog.check(waiting=True) == SILENT and dog.silent_for() == pytest.approx(5.0)
    pause(dog, clock, 2.0)
    assert dog.silent_for() == pytest.approx(5.0)  # (``api_silent_for``: ExaBGP's silence, the pause not in it)
    clock.now += 25.0
    assert dog.check(waiting=True) == RESTART


def test_a_pause_before_a_wait_began_does_not_shorten_it():
    dog, clock = watchdog(timeout=5.0)
    pause(dog, clock, 10.0)  # nothing waited for then
    dog.probed()
    clock.now += 5.0
    assert dog.check(waiting=True) == SILENT


def test_a_wait_begun_during_a_pause_leaves_out_only_the_rest_of_it():
    dog, clock = watchdog(timeout=5.0)
    dog.pause_begins()
    clock.now += 10.0
    dog.probed()  # (a probe sent by another thread than the pausing one)
    clock.now += 1.0
    dog.pause_ends()
    clock.now += 4.9
    assert dog.check(waiting=True) == OK
    clock.now += 0.1
    assert dog.check(waiting=True) == SILENT and dog.silent_for() == pytest.approx(5.0)


def test_a_pause_still_going_on_is_no_silence_to_whoever_asks_during_it():
    """The speaker's pause is the event loop's turn: others ask the watchdog then (``api_silent_for`` in
    ``GET /v1/status``, the peers' ``last_error``). Before stop 50 the pause counted as ExaBGP's silence until it ended:
    a check 1 s into it after 4.5 s of ExaBGP's silence said SILENT, ``silent_for`` said 7 s instead of 5."""
    dog, clock = watchdog(timeout=5.0, restart_after=30.0)
    dog.probed()
    clock.now += 4.5
    dog.pause_begins()
    clock.now += 1.0
    assert dog.check(waiting=True) == OK and dog.silent_for() is None
    dog.pause_ends()
    clock.now += 0.5
    assert dog.check(waiting=True) == SILENT and dog.silent_for() == pytest.approx(5.0)
    dog.pause_begins()
    clock.now += 2.0
    assert dog.silent_for() == pytest.approx(5.0) and dog.why_down() == "exabgp has not answered its API for 5s"
    dog.pause_ends()
    assert dog.silent_for() == pytest.approx(5.0)


def test_an_exabgp_that_writes_but_never_answers_is_still_silent_and_restarted():
    """A wedged ExaBGP (not reading its API) whose peers keep sending: the speaker handles their updates in runs,
    pausing between them for the event loop (99% of the time under load), and no acknowledgement comes. The pauses
    left out whole, its silence grew 0.01 s a second: reported after ~500 s, killed after ~3,000. A wait counts at
    least an eighth of real time (``PAUSES_AT_MOST``): silent after 40 s, restarted after 240 s."""
    dog, clock = watchdog(timeout=5.0, restart_after=30.0)
    dog.probed()
    verdicts = []
    for _ in range(240):
        clock.now += 0.01
        pause(dog, clock, 0.99)
        verdicts.append(dog.check(waiting=True))
    assert verdicts.index(SILENT) == 39 and verdicts[-1] == RESTART, verdicts
