"""The ExaBGP extension: pin, EVPN NLRI/attributes packed by ExaBGP and decoded back, commands."""

import copy
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from bgp import evpnwire, exabgp_ext, exabgp_ext_api, routes
from bgp.received import from_exabgp_json
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute, to_batch_command, to_command
from tests.harness.bgpraw import with_next_hop

GOBGP_RIB = Path(__file__).resolve().parents[3] / "shared/fixtures/exabgp-evpn/gobgp_rib_after_exabgp_announce.json"

TYPE2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
                   next_hop="192.0.2.1", route_targets=("65000:5001", "65000:9001"),
                   router_mac="02:00:00:00:00:01", mobility_seq=3)
TYPE2_L2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:57", l2_vni=5000, next_hop="192.0.2.1",
                      route_targets=("65000:5000",))
TYPE3 = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
TYPE5 = IpPrefixRoute(rd="65000:100", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                      route_targets=("65000:9001",), router_mac="02:00:00:00:00:01")
ALL = [TYPE2, TYPE2_L2, TYPE3, TYPE5]


def attributes(message: bytes) -> dict[int, bytes]:
    """Path attributes of a BGP UPDATE (with header), by type code."""
    body = message[19:]
    withdrawn = struct.unpack("!H", body[:2])[0]
    length = struct.unpack("!H", body[2 + withdrawn:4 + withdrawn])[0]
    data, found = body[4 + withdrawn:4 + withdrawn + length], {}
    while data:
        flags, code = data[0], data[1]
        size, head = (struct.unpack("!H", data[2:4])[0], 4) if flags & 0x10 else (data[2], 3)
        found[code], data = data[head:head + size], data[head + size:]
    return found


def communities(message: bytes) -> set[bytes]:
    value = attributes(message)[16]
    return {value[i:i + 8] for i in range(0, len(value), 8)}


# --------------------------------------------------------------------------- pin


def test_pin_holds_for_the_installed_exabgp():
    exabgp_ext.check_pin()
    assert exabgp_ext.PINNED_EXABGP == "5.0.15"


def test_pin_fails_loudly_on_another_version(monkeypatch):
    monkeypatch.setattr(exabgp_ext._exabgp_version, "release", "5.0.16")
    with pytest.raises(exabgp_ext.ExaBGPPinError, match=r"exabgp==5\.0\.15.*found exabgp 5\.0\.16"):
        exabgp_ext.check_pin()


def test_pin_fails_loudly_when_an_internal_moves(monkeypatch):
    monkeypatch.delitem(exabgp_ext.EVPN.registered_evpn, 5)
    with pytest.raises(exabgp_ext.ExaBGPPinError, match="EVPN route classes"):
        exabgp_ext.check_pin()


def test_only_the_extension_imports_exabgp():
    bgp_dir = Path(exabgp_ext.__file__).parent
    importers = {p.name for p in bgp_dir.glob("*.py") if "import exabgp" in p.read_text()
                 or "from exabgp" in p.read_text()}
    assert importers == {"exabgp_ext.py", "exabgp_ext_api.py"}


# --------------------------------------------------------------------------- wire


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_packed_by_exabgp_and_decoded_back(route):
    wire = exabgp_ext.encode_update(route, "announce")
    printed = exabgp_ext.decode_update(wire)
    assert from_exabgp_json(printed) == [("announce", route)]
    assert 3 not in attributes(wire), "no NEXT_HOP attribute: the next hop is in MP_REACH_NLRI"
    mp_reach = attributes(wire)[14]
    assert mp_reach[:4] == bytes.fromhex("00194604") and mp_reach[4:8] == bytes([192, 0, 2, 1])


def test_type2_labels_are_raw_vnis_two_for_symmetric_irb():
    mp_reach = attributes(exabgp_ext.encode_update(TYPE2, "announce"))[14]
    assert mp_reach.endswith(bytes.fromhex("525400123456" "20" "0a010005" "001389" "002329"))
    mp_reach = attributes(exabgp_ext.encode_update(TYPE2_L2, "announce"))[14]
    assert mp_reach.endswith(bytes.fromhex("525400123457" "00" "001388"))  # even VNI, no IP


