"""``canopy show`` and ``canopy trace``: what a running controller holds, read through its public REST API.

    canopy show [--json]                     the whole tree (like ovn-nbctl show): tenants, domains, subnets,
                                             vports and where each is bound, hypervisors, VTEPs, BGP, HA
    canopy show vport NAME|REF|ID [--json]   one port: policy, binding, switch, ofport, flows by table, DHCP
    canopy trace PACKET (--vport V | --switch S --vni N [--remote-ip IP]) [--json]
                                             a packet through a switch's compiled pipeline (POST /v1/trace)

Gathering (``gather_tree``, ``gather_vport``) takes a ``get(path)`` function, so it runs against any
transport; formatting (``format_tree``, ``format_vport``, ``format_trace``) is pure, from the gathered JSON.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse

from controller.cli_remote import refusal_hint, request


class Failed(Exception):
    """A REST call that did not answer 200: ``status`` (None: unreachable) and the error message."""

    def __init__(self, status, message, reply=None):
        self.status, self.message, self.reply = status, message, reply
        super().__init__(message)


def add_parsers(sub, remote_args) -> None:
    """Add the show and trace sub-commands; ``remote_args(parser)`` adds --url, --token and --config."""
    show = sub.add_parser("show", help="show what the controller holds (the whole tree, or 'vport NAME')")
    show.add_argument("what", nargs="*", metavar="vport NAME|REF|ID",
                      help="nothing for the whole tree, or 'vport' and a vport's name, ref (tenant/subnet/name) or id")
    show.add_argument("--json", action="store_true", help="print the gathered JSON instead of text")
    remote_args(show)
    show.set_defaults(func=cmd_show)

    trace = sub.add_parser("trace", help="trace a packet through a VRS's compiled pipeline (like ovn-trace)")
    trace.add_argument("packet", help="fields in the ovs-appctl ofproto/trace syntax, e.g. "
                                      "'dl_dst=02:00:00:00:01:02,ip,nw_dst=10.0.1.12' (ip, arp, icmp, udp, tcp)")
    trace.add_argument("--vport", help="the packet comes from this vport (name, ref or id): its port, VLAN, MAC "
                                       "and IP are the defaults, and its VRS the switch")
    trace.add_argument("--switch", help="the VRS (datapath id, chassis or name)")
    trace.add_argument("--vni", type=int, help="the packet arrives over VXLAN with this VNI (needs --switch)")
    trace.add_argument("--remote-ip", help="with --vni: the sending VTEP's IP")
    trace.add_argument("--json", action="store_true", help="print the REST reply instead of text")
    remote_args(trace)
    trace.set_defaults(func=cmd_trace)


# ----------------------------------------------------------------------------------------- commands

def cmd_show(args) -> int:
    from controller.cli import EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE

    what = list(args.what)
    if what and (what[0] != "vport" or len(what) != 2):
        print("canopy show: use 'canopy show' or 'canopy show vport NAME|REF|ID'", file=sys.stderr)
        return EXIT_USAGE
    get = _getter(args)
    try:
        data = gather_vport(get, what[1]) if what else gather_tree(get)
    except Failed as exc:
        if exc.status is None:
            return EXIT_UNREACHABLE
        print(f"canopy: {exc.message}", file=sys.stderr)
        refusal_hint(args, exc.status, exc.reply, write=False)
        return EXIT_INVALID
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else (format_vport(data) if what
                                                                        else format_tree(data)))
    return EXIT_OK


def cmd_trace(args) -> int:
    from controller.cli import EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE

    body = {"packet": args.packet}
    for key in ("vport", "switch", "vni", "remote_ip"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    status, reply = request(args, "POST", "/v1/trace", body, write=False)  # a question: a read
    if status is None:
        return EXIT_UNREACHABLE
    if status != 200:
        print(f"canopy: {status}: {_message(reply)}", file=sys.stderr)
        refusal_hint(args, status, reply, write=False)
        return EXIT_INVALID
    print(json.dumps(reply, indent=2, sort_keys=True) if args.json else format_trace(reply))
    return EXIT_OK


def _getter(args):
    def get(path):
        status, reply = request(args, "GET", path, None)
        if status != 200:
            raise Failed(status, f"GET {path}: {status}: {_message(reply)}" if status else "unreachable", reply)
        return reply
    return get


def _message(reply):
    err = (reply or {}).get("error") if isinstance(reply, dict) else None
    return err.get("message", reply) if isinstance(err, dict) else reply


# ---------------------------------------------------------------------------------------- gathering

def gather_tree(get) -> dict:
    """Everything ``canopy show`` prints, from the REST API."""
    status = get("/v1/status")
    items = {c: get(f"/v1/{c}")["items"] for c in ("tenants", "domains", "subnets", "vports")}
    vteps = get("/v1/vteps")["items"]
    tenants = []
    for tenant in items["tenants"]:
        subnets = [_subnet_node(s, items["vports"], vteps) for s in items["subnets"] if s["tenant_id"] == tenant["id"]]
        domains = [{"name": d["name"], "id": d["id"], "l3_vni": d.get("l3_vni"), "rd": d.get("rd"),
                    "gateway_mac": d.get("gateway_mac"), "subnets": [s for s in subnets if s["domain_id"] == d["id"]]}
                   for d in items["domains"] if d["tenant_id"] == tenant["id"]]
        tenants.append({"name": tenant["name"], "id": tenant["id"], "domains": domains,
                        "l2_subnets": [s for s in subnets if not s["domain_id"]]})
    bgp = get("/v1/bgp/peers")
    return {
        "controller": {k: status.get(k) for k in ("version", "role", "uptime", "seq")},
        "ha": get("/v1/ha"),
        "tenants": tenants,
        "hypervisors": [_switch_node(sw) for sw in get("/v1/switches")["items"]],
        "vteps": [{"name": v["name"], "connected": v["connected"], "tunnel_ips": v.get("tunnel_ips", []),
                   "bindings": [{"port": b["port"], "vlan": b["vlan"], "subnet": b["subnet"]["ref"],
                                 "programmed": b["programmed"]} for b in v.get("bindings", [])],
                   "gateways": v.get("gateways", [])} for v in vteps],
        "bgp": {"enabled": bgp.get("enabled", False),
                "peers": [{k: p.get(k) for k in ("address", "asn", "state", "since", "received", "sent",
                                                 "last_error")}
                          for p in bgp.get("items", [])]},
    }


def _subnet_node(subnet, vports, vteps):
    return {"name": subnet["name"], "id": subnet["id"], "domain_id": subnet.get("domain_id"),
            "cidr": subnet.get("cidr"), "gateway": subnet.get("gateway"), "vni": subnet.get("vni"),
            "vteps": bound_vteps(vteps, subnet["id"]),
            "vports": [{"name": v["name"], "id": v["id"], "mac": v["mac"], "ips": v.get("ips") or [],
                        "flavour": v["binding"]["flavour"], "status": v.get("status"), "location": v.get("location"),
                        "mac_mismatch": v.get("mac_mismatch"), "learnt_on": v.get("learnt_on") or [],
                        "migration": v.get("migration")}
                       for v in vports if v["subnet_id"] == subnet["id"]]}


def bound_vteps(vteps, subnet_id) -> list:
    """The names of the hardware VTEPs (GET /v1/vteps items) with a port bound to the subnet: where its bare-metal
    servers can be."""
    return [v["name"] for v in vteps if any(b["subnet"]["id"] == subnet_id for b in v.get("bindings", ()))]


def _switch_node(sw):
    bound = []
    for port in sw.get("ports", []):
        if port.get("vport"):
            bound.append({"port": port["name"], "ofport": port.get("ofport"), "vlan": None,
                          "vport": port["vport"]["ref"]})
        for vnic in port.get("vnics", []):
            if vnic.get("vport"):
                bound.append({"port": port["name"], "ofport": port.get("ofport"), "vlan": vnic["vlan"],
                              "vport": vnic["vport"]["ref"]})
    return {"name": sw.get("name"), "chassis": sw.get("chassis"), "datapath_id": sw.get("datapath_id"),
            "flavour": sw.get("flavour"), "vtep_ip": sw.get("vtep_ip"),
            "openflow": bool((sw.get("openflow") or {}).get("connected")),
            "ovsdb": bool((sw.get("ovsdb") or {}).get("connected")), "sync": sw.get("sync"),
            "bridge_safety": sw.get("bridge_safety"), "vports": bound}


def gather_vport(get, key) -> dict:
    """Everything ``canopy show vport`` prints about one vport (by id, ref or name)."""
    vport = _find_vport(get, key)
    subnet = get(f"/v1/subnets/{_q(vport['subnet_id'])}")
    domain = get(f"/v1/domains/{_q(subnet['domain_id'])}") if subnet.get("domain_id") else None
    acls = [get(f"/v1/acls/{_q(a)}") for a in vport.get("acls") or []]
    groups = [get(f"/v1/policy-groups/{_q(g)}")["ref"] for g in vport.get("policy_groups") or []]
    bare = vport["binding"]["flavour"] == "baremetal"
    out = {"policy_groups": groups, "vport": vport,
           "subnet": {k: subnet.get(k) for k in ("id", "ref", "cidr", "gateway", "vni")},
           "vteps": bound_vteps(get("/v1/vteps")["items"], subnet["id"]) if bare else [],
           "domain": {k: domain.get(k) for k in ("id", "ref", "l3_vni", "gateway_mac")} if domain else None,
           "acls": [{"id": a["id"], "ref": a["ref"], "default_action": a.get("default_action"),
                     "rules": len(a.get("rules") or [])} for a in acls],
           "switch": None, "flows": {}, "in_sync": None, "dhcp": get(f"/v1/vports/{_q(vport['id'])}/dhcp")}
    loc = vport.get("location")
    if loc and loc.get("datapath_id"):
        sw = get(f"/v1/switches/{loc['datapath_id']}")
        out["switch"] = {"name": sw.get("name"), "chassis": sw.get("chassis"), "datapath_id": sw.get("datapath_id"),
                         "vtep_ip": sw.get("vtep_ip"), "openflow": bool((sw.get("openflow") or {}).get("connected")),
                         "sync": sw.get("sync")}
        flows = get(f"/v1/switches/{loc['datapath_id']}/flows?owner={_q(vport['id'])}")
        out["in_sync"] = flows.get("in_sync")
        for f in sorted(flows.get("flows", []), key=lambda f: (f["table"], -f["priority"], f["flow"])):
            out["flows"].setdefault(f"{f['table']} {f['table_name']}", []).append(
                {"priority": f["priority"], "flow": f["flow"], "desired": f.get("desired"),
                 "installed": f.get("installed")})
    return out


def _find_vport(get, key):
    try:
        return get(f"/v1/vports/{_q(key)}")
    except Failed as exc:
        if exc.status != 404:
            raise
    name = key.rsplit("/", 1)[-1]
    found = [v for v in get(f"/v1/vports?name={_q(name)}")["items"] if v["ref"] == key or "/" not in key]
    if len(found) == 1:
        return found[0]
    if not found:
        raise Failed(404, f"no vport with id, ref or name {key!r}")
    raise Failed(409, f"{len(found)} vports are named {key!r}: use one of {sorted(v['ref'] for v in found)}")


def _q(text):
    return urllib.parse.quote(str(text), safe="")


# --------------------------------------------------------------------------------------- formatting

OPENFLOW_ONLY = ("    over OpenFlow only: no OVSDB session names this bridge (not back yet after a restart, or: "
                 "ovs-vsctl set-manager tcp:CANOPY:6640 on the hypervisor, and an ovsdb-server that reads it: "
                 "docs/vrs.md)")


def format_tree(tree) -> str:
    c = tree["controller"]
    lines = [f"canopy {c.get('version')}  role {c.get('role')}  up {_duration(c.get('uptime'))}  seq {c.get('seq')}"]
    ha = tree.get("ha") or {}
    if ha.get("role") not in (None, "standalone"):
        peer = ha.get("peer") or {}
        repl = ha.get("replication") or {}
        lines.append(f"ha {ha['role']}  generation {ha.get('generation_id')}  peer {peer.get('address')} "
                     f"{peer.get('role') or '?'} ({'alive' if peer.get('alive') else 'not heard'})  "
                     f"replication lag {repl.get('lag')}")
    for t in tree["tenants"]:
        lines.append(f"tenant {t['name']} ({t['id']})")
        for d in t["domains"]:
            lines.append(f"    domain {d['name']}  l3 vni {d['l3_vni']}  rd {d['rd']}  gateway mac {d['gateway_mac']}")
            lines += _subnet_lines(d["subnets"], "        ")
        if t["l2_subnets"]:
            lines += _subnet_lines(t["l2_subnets"], "    ", l2=True)
    for h in tree["hypervisors"]:
        sync = h.get("sync") or {}
        flows = f"  flows {sync.get('installed')}/{sync.get('desired')} {sync.get('state')}" if sync else ""
        if sync.get("programmed_seq") is not None:  # the newest policy seq it holds (docs/operations.md)
            flows += f" (holds seq {sync['programmed_seq']})"
        lines.append(f"hypervisor {h['name'] or h['datapath_id']}  chassis {h['chassis'] or '-'}  "
                     f"dpid {h['datapath_id']}  {h['flavour'] or '-'}  vtep {h['vtep_ip'] or '-'}  "
                     f"openflow {_updown(h['openflow'])}  ovsdb {_updown(h['ovsdb'])}" + flows)
        if not h["ovsdb"] and not h["chassis"]:
            lines.append(OPENFLOW_ONLY)
        safety = h.get("bridge_safety") or {}
        if safety and not safety.get("safe", True):
            lines.append(f"    NOT SET UP SAFELY: {'; '.join(safety.get('problems') or ['see /v1/switches'])}")
        for b in h["vports"]:
            vlan = f" vlan {b['vlan']}" if b["vlan"] else ""
            lines.append(f"    port {b['port']}{vlan} (ofport {b['ofport']}) -> {b['vport']}")
    for v in tree["vteps"]:
        lines.append(f"vtep {v['name']}  {'connected' if v['connected'] else 'not connected'}  "
                     f"tunnel {', '.join(v['tunnel_ips']) or '-'}")
        for b in v["bindings"]:
            lines.append(f"    port {b['port']} vlan {b['vlan']} -> {b['subnet']}"
                         f"{'' if b['programmed'] else '  (not programmed yet)'}")
        for g in v["gateways"]:
            lines.append(f"    gateway for {g['subnet']}: {g['chassis']} ({g['vtep_ip']})")
    bgp = tree["bgp"]
    if bgp["enabled"]:
        for p in bgp["peers"]:
            lines.append(f"bgp peer {p['address']}  as {p['asn']}  {p['state']}  routes in {p['received']} "
                         f"out {p['sent']}{_peer_error(p)}")
    else:
        lines.append("bgp: no neighbors configured")
    return "\n".join(lines)


def _peer_error(peer) -> str:
    """A peer's last error (its last session's end, or why none came up): why it is not up, or, once it is, a past
    one, said so with the time it came up (an up peer showed "last error: ..." as if it were failing)."""
    error = peer.get("last_error")
    if not error:
        return ""
    if peer["state"] != "up":
        return f"  last error: {error}"
    return f"  up since {_when(peer.get('since'))}, down before: {error}"


def _subnet_lines(subnets, indent, l2=False):
    lines = []
    for s in subnets:
        where = f"{s['cidr'] or 'no cidr'}" + (f"  gateway {s['gateway']}" if s.get("gateway") else "")
        lines.append(f"{indent}subnet {s['name']}{' (L2 only)' if l2 else ''}  {where}  vni {s['vni']}")
        for v in s["vports"]:
            lines.append(f"{indent}    vport {v['name']}  {v['mac']}  {' '.join(v['ips']) or '-'}  {v['flavour']}  "
                         f"{_where(v.get('location'), v['flavour'], s['vteps'], v.get('learnt_on'))}{_mismatch(v)}"
                         f"{_migration(v)}")
    return lines


def _mismatch(vport) -> str:
    """What a vport whose hypervisor reports another MAC shows after its location (docs/vrs.md)."""
    wrong = vport.get("mac_mismatch")
    return f"  MAC MISMATCH: the hypervisor reports {wrong['hypervisor']}, not programmed" if wrong else ""


def _migration(vport) -> str:
    """What a vport whose live migration is in flight shows after its location (docs/vrs.md)."""
    moving = vport.get("migration")
    if not moving:
        return ""
    pending = ", ".join(f"{p['chassis']}:{p['port']}" for p in moving["pending"])
    return f"  MIGRATING: {pending} waits for the VM's first packet"


def _where(loc, flavour=None, vteps=(), learnt_on=()):
    """Where a vport is: on a VRS port, unbound, or (bare metal, never on a VRS port) on the hardware VTEPs that report
    its MAC (``learnt_on``: two or more are a conflict), else behind the hardware VTEPs bound to its subnet, if any."""
    if loc and loc.get("flavour") == "baremetal":
        places = learnt_on or [loc]
        text = ", ".join(_vtep_place(place) for place in places)
        if len(places) > 1:
            return f"bare metal on hardware VTEPs {text}: CONFLICT, its MAC is reported by {len(places)} VTEPs"
        return f"bare metal on hardware VTEP {text}"
    if not loc and flavour == "baremetal":
        if not vteps:
            return "bare metal: no hardware VTEP bound to its subnet"
        return f"bare metal behind hardware VTEP{'s' if len(vteps) > 1 else ''} {', '.join(vteps)}"
    if not loc:
        return "unbound"
    vlan = f" vlan {loc['vlan']}" if loc.get("vlan") else ""
    return f"on {loc['chassis']} port {loc['port']}{vlan} (ofport {loc['ofport']})"


def _vtep_place(place) -> str:
    """A hardware VTEP where a bare-metal vport's MAC is: its name, and its port and VLAN when one port binds the VNI."""
    if place.get("port") is not None:
        return f"{place['vtep']} port {place['port']} vlan {place['vlan']}"
    ports = place.get("ports") or ()
    return f"{place['vtep']} ({len(ports)} ports bind its VNI)" if ports else place["vtep"]


