"""A frozen ExaBGP (SIGSTOP) is noticed by the speaker's watchdog (bgp.watchdog), against a real gobgpd: its peer
is reported down within the bound, up again with its routes intact when it resumes in time, and it is killed and
restarted (GoBGP holding Canopy's routes again) when it does not."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bgp import speakerapi
from bgp.speaker import Neighbor, Speaker, SpeakerConfig
from bgp.watchdog import PROBE_EVERY
from tests.harness.wait import wait_until
from tests.integration.gobgp import GoBGPNeighbor, start_gobgpd
from tests.integration.test_bgp_speaker import (CANOPY_AS, CANOPY_IP, GOBGP_AS, GOBGP_IP, TYPE2, TYPE3, TYPE5, WAIT,
                                                 needs_gobgp, nlri_types, peer, table)

pytestmark = pytest.mark.integration
API_TIMEOUT = 2.0  # seconds: the peers reported down (well inside GoBGP's hold time of 9 s)
SHORT_HOLD = 3  # seconds: the hold time of the test frozen past it (the session dropped by GoBGP 3-4 s in, not 9-10)
SLACK = 5.0  # seconds the speaker's thread may take beyond the bound on a loaded machine (it turns every 0.25 s)


def lab(tmp_path, restart_after: float, hold_time: int = 9):
    gobgp = start_gobgpd(tmp_path / "gobgpd", GOBGP_IP, GOBGP_AS, (GoBGPNeighbor(CANOPY_IP, CANOPY_AS),))
    config = SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"), neighbors=(
        Neighbor(GOBGP_IP, GOBGP_AS, port=gobgp.port, local_address=CANOPY_IP, hold_time=hold_time),),
        api_timeout=API_TIMEOUT, api_restart_after=restart_after)
    return gobgp, Speaker(config)


def established_with_routes(gobgp, speaker) -> int:
    """Start the speaker with three routes; once GoBGP holds them and the peer is up: ExaBGP's pid."""
    speaker.set_desired(table(TYPE2, TYPE3, TYPE5))
    speaker.start()
    wait_until(lambda: nlri_types(gobgp) == [2, 3, 5], timeout=WAIT, what="routes in GoBGP")
    wait_until(lambda: peer(speaker)["state"] == "up" and speaker.announced() == table(TYPE2, TYPE3, TYPE5),
               timeout=WAIT, what="peer up, routes acknowledged")
    return speaker.status()["pid"]


def frozen_until_reported_down(speaker, pid: int) -> float:
    """SIGSTOP ExaBGP; seconds until the speaker reports its peer down (asserted within the bound)."""
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    wait_until(lambda: peer(speaker)["state"] == "down", timeout=WAIT, what="peer reported down")
    took = time.monotonic() - stopped
    assert took <= API_TIMEOUT + PROBE_EVERY + SLACK
    row, status = peer(speaker), speaker.status()
    assert "has not answered its API" in row["last_error"] and row["sent"] == 0 and row["uptime"] is None
    assert status["api_silent_for"] is not None and status["running"]
    return took


@needs_gobgp
def test_frozen_exabgp_resumed_in_time_is_up_again_not_restarted(tmp_path, caplog):
    gobgp, speaker = lab(tmp_path, restart_after=30.0)
    try:
        pid = established_with_routes(gobgp, speaker)
        ups = gobgp.log_count("Peer Up")
        frozen_until_reported_down(speaker, pid)
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="peer reported up again")
        status = speaker.status()
        assert status["restarts"] == 0 and status["pid"] == pid and status["api_silent_for"] is None
        assert gobgp.log_count("Peer Up") == ups  # the session lasted: resumed inside GoBGP's hold time
        assert nlri_types(gobgp) == [2, 3, 5] and speaker.announced() == table(TYPE2, TYPE3, TYPE5)
        assert any("answers its API again" in r.getMessage() for r in caplog.records)
    finally:
        speaker.stop()
        gobgp.stop()