def test_type2_communities():
    assert communities(exabgp_ext.encode_update(TYPE2, "announce")) == {
        bytes.fromhex("0002fde800001389"), bytes.fromhex("0002fde800002329"),  # RT 65000:5001/9001
        bytes.fromhex("030c000000000008"),                                     # encapsulation VXLAN
        bytes.fromhex("0600000000000003"),                                     # MAC mobility seq 3
        bytes.fromhex("0603020000000001"),                                     # Router's MAC
    }


def test_type3_pmsi_ingress_replication_label_is_the_vni():
    wire = exabgp_ext.encode_update(TYPE3, "announce")
    assert attributes(wire)[22] == bytes.fromhex("00" "06" "001389" "c0000201")
    assert bytes.fromhex("030c000000000008") in communities(wire)


def test_type5_nlri_and_router_mac():
    wire = exabgp_ext.encode_update(TYPE5, "announce")
    assert attributes(wire)[14].endswith(bytes.fromhex("18" "0a010000" "00000000" "002329"))
    assert bytes.fromhex("0603020000000001") in communities(wire)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_withdraw_repeats_the_announced_nlri(route):
    announce = exabgp_ext.build_nlri(route, "announce")
    withdraw = exabgp_ext.build_nlri(route, "withdraw")
    assert withdraw.index() == announce.index()
    wire = exabgp_ext.encode_update(route, "withdraw")
    assert attributes(wire)[15][3:] == announce.pack_nlri()
    decoded = from_exabgp_json(exabgp_ext.decode_update(wire))
    assert decoded == [("withdraw", route.key)]


def test_router_mac_community_decodes_through_exabgp():
    exabgp_ext.install()
    community = exabgp_ext.ExtendedCommunity.unpack(bytes.fromhex("0603020000000002"))
    assert isinstance(community, exabgp_ext.RouterMac)
    assert repr(community) == "router-mac:02:00:00:00:00:02"  # as in the captured fixtures


@pytest.mark.skipif(not GOBGP_RIB.is_file(), reason=f"fixture absent: {GOBGP_RIB}")
def test_same_fields_as_gobgp_received_from_exabgp():
    """Build the routes the fixture shows in GoBGP's RIB and compare what GoBGP decoded."""
    rib = json.loads(GOBGP_RIB.read_text())
    mac = rib["[type:macadv][rd:65000:100][etag:0][mac:52:54:00:12:34:56][ip:10.1.0.5]"][0]
    route = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001,
                       next_hop="127.0.0.3", route_targets=("65000:5001",),
                       router_mac="02:00:00:00:00:01", mobility_seq=3)
    assert mac["nlri"]["value"]["labels"] == [route.l2_vni]
    wire = exabgp_ext.encode_update(route, "announce")
    gobgp_communities = next(a["value"] for a in mac["attrs"] if a["type"] == 16)
    assert len(gobgp_communities) == len(communities(wire)) == 4
    assert {"type": 3, "subtype": 12, "tunnel_type": 8} in gobgp_communities
    assert {"type": 6, "subtype": 3, "mac": route.router_mac} in gobgp_communities
    multicast = rib["[type:multicast][rd:65000:100][etag:0][ip:127.0.0.3]"][0]
    pmsi = next(a for a in multicast["attrs"] if a["type"] == 22)
    wire = exabgp_ext.encode_update(InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="127.0.0.3"),
                                    "announce")
    assert pmsi["label"] == int.from_bytes(attributes(wire)[22][2:5], "big") == 5001
    assert pmsi["tunnel-type"] == attributes(wire)[22][1] == 6


# --------------------------------------------------------------------------- API commands