def format_vport(data) -> str:
    v, s, d = data["vport"], data["subnet"], data["domain"]
    flavour = (v.get("binding") or {}).get("flavour")
    # a bare-metal server's traffic enters at its hardware VTEP: no VRS enforces its own port security or ACLs
    unenforced = "  (not enforced: bare metal, docs/vtep.md)" if (v.get("binding") or {}).get("flavour") == \
        "baremetal" else ""
    lines = [f"vport {v['ref']} ({v['id']})",
             f"    mac {v['mac']}  ips {' '.join(v.get('ips') or []) or '-'}  port security "
             f"{'on' if v.get('port_security') else 'off'}" + (unenforced if v.get("port_security") else ""),
             f"    subnet {s['ref']}  {s.get('cidr') or 'no cidr'}  vni {s['vni']}"
             + (f"  gateway {s['gateway']}" if s.get("gateway") else ""),
             f"    domain {d['ref']}  l3 vni {d['l3_vni']}  gateway mac {d['gateway_mac']}" if d
             else "    domain - (L2-only subnet)",
             f"    binding {_binding(v.get('binding') or {})}",
             "    acls " + (", ".join(f"{a['ref']} ({a['rules']} rules, default {a['default_action']})"
                                     for a in data["acls"]) + unenforced if data["acls"] else "-"),
             "    policy groups " + (", ".join(data.get("policy_groups") or ()) or "-"),
             f"    status {v.get('status')}  "
             f"{_where(v.get('location'), flavour, data.get('vteps') or (), v.get('learnt_on'))}"
             f"{_mismatch(v)}{_migration(v)}"]
    sw = data.get("switch")
    if sw:
        lines.append(f"    switch {sw['name']}  chassis {sw['chassis']}  dpid {sw['datapath_id']}  vtep "
                     f"{sw['vtep_ip'] or '-'}  openflow {_updown(sw['openflow'])}")
    dhcp = data.get("dhcp") or {}
    lease = dhcp.get("lease")
    if lease:
        lines.append(f"    dhcp {lease['ip']}/{lease['prefix_len']}  router {lease['router'] or '-'}  server "
                     f"{lease['server_ip']}  dns {' '.join(lease['dns_servers']) or '-'}  mtu {lease['mtu']}  "
                     f"lease {lease['lease_time']}s")
        served = dhcp.get("last_served")
        lines.append(f"    dhcp last answered: {served['request']} -> {served['ip']} at {_when(served['at'])}"
                     if served else "    dhcp last answered: never (since this controller started)")
    else:
        lines.append("    dhcp off (disabled in the subnet, or no address in its cidr)")
    if data["flows"]:
        lines.append(f"    flows on {sw['name']} ({'in sync' if data['in_sync'] else 'NOT in sync'}):")
        for table, flows in data["flows"].items():
            lines.append(f"      table {table}")
            for f in flows:
                mark = "" if f["desired"] and f["installed"] else (
                    "  [not installed yet]" if f["desired"] else "  [installed, not desired]")
                lines.append(f"        {_strip_table(f['flow'])}{mark}")
    elif sw:
        lines.append("    flows: none on its switch")
    return "\n".join(lines)


