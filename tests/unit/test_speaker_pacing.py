"""The speaker's thread handles a burst of ExaBGP's lines in runs with pauses between (bgp/speaker.py ``_handle``):
it shares the controller's event loop (a green thread under ryu-manager). Counted, not timed (tests/bytecodes.py)."""

from __future__ import annotations

import socket

from bgp.routes import MacIpRoute
from bgp.speaker import Neighbor, Speaker, SpeakerConfig
from bgp.speakerapi import HANDLE_BYTES, READ_BURST
from controller.pacer import Pacer
from tests.bytecodes import Bytecodes
from tests.unit.test_routebook import PEER, open_message, state, update


def _routes(count: int) -> list:
    return [MacIpRoute(rd="65001:100", mac="52:54:00:00:%02x:%02x" % (i >> 8, i & 255), ip="10.1.%d.%d" % (i >> 8,
                       i & 255), l2_vni=5001, l3_vni=9001, next_hop="192.0.2.1", router_mac="02:00:00:00:00:01",
                       route_targets=("65001:5001",)) for i in range(count)]


def _updates() -> bytes:
    """READ_BURST bytes of one-route UPDATEs, as GoBGP sends them (the last cut). Made once for the runs compared: an
    UPDATE's line holds ExaBGP's time, whose length varies, and so does how many whole lines READ_BURST holds."""
    return b"".join(update(route).encode() + b"\n" for route in _routes(600))[:READ_BURST]


def _burst(tmp_path, every: int | None, burst: bytes):
    """(longest stretch in bytecodes, pauses, routes received) of the speaker reading ``burst``, its pacer pausing
    every ``every`` bytes of lines (None: never)."""
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                           workdir=str(tmp_path))
    speaker = Speaker(config)
    speaker._book.handle_line(open_message())
    speaker._book.handle_line(state("up"))
    counter, stretches = Bytecodes(), []

    def pause():
        stretches.append(counter.count)
        counter.count = 0

    speaker.pacer = Pacer(pause if every else None, every or HANDLE_BYTES)
    ours, relay_end = socket.socketpair()
    with ours, relay_end:
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        relay_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        relay_end.sendall(burst)
        speaker._conn = ours
        counter.run(speaker._read)
    return max(stretches + [counter.count]), len(stretches), len(speaker._book.received)


def test_a_burst_of_updates_is_handled_in_runs_of_handle_bytes(tmp_path):
    """256 KiB of one-route UPDATEs (~370 lines, ~2,300 bytecodes each): one stretch of ~850,000 bytecodes
    handled at once (stop 45); a run of HANDLE_BYTES (16 KiB, ~23 lines) between two pauses, ~55,000. Every route
    is received either way."""
    burst = _updates()
    whole, _, received = _burst(tmp_path, None, burst)
    paced, pauses, received_paced = _burst(tmp_path, HANDLE_BYTES, burst)
    assert received == received_paced > 300
    assert pauses >= READ_BURST // HANDLE_BYTES - 1
    assert paced < 80_000 < 10 * paced < whole, (paced, whole)


def test_the_speakers_own_pauses_are_no_wait_for_exabgp(tmp_path):
    """Six acknowledgements read at once, handled two a run with a pause of the speaker's own between runs (a second
    each on the watchdog's clock, its only move): ExaBGP waited for none of that (``api_longest_wait`` 0, not 1)."""
    from bgp.watchdog import PROBE
    from tests.unit.test_bgp_watchdog import watchdog

    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                                    workdir=str(tmp_path)))
    speaker._watchdog, clock = watchdog()
    speaker._book.attach()

    def pause():
        clock.now += 1.0

    speaker.pacer = Pacer(pause, 2 * len(b"done"))
    for _ in range(6):
        speaker._book.probe(PROBE)
    speaker._watchdog.probed()
    speaker._handle([b"done"] * 6)
    assert speaker.pacer.pauses >= 2 and speaker._book.acks == 6 and not speaker._book.pending
    assert speaker.status()["api_longest_wait"] == 0.0
    assert speaker.status()["api_longest_quiet"] == 1.0  # (real time: a pause in it)


def _probing(tmp_path):
    """(a speaker whose peer is up and whose probe waits for its acknowledgement, the clock of its watchdog: timeout
    5 s)."""
    from bgp.watchdog import PROBE
    from tests.unit.test_bgp_watchdog import watchdog

    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                                    workdir=str(tmp_path)))
    speaker._watchdog, clock = watchdog(timeout=5.0)
    speaker._book.attach()
    speaker._book.handle_line(open_message())
    speaker._book.handle_line(state("up"))
    speaker._book.probe(PROBE)
    speaker._watchdog.probed()
    return speaker, clock


def test_a_burst_handled_with_pauses_longer_than_the_timeout_is_no_silence(tmp_path):
    """A burst of received UPDATEs handled in runs, a pause of 1 s of the speaker's own between runs (the event loop
    busy), while a probe waits: its acknowledgement is behind the burst, unread. The peers are not reported down when
    the pauses add up to more than ``api_timeout`` (5 s): ExaBGP was not silent, the speaker was not reading."""
    from bgp.watchdog import OK

    speaker, clock = _probing(tmp_path)

    def pause():
        clock.now += 1.0

    speaker.pacer = Pacer(pause, HANDLE_BYTES)
    speaker._handle(_updates().split(b"\n")[:-1])
    assert speaker.pacer.pauses > 5 and speaker._book.pending
    assert speaker._watchdog.check(waiting=True) == OK
    assert speaker.peers()[0]["state"] == "up"


def test_a_pause_going_on_is_no_silence_to_whoever_asks_during_it(tmp_path):
    """ExaBGP reported silent after 5 s; then a burst of its peers' updates handled in runs, a pause of 1 s of the
    speaker's own between runs. What others read during a pause (``GET /v1/status``'s ``api_silent_for``, the peers'
    ``last_error``) is ExaBGP's silence, 5 s, not 6, 7, ... (before stop 50 the pause going on counted)."""
    from bgp.watchdog import SILENT

    speaker, clock = _probing(tmp_path)
    clock.now += 5.0
    assert speaker._watchdog.check(waiting=True) == SILENT
    seen = []

    def pause():
        clock.now += 1.0
        seen.append((speaker.status()["api_silent_for"], speaker.peers()[0]["last_error"]))

    speaker.pacer = Pacer(pause, HANDLE_BYTES)
    speaker._handle(_updates().split(b"\n")[:-1])
    assert len(seen) > 5 and speaker._book.pending
    assert set(seen) == {(5.0, "exabgp has not answered its API for 5s")}, seen


def test_a_pause_that_raises_ends_and_exabgps_silence_after_it_counts_whole(tmp_path):
    """The speaker's pause raised (its green thread killed in it, a bug in the pacer): the pause ends with it. Left
    going on, it hid ExaBGP's silence from then on (left out of up to ``PAUSES_AT_MOST`` of the wait: peers reported
    down after 40 s, not 5)."""
    import pytest

    from bgp.watchdog import OK, SILENT

    speaker, clock = _probing(tmp_path)

    def pause():
        clock.now += 1.0
        raise RuntimeError("the pause failed")

    speaker.pacer = Pacer(pause, HANDLE_BYTES)
    with pytest.raises(RuntimeError):
        speaker._handle(_updates().split(b"\n")[:-1])
    assert speaker._book.pending
    clock.now += 4.9
    assert speaker._watchdog.check(waiting=True) == OK
    clock.now += 0.1
    assert speaker._watchdog.check(waiting=True) == SILENT and speaker.status()["api_silent_for"] == 5.0