class FakeReactor:
    """Just enough of ExaBGP's reactor for a command callback: records acks; the peer is a real ExaBGP
    neighbor (from a real configuration) with its real outgoing RIB."""

    def __init__(self, peers=("neighbor 127.0.0.2 local-ip 127.0.0.1",)):
        from exabgp.bgp.neighbor import Neighbor

        self._peers = list(peers)
        self.acks = []
        self.processes = self
        self.configuration = self
        self.asynchronous = self
        template, _ = exabgp_ext._codec(65000, 65001)
        neighbor = copy.deepcopy(template)
        neighbor.make_rib()
        neighbor.rib.outgoing.clear()  # ExaBGP keeps one RIB per neighbor name, shared between tests
        self.neighbors = {name: neighbor for name in self._peers}
        self.rib = neighbor.rib.outgoing
        assert isinstance(neighbor, Neighbor)

    @property
    def injected(self):
        """The changes the RIB will send next (and forgets them)."""
        return list(self.rib.queued_changes())

    def sent(self):
        """The NLRIs of the UPDATEs the RIB sends now, with their actions."""
        return [(str(nlri.action).lower().rsplit(".", 1)[-1], nlri.pack_nlri())
                for update in self.rib.updates(False) for nlri in update.nlris]

    def peers(self, service=""):
        return self._peers

    def answer_done(self, service, force=False):
        self.acks.append("done")

    def answer_error(self, service):
        self.acks.append("error")

    def schedule(self, service, line, callback):
        for _ in callback:
            pass


def dispatch(reactor, line):
    from exabgp.reactor.api import API

    exabgp_ext.install()
    API(reactor).process(reactor, "canopy", line)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_commands_inject_exabgp_changes_and_ack_once(route, action):
    reactor = FakeReactor()
    dispatch(reactor, to_command(route, action, neighbor="127.0.0.2"))
    assert reactor.acks == ["done"]
    [change] = reactor.injected
    assert change.nlri.pack_nlri() == exabgp_ext.build_nlri(route, "announce").pack_nlri()
    assert str(change.nlri.action).lower().endswith(action)


@pytest.mark.parametrize("route, other", [
    (TYPE2, replace(TYPE2, l2_vni=5002, l3_vni=None, esi=7)),
    (TYPE5, replace(TYPE5, l3_vni=9002, gateway="0.0.0.0", esi=3)),
], ids=["type2", "type5"])
def test_a_new_label_replaces_the_route_and_any_labels_withdraw_it(route, other):
    """RFC 7432 7.2 / RFC 9136: ESI and labels are not in the key: ExaBGP's RIB holds one route per key."""
    reactor = FakeReactor()
    dispatch(reactor, to_command(route, "announce"))
    assert reactor.sent() == [("announce", exabgp_ext.build_nlri(route, "announce").pack_nlri())]
    dispatch(reactor, to_command(other, "announce"))  # same key, other VNI: replaces, no withdraw
    assert reactor.sent() == [("announce", exabgp_ext.build_nlri(other, "announce").pack_nlri())]
    dispatch(reactor, to_command(route, "withdraw"))  # a withdraw with the old labels removes it
    assert [action for action, _ in reactor.sent()] == ["withdraw"]
    assert list(reactor.rib.cached_changes()) == []


@pytest.mark.parametrize("line", [
    "announce evpn {}", 'announce evpn {"type":2}', "withdraw evpn nonsense",
    'announce evpn {"type":3,"rd":"1:1","vni":99999999,"next_hop":"192.0.2.1"}',
])
def test_bad_commands_answer_error_once(line):
    reactor = FakeReactor()
    dispatch(reactor, line)
    assert reactor.acks == ["error"] and reactor.injected == []


def batch_of(count: int, next_hops=("192.0.2.1",)) -> list:
    return [MacIpRoute(rd="65000:100", mac=f"52:54:00:00:{i >> 8:02x}:{i & 0xff:02x}", ip=f"10.1.{i >> 8}.{i & 0xff}",
                       l2_vni=5001, l3_vni=9001, next_hop=next_hops[i % len(next_hops)],
                       router_mac="02:00:00:00:00:01", route_targets=("65000:5001",)) for i in range(count)]


@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_a_batch_command_injects_every_route_and_acks_once(action):
    """As ExaBGP reads it: its line formatter spaces out brackets and commas before dispatching."""
    from exabgp.configuration.core.format import formated

    routes = batch_of(300)
    reactor = FakeReactor()
    dispatch(reactor, formated(to_batch_command(routes, action, neighbor="127.0.0.2")))
    assert reactor.acks == ["done"]
    injected = reactor.injected
    assert [c.nlri.pack_nlri() for c in injected] == [exabgp_ext.build_nlri(r, action).pack_nlri() for r in routes]
    assert all(str(c.nlri.action).lower().endswith(action) for c in injected)