def _binding(b):
    extra = "  ".join(f"{k} {b[k]}" for k in sorted(b) if k != "flavour" and b[k] not in (None, ""))
    return f"{b.get('flavour')}{'  ' + extra if extra else ''}"


def _strip_table(flow):
    """'cookie=..,table=N,priority=P,match,actions=..' -> 'priority=P,match,actions=..'."""
    parts = flow.split(",")
    return ",".join(p for p in parts if not p.startswith(("cookie=", "table=")))


def format_trace(reply) -> str:
    sw = reply["switch"]
    lines = [f"trace on {sw['chassis']} (dpid {sw['datapath_id']}): {reply['ofproto_trace']}", ""]
    exits_at: dict = {}
    for e in reply["exits"]:
        exits_at.setdefault(e.get("step"), []).append(e)
    for index, step in enumerate(reply["steps"]):
        indent = "    " * step["depth"]
        if step["table_name"] in ("group", "bucket"):
            lines.append(f"{indent}{step['match']}: {step['actions']}{'  ' + step['note'] if step['note'] else ''}")
        elif step["priority"] is None:
            lines.append(f"{indent}{step['table']:>2}. {step['table_name']}: {step['note']}")
        else:
            owner = step.get("owner") or {}
            lines.append(f"{indent}{step['table']:>2}. {step['table_name']}  priority {step['priority']}  "
                         f"{owner.get('kind')} {step.get('owner_ref') or owner.get('id')}")
            lines.append(f"{indent}    {step['match']}  ->  {step['actions']}")
        lines += [f"{indent}    -> {e['summary']}" for e in exits_at.get(index, ())]
    lines.append("")
    for e in reply["exits"]:
        lines.append(f"=> {e['summary']}")
    if reply.get("ambiguous"):
        lines.append("warning: flows of equal priority matched together: " + "; ".join(reply["ambiguous"]))
    lines.append(f"same packet on the switch: ovs-appctl ofproto/trace {sw.get('bridge') or 'br-int'} "
                 f"'{reply['ofproto_trace']}'")
    return "\n".join(lines)


def _updown(flag):
    return "up" if flag else "down"


def _duration(seconds):
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600:02d}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60:02d}m" \
        if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _when(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch is not None else "?"
