"""Gratuitous ARPs (controller/garps.py): a hand-out's gateway announcements to a switch's VMs are one green thread
that sends every packet once after each pause, in order, a pacer tick per packet, not a green thread per packet;
a packet that cannot be sent is left out, the others go on; a node demoted (or shutting down) while a batch pauses
sends none of the rest."""

from types import SimpleNamespace

import pytest

import controller.appannounce as announce_module
from controller.app import CanopyApp
from controller.garps import GARP_PAUSES, send_repeated
from controller.pacer import Pacer
from openflow.external import Garp


class Rec:
    def __init__(self, bad: bytes | None = None):
        self.sent, self.bad, self.tried, self.log, self.state = [], bad, [], None, "in_sync"

    def packet_out(self, actions, frame):
        self.tried.append(frame)
        if frame == self.bad:
            raise ValueError("cannot encode")  # e.g. an action Ryu cannot serialise
        self.sent.append(frame)
        if self.log is not None:
            self.log.append(("out", frame))


PACKETS = [Garp([("output", n)], b"garp%d" % n) for n in range(5)]
FRAMES = [p.frame for p in PACKETS]


def ALWAYS():  # noqa: N802 - a constant predicate
    return True


def spawn_batch(monkeypatch, glue, announce):
    """Run the one batch ``announce`` spawns, its pauses ``glue.during_pause(seconds)`` (no wall clock)."""
    spawned = []
    monkeypatch.setattr(announce_module.hub, "spawn", lambda fn, *args: spawned.append((fn, args)))
    monkeypatch.setattr(announce_module.hub, "sleep", glue.during_pause)  # before: the batch is handed hub.sleep
    announce()
    assert len(spawned) == 1
    fn, args = spawned[0]
    fn(*args)


def test_every_packet_once_after_each_pause_in_order_a_tick_each():
    rec, log, pacer = Rec(), [], Pacer(lambda: None, every=1)
    rec.log = log
    send_repeated(rec, PACKETS, "test", lambda s: log.append(("sleep", s)), ALWAYS, pacer.tick)
    frames = list(FRAMES)
    assert log == [entry for pause in GARP_PAUSES for entry in [("sleep", pause)] + [("out", f) for f in frames]]
    assert pacer.pauses == len(GARP_PAUSES) * len(PACKETS)


def test_a_packet_that_fails_is_dropped_and_the_others_go_on():
    # as when each packet was a green thread of its own: the failing one tried once, the others every round
    rec, pacer = Rec(bad=b"garp1"), Pacer(lambda: None, every=1)
    send_repeated(rec, PACKETS, "test", lambda s: None, ALWAYS, pacer.tick)
    others = [f for f in FRAMES if f != b"garp1"]
    assert rec.sent == [f for _ in GARP_PAUSES for f in others]
    assert rec.tried.count(b"garp1") == 1
    assert pacer.pauses == len(rec.tried)


def test_a_batch_whose_every_packet_failed_ends():
    slept, rec = [], Rec(bad=b"only")
    send_repeated(rec, [([("output", 1)], b"only")], "test", slept.append, ALWAYS)
    assert rec.tried == [b"only"] and slept == [GARP_PAUSES[0]]


def test_a_hand_outs_gateway_announcements_are_one_green_thread(monkeypatch):
    glue = SimpleNamespace(pair=None, programmer=SimpleNamespace(view=object(), pacer=Pacer()),
                           gateway_garp=SimpleNamespace(due=lambda view, session, changed, now, pacer: list(PACKETS)),
                           during_pause=lambda s: None)
    rec = Rec()
    spawn_batch(monkeypatch, glue, lambda: CanopyApp._announce_gateways(glue, rec, "ovsdb:hv1", None))
    assert rec.sent == [f for _ in GARP_PAUSES for f in FRAMES]


