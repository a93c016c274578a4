"""The ExaBGP extension: pin, EVPN NLRI/attributes packed by ExaBGP and decoded back, next hops, received NLRIs.
Commands: test_exabgp_ext_commands.py; the API side: test_exabgp_ext_api.py."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bgp import evpnwire, exabgp_codec, exabgp_ext, plaincopy
from bgp.received import from_exabgp_json
from bgp.routes import InclusiveMulticastRoute, MacIpRoute
from tests.harness.bgpraw import with_next_hop
from tests.unit.exabgp_cases import ALL, TYPE2, TYPE2_L2, TYPE3, TYPE5, attributes, communities
from tests.unit.evpn_fixtures import fixture_text


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


def test_pin_fails_loudly_when_the_command_dispatch_moves(monkeypatch):
    """bgp/exabgp_ext_api.py replaces API.response (Canopy's command lines found by their head) and calls ExaBGP's
    with the same arguments: another signature is a moved internal, named (review37b)."""
    monkeypatch.setattr(exabgp_ext.API, "response", lambda self, reactor, command, service, use_json: None)
    with pytest.raises(exabgp_ext.ExaBGPPinError, match=r"API\.response"):
        exabgp_ext.check_pin()


def test_only_the_extension_imports_exabgp():
    bgp_dir = Path(exabgp_ext.__file__).parent
    importers = {p.name for p in bgp_dir.glob("*.py") if "import exabgp" in p.read_text()
                 or "from exabgp" in p.read_text()}
    assert importers == {"exabgp_codec.py", "exabgp_ext.py", "exabgp_ext_api.py"}


# --------------------------------------------------------------------------- wire


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_packed_by_exabgp_and_decoded_back(route):
    wire = exabgp_codec.encode_update(route, "announce")
    printed = exabgp_codec.decode_update(wire)
    assert from_exabgp_json(printed) == [("announce", route)]
    assert 3 not in attributes(wire), "no NEXT_HOP attribute: the next hop is in MP_REACH_NLRI"
    mp_reach = attributes(wire)[14]
    assert mp_reach[:4] == bytes.fromhex("00194604") and mp_reach[4:8] == bytes([192, 0, 2, 1])


def test_type2_labels_are_raw_vnis_two_for_symmetric_irb():
    mp_reach = attributes(exabgp_codec.encode_update(TYPE2, "announce"))[14]
    assert mp_reach.endswith(bytes.fromhex("525400123456" "20" "0a010005" "001389" "002329"))
    mp_reach = attributes(exabgp_codec.encode_update(TYPE2_L2, "announce"))[14]
    assert mp_reach.endswith(bytes.fromhex("525400123457" "00" "001388"))  # even VNI, no IP


def test_type2_communities():
    assert communities(exabgp_codec.encode_update(TYPE2, "announce")) == {
        bytes.fromhex("0002fde800001389"), bytes.fromhex("0002fde800002329"),  # RT 65000:5001/9001
        bytes.fromhex("030c000000000008"),                                     # encapsulation VXLAN
        bytes.fromhex("0600000000000003"),                                     # MAC mobility seq 3
        bytes.fromhex("0603020000000001"),                                     # Router's MAC
    }


def test_type3_pmsi_ingress_replication_label_is_the_vni():
    wire = exabgp_codec.encode_update(TYPE3, "announce")
    assert attributes(wire)[22] == bytes.fromhex("00" "06" "001389" "c0000201")
    assert bytes.fromhex("030c000000000008") in communities(wire)


def test_type5_nlri_and_router_mac():
    wire = exabgp_codec.encode_update(TYPE5, "announce")
    assert attributes(wire)[14].endswith(bytes.fromhex("18" "0a010000" "00000000" "002329"))
    assert bytes.fromhex("0603020000000001") in communities(wire)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_withdraw_repeats_the_announced_nlri(route):
    announce = exabgp_ext.build_nlri(route, "announce")
    withdraw = exabgp_ext.build_nlri(route, "withdraw")
    assert withdraw.index() == announce.index()
    wire = exabgp_codec.encode_update(route, "withdraw")
    assert attributes(wire)[15][3:] == announce.pack_nlri()
    decoded = from_exabgp_json(exabgp_codec.decode_update(wire))
    assert decoded == [("withdraw", route.key)]


def test_router_mac_community_decodes_through_exabgp():
    exabgp_ext.install()
    community = exabgp_ext.ExtendedCommunity.unpack(bytes.fromhex("0603020000000002"))
    assert isinstance(community, exabgp_ext.RouterMac)
    assert repr(community) == "router-mac:02:00:00:00:00:02"  # as in the captured fixtures


def test_same_fields_as_gobgp_received_from_exabgp():
    """Build the routes the fixture shows in GoBGP's RIB and compare what GoBGP decoded."""
    rib = json.loads(fixture_text("gobgp_rib_after_exabgp_announce.json"))
    mac = rib["[type:macadv][rd:65000:100][etag:0][mac:52:54:00:12:34:56][ip:10.1.0.5]"][0]
    route = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001,
                       next_hop="127.0.0.3", route_targets=("65000:5001",),
                       router_mac="02:00:00:00:00:01", mobility_seq=3)
    assert mac["nlri"]["value"]["labels"] == [route.l2_vni]
    wire = exabgp_codec.encode_update(route, "announce")
    gobgp_communities = next(a["value"] for a in mac["attrs"] if a["type"] == 16)
    assert len(gobgp_communities) == len(communities(wire)) == 4
    assert {"type": 3, "subtype": 12, "tunnel_type": 8} in gobgp_communities
    assert {"type": 6, "subtype": 3, "mac": route.router_mac} in gobgp_communities
    multicast = rib["[type:multicast][rd:65000:100][etag:0][ip:127.0.0.3]"][0]
    pmsi = next(a for a in multicast["attrs"] if a["type"] == 22)
    wire = exabgp_codec.encode_update(InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="127.0.0.3"),
                                    "announce")
    assert pmsi["label"] == int.from_bytes(attributes(wire)[22][2:5], "big") == 5001
    assert pmsi["tunnel-type"] == attributes(wire)[22][1] == 6


