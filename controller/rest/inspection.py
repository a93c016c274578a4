"""REST tools for operators: a packet trace through a switch's compiled pipeline, and a vport's DHCP lease.

``POST /v1/trace`` walks a packet, described by its fields, through the desired flows Canopy holds for one VRS
(openflow/trace.py) and names where each copy leaves: a local port and the vport behind it, the tunnel with
the VTEP (VRS, hardware VTEP or EVPN peer) and the subnet or domain of its VNI, the controller, or a drop and
why. It reads State only; the body is a question, not a change, so it needs no token where reads need none,
and it is refused over ``QUESTION_BODY`` (64 KiB) before anything is decoded.
"""

from __future__ import annotations

import ipaddress

from controller.rest.wire import QUESTION_BODY, ApiError, Response, Route, _json_body
from controller.service import NotFound
from openflow import dhcp
from openflow.flows import OFPVID_PRESENT
from openflow.trace import ETH_TYPES, PacketError, parse_packet, render_packet, walk

TRACE_FIELDS = ("switch", "vport", "vni", "remote_ip", "packet")
TRACE_BODY = {
    "type": "object", "additionalProperties": False, "required": ["packet"],
    "properties": {
        "switch": {"type": "string", "description": "the VRS: datapath id (hex), chassis (system-id) or name; "
                                                    "default: where the vport is bound"},
        "vport": {"type": "string", "description": "the packet comes from this vport (id, ref or unique name): "
                                                   "in_port, VLAN, source MAC and IP default to its own"},
        "vni": {"type": "integer", "description": "the packet arrives over VXLAN with this VNI (needs switch)"},
        "remote_ip": {"type": "string", "description": "with vni: the sending VTEP's IP (tun_src)"},
        "packet": {"description": "fields in the ovs-appctl ofproto/trace syntax, e.g. "
                                  "'dl_dst=02:00:00:00:01:02,ip,nw_dst=10.0.1.12', or an object of fields",
                   "oneOf": [{"type": "string"}, {"type": "object"}]},
    }}


def routes(state, programmer, dhcp_service=None, underlay_mtu=1500) -> list[Route]:
    def trace(req):
        body = _json_body(req, limit=QUESTION_BODY)  # no token from loopback: refused before it is decoded
        for key in body:
            if key not in TRACE_FIELDS:
                raise ApiError(422, "invalid", f"unknown field; use {list(TRACE_FIELDS)}", key)
        return Response(200, run_trace(state, programmer.view, programmer.desired, body))

    def lease(req, id):
        vport = find_vport(state.policy, id)
        subnet = state.policy.get("subnet", vport["subnet_id"])
        domain = state.policy.get("domain", subnet["domain_id"]) if subnet["domain_id"] else None
        offered = dhcp.lease_for(subnet, vport, domain, underlay_mtu)
        served = dhcp_service.served.get(vport["id"]) if dhcp_service is not None else None
        return Response(200, {"vport": {"id": vport["id"], "ref": state.policy.ref("vport", vport)},
                              "enabled": offered is not None, "lease": _lease_view(offered) if offered else None,
                              "last_served": served})

    return [Route("POST", "/v1/trace", trace, "trace a packet through a VRS's compiled pipeline (like ovn-trace): "
                                               "each matched flow and where the packet leaves, or why it drops",
                  body=TRACE_BODY),
            Route("GET", "/v1/vports/{id}/dhcp", lease,
                  "the DHCP lease Canopy offers this vport, and when it last answered it")]


# -------------------------------------------------------------------------------------------- trace

def run_trace(state, view, desired, body) -> dict:
    """The trace of ``body`` (see TRACE_BODY) on a switch; raises ApiError naming the field at fault."""
    ep = None
    if body.get("vport") is not None and body.get("vni") is not None:
        raise ApiError(422, "invalid", "give either vport (from a port) or vni (from a tunnel), not both", "vni")
    if body.get("vport") is not None:
        vport = find_vport(state.policy, body["vport"], field_name="vport", status=422)
        ep = view.endpoints.get(vport["id"])
        if ep is None or ep.session not in view.switches:
            raise ApiError(422, "invalid", f"vport {state.policy.ref('vport', vport)} is not bound on any VRS",
                           "vport")
    session = _switch_session(state, view, body.get("switch"), ep)
    sw = view.switches[session]
    if ep is not None and ep.session != session:
        raise ApiError(422, "invalid", f"the vport is bound on {view.switches[ep.session].chassis}, not on "
                                       f"{sw.chassis}", "vport")
    try:
        packet = parse_packet(body.get("packet", ""))
    except PacketError as exc:
        raise ApiError(422, "invalid", exc.reason, f"packet.{exc.field}") from None
    if ep is not None:
        _from_vport(state.policy, view, ep, packet)
    elif body.get("vni") is not None:
        _from_tunnel(sw, body, packet)
    elif "in_port" not in packet:
        raise ApiError(422, "invalid", "say where the packet comes from: vport, vni, or in_port in packet", "vport")
    if "eth_dst" not in packet:
        raise ApiError(422, "invalid", "is required (no default for where this packet goes)", "packet.dl_dst")
    local = desired.get(session)
    result = walk(local.all_flows() if local else (), local.all_groups() if local else {}, packet,
                  sw.tunnel_ofport)
    out = result.to_json()
    for step in out["steps"]:
        step["owner_ref"] = _owner_ref(state.policy, step["owner"])
    for exit_, shown in zip(result.exits, out["exits"]):  # a drop names its flow's owner by ref, as its step does
        step = out["steps"][exit_.step] if exit_.kind == "drop" and exit_.step is not None else None
        if step and step["owner"] and shown["reason"] and step["owner_ref"] != step["owner"]["id"]:
            kind, ref = step["owner"]["kind"], step["owner_ref"]
            shown["reason"] = shown["reason"].replace(f"{kind} {step['owner']['id']}", f"{kind} {ref}")
    out["exits"] = [_describe_exit(state, view, session, e, j) for e, j in zip(result.exits, out["exits"])]
    snap = state.vrs.get(session)
    out["switch"] = {"chassis": sw.chassis, "datapath_id": f"{sw.datapath_id:016x}" if sw.datapath_id else None,
                     "vtep_ip": sw.vtep_ip, "tunnel_ofport": sw.tunnel_ofport,
                     "bridge": snap.bridge if snap is not None else None}
    out["ofproto_trace"] = render_packet(packet)
    out["ambiguous"] = result.ambiguous
    return out


