"""Answers DHCP packet-ins: which vport asked (from the punt flow's cookie), its lease, the reply.

The pipeline sends a VM's DHCP to the controller with a flow owned by that VM's vport (one per local
vport, table services). The packet-in carries the flow's cookie, so the asking vport is known without
trusting anything in the packet: the cookie's owner hint picks the candidates from an index of the
policy's vport ids (``OwnerHints``), and (switch, cookie) -> vport is remembered, each checked against the
switch's desired flows of that one owner (no scan of the switch's flows); its lease comes from policy (openflow/dhcp.py). The reply goes out of
the vport's own port (with its VLAN on an ESXi trunk): the same egress actions the pipeline uses.

Bare metal behind a hardware VTEP asks over the tunnel; its subnet's gateway VRS punts that with a flow
owned by the subnet. The client's MAC must then be a bare-metal vport of that subnet (binding flavour
baremetal): only its configured IP is offered, and the reply goes back into the tunnel to the VTEP.
State is only read here.

Each request is logged at INFO, at most once per ``controller.loglimit.LOG_EVERY`` (10 s) for the same punt flow (a
vport's port; a bare-metal server's answers by the vport) and message type, and an ignored request also by the
client's MAC (a VM asking under MACs not its own, or unknown MACs behind a hardware VTEP: each MAC its own line, one
flooding MAC never hiding another's), with a count of those left out: a VM flooding discovers (its port's meter passes
10 a second: openflow/meters.py) writes one line, not ten a second. The ignored keys are one kind of the log limiter's,
so a VM cycling through MACs fills at most that kind's table (``controller.loglimit.KEYS_PER_KIND``), never the
answered requests' or another module's; and its lines together are at most ``controller.loglimit.GROUP_LINES`` (5) per
LOG_EVERY for its punt flow, the next saying how many were left out: a fresh MAC in every request is not a line each.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from controller.loglimit import log_limited, log_limited_in
from openflow import dhcp
from openflow.compiler import egress_actions, to_vtep
from openflow.flows import Owner, owner_kind_of

log = logging.getLogger("canopy.dhcp")
HINT_BITS = 0xFFFFF  # the owner hint in a cookie (openflow/flows.py): bits 51-32
MAX_CACHED = 65536  # (datapath, cookie) -> owner entries kept before the cache starts afresh


@dataclass(frozen=True)
class Answer:
    actions: list  # action tuples that deliver the reply to the vport
    frame: bytes
    summary: str


def _log(key: tuple, msg: str, *args) -> None:
    """An INFO line about a request, at most one per LOG_EVERY for ``key`` (module docstring); ``key[0]`` ("answered",
    "ignored") names the limiter's kind, so a flood of ignored requests never forgets the answered ones' limits."""
    log_limited(log, logging.INFO, (f"dhcp {key[0]}", *key[1:]), msg, *args)


def _log_ignored(datapath_id: int, cookie: int, request, msg: str, *args) -> None:
    """An ignored request's line, keyed by the client's MAC too (one MAC's flood hides no other's first line), at
    most GROUP_LINES (controller/loglimit.py) lines per LOG_EVERY for the punt flow's port together: a VM asking under
    a fresh MAC each time logs a few lines per interval and a count, not a line per request."""
    log_limited_in(log, logging.INFO, ("dhcp ignored source", datapath_id, cookie),
                   ("dhcp ignored", datapath_id, cookie, request.chaddr, request.message_type), msg, *args)


class DhcpService:
    def __init__(self, state, programmer, underlay_mtu: int):
        self.state = state
        self.programmer = programmer
        self.underlay_mtu = underlay_mtu
        self.counters = {"requests": 0, "answered": 0, "ignored": 0}
        self.served: dict[str, dict] = {}  # vport id -> {"at", "ip", "request"} of the last answer (REST shows it)
        self._owners: dict[tuple, str] = {}  # (datapath id, cookie) -> owner id, checked on every use
        self._hints = OwnerHints()
        self._switches: dict[int, str] = {}  # datapath id -> switch key, checked on every use

    def answer(self, datapath_id: int, cookie: int, frame: bytes) -> Answer | None:
        """The reply to a DHCP packet-in, or None (not DHCP, unknown vport, no lease, nothing to say)."""
        self.counters["requests"] += 1
        answer = self._answer(datapath_id, cookie, frame)
        self.counters["answered" if answer else "ignored"] += 1
        return answer

    def _answer(self, datapath_id, cookie, frame):
        request = dhcp.parse_request(frame)
        if request is not None and owner_kind_of(cookie) == "subnet":
            return self._answer_bare_metal(datapath_id, cookie, request)
        if request is None or owner_kind_of(cookie) != "vport":
            return None
        vport_id = self._owner_of(datapath_id, cookie, "vport")
        vport = self.state.policy.get("vport", vport_id) if vport_id else None
        endpoint = self.programmer.view.endpoints.get(vport_id) if vport_id else None
        if vport is None or endpoint is None or request.chaddr != vport["mac"]:
            _log_ignored(datapath_id, cookie, request, "ignoring %s on datapath %016x: not from a known vport's own MAC",
                         request.describe(), datapath_id)
            return None
        subnet = self.state.policy.get("subnet", vport["subnet_id"])
        domain = self.state.policy.get("domain", subnet["domain_id"]) if subnet["domain_id"] else None
        lease = dhcp.lease_for(subnet, vport, domain, self.underlay_mtu)
        frame_out = dhcp.reply(request, lease) if lease else None
        if frame_out is None:
            return None
        ref = self.state.policy.ref("vport", vport)
        _log(("answered", datapath_id, cookie, request.message_type), "%s for vport %s: %s", request.describe(), ref,
             lease.ip)
        self.served[vport_id] = {"at": time.time(), "ip": lease.ip, "request": request.describe()}
        return Answer(egress_actions(endpoint), frame_out, f"{request.describe()} -> {lease.ip}")

    def _answer_bare_metal(self, datapath_id, cookie, request):
        """DHCP a hardware VTEP sent over the tunnel to its subnet's gateway VRS (the punt flow is the
        subnet's): answered for a bare-metal vport of that subnet with the client's MAC, back into the
        tunnel to the VTEP behind which the server is (every VTEP bound to the subnet while none has
        learned its MAC)."""
        sid = self._owner_of(datapath_id, cookie, "subnet")
        view, policy = self.programmer.view, self.state.policy
        subnet = policy.get("subnet", sid) if sid else None
        vport = bare_metal_vport(policy, sid, request.chaddr) if subnet else None
        if vport is None:
            _log_ignored(datapath_id, cookie, request, "ignoring %s from a hardware VTEP on datapath %016x: no "
                         "bare-metal vport of subnet %s has that MAC", request.describe(), datapath_id,
                         policy.ref("subnet", subnet) or "?")
            return None
        domain = policy.get("domain", subnet["domain_id"]) if subnet["domain_id"] else None
        lease = dhcp.lease_for(subnet, vport, domain, self.underlay_mtu)
        frame_out = dhcp.reply(request, lease) if lease else None
        sw = self._switch_of(datapath_id)
        endpoint = view.endpoints.get(vport["id"])
        sessions = [endpoint.session] if endpoint else sorted(view.bound_vteps.get(sid, ()))
        vteps = [ip for ip in map(view.tunnel_ip_of, sessions) if ip]
        if frame_out is None or sw is None or not sw.tunnel_ofport or not vteps:
            return None
        _log(("answered", datapath_id, vport["id"], request.message_type), "%s for bare-metal vport %s: %s (to %s)",
             request.describe(), policy.ref("vport", vport), lease.ip, ", ".join(vteps))
        actions = [a for ip in vteps for a in to_vtep(subnet["vni"], ip, sw)]
        self.served[vport["id"]] = {"at": time.time(), "ip": lease.ip, "request": request.describe()}
        return Answer(actions, frame_out, f"{request.describe()} -> {lease.ip}")

    def _switch_of(self, datapath_id):
        """The View's switch with this datapath id (a remembered key, checked; else one look through)."""
        switches = self.programmer.view.switches
        sw = switches.get(self._switches.get(datapath_id))
        if sw is not None and sw.datapath_id == datapath_id:
            return sw
        sw = next((sw for sw in switches.values() if sw.datapath_id == datapath_id), None)
        if sw is not None:
            self._switches[datapath_id] = sw.session
        return sw

    def _owner_of(self, datapath_id, cookie, kind):
        """The id of the owner (of ``kind``) of the punt flow with this cookie on this switch: the owner
        remembered for (switch, cookie), else the owners whose id hashes to the cookie's owner hint;
        either way it must hold a flow with that cookie in the switch's desired state."""
        sw = self._switch_of(datapath_id)
        desired = self.programmer.desired.get(sw.session) if sw else None
        if desired is None:
            return None

        def holds(oid):
            return any(f.cookie == cookie for f in desired.flows.get(Owner(kind, oid), ()))

        known = self._owners.get((datapath_id, cookie))
        if known is not None and holds(known):
            return known
        hint = (cookie >> 32) & HINT_BITS
        found = next((oid for oid in self._hints.ids(self.state.policy, kind, hint) if holds(oid)), None)
        if found is None:  # the policy may have changed in place since the index was built: build it again
            found = next((oid for oid in self._hints.ids(self.state.policy, kind, hint, fresh=True) if holds(oid)),
                         None)
        if found is not None:
            if len(self._owners) >= MAX_CACHED:
                self._owners.clear()
            self._owners[(datapath_id, cookie)] = found
        return found


