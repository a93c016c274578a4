"""The external gateways' MACs resolved by ARP carried over the HA link (controller/gatewaykeep.py): what the active
sends and when, what the standby keeps (its flows then equal the active's), how entries age on either node, what a
node that takes over does with them, and what it refuses (docs/external.md "The gateway's MAC")."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import msgpack
import pytest

from controller import gatewaykeep as gk
from controller import loglimit
from controller.app import CanopyApp
from controller.rest.external import _gateways
from openflow.gateway_arp import GatewayResolver

from .helpers import trace
from .test_compiler import assert_matches_full
from .test_external_flows import NET, UPLINK, setup, snapshot
from .test_gateway_arp import GW_MAC, reply

NEW_MAC = "02:00:00:ee:00:77"
OUT = {"in_port": 10, "eth_src": "02:00:00:00:00:01", "eth_type": 0x0800, "ip_proto": 6, "tcp_src": 40000,
       "tcp_dst": 80, "ipv4_src": "10.0.1.10", "ipv4_dst": "198.51.100.7"}  # vm0 (on hv1) to the outside


class Link:
    """The HA link's sending side: what was sent, through msgpack as the wire carries it."""

    def __init__(self):
        self.out_epoch, self.sent = 1, []

    def send(self, msg) -> bool:
        self.sent.append(msgpack.unpackb(msgpack.packb(msg, use_bin_type=True), raw=False))
        return True


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def node(clock):
    """A controller whose hv1 and hv2 translate (floating IPs) to network n1, which has no static gateway MAC."""
    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    policy = state.policy.copy()
    policy.put("external_network", dict(NET, gateway_mac=None))
    state.policy_committed(policy, [])
    prog.refresh()
    resolver = GatewayResolver(refresh=10, timeout=30)
    keeper = gk.GatewayKeeper(state, resolver, clock=clock)
    keeper.link = Link()
    sent = []
    glue = SimpleNamespace(state=state, programmer=prog, gateway_arp=resolver, gateway_keep=keeper,
                           pair=SimpleNamespace(role="standby"),
                           _reconciler_of_session=lambda session: SimpleNamespace(
                               state="synced", packet_out=lambda actions, frame: sent.append(session)))
    glue._forget_gateways = lambda now: CanopyApp._forget_gateways(glue, now)
    return SimpleNamespace(state=state, prog=prog, resolver=resolver, keeper=keeper, glue=glue, requests=sent)


def hear(n, session, mac, now):
    """``session`` of node ``n`` gets the gateway's ARP answer (controller/appannounce.py ``_gateway_answer``)."""
    got = n.resolver.answer(n.prog.view, session, UPLINK, reply(mac=mac), now)
    assert got is not None
    n.state.gateway_learned(session, *got)


def origins(n):
    return {g["chassis"]: (g["mac"], g["origin"]) for g in _gateways(n.state, n.prog.view, n.state.policy.get(
        "external_network", "n1"))}


def table(*rows):
    return {"t": gk.MESSAGE, "macs": [{"switch": s, "network": net, "mac": mac, "age": age}
                                      for s, net, mac, age in rows]}


def test_the_active_sends_its_resolved_macs_with_their_age_once_per_change_confirmation_and_connection():
    clock = Clock()
    active = node(clock)
    hear(active, "hv1", GW_MAC, 1000.0)
    clock.now = 1004.0
    sent = active.keeper.link.sent
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert sent == [table(("hv1", "n1", GW_MAC, 4.0))]
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 1  # nothing changed: nothing sent
    hear(active, "hv1", GW_MAC, 1009.0)  # confirmed (the same MAC): the standby must learn it is fresh
    clock.now = 1010.0
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert sent[-1] == table(("hv1", "n1", GW_MAC, 1.0))
    active.keeper.link.out_epoch += 1  # a new connection: what was queued may be lost
    active.keeper.on_peer_message({"hb": "hello", "t": "hello"}, "active")
    assert len(sent) == 3
    active.keeper.on_peer_message({"t": "hb"}, "standby")  # demoted, then active again: sent anew
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 4
    active.state.gateway_learned("hv1", "n1", None)  # forgotten: the standby forgets it too
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert sent[-1] == table()
    active.keeper.on_peer_message(table(("hv2", "n1", NEW_MAC, 0)), "active")  # an active takes no table
    assert active.state.gateway_macs == {}


