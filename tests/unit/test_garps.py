"""Gratuitous ARPs (controller/garps.py): a hand-out's gateway announcements to a switch's VMs are one green thread
that sends every packet once after each pause, in order, a pacer tick per packet, not a green thread per packet;
a packet that cannot be sent is left out, the others go on."""

from types import SimpleNamespace

import pytest

import controller.app as app_module
from controller.app import CanopyApp
from controller.garps import GARP_PAUSES, send_repeated
from controller.pacer import Pacer


class Rec:
    def __init__(self, bad: bytes | None = None):
        self.sent, self.bad, self.tried, self.log = [], bad, [], None

    def packet_out(self, actions, frame):
        self.tried.append(frame)
        if frame == self.bad:
            raise ValueError("cannot encode")  # e.g. an action Ryu cannot serialise
        self.sent.append(frame)
        if self.log is not None:
            self.log.append(("out", frame))


PACKETS = [([("output", n)], b"garp%d" % n) for n in range(5)]


def test_every_packet_once_after_each_pause_in_order_a_tick_each():
    rec, log, pacer = Rec(), [], Pacer(lambda: None, every=1)
    rec.log = log
    send_repeated(rec, PACKETS, "test", lambda s: log.append(("sleep", s)), pacer.tick)
    frames = [f for _, f in PACKETS]
    assert log == [entry for pause in GARP_PAUSES for entry in [("sleep", pause)] + [("out", f) for f in frames]]
    assert pacer.pauses == len(GARP_PAUSES) * len(PACKETS)


def test_a_packet_that_fails_is_dropped_and_the_others_go_on():
    # as when each packet was a green thread of its own: the failing one tried once, the others every round
    rec, pacer = Rec(bad=b"garp1"), Pacer(lambda: None, every=1)
    send_repeated(rec, PACKETS, "test", lambda s: None, pacer.tick)
    others = [f for _, f in PACKETS if f != b"garp1"]
    assert rec.sent == [f for _ in GARP_PAUSES for f in others]
    assert rec.tried.count(b"garp1") == 1
    assert pacer.pauses == len(rec.tried)


def test_a_batch_whose_every_packet_failed_ends():
    slept, rec = [], Rec(bad=b"only")
    send_repeated(rec, [([("output", 1)], b"only")], "test", slept.append)
    assert rec.tried == [b"only"] and slept == [GARP_PAUSES[0]]


def test_a_hand_outs_gateway_announcements_are_one_green_thread(monkeypatch):
    spawned = []
    monkeypatch.setattr(app_module.hub, "spawn", lambda fn, *args: spawned.append((fn, args)))
    glue = SimpleNamespace(pair=None, programmer=SimpleNamespace(view=object(), pacer=Pacer()),
                           gateway_garp=SimpleNamespace(due=lambda view, session, changed: list(PACKETS)))
    rec = Rec()
    CanopyApp._announce_gateways(glue, rec, "ovsdb:hv1", None)
    assert len(spawned) == 1
    fn, args = spawned[0]
    monkeypatch.setattr(app_module.hub, "sleep", lambda s: None)
    fn(*args)
    assert rec.sent == [f for _ in GARP_PAUSES for _, f in PACKETS]


@pytest.mark.parametrize("role, sent", [("standby", 0), ("active", 1)])
def test_only_the_active_announces(monkeypatch, role, sent):
    spawned = []
    monkeypatch.setattr(app_module.hub, "spawn", lambda fn, *args: spawned.append(fn))
    glue = SimpleNamespace(pair=SimpleNamespace(role=role), programmer=SimpleNamespace(view=object(), pacer=Pacer()),
                           gateway_garp=SimpleNamespace(due=lambda view, session, changed: list(PACKETS)))
    CanopyApp._announce_gateways(glue, Rec(), "ovsdb:hv1", None)
    assert len(spawned) == sent