def test_a_batch_with_one_bad_route_injects_none_and_answers_error_once():
    line = to_batch_command(batch_of(3), "announce").replace('"l2_vni":5001', '"l2_vni":99999999', 1)
    reactor = FakeReactor()
    dispatch(reactor, line)
    assert reactor.acks == ["error"] and reactor.injected == []


@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_routes_sharing_attributes_share_updates_split_by_next_hop(action):
    """ExaBGP 5.0.15 sends one UPDATE per EVPN route; installed, routes queued together with the same
    attributes go in one UPDATE per next hop (while they fit), and decode back to the same routes."""
    routes = batch_of(200, next_hops=("192.0.2.1", "192.0.2.2"))
    messages = exabgp_ext.encode_rib_updates(routes, action)
    # announced: per next hop, ANNOUNCED_PER_UPDATE routes an UPDATE (below); withdrawn: one (MP_UNREACH_NLRI
    # has no next hop); the codec negotiates extended messages, so all fit
    per_hop = -(-100 // exabgp_ext.ANNOUNCED_PER_UPDATE)
    assert len(messages) == (2 * per_hop if action == "announce" else 1)
    decoded = [item for message in messages for item in from_exabgp_json(exabgp_ext.decode_update(message))]
    if action == "announce":
        assert sorted(route.mac for _, route in decoded) == sorted(r.mac for r in routes)
        assert {route for _, route in decoded} == set(routes)
    else:
        assert {key for _, key in decoded} == {r.key for r in routes}


def test_announcements_take_a_few_routes_per_update_withdrawals_fill_it():
    """GoBGP re-encodes a path's whole MP_REACH_NLRI for every peer it sends the path to, announced and then
    withdrawn: per route, work in proportion to the routes announced in its UPDATE. Announcements go
    ANNOUNCED_PER_UPDATE to an UPDATE; withdrawals (no MP_REACH_NLRI) fill it (ExaBGP's 4,096 bytes)."""
    cap = exabgp_ext.ANNOUNCED_PER_UPDATE
    assert 1 < cap <= 16
    routes = batch_of(250)
    announced = [len(from_exabgp_json(exabgp_ext.decode_update(m))) for m in exabgp_ext.encode_rib_updates(routes,
                                                                                                          "announce")]
    assert sum(announced) == 250 and max(announced) == cap and len(announced) == -(-250 // cap)
    withdrawn = exabgp_ext.encode_rib_updates(routes, "withdraw")
    assert len(withdrawn) == 1 and len(from_exabgp_json(exabgp_ext.decode_update(withdrawn[0]))) == 250


def test_routes_with_other_attributes_get_updates_of_their_own():
    routes = batch_of(4)
    routes[2] = replace(routes[2], route_targets=("65000:5002",))
    messages = exabgp_ext.encode_rib_updates(routes, "announce")
    assert sorted(len(from_exabgp_json(exabgp_ext.decode_update(m))) for m in messages) == [1, 3]


def test_command_for_unknown_neighbor_answers_error():
    reactor = FakeReactor()
    dispatch(reactor, to_command(TYPE3, "announce", neighbor="10.9.9.9"))
    assert reactor.acks == ["error"] and reactor.injected == []


def test_install_is_idempotent():
    exabgp_ext.install()
    exabgp_ext.install()
    assert exabgp_ext.Command.functions.count("announce evpn") == 1
    assert routes.ANNOUNCE == "announce"


# --------------------------------------------------------------------------- EVPN next hops on the wire


MAPPED = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])  # ::ffff:192.0.2.1, as FRR sends for type 5


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_an_ipv4_mapped_ipv6_next_hop_is_read_as_its_ipv4_address(route):
    """ExaBGP 5.0.15 alone answers this UPDATE with NOTIFICATION 3/9 (and resets the session)."""
    wire = with_next_hop(exabgp_ext.encode_update(route, "announce"), MAPPED)
    assert attributes(wire)[14][3] == 16
    assert from_exabgp_json(exabgp_ext.decode_update(wire)) == [("announce", route)]
    global_and_link_local = MAPPED + bytes.fromhex("fe800000000000000000000000000001")
    assert from_exabgp_json(exabgp_ext.decode_update(with_next_hop(wire, global_and_link_local))) == [
        ("announce", route)]