def _switch_session(state, view, name, ep):
    """The session of the VRS named by datapath id, chassis or hostname (default: the vport's)."""
    if name is None:
        if ep is None:
            raise ApiError(422, "invalid", "is required unless the packet comes from a vport", "switch")
        return ep.session
    if not isinstance(name, str) or not name:
        raise ApiError(422, "invalid", "must be a datapath id, chassis or name", "switch")
    key = name.lower().replace(":", "")
    for session, sw in view.switches.items():
        snap = state.vrs.get(session)
        if name in (sw.chassis, session) or (snap is not None and snap.hostname == name):
            return session
        if sw.datapath_id is not None and len(key) <= 16 and all(c in "0123456789abcdef" for c in key) \
                and int(key, 16) == sw.datapath_id:
            return session
    raise ApiError(422, "not_found", f"no VRS with datapath id, chassis or name {name!r}", "switch")


def _from_vport(policy, view, ep, packet):
    if "in_port" in packet:
        raise ApiError(422, "invalid", "give either vport or in_port, not both", "packet.in_port")
    packet["in_port"] = ep.ofport
    if ep.vlan and "vlan_vid" not in packet:
        packet["vlan_vid"] = ep.vlan | OFPVID_PRESENT
    packet.setdefault("eth_src", ep.mac)
    kind = packet.get("eth_type")
    if kind == ETH_TYPES["ip"] and ep.ips:
        packet.setdefault("ipv4_src", ep.ips[0])
    elif kind == ETH_TYPES["arp"]:
        packet.setdefault("arp_sha", ep.mac)
        if ep.ips:
            packet.setdefault("arp_spa", ep.ips[0])
        packet.setdefault("arp_op", 1)
        packet.setdefault("eth_dst", "ff:ff:ff:ff:ff:ff")
    if "eth_dst" not in packet and "ipv4_dst" in packet:
        mac = _next_hop_mac(policy, view, ep, packet["ipv4_dst"])
        if mac:
            packet["eth_dst"] = mac


def _next_hop_mac(policy, view, ep, dst):
    """The destination MAC a VM would use: the neighbour's in its subnet, else its gateway's.

    The neighbour is looked up in the policy when it is bound nowhere: the VM may know its MAC (a cached
    ARP entry), and the trace then shows what the switch does with a MAC no port holds. An address no vport
    of the subnet has is refused, naming it: a VM would get no ARP answer for it."""
    sub = view.subnets.get(ep.subnet_id)
    if sub is None:
        return None
    if dst == sub.gateway or not (sub.cidr and ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(sub.cidr)):
        return sub.gateway_mac if sub.gateway else None  # the gateway itself, or off the subnet: through it
    bound = next((e.mac for e in view.by_subnet.get(sub.id, ()) if dst in e.ips), None)
    if bound is not None:
        return bound
    unbound = next((v["mac"] for v in policy.all("vport") if v["subnet_id"] == sub.id and dst in v["ips"]), None)
    if unbound is None:
        subnet = policy.ref("subnet", policy.get("subnet", sub.id))
        raise ApiError(422, "invalid", f"is required: no vport of subnet {subnet} has {dst}, so there is no "
                                       "neighbour's MAC to default to", "packet.dl_dst")
    return unbound


