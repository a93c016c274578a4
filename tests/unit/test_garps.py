"""Gratuitous ARPs (controller/garps.py): a hand-out's gateway announcements to a switch's VMs are one green thread
that sends every packet once after each pause, in order, a pacer tick per packet, not a green thread per packet;
a connection that closed ends the batch."""

from types import SimpleNamespace

import pytest

import controller.app as app_module
from controller.app import CanopyApp
from controller.garps import GARP_PAUSES, send_repeated
from controller.pacer import Pacer


class Rec:
    def __init__(self, fail_after: int | None = None):
        self.sent, self.fail_after, self.log = [], fail_after, None

    def packet_out(self, actions, frame):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise ConnectionResetError("closed")
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


def test_a_closed_connection_ends_the_batch():
    rec = Rec(fail_after=7)
    send_repeated(rec, PACKETS, "test", lambda s: None)
    assert len(rec.sent) == 7  # the first round and two of the second: nothing after the failure


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