def test_an_ipv6_next_hop_is_refused_as_withdrawn_and_a_bad_length_withdraws():
    from bgp.received import decode_message

    wire = with_next_hop(exabgp_ext.encode_update(TYPE2, "announce"), bytes.fromhex("20010db8" + "00" * 11 + "01"))
    decoded = decode_message(exabgp_ext.decode_update(wire))
    assert decoded.announced == [] and [(r.key, r.reason) for r in decoded.refused] == [(TYPE2.key, "next_hop")]
    odd = with_next_hop(wire, bytes(7))  # neither 4, 16 nor 32 bytes: RFC 7606 treat-as-withdraw
    assert from_exabgp_json(exabgp_ext.decode_update(odd)) == [("withdraw", TYPE2.key)]


def test_evpn_next_hop_leaves_other_families_and_ipv4_alone():
    ipv4 = bytes.fromhex("00194604c000020100")
    assert evpnwire.evpn_next_hop(ipv4) == (ipv4, False)
    ipv6_unicast = bytes.fromhex("00020110") + MAPPED + b"\x00"
    assert evpnwire.evpn_next_hop(ipv6_unicast) == (ipv6_unicast, False)
    assert evpnwire.evpn_next_hop(bytes.fromhex("00194610") + MAPPED + b"\x00abc") == (
        bytes.fromhex("00194604c0000201") + b"\x00abc", False)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_received_nlri_raw_hex_is_exabgps_text(route):
    """The "raw" field of a received route (formatted with bytes.hex by the extension) is the text ExaBGP's own
    byte-by-byte formatting gives: the NLRI's bytes in upper-case hex."""
    printed = json.loads(exabgp_ext.decode_update(exabgp_ext.encode_update(route, "announce")))
    [nlri] = [n for nlris in printed["neighbor"]["message"]["update"]["announce"]["l2vpn evpn"].values() for n in nlris]
    packed = exabgp_ext.build_nlri(route, "announce").pack_nlri()
    assert nlri["raw"] == "".join(f"{byte:02X}" for byte in packed)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_received_nlri_json_is_its_code_and_raw_hex_only_and_decodes_the_same(route):
    """ExaBGP writes a received EVPN NLRI as its code and raw hex (what bgp.received reads), not every parsed
    field: announced and withdrawn, Canopy decodes the same route and key from it."""
    for action, section in (("announce", "announce"), ("withdraw", "withdraw")):
        printed = exabgp_ext.decode_update(exabgp_ext.encode_update(route, action))
        nlris = json.loads(printed)["neighbor"]["message"]["update"][section]["l2vpn evpn"]
        [nlri] = [n for group in nlris.values() for n in group] if isinstance(nlris, dict) else nlris
        assert set(nlri) == {"code", "raw"} and nlri["code"] == route.TYPE
        assert from_exabgp_json(printed) == [(action, route if action == "announce" else route.key)]


def test_the_nlri_index_is_computed_once_and_orders_a_batch():
    """ExaBGP sorts an UPDATE's NLRIs by their RIB index; the keyed NLRIs keep it once computed (same value)."""
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:00:{i:02x}") for i in (5, 1, 3)]
    nlris = [exabgp_ext.build_nlri(route, "withdraw") for route in batch]
    first = [nlri.index() for nlri in nlris]
    assert [nlri.index() for nlri in nlris] == first and all(a is b for a, b in zip(first, [n.index() for n in nlris]))
    assert [str(n.mac) for n in sorted(nlris)] == ["52:54:00:00:00:01", "52:54:00:00:00:03", "52:54:00:00:00:05"]


class RecordingPipe:
    """A process's stdin as ExaBGP's Processes.write uses it: what is written, and how often it is flushed."""

    def __init__(self):
        self.writes, self.flushes = [], 0

    def write(self, data):
        self.writes.append(data)

    def flush(self):
        self.flushes += 1