def test_confirmations_alone_are_sent_at_most_every_half_refresh_a_change_at_the_next_heartbeat():
    """Each answer is a confirmation; with many VRSs they come at every heartbeat (5 a second), and the whole table
    (up to KEPT entries: ~25 ms to take on the standby, ~5 ms to build) went with each. The standby needs a
    confirmation only before its entry ages out: half a refresh late is enough (timeout >= two refreshes)."""
    clock = Clock()
    active = node(clock)
    hear(active, "hv1", GW_MAC, 1000.0)
    hear(active, "hv2", GW_MAC, 1000.0)
    sent = active.keeper.link.sent
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 1
    for tick in range(1, 25):  # 4.8 s of heartbeats, a confirmation at each (refresh 10 s)
        clock.now = 1000.0 + tick * 0.2
        hear(active, ("hv1", "hv2")[tick % 2], GW_MAC, clock.now)
        active.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 1
    clock.now = 1005.0
    hear(active, "hv1", GW_MAC, clock.now)
    active.keeper.on_peer_message({"t": "hb"}, "active")  # half a refresh since the last table: sent
    assert sent[-1] == table(("hv1", "n1", GW_MAC, 0.0), ("hv2", "n1", GW_MAC, 0.4)) and len(sent) == 2
    clock.now = 1005.2
    hear(active, "hv2", NEW_MAC, clock.now)  # a changed MAC goes at the next heartbeat
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert sent[-1] == table(("hv1", "n1", GW_MAC, 0.2), ("hv2", "n1", NEW_MAC, 0.0)) and len(sent) == 3
    clock.now = 1005.4
    active.keeper.link.out_epoch += 1  # and a new connection
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert len(sent) == 4


def test_the_standby_keeps_them_so_its_flows_equal_the_actives_and_forgets_what_the_active_forgot():
    clock = Clock()
    active, standby = node(clock), node(clock)
    hear(active, "hv1", GW_MAC, 1000.0)
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert trace(standby.prog.desired["hv1"], dict(OUT, eth_dst=gateway(standby))) == []  # nothing out yet
    standby.keeper.on_peer_message(active.keeper.link.sent[-1], "standby")
    standby.prog.refresh()
    active.prog.refresh()
    assert_matches_full(standby.prog)
    [(port, out)] = trace(standby.prog.desired["hv1"], dict(OUT, eth_dst=gateway(standby)))
    assert port == UPLINK and out["eth_dst"] == GW_MAC and out["ipv4_src"] == "203.0.113.10"
    for session in ("hv1", "hv2"):  # a takeover finds every flow as desired: it sends none
        assert standby.prog.desired[session].all_flows() == active.prog.desired[session].all_flows(), session
    assert origins(standby) == {"hv1": (GW_MAC, "replicated"), "hv2": (None, "unresolved")}
    assert origins(active)["hv1"] == (GW_MAC, "arp")
    standby.keeper.on_peer_message(table(), "standby")
    standby.prog.refresh()
    assert standby.state.gateway_macs == {} and standby.state.gateway_replicated == set()
    assert trace(standby.prog.desired["hv1"], dict(OUT, eth_dst=gateway(standby))) == []


def gateway(n):
    return n.state.policy.find("domain", "acme/prod")["gateway_mac"]


def test_only_entries_of_switches_seen_and_networks_held_are_taken_and_a_switch_seen_later_at_takeover():
    clock = Clock()
    standby = node(clock)
    standby.keeper.on_peer_message(table(("hv1", "n1", GW_MAC, 1), ("hv3", "n1", NEW_MAC, 1),
                                         ("hv1", "gone", NEW_MAC, 1)), "standby")
    assert standby.state.gateway_macs == {("hv1", "n1"): GW_MAC}  # hv3 not seen, network "gone" not held
    standby.state.vrs_update(snapshot("hv3", "10.251.0.3", []))
    standby.glue.pair.role = "active"
    CanopyApp._ask_gateways(standby.glue, 1001.0)  # the first round after the takeover takes hv3's
    assert standby.state.gateway_macs == {("hv1", "n1"): GW_MAC, ("hv3", "n1"): NEW_MAC}
    assert standby.keeper.held == {}  # nothing held on an active
    standby.state.vrs_gone("hv1")  # a switch gone: its entry too
    assert ("hv1", "n1") not in standby.state.gateway_macs and ("hv1", "n1") not in standby.state.gateway_replicated


