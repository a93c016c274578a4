"""What packets do in the compiled pipeline, asked of real Open vSwitch with ofproto/trace.

One switch under test (hv1, a real ovs-vswitchd) holds local ports of every kind; a second switch (hv2)
exists only as discovery data, so its endpoints are remote. The compiled flows and groups are loaded
with ovs-ofctl (their text form, openflow.flows.render_flow), then packets are traced.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from openflow import meters
from openflow.compiler import compile_switch
from openflow.flows import render_flow, render_group
from tests.unit.pipeline_case import PORTS, REMOTE_VTEP, build_view

pytestmark = pytest.mark.integration

class Traced:
    """The OpenFlow-level outcome of one ofproto/trace: every output with the fields set on its path."""

    def __init__(self, text):
        self.text = text
        self.outputs = []  # (port, {field: value})
        sets, group_base = {}, {}
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("group:"):
                group_base = dict(sets)
            elif re.fullmatch(r"bucket \d+", line):
                sets = dict(group_base)
            elif line.startswith("set_field:"):
                value, fieldname = line[len("set_field:"):].rsplit("->", 1)
                sets[fieldname] = value
            elif m := re.match(r"-> NXM_\w+?_(\w+)\[\] is now (\S+)", line):
                sets[m.group(1).lower()] = m.group(2)
            elif line.startswith("pop_vlan"):
                sets["vlan"] = "popped"
            elif line.startswith("output:"):
                self.outputs.append((line.split(":", 1)[1], dict(sets)))
            elif line == ">> skipping output to input port":  # OVS never sends a packet back where it came in
                self.outputs.pop()
            elif line == "IN_PORT":
                self.outputs.append(("in_port", dict(sets)))

    def ports(self):
        return sorted(p for p, _ in self.outputs)

    def dropped(self):
        return not self.outputs


@pytest.fixture(scope="module")
def switch(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        hv = lab.add_hypervisor("hv1", flavour="esxi")
        for name, ofport in PORTS.items():
            extra = ["type=vxlan", "options:remote_ip=flow", "options:key=flow"] if name == "vxlan0" \
                else ["type=internal"]
            hv.vsctl("add-port", "br-int", name, "--", "set", "Interface", name, f"ofport_request={ofport}", *extra)
        policy, view = build_view(hv.vtep_ip)
        desired = compile_switch(view, "s1")
        workdir = lab.workdir
        (workdir / "groups").write_text("\n".join(render_group(g) for g in desired.all_groups().values()) + "\n")
        (workdir / "flows").write_text("\n".join(render_flow(f) for f in desired.all_flows()) + "\n")
        for m in meters.named(desired.all_flows()).values():  # the meters the flows name, added first (a flow naming
            hv.ofctl("add-meter", "br-int", meters.render_meter(m))  # a missing meter is refused: openflow/meters.py)
        hv.ofctl("add-groups", "br-int", str(workdir / "groups"))
        hv.ofctl("add-flows", "br-int", str(workdir / "flows"))

        def trace(packet):
            done = subprocess.run(["ovs-appctl", "-t", str(hv.ovs.rundir / "ovs-vswitchd.ctl"), "ofproto/trace",
                                   "br-int", packet], capture_output=True, text=True, timeout=10, check=True)
            return Traced(done.stdout)

        yield trace, policy, view, desired


def vni(policy, ref):
    return hex(policy.find("subnet", ref)["vni"])


def l3vni(policy, ref):
    return hex(policy.find("domain", ref)["l3_vni"])


WEB1 = "in_port=1,dl_src=02:00:00:00:01:01"


def test_everything_installed_is_exactly_what_was_compiled(switch):
    _, _, _, desired = switch
    assert len(desired.all_flows()) > 40 and len(desired.all_groups()) == 6  # 3 subnets on hv1 x 2 groups


def test_local_unicast_in_the_subnet(switch):
    trace, *_ = switch
    out = trace(f"{WEB1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11,nw_dst=10.0.1.12")
    assert out.ports() == ["2"]


def test_remote_unicast_goes_over_vxlan_with_the_subnet_vni(switch):
    trace, policy, *_ = switch
    out = trace(f"{WEB1},dl_dst=02:00:00:00:01:03,ip,nw_src=10.0.1.11,nw_dst=10.0.1.13")
    [(port_, sets)] = out.outputs
    assert port_ == "100" and sets["tun_dst"] == REMOTE_VTEP and sets["tun_id"] == vni(policy, "acme/web")


def test_spoofed_source_mac_or_ip_is_dropped(switch):
    trace, *_ = switch
    assert trace("in_port=1,dl_src=02:00:00:00:01:99,dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11").dropped()
    assert trace(f"{WEB1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.99,nw_dst=10.0.1.12").dropped()
    assert trace(f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.99,arp_sha=02:00:00:00:01:01,"
                 "arp_tpa=10.0.1.12").dropped()


def test_arp_for_gateway_and_known_ips_is_answered_by_the_switch(switch):
    trace, policy, *_ = switch
    gw_mac = policy.find("domain", "acme/prod")["gateway_mac"]
    for target, mac in (("10.0.1.1", gw_mac), ("10.0.1.13", "02:00:00:00:01:03")):
        out = trace(f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,arp_sha=02:00:00:00:01:01,"
                    f"arp_tpa={target}")
        [(port_, sets)] = out.outputs
        assert port_ == "in_port" and sets["arp_op"] == "2" and sets["eth_src"] == mac and sets["arp_sha"] == mac
        assert sets["arp_spa"] == target and sets["eth_dst"] == "02:00:00:00:01:01"


def test_a_port_arping_for_its_own_address_is_not_answered(switch):
    trace, *_ = switch
    out = trace(f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=0.0.0.0,arp_sha=02:00:00:00:01:01,"
                "arp_tpa=10.0.1.11")
    assert "in_port" not in out.ports() and "100" in out.ports()  # flooded, not answered


def test_unknown_arp_floods_the_subnet_locally_and_to_remote_vteps(switch):
    trace, policy, *_ = switch
    out = trace(f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,arp_sha=02:00:00:00:01:01,"
                "arp_tpa=10.0.1.200")
    assert out.ports() == ["100", "2", "4", "4"]  # web2, both ESXi vNICs on the trunk, hv2
    vlans = sorted(int(s["vlan_vid"]) & 0xFFF for p_, s in out.outputs if p_ == "4")
    assert vlans == [101, 102]
    assert [s["tun_dst"] for p_, s in out.outputs if p_ == "100"] == [REMOTE_VTEP]


def test_flood_from_the_tunnel_stays_local(switch):
    trace, policy, *_ = switch
    out = trace(f"in_port=100,tun_id={vni(policy, 'acme/web')},dl_src=02:00:00:00:01:03,dl_dst=ff:ff:ff:ff:ff:ff")
    assert out.ports() == ["1", "2", "4", "4"]


def test_esxi_vnic_is_classified_by_vlan_and_reached_with_its_vlan(switch):
    trace, *_ = switch
    out = trace("in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:01,ip,nw_src=10.0.1.14,"
                "nw_dst=10.0.1.11")
    assert out.ports() == ["1"]
    out = trace(f"{WEB1},dl_dst=02:00:00:00:01:05,ip,nw_src=10.0.1.11,nw_dst=10.0.1.15")
    [(port_, sets)] = out.outputs
    assert port_ == "4" and int(sets["vlan_vid"]) & 0xFFF == 102
    # vNIC to vNIC on the same trunk goes back out of it, with the other VLAN
    out = trace("in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:05,ip,nw_src=10.0.1.14,"
                "nw_dst=10.0.1.15")
    [(port_, sets)] = out.outputs
    assert port_ == "in_port" and int(sets["vlan_vid"]) & 0xFFF == 102


def test_routing_to_a_local_subnet_rewrites_macs_and_decrements_ttl(switch):
    trace, policy, *_ = switch
    gw_mac = policy.find("domain", "acme/prod")["gateway_mac"]
    out = trace(f"{WEB1},dl_dst={gw_mac},ip,nw_src=10.0.1.11,nw_dst=10.0.2.11,nw_ttl=64")
    [(port_, sets)] = out.outputs
    assert port_ == "3" and sets["eth_src"] == gw_mac and sets["eth_dst"] == "02:00:00:00:02:01"
    assert "dec_ttl" in out.text


def test_routing_to_a_remote_host_uses_the_l3_vni_and_router_macs(switch):
    trace, policy, view, _ = switch
    gw_mac = policy.find("domain", "acme/prod")["gateway_mac"]
    for dst in ("10.0.2.12", "192.168.50.7"):  # a host route, and a static route via that host
        out = trace(f"{WEB1},dl_dst={gw_mac},ip,nw_src=10.0.1.11,nw_dst={dst},nw_ttl=64")
        [(port_, sets)] = out.outputs
        assert port_ == "100" and sets["tun_id"] == l3vni(policy, "acme/prod") and sets["tun_dst"] == REMOTE_VTEP
        assert sets["eth_src"] == view.switches["s1"].router_mac and sets["eth_dst"] == view.switches["s2"].router_mac


def test_symmetric_irb_from_the_tunnel_delivers_locally(switch):
    trace, policy, view, _ = switch
    out = trace(f"in_port=100,tun_id={l3vni(policy, 'acme/prod')},dl_src={view.switches['s2'].router_mac},"
                f"dl_dst={view.switches['s1'].router_mac},ip,nw_src=10.0.2.12,nw_dst=10.0.1.11,nw_ttl=63")
    [(port_, sets)] = out.outputs
    assert port_ == "1" and sets["eth_dst"] == "02:00:00:00:01:01"


def test_no_route_for_unknown_destinations(switch):
    trace, policy, *_ = switch
    gw_mac = policy.find("domain", "acme/prod")["gateway_mac"]
    assert trace(f"{WEB1},dl_dst={gw_mac},ip,nw_src=10.0.1.11,nw_dst=8.8.8.8").dropped()


def test_tenants_with_the_same_addresses_are_isolated(switch):
    trace, policy, *_ = switch
    g1 = "in_port=5,dl_src=02:00:00:00:09:01"
    # globex's VM asks for acme's addresses and MACs: it must never reach acme's ports
    assert set(trace(f"{g1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11,nw_dst=10.0.1.12").ports()) <= {"100"}
    out = trace(f"{g1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,arp_sha=02:00:00:00:09:01,"
                "arp_tpa=10.0.1.12")
    assert not {"1", "2", "3", "4"} & set(out.ports())
    # acme's web1 shares globex g1's IP; traffic to it stays in acme
    out = trace(f"{WEB1},dl_dst=02:00:00:00:09:01,ip,nw_src=10.0.1.11,nw_dst=10.0.1.11")
    assert "5" not in out.ports()


def test_dhcp_goes_to_the_controller(switch):
    trace, *_ = switch
    out = trace("udp,in_port=1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,"
                "nw_dst=255.255.255.255,udp_src=68,udp_dst=67")
    assert out.outputs == [] and "controller" in out.text.lower()


def test_the_gateway_answers_ping(switch):
    trace, policy, *_ = switch
    gw_mac = policy.find("domain", "acme/prod")["gateway_mac"]
    out = trace(f"icmp,{WEB1},dl_dst={gw_mac},nw_src=10.0.1.11,nw_dst=10.0.1.1,icmp_type=8,icmp_code=0")
    [(port_, sets)] = out.outputs
    assert port_ == "in_port" and sets["icmp_type"] == "0" and sets["ip_src"] == "10.0.1.1" and sets["ip_dst"] == "10.0.1.11"
    assert sets["eth_src"] == gw_mac and sets["eth_dst"] == "02:00:00:00:01:01"


# --------------------------------------------------- Canopy's own tracer (openflow/trace.py) agrees with OVS

GW = "{gw}"  # replaced by the domain's gateway MAC
AGREEMENT = {
    "l2 local": f"{WEB1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11,nw_dst=10.0.1.12",
    "l2 remote over vxlan": f"{WEB1},dl_dst=02:00:00:00:01:03,ip,nw_src=10.0.1.11,nw_dst=10.0.1.13",
    "routed local": f"{WEB1},dl_dst={GW},ip,nw_src=10.0.1.11,nw_dst=10.0.2.11,nw_ttl=64",
    "routed remote host": f"{WEB1},dl_dst={GW},ip,nw_src=10.0.1.11,nw_dst=10.0.2.12,nw_ttl=64",
    "routed static via remote": f"{WEB1},dl_dst={GW},ip,nw_src=10.0.1.11,nw_dst=192.168.50.7,nw_ttl=64",
    "no route": f"{WEB1},dl_dst={GW},ip,nw_src=10.0.1.11,nw_dst=8.8.8.8",
    "esxi vlan in": "in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:01,ip,nw_src=10.0.1.14,"
                    "nw_dst=10.0.1.11",
    "esxi vlan out": f"{WEB1},dl_dst=02:00:00:00:01:05,ip,nw_src=10.0.1.11,nw_dst=10.0.1.15",
    "esxi vnic to vnic": "in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:05,ip,"
                         "nw_src=10.0.1.14,nw_dst=10.0.1.15",
    "esxi vnic to itself": "in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:04,ip,"
                           "nw_src=10.0.1.14,nw_dst=10.0.1.14",
    "spoofed mac": "in_port=1,dl_src=02:00:00:00:01:99,dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11",
    "spoofed ip": f"{WEB1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.99,nw_dst=10.0.1.12",
    "spoofed arp": f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.99,arp_sha=02:00:00:00:01:01,"
                   "arp_tpa=10.0.1.12",
    "arp for the gateway": f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,"
                           "arp_sha=02:00:00:00:01:01,arp_tpa=10.0.1.1",
    "arp flood": f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,arp_sha=02:00:00:00:01:01,"
                 "arp_tpa=10.0.1.200",
    "flood from the tunnel": "in_port=100,tun_id={vni},dl_src=02:00:00:00:01:03,dl_dst=ff:ff:ff:ff:ff:ff",
    "irb from the tunnel": "in_port=100,tun_id={l3vni},dl_src={rmac2},dl_dst={rmac1},ip,nw_src=10.0.2.12,"
                           "nw_dst=10.0.1.11,nw_ttl=63",
    "dhcp": "udp,in_port=1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,"
            "nw_dst=255.255.255.255,tp_src=68,tp_dst=67",
    "gateway ping": f"icmp,{WEB1},dl_dst={GW},nw_src=10.0.1.11,nw_dst=10.0.1.1,icmp_type=8",
    "other tenant": "in_port=5,dl_src=02:00:00:00:09:01,dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11,"
                    "nw_dst=10.0.1.12",
}


def verdict_ovs(traced, tunnel_port="100"):
    """(sorted outputs as (port, tun_dst, tun_id, vlan), went to the controller) from ofproto/trace."""
    outs = []
    for port_, sets in traced.outputs:
        vlan = int(sets["vlan_vid"]) & 0xFFF if "vlan_vid" in sets else None  # set after any pop_vlan
        tunnel = port_ == tunnel_port
        outs.append((port_, sets.get("tun_dst") if tunnel else None,
                     int(sets["tun_id"], 16) if tunnel else None, vlan))
    return sorted(outs, key=repr), "controller" in traced.text.lower()


def verdict_canopy(result):
    outs = [(str(e.port), e.tun_dst, e.tun_id, e.vlan) for e in result.exits if e.kind in ("output", "tunnel")]
    return sorted(outs, key=repr), any(e.kind == "controller" for e in result.exits)


@pytest.mark.parametrize("case", sorted(AGREEMENT))
def test_canopy_trace_agrees_with_ofproto_trace(switch, case):
    from openflow.trace import parse_packet, render_packet, walk

    trace, policy, view, desired = switch
    text = AGREEMENT[case].format(gw=policy.find("domain", "acme/prod")["gateway_mac"],
                                  vni=vni(policy, "acme/web"), l3vni=l3vni(policy, "acme/prod"),
                                  rmac1=view.switches["s1"].router_mac, rmac2=view.switches["s2"].router_mac)
    packet = parse_packet(text)
    ours = walk(desired.all_flows(), desired.all_groups(), packet, view.switches["s1"].tunnel_ofport)
    theirs = trace(render_packet(packet))
    assert verdict_canopy(ours) == verdict_ovs(theirs), theirs.text
    if verdict_ovs(theirs) == ([], False):
        assert ours.drops() and all(e.reason for e in ours.drops())  # a drop always says why
    # flow by flow: the cookies of the flows OVS matched are the ones Canopy's walk matched
    assert {s.cookie for s in ours.steps if s.cookie is not None} == \
        {int(c, 16) for c in re.findall(r"cookie (0x[0-9a-f]+)", theirs.text)}, theirs.text