def test_api_messages_are_held_and_written_together_in_order_before_the_reactor_sleeps(monkeypatch):
    """ExaBGP wrote (and flushed) each API message on its own: one system call and one wake-up of the relay per
    received UPDATE. Held, they go out in one write, in order, when the reactor is about to sleep (or once
    API_HOLD_BYTES are held, or the oldest is API_HOLD_SECONDS old: made large here, so no clock decides)."""
    from types import SimpleNamespace

    exabgp_ext.install()
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_SECONDS", 3600.0)
    processes = exabgp_ext.Processes()
    pipe = RecordingPipe()
    processes._process["canopy"] = SimpleNamespace(stdin=pipe)
    for line in ('{"counter": 1}', '{"counter": 2}', "done"):
        processes.write("canopy", line)
    exabgp_ext_api.flush_api(processes, idle=False)  # busy, and nothing held long enough
    assert pipe.writes == []
    reactor = SimpleNamespace(processes=processes, _poller=SimpleNamespace(poll=lambda timeout: []))
    list(exabgp_ext_api._wait_for_io_flushed(reactor, 10))  # about to sleep: everything goes out
    assert pipe.writes == [b'{"counter": 1}\n{"counter": 2}\ndone\n'] and pipe.flushes == 1
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_BYTES", 10)
    processes.write("canopy", '{"counter": 3}')  # past API_HOLD_BYTES: at once
    assert pipe.writes[1:] == [b'{"counter": 3}\n']


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_a_withdrawn_nlri_is_kept_as_its_bytes_not_parsed(route, monkeypatch):
    """A received withdrawal's EVPN NLRI reaches Canopy as code and bytes without ExaBGP parsing its fields (a
    quarter of its CPU per one-route withdrawal): the route classes' unpack is never called for it, and Canopy
    decodes the same key; an announcement is still parsed by ExaBGP."""
    from exabgp.bgp.message.update.nlri.evpn import MAC, Multicast, Prefix

    withdrawal, announcement = (exabgp_ext.encode_update(route, action) for action in ("withdraw", "announce"))
    for cls in (MAC, Multicast, Prefix):
        monkeypatch.setattr(cls, "unpack", classmethod(lambda cls, data: pytest.fail("parsed")))
    assert from_exabgp_json(exabgp_ext.decode_update(withdrawal)) == [("withdraw", route.key)]
    with pytest.raises(BaseException, match="parsed"):
        exabgp_ext.decode_update(announcement)


def test_routes_of_one_subnet_share_their_rd_and_label_objects_and_pack_as_before():
    """The RD and label stack are built once per value (a third of building a withdrawal's NLRI) and shared:
    each NLRI still packs to its own bytes."""
    other = replace(TYPE2, mac="52:54:00:12:34:99", ip="10.1.0.9")
    first, second = exabgp_ext.build_nlri(TYPE2, "withdraw"), exabgp_ext.build_nlri(other, "withdraw")
    assert first.rd is second.rd and first.label is second.label
    assert exabgp_ext.build_nlri(TYPE2, "withdraw").pack_nlri() == first.pack_nlri() != second.pack_nlri()


def test_a_withdraw_command_reuses_what_its_announcement_parsed_and_built(monkeypatch):
    """ExaBGP gets a withdrawn route's text as it got it in the announcement: the withdrawal is neither parsed,
    checked nor built again (that was most of ExaBGP's CPU per withdraw command), and carries the same NLRI
    bytes, now withdrawn."""
    from exabgp.configuration.core.format import formated

    batch = batch_of(300)
    batch = [replace(route, rd="65000:7001") for route in batch]  # texts no other test parsed
    reactor = FakeReactor()
    dispatch(reactor, formated(to_batch_command(batch, "announce")))
    changes = reactor.injected
    announced = [change.nlri.pack_nlri() for change in changes]
    monkeypatch.setattr(routes, "route_from_dict", lambda data: pytest.fail("parsed again"))
    monkeypatch.setattr(exabgp_ext, "build_nlri", lambda route, action: pytest.fail("built again"))
    for part in (batch[:120], batch[120:]):  # other batches than the announcement's (as early withdrawals are)
        dispatch(reactor, formated(to_batch_command(part, "withdraw")))
    assert reactor.acks == ["done", "done", "done"]
    withdrawn = reactor.injected
    assert [change.nlri.pack_nlri() for change in withdrawn] == announced
    assert all(str(change.nlri.action).lower().endswith("withdraw") for change in withdrawn)
    assert all(str(change.nlri.action).lower().endswith("announce") for change in changes)  # left as they were