@needs_gobgp
def test_frozen_past_the_hold_time_the_peer_is_reported_up_only_with_its_new_session(tmp_path, caplog, monkeypatch):
    """Frozen longer than the hold time (SHORT_HOLD: BGP's least, so that GoBGP drops it soon; the other tests keep 9 s,
    longer than the freezes they resume from), the session is gone (GoBGP dropped it). At SIGCONT ExaBGP answers the
    lines it had read before it runs its peers and reports the drop; the speaker reports the peer down until ExaBGP
    has answered one more probe, so no "up" it reports after the resume is the session from before the freeze: every
    one is a session that came up after SIGCONT (its uptime began then). Looked at after every read of the speaker
    from SIGCONT on. ExaBGP's answer and the drop it reports 1 ms later usually come in one read, which hid the stale
    "up" from a test that looked only at on_change: from SIGCONT the speaker reads at most one line a turn (5 bytes,
    "done" and its newline), so the answer is handled, and the row looked at, before the drop is read."""
    gobgp, speaker = lab(tmp_path, restart_after=60.0, hold_time=SHORT_HOLD)
    up_since, resumed = [], []  # when the session of each "up" row read after SIGCONT came up; when SIGCONT was sent
    read = speaker._read

    def read_and_look():
        read()
        row = peer(speaker)
        if resumed and row["state"] == "up":
            up_since.append(time.monotonic() - row["uptime"])  # at or after the moment the session came up

    speaker._read = read_and_look
    try:
        pid = established_with_routes(gobgp, speaker)
        ups = gobgp.log_count("Peer Up")
        frozen_until_reported_down(speaker, pid)
        wait_until(lambda: not gobgp.established(CANOPY_IP), timeout=WAIT, what="GoBGP dropped the session")
        monkeypatch.setattr(speakerapi, "READ_CHUNK", len("done\n"))
        monkeypatch.setattr(speakerapi, "READ_BURST", len("done\n"))
        resumed.append(time.monotonic())
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="peer up again")
        wait_until(lambda: gobgp.log_count("Peer Up") > ups, timeout=WAIT, what="GoBGP's new session")
        monkeypatch.undo()
        assert up_since, "no read after the resume saw the peer up"
        stale = [resumed[0] - began for began in up_since if began < resumed[0]]
        assert not stale, (f"{len(stale)} read(s) saw the peer up with the session from before the freeze (up "
                           f"{max(stale):.1f} s before SIGCONT)")
        assert speaker.status()["restarts"] == 0 and speaker.status()["pid"] == pid
        wait_until(lambda: nlri_types(gobgp) == [2, 3, 5], timeout=WAIT, what="Canopy's routes in GoBGP again")
        messages = [r.getMessage() for r in caplog.records]
        assert any("its peers stay reported down until it answers one more command" in m for m in messages)
        assert any("its peers are reported as it says" in m for m in messages)
    finally:
        speaker.stop()
        gobgp.stop()


@needs_gobgp
def test_exabgp_kept_frozen_is_killed_restarted_and_routes_sent_again(tmp_path, caplog):
    gobgp, speaker = lab(tmp_path, restart_after=6.0)
    try:
        pid = established_with_routes(gobgp, speaker)
        frozen_until_reported_down(speaker, pid)
        wait_until(lambda: speaker.status()["restarts"] == 1, timeout=WAIT, what="ExaBGP restarted")
        status = wait_until(lambda: (s := speaker.status())["api_connected"] and s, timeout=WAIT, what="API again")
        assert status["pid"] != pid and "did not answer its API" in status["last_error"]
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=WAIT, what="the frozen ExaBGP gone")
        wait_until(lambda: gobgp.established(CANOPY_IP) and nlri_types(gobgp) == [2, 3, 5], timeout=WAIT,
                   what="GoBGP holds Canopy's routes again")
        wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="peer up")
        assert speaker.announced() == table(TYPE2, TYPE3, TYPE5)
        messages = [r.getMessage() for r in caplog.records]
        assert any("killing it to restart it" in m for m in messages)
    finally:
        speaker.stop()
        gobgp.stop()
