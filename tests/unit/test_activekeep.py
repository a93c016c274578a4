"""The active ports of live migrations handed to the HA standby (controller/activekeep.py): the active sends its
table once per change and link connection; the standby takes it as its own record, so its View and flows are the
active's (the destination a packet made active on the active is active on the standby too, though the standby heard
no packet); a malformed table is refused whole and changes nothing."""

from __future__ import annotations

from dataclasses import replace

import msgpack

from controller import activekeep as ak
from controller.programmer import Programmer
from controller.state import State

from .test_activation import DEST, migrating
from .test_compiler import assert_matches_full


class Link:
    def __init__(self):
        self.out_epoch, self.sent = 1, []

    def send(self, msg) -> bool:
        self.sent.append(msgpack.unpackb(msgpack.packb(msg, use_bin_type=True), raw=False))
        return True


def keeper(state):
    k = ak.ActiveKeeper(state)
    k.link = Link()
    return k


def test_the_active_sends_its_table_once_per_change_and_connection():
    state, prog, web3 = migrating()
    k = keeper(state)
    k.on_peer_message({"t": "hb"}, "active")
    assert k.link.sent[-1] == {"t": ak.MESSAGE, "ports": [{"vport": web3["id"], "switch": "s2", "port": "tapA"}]}
    k.on_peer_message({"t": "hb"}, "active")
    assert len(k.link.sent) == 1
    state.activate(1, DEST, web3["mac"], now=100.0)
    k.on_peer_message({"t": "hb"}, "active")
    assert k.link.sent[-1]["ports"] == [{"vport": web3["id"], "switch": "s1", "port": "tapW3"}]
    k.link.out_epoch += 1
    k.on_peer_message({"t": "hb"}, "active")
    assert len(k.link.sent) == 3


def test_the_standby_takes_the_actives_record_and_its_flows_follow():
    active, _, web3 = migrating()
    standby = State(active.policy, default_flavour="kvm")  # the same policy, the same switches (hv2's first)
    for session in ("s2", "s1"):
        standby.vrs_update(active.vrs[session])
    prog = Programmer(standby)
    prog.refresh()
    assert standby.activated == active.activated == {web3["id"]: ("s2", "tapA")}
    active.activate(1, DEST, web3["mac"], now=100.0)
    sender, taker = keeper(active), keeper(standby)
    sender.on_peer_message({"t": "hb"}, "active")
    taker.on_peer_message(sender.link.sent[-1], "standby")
    assert standby.activated == active.activated
    assert standby.locations[web3["id"]].chassis == "hv1" and standby.standby == active.standby
    prog.refresh()
    assert_matches_full(prog)
    for state in (active, standby):  # the migration ends: libvirt removes the source's port (both nodes see it)
        state.vrs_update(replace(state.vrs["s2"], ports=tuple(p for p in state.vrs["s2"].ports if p.name != "tapA")))
    assert active.activated == {} == standby.activated
    sender.on_peer_message({"t": "hb"}, "active")
    taker.on_peer_message(sender.link.sent[-1], "standby")
    assert standby.activated == {} and standby.locations[web3["id"]].chassis == "hv1"
    prog.refresh()
    assert_matches_full(prog)


def test_a_malformed_table_is_refused_whole():
    standby, prog, web3 = migrating()
    k = keeper(standby)
    before = dict(standby.activated)
    for bad in ("x", [{"vport": "v"}], [{"vport": "v", "switch": "s", "port": "p", "extra": 1}],
                [{"vport": "v", "switch": "", "port": "p"}], [{"vport": "v", "switch": "s", "port": 5}],
                [{"vport": "v", "switch": "s", "port": "p"}] * 2, [[1, 2, 3]]):
        k.on_peer_message({"t": ak.MESSAGE, "ports": bad}, "standby")
    assert k.refused == 7 and standby.activated == before


def test_hostile_unknown_fields_are_named_in_a_line_of_bounded_length(caplog, monkeypatch):
    """An entry with thousands of unknown fields: the refusal names a few, shortened, and counts them all, as the
    gateway MACs' does (controller/overlink.py ``entry_of``, shared); before, it named three and never said how many
    there were."""
    import logging

    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    standby, _prog, _web3 = migrating()
    k = keeper(standby)
    row = {"vport": "v", "switch": "s", "port": "p", "k" * 100_000: 1, **{f"extra{i}": i for i in range(10_000)}}
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        k.on_peer_message({"t": ak.MESSAGE, "ports": [row]}, "standby")
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.ha"]
    assert "live migrations' active ports from the HA peer refused, nothing changed (1 refused so far)" in line
    assert "ports[0]: unknown 'extra0', 'extra1', " in line and "(10001 in all)" in line and len(line) < 400, \
        line[:400]
    assert k.refused == 1