def test_the_standby_takes_an_entry_once_its_switch_is_seen_or_its_network_held_at_the_next_heartbeat():
    """The table may come before the standby sees the VRS (its own OVSDB session is later) or holds the network (the
    store's stream behind): the active sends it again only at its next change or confirmation (a refresh, 30 s by
    default), so meanwhile the standby's flows lacked the MAC and a takeover then sent them twice (without, with)."""
    clock = Clock()
    standby = node(clock)
    standby.keeper.on_peer_message(table(("hv3", "n1", NEW_MAC, 1), ("hv1", "n2", NEW_MAC, 1),
                                         ("hv2", "n1", GW_MAC, 1)), "standby")
    assert standby.state.gateway_macs == {("hv2", "n1"): GW_MAC}
    standby.state.vrs_update(snapshot("hv3", "10.251.0.3", []))
    policy = standby.state.policy.copy()
    policy.put("external_network", dict(NET, id="n2", name="public2", gateway_mac=None))
    standby.state.policy_committed(policy, [])
    clock.now += 1
    standby.keeper.on_peer_message({"t": "hb"}, "standby")  # the active's next heartbeat
    assert standby.state.gateway_macs == {("hv2", "n1"): GW_MAC, ("hv3", "n1"): NEW_MAC, ("hv1", "n2"): NEW_MAC}
    assert standby.state.gateway_replicated == set(standby.state.gateway_macs)
    assert standby.resolver.heard[("hv3", "n1")] == 1000.0 - 1  # aged from when the active heard it
    assert standby.keeper.waiting == set()
    standby.keeper.on_peer_message(table(("hv4", "n1", NEW_MAC, 1)), "standby")
    clock.now += 30  # aged meanwhile: never taken, no longer waited for
    standby.state.vrs_update(snapshot("hv4", "10.251.0.4", []))
    standby.keeper.on_peer_message({"t": "hb"}, "standby")
    assert standby.state.gateway_macs == {} and standby.keeper.waiting == set()


def test_entries_waiting_for_their_switch_are_looked_at_again_only_once_state_changed():
    """A standby that never sees some of the active's VRSs: up to KEPT entries wait; a heartbeat (5 a second) looks
    at them again only if State changed since."""
    standby = node(Clock())
    standby.keeper.on_peer_message(table(*((f"hv{i}", "n1", NEW_MAC, 1) for i in range(3, 100))), "standby")
    looked = []
    usable = standby.keeper._usable
    standby.keeper._usable = lambda now, entries: looked.append(len(entries)) or usable(now, entries)
    for _ in range(5):
        standby.keeper.on_peer_message({"t": "hb"}, "standby")
    assert looked == [97] and len(standby.keeper.waiting) == 97
    standby.state.vrs_update(snapshot("hv3", "10.251.0.3", []))
    standby.keeper.on_peer_message({"t": "hb"}, "standby")
    assert looked == [97, 97] and standby.state.gateway_macs == {("hv3", "n1"): NEW_MAC}


def test_an_entry_older_than_the_timeout_is_not_used_and_one_that_ages_there_is_forgotten_on_the_standby():
    clock = Clock()
    standby = node(clock)
    standby.keeper.on_peer_message(table(("hv1", "n1", GW_MAC, 30), ("hv2", "n1", GW_MAC, 25)), "standby")
    assert standby.state.gateway_macs == {("hv2", "n1"): GW_MAC}  # hv1's was confirmed a timeout ago
    CanopyApp._forget_gateways(standby.glue, 1004.9)
    assert standby.state.gateway_macs == {("hv2", "n1"): GW_MAC}
    CanopyApp._forget_gateways(standby.glue, 1005.0)  # 30 s after the active heard it: forgotten here too
    assert standby.state.gateway_macs == {}
    assert standby.requests == []  # a standby asks nothing