@pytest.mark.parametrize("role, sent", [("standby", 0), ("active", 1)])
def test_only_the_active_announces(monkeypatch, role, sent):
    spawned = []
    monkeypatch.setattr(announce_module.hub, "spawn", lambda fn, *args: spawned.append(fn))
    glue = SimpleNamespace(pair=SimpleNamespace(role=role), programmer=SimpleNamespace(view=object(), pacer=Pacer()),
                           gateway_garp=SimpleNamespace(due=lambda view, session, changed, now, pacer: list(PACKETS)))
    CanopyApp._announce_gateways(glue, Rec(), "ovsdb:hv1", None)
    assert len(spawned) == sent


def test_a_batch_ends_when_sending_is_no_longer_allowed_between_rounds_or_within_one():
    allowed = [True]
    rec = Rec()
    send_repeated(rec, PACKETS, "test", lambda s: allowed.__setitem__(0, s < GARP_PAUSES[1]), lambda: allowed[0])
    assert rec.sent == FRAMES  # the first round only: demoted during the second pause
    rec, allowed[0] = Rec(), True
    rec.packet_out = lambda actions, frame: (rec.sent.append(frame), allowed.__setitem__(0, False))
    send_repeated(rec, PACKETS, "test", lambda s: None, lambda: allowed[0])
    assert rec.sent == FRAMES[:1]  # demoted right after the first packet went


@pytest.mark.parametrize("change", ["demoted", "switch stopped"])
def test_a_gateway_batch_stops_when_the_node_is_demoted_or_the_switch_stopped(monkeypatch, change):
    """HA: the node stepped down (or shuts down: its reconcilers stopped) while the batch paused: none of the later
    rounds leave; the new active announces again what changed recently (tests/unit/test_takeover_garps.py)."""
    rec = Rec()

    def during_pause(seconds):
        if seconds == GARP_PAUSES[1]:
            if change == "demoted":
                glue.pair.role = "standby"
            else:
                rec.state = "stopped"

    glue = SimpleNamespace(pair=SimpleNamespace(role="active"), during_pause=during_pause,
                           programmer=SimpleNamespace(view=object(), pacer=Pacer()),
                           gateway_garp=SimpleNamespace(due=lambda view, session, changed, now, pacer: list(PACKETS)))
    spawn_batch(monkeypatch, glue, lambda: CanopyApp._announce_gateways(glue, rec, "ovsdb:hv1", None))
    assert rec.sent == FRAMES


def test_a_floating_ip_batch_stops_when_the_node_is_demoted(monkeypatch):
    rec = Rec()
    info = SimpleNamespace(id="f1", session="ovsdb:hv1", address="203.0.113.5")
    monkeypatch.setattr(announce_module.external, "garp_actions", lambda i: [("output", 1)])
    monkeypatch.setattr(announce_module.external, "garp_frame", lambda i: b"fip")

    def during_pause(seconds):
        if seconds == GARP_PAUSES[1]:
            glue.pair.role = "standby"

    glue = SimpleNamespace(pair=SimpleNamespace(role="active"), during_pause=during_pause, reconcilers={7: rec},
                           programmer=SimpleNamespace(pacer=Pacer(), view=SimpleNamespace(
                               switches={"ovsdb:hv1": SimpleNamespace(datapath_id=7)},
                               external=SimpleNamespace(floating={"f1": info}))),
                           garp=SimpleNamespace(due=lambda view: [info], sent=lambda i: None))
    glue._reconciler_of_session = lambda session: CanopyApp._reconciler_of_session(glue, session)
    spawn_batch(monkeypatch, glue, lambda: CanopyApp._announce_floating_ips(glue))
    assert rec.sent == [b"fip"]


def test_a_packet_left_out_as_its_vm_is_gone_ticks_too():
    # a takeover's batch of 5,000 VMs all gone meanwhile: 5,000 checks, paced as the sends are, not one stretch
    rec, pacer = Rec(), Pacer(lambda: None, every=1)
    send_repeated(rec, PACKETS, "test", lambda s: None, ALWAYS, pacer.tick, lambda packet: packet.frame == b"garp2")
    assert rec.sent == [b"garp2"] * len(GARP_PAUSES)
    assert pacer.pauses == len(PACKETS) * len(GARP_PAUSES)  # (each asked again every round: a VM may come back)
