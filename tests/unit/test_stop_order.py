"""What runs while the controller stops (controller/app.py ``_shut_down``): the programming loop is stopped before BGP
and the switch sessions are. The stop of BGP waits for the duplicate MAC flags' last write (``Federation.stop``,
controller/writebehind.py ``WriteBehind.close``: up to a few seconds, giving other green threads their turns); before,
the loop still ran then and its passes handed routes to the speaker already stopped, and flows to switch sessions
about to be told to stop.

The loop here is a green thread of the test's that makes a pass (a real ``Federation.publish``, then a hand-out to
every switch's reconciler) each turn it gets; the speaker and the reconcilers record every use after their stop."""

from __future__ import annotations

from types import SimpleNamespace

import eventlet

from controller import app
from tests.unit.test_duplicate_macs import at, federation, flagged, moved_twice
from tests.unit.test_evpn_early_withdraw import BookedSpeaker

from .helpers import Controller


class StoppedSpeaker(BookedSpeaker):
    """A speaker without a process that records each route handed to it after its stop."""

    def __init__(self):
        super().__init__()
        self.stopped, self.late = False, []

    def stop(self):
        self.stopped = True

    def set_desired(self, routes):
        if self.stopped:
            self.late.append("set_desired")
        super().set_desired(routes)

    def announce(self, routes):
        if self.stopped:
            self.late.append("announce")
        super().announce(routes)

    def withdraw(self, keys):
        if self.stopped:
            self.late.append("withdraw")
        super().withdraw(keys)


class Reconciler:
    """A switch's reconciler that records each desired state handed to it after its stop."""

    def __init__(self):
        self.stopped, self.late = False, 0

    def stop(self):
        self.stopped = True

    def push(self):
        self.late += self.stopped


def test_the_programming_loop_stops_before_bgp_and_the_switches_while_the_flags_last_write_waits(tmp_path):
    ctl = Controller(tmp_path / "ctl")
    fed = federation(tmp_path / "a", [1000.0])
    fed.speaker = speaker = StoppedSpeaker()
    flags = fed.keeper.file
    writers = []
    flags.spawn = writers.append  # the writer's green thread: run below, while the stop waits
    moved_twice(fed)  # a duplicate MAC flagged: its flags wait to be written
    assert flagged(fed) and len(writers) == 1

    def slow_write():  # the write takes a few turns of the loop (its fsyncs in an OS thread)
        for _ in range(5):
            eventlet.sleep(0)
        writers.pop()()

    flags.sleep = lambda _seconds: writers and slow_write() or eventlet.sleep(0)
    rec = Reconciler()
    passes = []

    def program_loop():  # a pass on every turn: the EVPN routes, then the switches
        while True:
            at(fed, ("hv1", "hv2")[len(passes) % 2])
            rec.push()
            passes.append(1)
            eventlet.sleep(0)

    worker = eventlet.spawn(program_loop)
    eventlet.sleep(0)
    assert passes  # the loop runs
    glue = SimpleNamespace(hold=SimpleNamespace(close=lambda: None), rest=SimpleNamespace(stop=lambda: None),
                           pair=None, federation=fed, ovsdb=SimpleNamespace(stop=lambda: None), reconcilers={1: rec},
                           _worker=worker, store=ctl.store, stretches=None, stall=None, state=SimpleNamespace(),
                           probes=SimpleNamespace(disconnected=lambda _rec: None))
    glue._stop = lambda rec: app.CanopyApp._stop(glue, rec)
    try:
        app.CanopyApp._shut_down(glue)
    finally:
        worker.kill()
    assert speaker.stopped and rec.stopped and worker.dead
    assert speaker.late == [] and rec.late == 0  # no pass after the stop began
    assert not writers and not flags.behind()  # the flags' last write done, after the loop had stopped
