"""The speaker's waits on ExaBGP's exit count elapsed time (bgp.speakerproc.wait_exit): under ryu-manager Popen is
eventlet's green one, whose wait(timeout) timed the timeout with the wall clock (review38b)."""

from __future__ import annotations

import logging
import signal
import sys

import pytest

eventlet_time = pytest.importorskip("eventlet.green.time")
green_subprocess = pytest.importorskip("eventlet.green.subprocess")

from bgp import speakerproc  # noqa: E402

# A child that takes SIGTERM as ExaBGP does: it exits by itself, a little later (its own clean-up).
CHILD = ("import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), sys.exit(0)))\n"
         "print('ready', flush=True)\n"
         "time.sleep(60)\n")


def stepped_forward(monkeypatch, seconds: float) -> None:
    """The wall clock green Popen.wait reads (eventlet.green.time.time) stepped ``seconds`` forward after its first
    read: as NTP or an operator stepping the host's clock while the speaker waits."""
    real, reads = eventlet_time.time, []

    def time_():
        reads.append(1)
        return real() + (seconds if len(reads) > 1 else 0.0)

    monkeypatch.setattr(eventlet_time, "time", time_)


def test_a_wall_clock_stepped_forward_while_exabgp_stops_does_not_cut_its_sigterm_grace_short(monkeypatch):
    proc = green_subprocess.Popen([sys.executable, "-c", CHILD], stdout=green_subprocess.PIPE,
                                  start_new_session=True)
    try:
        assert proc.stdout.readline() == b"ready\n"
        stepped_forward(monkeypatch, 600.0)
        speakerproc.terminate_group(proc, 5.0, logging.getLogger("test"))
        assert proc.wait() == 0, "SIGKILLed: the wall clock's step ended SIGTERM's grace at once"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_wait_exit_answers_the_status_and_raises_when_the_time_is_over():
    proc = green_subprocess.Popen([sys.executable, "-c", CHILD], stdout=green_subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        with pytest.raises(green_subprocess.TimeoutExpired):
            speakerproc.wait_exit(proc, 0.05)
        proc.send_signal(signal.SIGTERM)
        assert speakerproc.wait_exit(proc, 30.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