def test_a_table_that_waited_on_the_link_ages_on_the_standby_from_its_arrival():
    """The age is the active's when it built the table; the time the table then waited (queued behind other messages
    on the HA link, in transit, behind the messages the standby handles before it) is not counted: the standby's
    entry ages out that much later than the active's (docs/external.md "The gateway's MAC")."""
    clock = Clock()
    active, standby = node(clock), node(clock)
    hear(active, "hv1", GW_MAC, 1000.0)
    clock.now = 1005.0
    active.keeper.on_peer_message({"t": "hb"}, "active")  # built at 1005: confirmed 5 s ago
    clock.now = 1008.0  # delivered 3 s later
    standby.keeper.on_peer_message(active.keeper.link.sent[-1], "standby")
    for n in (active, standby):
        CanopyApp._forget_gateways(n.glue, 1030.0)  # 30 s after the gateway confirmed it
    assert active.state.gateway_macs == {} and standby.state.gateway_macs == {("hv1", "n1"): GW_MAC}
    CanopyApp._forget_gateways(standby.glue, 1033.0)  # and the 3 s the table waited
    assert standby.state.gateway_macs == {}


def test_a_new_active_uses_them_at_once_asks_again_takes_a_new_mac_and_forgets_a_silent_gateway_in_time():
    clock = Clock()
    standby = node(clock)
    standby.keeper.on_peer_message(table(("hv1", "n1", GW_MAC, 5), ("hv2", "n1", GW_MAC, 5)), "standby")
    standby.prog.refresh()
    standby.glue.pair.role = "active"
    CanopyApp._ask_gateways(standby.glue, 1001.0)
    assert sorted(standby.requests) == ["hv1", "hv2"]  # asked at once
    assert standby.state.gateway_macs == {("hv1", "n1"): GW_MAC, ("hv2", "n1"): GW_MAC}  # used meanwhile
    version = standby.state.version
    hear(standby, "hv1", GW_MAC, 1001.5)  # the same MAC: no change to program, heard here now
    assert standby.state.version == version and origins(standby)["hv1"] == (GW_MAC, "arp")
    assert origins(standby)["hv2"] == (GW_MAC, "replicated")
    hear(standby, "hv1", NEW_MAC, 1011.0)  # the gateway changed its MAC: taken at the next answer
    standby.prog.refresh()
    [(_, out)] = trace(standby.prog.desired["hv1"], dict(OUT, eth_dst=gateway(standby)))
    assert out["eth_dst"] == NEW_MAC
    CanopyApp._ask_gateways(standby.glue, 1024.9)  # hv2's gateway stays silent: 30 s after the old active heard it
    assert ("hv2", "n1") in standby.state.gateway_macs
    CanopyApp._ask_gateways(standby.glue, 1025.0)
    assert standby.state.gateway_macs == {("hv1", "n1"): NEW_MAC}


GOOD = {"switch": "hv1", "network": "n1", "mac": GW_MAC, "age": 1}
BAD = [
    ({"t": gk.MESSAGE}, "macs: must be a list, not NoneType"),
    ({"t": gk.MESSAGE, "macs": {"hv1": GW_MAC}}, "macs: must be a list, not dict"),
    ({"t": gk.MESSAGE, "macs": [GOOD] * (gk.KEPT + 1)}, f"more than the {gk.KEPT}"),
    ({"t": gk.MESSAGE, "macs": [GOOD, "hv2"]}, "macs[1]: must be a map, not str"),
    ({"t": gk.MESSAGE, "macs": [{"switch": "hv1", "network": "n1", "mac": GW_MAC}]}, "macs[0]: missing age"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, ttl=3)]}, "macs[0]: unknown 'ttl'"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, switch=7)]}, "macs[0].switch: must be a string"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, network="")]}, "macs[0].network: must be a string"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, switch="x" * 256)]}, "macs[0].switch: must be a string of 1-255"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, mac="ff:ff:ff:ff:ff:ff")]}, "macs[0].mac: 'ff:ff:ff:ff:ff:ff' is a "
                                                                       "multicast MAC"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, mac="00:00:00:00:00:00")]}, "macs[0].mac: the all-zero MAC"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, mac=b"\x02\x00")]}, "macs[0].mac: must be a MAC address string"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, age=-1)]}, "macs[0].age: must be a finite number"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, age=float("nan"))]}, "macs[0].age: must be a finite number"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, age=float("inf"))]}, "macs[0].age: must be a finite number"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, age=True)]}, "macs[0].age: must be a finite number"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, age="1")]}, "macs[0].age: must be a finite number"),
    ({"t": gk.MESSAGE, "macs": [dict(GOOD, network="n2"), GOOD, dict(GOOD, mac=NEW_MAC)]},
     "macs[2]: switch 'hv1' and network 'n1' listed twice"),
]