@pytest.mark.parametrize("spacing", ["compact", "ExaBGP's formatter"])
def test_batch_texts_seen_before_parse_to_the_same_routes_and_bad_ones_still_fail(spacing):
    """``parse_batch_command`` cuts a batch into its routes' texts to look them up; the cut never changes what
    a line means: a text holding the separator inside a string, or a bad route, is parsed whole and refused
    with its position, the first time and again."""
    from exabgp.configuration.core.format import formated

    spaced = formated if spacing != "compact" else (lambda line: line)
    batch = [replace(route, rd="65000:7002") for route in batch_of(5)]
    line = spaced(to_batch_command(batch, "announce"))
    assert routes.parse_batch_command(line) == routes.parse_batch_command(line) == (None, "announce", tuple(batch))
    mixed = batch[:2] + [replace(route, rd="65000:7003") for route in batch[2:]]  # seen first, new after
    assert routes.parse_batch_command(spaced(to_batch_command(mixed, "withdraw")))[2] == tuple(mixed)
    bad = line.replace('"l2_vni":5001', '"l2_vni":99999999').replace('"l2_vni" :5001', '"l2_vni" :99999999')
    tricky = line.replace('"65000:7002"', '"},{"', 1)
    for text, error in ((bad, "route 0: l2_vni"), (tricky, "route 0: rd")):
        for _ in range(2):
            with pytest.raises(ValueError, match=error):
                routes.parse_batch_command(text)


def test_every_keyed_evpn_nlri_shares_one_family_object():
    """ExaBGP asks an NLRI for its family eight times between a command and its UPDATE, and built a new Family
    object each time; the keyed NLRIs answer with one object, the same family."""
    from exabgp.protocol.family import AFI, SAFI

    nlris = [exabgp_ext.build_nlri(route, action) for route in (TYPE2, TYPE2_L2, TYPE5)
             for action in ("announce", "withdraw")]
    families = [nlri.family() for nlri in nlris] + [nlri.family() for nlri in nlris]
    assert all(family is families[0] for family in families)
    assert families[0].afi_safi() == (AFI.l2vpn, SAFI.evpn)


# --------------------------------------------------------------------------- received withdrawals (exabgp_ext_api)


def mp_unreach(*routes_, flags=0x90) -> bytes:
    """An UPDATE body (no header) as GoBGP withdraws EVPN routes: one MP_UNREACH_NLRI, nothing else."""
    value = struct.pack("!HB", 25, 70) + b"".join(exabgp_ext.build_nlri(r, "withdraw").pack_nlri() for r in routes_)
    length = struct.pack("!H", len(value)) if flags & 0x10 else bytes([len(value)])
    attribute = bytes([flags, 15]) + length + value
    return struct.pack("!HH", 0, len(attribute)) + attribute


def unpacked_json(body: bytes, unpack) -> tuple[str, str]:
    """ExaBGP's JSON of an UPDATE body unpacked by ``unpack``: (the whole, the part after the header's time,
    host, pids and counter)."""
    from exabgp.bgp.message.direction import Direction

    neighbor, negotiated = exabgp_ext._codec(65000, 65001)
    update = unpack(exabgp_ext.Update, body, Direction.IN, negotiated)
    text = exabgp_ext.Response.JSON("5.0.0").update(neighbor, "receive", update, None, "", "")
    return text, text.split('"type"')[1]


@pytest.mark.parametrize("flags", [0x90, 0x80])
def test_a_withdraw_only_evpn_update_is_read_without_exabgps_attribute_unpack_and_gives_the_same(flags,
                                                                                                 monkeypatch):
    """GoBGP withdraws one route per UPDATE (MP_UNREACH_NLRI only): read by the extension (ExaBGP's attribute
    machinery is two thirds of reading one), it is the Update ExaBGP's own unpack gives: same JSON, same keys."""
    exabgp_ext.install()
    body = mp_unreach(TYPE2_L2, TYPE3, TYPE5, flags=flags)
    _, expected = unpacked_json(body, exabgp_ext_api._THROUGH["unpack_update"])
    monkeypatch.setattr(exabgp_ext.Attributes, "unpack", classmethod(lambda *a: pytest.fail("ExaBGP's unpack")))
    text, tail = unpacked_json(body, exabgp_ext.Update.unpack_message.__func__)
    assert tail == expected
    assert from_exabgp_json(text) == [("withdraw", route.key) for route in (TYPE2_L2, TYPE3, TYPE5)]