# --------------------------------------------------------------------------- EVPN next hops on the wire


MAPPED = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])  # ::ffff:192.0.2.1, as FRR sends for type 5


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_an_ipv4_mapped_ipv6_next_hop_is_read_as_its_ipv4_address(route):
    """ExaBGP 5.0.15 alone answers this UPDATE with NOTIFICATION 3/9 (and resets the session)."""
    wire = with_next_hop(exabgp_codec.encode_update(route, "announce"), MAPPED)
    assert attributes(wire)[14][3] == 16
    assert from_exabgp_json(exabgp_codec.decode_update(wire)) == [("announce", route)]
    global_and_link_local = MAPPED + bytes.fromhex("fe800000000000000000000000000001")
    assert from_exabgp_json(exabgp_codec.decode_update(with_next_hop(wire, global_and_link_local))) == [
        ("announce", route)]


def test_an_ipv6_next_hop_is_refused_as_withdrawn_and_a_bad_length_withdraws():
    from bgp.received import decode_message

    wire = with_next_hop(exabgp_codec.encode_update(TYPE2, "announce"), bytes.fromhex("20010db8" + "00" * 11 + "01"))
    decoded = decode_message(exabgp_codec.decode_update(wire))
    assert decoded.announced == [] and [(r.key, r.reason) for r in decoded.refused] == [(TYPE2.key, "next_hop")]
    odd = with_next_hop(wire, bytes(7))  # neither 4, 16 nor 32 bytes: RFC 7606 treat-as-withdraw
    assert from_exabgp_json(exabgp_codec.decode_update(odd)) == [("withdraw", TYPE2.key)]


def test_evpn_next_hop_leaves_other_families_and_ipv4_alone():
    ipv4 = bytes.fromhex("00194604c000020100")
    assert evpnwire.evpn_next_hop(ipv4) == (ipv4, False)
    ipv6_unicast = bytes.fromhex("00020110") + MAPPED + b"\x00"
    assert evpnwire.evpn_next_hop(ipv6_unicast) == (ipv6_unicast, False)
    assert evpnwire.evpn_next_hop(bytes.fromhex("00194610") + MAPPED + b"\x00abc") == (
        bytes.fromhex("00194604c0000201") + b"\x00abc", False)