@pytest.mark.parametrize("msg,why", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_a_malformed_or_hostile_table_is_refused_whole_with_a_clear_log_and_changes_nothing(msg, why, caplog,
                                                                                          monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})  # each case's warning is logged (not limited by the last)
    clock = Clock()
    standby = node(clock)
    standby.keeper.on_peer_message(table(("hv2", "n1", GW_MAC, 1)), "standby")
    before = (dict(standby.state.gateway_macs), set(standby.state.gateway_replicated), dict(standby.keeper.held),
              standby.state.version)
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        standby.keeper.on_peer_message(msg, "standby")  # never raises
    assert (standby.state.gateway_macs, standby.state.gateway_replicated, standby.keeper.held,
            standby.state.version) == before
    assert standby.keeper.refused == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.ha"]
    assert "gateway MACs from the HA peer refused, nothing changed" in line and why in line, line


def test_at_most_kept_entries_are_sent(monkeypatch):
    monkeypatch.setattr(gk, "KEPT", 1)
    clock = Clock()
    active = node(clock)
    hear(active, "hv1", GW_MAC, 1000.0)
    hear(active, "hv2", GW_MAC, 1000.0)
    active.keeper.on_peer_message({"t": "hb"}, "active")
    assert active.keeper.link.sent == [table(("hv1", "n1", GW_MAC, 0.0))] and active.keeper.not_kept == 1


def test_hostile_unknown_fields_are_named_in_a_line_of_bounded_length(caplog, monkeypatch):
    """An entry with a huge unknown key, or thousands of them: the refusal names a few, shortened, and counts the
    rest (the whole table is still refused)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    standby = node(Clock())
    row = dict(GOOD, **{"k" * 100_000: 1}, **{f"extra{i}": i for i in range(10_000)})
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        standby.keeper.on_peer_message({"t": gk.MESSAGE, "macs": [row]}, "standby")
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.ha"]
    assert "macs[0]: unknown 'extra0', 'extra1', " in line and "(10001 in all)" in line and len(line) < 400, \
        line[:400]
    assert standby.keeper.refused == 1 and standby.state.gateway_macs == {}


@pytest.mark.parametrize("mac", ["x" * 100_000, " " * 100_000 + "ff:ff:ff:ff:ff:ff"],
                         ids=["long", "padded"])
def test_a_hostile_mac_of_any_length_is_refused_with_a_line_of_bounded_length(mac, caplog, monkeypatch):
    """The HA peer may send up to pairlink.MAX_MESSAGE bytes: the refusal names the field and quotes the start of
    the value, never the whole of it (a log line of megabytes)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    standby = node(Clock())
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        standby.keeper.on_peer_message({"t": gk.MESSAGE, "macs": [dict(GOOD, mac=mac)]}, "standby")
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.ha"]
    assert "macs[0].mac: " in line and len(line) < 400, line[:400]
    assert standby.keeper.refused == 1 and standby.state.gateway_macs == {}


def test_refused_tables_show_in_the_ha_status_and_the_metrics(tmp_path, monkeypatch):
    """What the standby refused (and the active did not send) is counted in ``GET /v1/ha`` (``runtime``) and
    ``/metrics``, beside the duplicate MAC flags' counts (bgp/dupkeep.py), not only in memory."""
    from tests.unit.test_ha_rules import rest_node
    from tests.unit.test_operate import samples, scrape

    monkeypatch.setattr(loglimit, "_last_logged", {})
    standby = node(Clock())
    store, _, pair, call = rest_node(tmp_path)
    try:
        standby.keeper.pair_with(pair)
        pair._on_message({"t": gk.MESSAGE, "macs": [dict(GOOD, age=-1)]})  # a node still starting: not the active
        pair._on_message({"t": gk.MESSAGE, "macs": "nonsense"})
        assert standby.keeper.refused == 2
        status, body = call("GET", "/v1/ha", None)
        assert status == 200 and body["runtime"] == {"gateway_macs": {"refused": 2, "not_kept": 0}}
        call.api.metrics.attach(pair=pair)
        got = samples(scrape(call.api, token="t0ken"))
        assert got[("canopy_ha_gateway_macs_refused_total", frozenset())] == 2
        assert got[("canopy_ha_gateway_macs_not_kept", frozenset())] == 0
    finally:
        store.close()