def _from_tunnel(sw, body, packet):
    vni = body["vni"]
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= 0xFFFFFF:
        raise ApiError(422, "invalid", "must be a VNI (1..16777215)", "vni")
    if not sw.tunnel_ofport:
        raise ApiError(422, "invalid", f"VRS {sw.chassis} has no VXLAN port: nothing arrives over a tunnel", "vni")
    if "in_port" in packet:
        raise ApiError(422, "invalid", "give either vni or in_port, not both", "packet.in_port")
    packet.update(in_port=sw.tunnel_ofport, tunnel_id=vni)
    if body.get("remote_ip") is not None:
        try:
            packet["tun_ipv4_src"] = str(ipaddress.IPv4Address(body["remote_ip"]))
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise ApiError(422, "invalid", "must be an IPv4 address", "remote_ip") from None
    if sw.vtep_ip:
        packet.setdefault("tun_ipv4_dst", sw.vtep_ip)


def _describe_exit(state, view, session, exit_, out):
    """Add what an exit reaches: the port and vport, or the VTEP and the VNI's subnet or domain."""
    if exit_.kind in ("output", "tunnel"):
        port = exit_.packet.get("in_port") if exit_.port == "in_port" else exit_.port
        out["ofport"] = port
        snap = state.vrs.get(session)
        out["port_name"] = next((p.name for p in snap.ports if p.ofport == port), None) if snap else None
    if exit_.kind == "output":
        vlan = exit_.vlan
        ep = next((e for e in view.endpoints.values() if e.session == session and e.ofport == out["ofport"]
                   and (e.vlan or None) == vlan), None)
        out["vport"] = _vport_brief(state.policy, ep.vport_id) if ep else None
        out["summary"] = f"output to port {out['ofport']} ({out['port_name'] or '?'}" + \
            (f" vlan {vlan}" if vlan else "") + (f", vport {out['vport']['ref']})" if ep else ")")
    elif exit_.kind == "tunnel":
        out["vtep"] = _vtep_named(view, exit_.tun_dst)
        out["vni_of"] = _vni_owner(state.policy, exit_.tun_id)
        out["summary"] = f"tunnel to {exit_.tun_dst} ({out['vtep'] or 'unknown VTEP'}) VNI {exit_.tun_id}" + \
            (f" ({out['vni_of']})" if out["vni_of"] else "")
    elif exit_.kind == "controller":
        dhcp_ = exit_.packet.get("udp_dst") == 67
        out["summary"] = "to the controller" + (" (DHCP, answered by Canopy)" if dhcp_ else "")
    else:
        out["summary"] = f"drop: {out['reason'] or ''}"
    return out


def _vtep_named(view, ip):
    for sw in view.switches.values():
        if sw.vtep_ip == ip:
            return f"VRS {sw.chassis}"
    for vtep in view.vteps.values():
        if vtep.tunnel_ip == ip:
            return f"hardware VTEP {vtep.name}"
    if ip in view.remote_vteps.values():
        return "EVPN peer VTEP"
    return None


def _vni_owner(policy, vni):
    for sub in policy.all("subnet"):
        if sub["vni"] == vni:
            return f"subnet {policy.ref('subnet', sub)}"
    for dom in policy.all("domain"):
        if dom["l3_vni"] == vni:
            return f"domain {policy.ref('domain', dom)} L3"
    return None


# a flow owner's kind -> the kind of policy object its id is (acl_port: the vport whose ACL flows they are)
OWNER_OBJECTS = {"subnet": "subnet", "domain": "domain", "vport": "vport", "acl_port": "vport", "acl": "acl"}


def _owner_ref(policy, owner):
    if not owner:
        return None
    kind = OWNER_OBJECTS.get(owner["kind"])
    obj = policy.get(kind, owner["id"]) if kind else None
    return policy.ref(kind, obj) if obj else owner["id"]


def _vport_brief(policy, vid):
    vport = policy.get("vport", vid)
    return {"id": vid, "ref": policy.ref("vport", vport) if vport else None}


# -------------------------------------------------------------------------------------------- vports

def find_vport(policy, key, field_name="id", status=404):
    """A vport by id, ref (tenant/subnet/name) or name when that is unique; else an error naming the field."""
    if not isinstance(key, str) or not key:
        raise ApiError(422, "invalid", "must be a vport id, ref or name", field_name)
    vport = policy.get("vport", key) or policy.find("vport", key)
    if vport is not None:
        return vport
    named = [v for v in policy.all("vport") if v["name"] == key]
    if len(named) == 1:
        return named[0]
    if named:
        refs = sorted(policy.ref("vport", v) for v in named)
        raise ApiError(409 if status == 404 else status, "ambiguous",
                       f"{len(named)} vports are named {key!r}: use one of {refs}", field_name)
    if status == 404:
        raise NotFound("vport", key)
    raise ApiError(status, "not_found", f"no vport with id, ref or name {key!r}", field_name)


def _lease_view(lease) -> dict:
    return {"ip": lease.ip, "prefix_len": lease.prefix_len, "netmask": lease.netmask, "router": lease.router,
            "server_ip": lease.server_ip, "server_mac": lease.server_mac, "dns_servers": list(lease.dns_servers),
            "domain_name": lease.domain_name, "lease_time": lease.lease_time, "mtu": lease.mtu,
            "routes": [{"prefix": p, "next_hop": n} for p, n in lease.routes], "ntp_servers": list(lease.ntp_servers)}