# --------------------------------------------------------------------------- received NLRIs, read cheaply


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_received_nlri_raw_hex_is_exabgps_text(route):
    """The "raw" field of a received route (formatted with bytes.hex by the extension) is the text ExaBGP's own
    byte-by-byte formatting gives: the NLRI's bytes in upper-case hex."""
    printed = json.loads(exabgp_codec.decode_update(exabgp_codec.encode_update(route, "announce")))
    [nlri] = [n for nlris in printed["neighbor"]["message"]["update"]["announce"]["l2vpn evpn"].values() for n in nlris]
    packed = exabgp_ext.build_nlri(route, "announce").pack_nlri()
    assert nlri["raw"] == "".join(f"{byte:02X}" for byte in packed)


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_received_nlri_json_is_its_code_and_raw_hex_only_and_decodes_the_same(route):
    """ExaBGP writes a received EVPN NLRI as its code and raw hex (what bgp.received reads), not every parsed
    field: announced and withdrawn, Canopy decodes the same route and key from it."""
    for action, section in (("announce", "announce"), ("withdraw", "withdraw")):
        printed = exabgp_codec.decode_update(exabgp_codec.encode_update(route, action))
        nlris = json.loads(printed)["neighbor"]["message"]["update"][section]["l2vpn evpn"]
        [nlri] = [n for group in nlris.values() for n in group] if isinstance(nlris, dict) else nlris
        assert set(nlri) == {"code", "raw"} and nlri["code"] == route.TYPE
        assert from_exabgp_json(printed) == [(action, route if action == "announce" else route.key)]


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_a_withdrawn_nlri_is_kept_as_its_bytes_not_parsed(route, monkeypatch):
    """A received withdrawal's EVPN NLRI reaches Canopy as code and bytes without ExaBGP parsing its fields (a
    quarter of its CPU per one-route withdrawal): the route classes' unpack is never called for it, and Canopy
    decodes the same key; an announcement is still parsed by ExaBGP."""
    from exabgp.bgp.message.update.nlri.evpn import MAC, Multicast, Prefix

    withdrawal, announcement = (exabgp_codec.encode_update(route, action) for action in ("withdraw", "announce"))
    for cls in (MAC, Multicast, Prefix):
        monkeypatch.setattr(cls, "unpack", classmethod(lambda cls, data: pytest.fail("parsed")))
    assert from_exabgp_json(exabgp_codec.decode_update(withdrawal)) == [("withdraw", route.key)]
    with pytest.raises(BaseException, match="parsed"):
        exabgp_codec.decode_update(announcement)


# --------------------------------------------------------------------------- NLRIs built cheaply


def test_the_nlri_index_is_computed_once_and_orders_a_batch():
    """ExaBGP sorts an UPDATE's NLRIs by their RIB index; the keyed NLRIs keep it once computed (same value)."""
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:00:{i:02x}") for i in (5, 1, 3)]
    nlris = [exabgp_ext.build_nlri(route, "withdraw") for route in batch]
    first = [nlri.index() for nlri in nlris]
    assert [nlri.index() for nlri in nlris] == first and all(a is b for a, b in zip(first, [n.index() for n in nlris]))
    assert [str(n.mac) for n in sorted(nlris)] == ["52:54:00:00:00:01", "52:54:00:00:00:03", "52:54:00:00:00:05"]


def test_routes_of_one_subnet_share_their_rd_and_label_objects_and_pack_as_before():
    """The RD and label stack are built once per value (a third of building a withdrawal's NLRI) and shared:
    each NLRI still packs to its own bytes."""
    other = replace(TYPE2, mac="52:54:00:12:34:99", ip="10.1.0.9")
    first, second = exabgp_ext.build_nlri(TYPE2, "withdraw"), exabgp_ext.build_nlri(other, "withdraw")
    assert first.rd is second.rd and first.label is second.label
    assert exabgp_ext.build_nlri(TYPE2, "withdraw").pack_nlri() == first.pack_nlri() != second.pack_nlri()


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
def test_a_withdrawal_after_its_announcement_is_copy_copy_of_its_nlri_with_its_attributes(route):
    """A withdrawal whose announcement ExaBGP took reuses that announcement's NLRI, copied (bgp/plaincopy.py), and its
    attributes object: the copy is what copy.copy makes of it (same class, same fields), packs and indexes as a
    withdrawal built afresh, and leaves the announcement's NLRI an announcement (review44w)."""
    import copy

    other = replace(route, rd="65000:7301")  # a route object no other test announced
    _, announced, attributes = exabgp_ext._shared(other, "announce")
    _, withdrawn, withdrawn_attributes = exabgp_ext._shared(other, "withdraw")
    assert plaincopy.plain(type(announced))  # (the cheap copy, not copy.copy's protocol)
    reference = copy.copy(announced)
    reference.action = withdrawn.action
    afresh = exabgp_ext.build_nlri(other, "withdraw")
    assert type(withdrawn) is type(reference) and withdrawn.__dict__ == reference.__dict__
    assert withdrawn is not announced and str(announced.action) != str(withdrawn.action) == str(afresh.action)
    assert withdrawn.pack_nlri() == afresh.pack_nlri() and withdrawn.index() == afresh.index()
    assert withdrawn_attributes is attributes and attributes.index() == exabgp_ext.build_attributes(other).index()