@pytest.mark.parametrize("body", [
    struct.pack("!HH", 0, 6) + bytes([0x90, 15, 0, 3, 0, 25, 70]),  # End-of-RIB for l2vpn evpn
    mp_unreach(TYPE2_L2, flags=0xD0),  # transitive flags on MP_UNREACH
    mp_unreach(TYPE2_L2)[:-1],  # an NLRI cut short
    struct.pack("!HH", 0, 5) + bytes([0x80, 15, 3, 0, 1, 1]) + b"\x00",  # IPv4 unicast, with IPv4 NLRI after
], ids=["eor", "flags", "short", "ipv4"])
def test_anything_but_a_plain_evpn_withdrawal_is_left_to_exabgps_unpack(body, monkeypatch):
    calls = []

    def exabgps(cls, data, direction, negotiated):
        calls.append(data)
        return "exabgp's"

    exabgp_ext.install()
    monkeypatch.setitem(exabgp_ext_api._THROUGH, "unpack_update", exabgps)
    from exabgp.bgp.message.direction import Direction

    _, negotiated = exabgp_ext._codec(65000, 65001)
    assert exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated) == "exabgp's" and calls == [body]


def api_processes(monkeypatch):
    """ExaBGP's Processes with one JSON API process "canopy" writing into a RecordingPipe, every peer's received
    UPDATEs sent to it, nothing written before the reactor sleeps (no clock decides)."""
    from types import SimpleNamespace

    exabgp_ext.install()
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_SECONDS", 3600.0)
    processes, pipe = exabgp_ext.Processes(), RecordingPipe()
    processes._process["canopy"] = SimpleNamespace(stdin=pipe)
    processes._encoder["canopy"] = exabgp_ext.Response.JSON("5.0.0")
    monkeypatch.setattr(processes, "_notify", lambda neighbor, event: ["canopy"], raising=False)
    return processes, pipe


def received(processes, body: bytes, neighbor=None) -> None:
    """ExaBGP's reactor handing a received UPDATE body to its API processes (parsed, as Canopy configures)."""
    from exabgp.bgp.message.direction import Direction

    codec_neighbor, negotiated = exabgp_ext._codec(65000, 65001)
    update = exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated)
    processes.message(exabgp_ext.Message.CODE.UPDATE, neighbor or codec_neighbor, "receive", update, None, b"", b"")


def test_consecutive_withdrawals_of_a_peer_reach_canopy_as_one_message_in_order(monkeypatch):
    """GoBGP's one-route withdrawals, one API message each, cost ExaBGP its header and neighbor JSON and Canopy a
    message per route: consecutive ones of one peer become one message withdrawing them all, which closes before
    any other message (order kept) and before a withdrawal of another peer."""
    processes, pipe = api_processes(monkeypatch)
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:01:{i:02x}") for i in range(5)]
    for route in batch[:3]:
        received(processes, mp_unreach(route))
    received(processes, exabgp_ext.encode_update(TYPE3, "announce")[19:])
    other = copy.copy(exabgp_ext._codec(65000, 65001)[0])
    received(processes, mp_unreach(batch[3]))
    received(processes, mp_unreach(batch[4]), neighbor=other)
    exabgp_ext_api.flush_api(processes, idle=False)
    assert pipe.writes == []
    exabgp_ext_api.flush_api(processes)
    lines = pipe.writes[0].decode().splitlines()
    assert [from_exabgp_json(line) for line in lines] == [
        [("withdraw", route.key) for route in batch[:3]], [("announce", TYPE3)], [("withdraw", batch[3].key)],
        [("withdraw", batch[4].key)]]


def test_a_batch_of_withdrawals_goes_out_once_it_is_api_hold_bytes_long(monkeypatch):
    processes, pipe = api_processes(monkeypatch)
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_BYTES", 150)  # two NLRIs of ~98 bytes
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:02:{i:02x}") for i in range(3)]
    for route in batch:
        received(processes, mp_unreach(route))
    assert [from_exabgp_json(line) for line in pipe.writes[0].decode().splitlines()] == [
        [("withdraw", route.key) for route in batch[:2]]]