class OwnerHints:
    """{owner hint: ids} of the vports and subnets of a policy, built when first asked after the policy
    changed (one pass over its vports and subnets per policy commit that is followed by a DHCP packet-in
    from a VM not asked about before), never per packet."""

    def __init__(self):
        self._policy = None
        self._counts = None
        self._index: dict[tuple[str, int], list[str]] = {}

    def ids(self, policy, kind: str, hint: int, fresh: bool = False) -> list[str]:
        """The ids of ``kind`` whose owner hint is ``hint`` (``fresh``: rebuild the index first)."""
        counts = (policy.count("vport"), policy.count("subnet"))
        if fresh or policy is not self._policy or counts != self._counts:
            self._index = {}
            for k in ("vport", "subnet"):
                for obj in policy.all(k):
                    self._index.setdefault((k, Owner(k, obj["id"]).hint()), []).append(obj["id"])
            self._policy, self._counts = policy, counts
        return self._index.get((kind, hint), [])


def bare_metal_vport(policy, subnet_id, mac):
    """The bare-metal vport (binding flavour baremetal) of the subnet with this MAC, or None."""
    return next((v for v in policy.all("vport") if v["subnet_id"] == subnet_id and v["mac"] == mac
                 and v["binding"]["flavour"] == "baremetal"), None)