def test_every_keyed_evpn_nlri_shares_one_family_object():
    """ExaBGP asks an NLRI for its family eight times between a command and its UPDATE, and built a new Family
    object each time; the keyed NLRIs answer with one object, the same family."""
    from exabgp.protocol.family import AFI, SAFI

    nlris = [exabgp_ext.build_nlri(route, action) for route in (TYPE2, TYPE2_L2, TYPE5)
             for action in ("announce", "withdraw")]
    families = [nlri.family() for nlri in nlris] + [nlri.family() for nlri in nlris]
    assert all(family is families[0] for family in families)
    assert families[0].afi_safi() == (AFI.l2vpn, SAFI.evpn)


def test_exabgp_runs_under_an_unnamed_uid_in_the_root_group_and_drops_root_as_before(monkeypatch):
    """``podman run --user 23456``: uid 23456 (no name: daemon.user is ``nobody``, bgp.speakerconf) and gid 0.
    ExaBGP 5.0.15 switches to the user's group whenever the gid is 0, which only root may do (the kernel's EPERM,
    here os.setgid's), and then refuses to run; installed, a uid other than root's keeps what it runs as. Under
    root, ExaBGP's own drop runs as before (to root's own name: nothing changes)."""
    import os
    import types

    from exabgp.reactor.daemon import Daemon

    exabgp_ext.install()
    calls = []

    def setgid(gid):
        if os.getuid():
            raise PermissionError(1, "Operation not permitted")
        calls.append(("setgid", gid))

    monkeypatch.setattr(os, "getuid", lambda: 23456)
    monkeypatch.setattr(os, "getgid", lambda: 0)
    monkeypatch.setattr(os, "setgid", setgid)
    nobody = types.SimpleNamespace(user="nobody")
    assert Daemon.drop_privileges(nobody) is True and calls == []  # ExaBGP's own: False (refuses to run)
    monkeypatch.setattr(os, "getuid", lambda: 0)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "setuid", lambda uid: calls.append(("setuid", uid)))
    assert Daemon.drop_privileges(types.SimpleNamespace(user="root")) is True
    assert calls == [("setgid", 0), ("setuid", 0)]


# --------------------------------------------------------------------------- clock


def test_exabgps_hold_timer_keepalives_and_back_off_follow_elapsed_time_not_the_wall_clock(monkeypatch):
    """A wall clock stepped ten minutes forward made ExaBGP's hold timer expire at once (NOTIFICATION, session
    reset); stepped back, its keepalives stopped until the clock caught up (the peer reset the session) and a
    reconnect waited as long (tests/integration/test_wall_clock_step.py proves it against GoBGP). Elapsed time is
    simulated by moving the timers' own marks back."""
    import time
    from types import SimpleNamespace

    from exabgp.bgp import timer
    from exabgp.bgp.message import Notify
    from exabgp.bgp.timer import ReceiveTimer, SendTimer
    from exabgp.reactor.delay import Delay

    exabgp_ext.install()
    monkeypatch.setattr(timer, "log", SimpleNamespace(debug=lambda *args, **kwargs: None))  # its logger is not set up
    receive = ReceiveTimer(lambda: "peer", 9, 4, 0, "hold timer expired")
    send, delay = SendTimer(lambda: "peer", SimpleNamespace(keepalive=lambda: 3)), Delay()
    delay.increase()
    delay.increase()  # the next attempt 1 s from now
    wall = time.time()
    for step in (600.0, -600.0):
        monkeypatch.setattr(time, "time", lambda step=step: wall + step)
        receive.check_ka_timer()  # no Notify: no time passed
        assert not send.need_ka() and delay.backoff()
    send.last_sent -= 3  # 3 s later: a keepalive is due
    delay._time -= 1.01  # 1 s later: the back-off is over
    assert send.need_ka() and not delay.backoff()
    receive.last_read -= 10  # 10 s without a message: past the hold time
    with pytest.raises(Notify):
        receive.check_ka_timer()


def test_pin_fails_loudly_when_exabgps_timers_take_their_clock_from_elsewhere(monkeypatch):
    from types import SimpleNamespace

    from exabgp.bgp import timer

    monkeypatch.setattr(timer, "time", SimpleNamespace(time=lambda: 0.0))
    with pytest.raises(exabgp_ext.ExaBGPPinError, match="exabgp.bgp.timer, exabgp.reactor.delay"):
        exabgp_ext.check_pin()
