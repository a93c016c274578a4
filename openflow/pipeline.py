"""The OpenFlow pipeline, declared once as data.

Every flow the compiler produces is checked against this declaration (``check_flow``): its table exists,
it matches only fields that table may match, and it continues only to tables that table may go to.
The same names appear in REST output and docs/pipeline.md.

Register layout (Nicira registers, all 32 bits):

=====  ==========================================================================
reg0   flags: bit 0 LOOPBACK (a reply may go back out of its ingress port),
       bit 1 FROM_TUNNEL (arrived over VXLAN: never sent back into a tunnel)
reg1   ACL: the conntrack zone of the vport whose ACLs are evaluated (bits 0-15)
reg2   ACL: the verdict so far: bits 30-31 none (0), allow (1), allow and commit (2), deny (3); bits 0-29 the
       deciding rule's mark (committed as ct_mark)
reg3   ACL: the tag of the ACL whose rules are being evaluated
reg4   L3 VNI of the packet's routing domain (0: L2-only subnet)
reg5   L2 VNI of the packet's subnet
reg6   ingress vport key (0 when from a tunnel)
reg7   egress vport key (set before EGRESS)
=====  ==========================================================================

Flows that send into a tunnel set ``tun_dst`` and ``tun_id`` and go to ``irb_out`` (routed: the switch's
own Router's MAC) or ``tunnel_out`` (the switch's VXLAN port): those two tables hold the only per-switch
parts, so a remote endpoint's flows are the same on every switch and compiled once (openflow/compiler.py).

A vport key is local to a switch: the port's ofport, or ``ofport << 12 | vlan`` for an ESXi vNIC on a
trunk port.
"""

from __future__ import annotations

from dataclasses import dataclass

REG_FLAGS, REG_L3, REG_L2, REG_IN, REG_OUT = "reg0", "reg4", "reg5", "reg6", "reg7"
REG_ZONE, REG_VERDICT, REG_ACL = "reg1", "reg2", "reg3"
FLAG_LOOPBACK = 0x1
FLAG_FROM_TUNNEL = 0x2


@dataclass(frozen=True)
class Table:
    id: int
    name: str
    matches: frozenset[str]
    next: frozenset[int]  # tables this one may goto/resubmit to
    doc: str


_L2 = {"eth_src", "eth_dst", "eth_type"}
_IP = {"ip_proto", "ipv4_src", "ipv4_dst", "udp_src", "udp_dst", "icmpv4_type", "arp_op", "arp_spa", "arp_tpa",
       "arp_sha"}
_REGS = {"reg0", "reg4", "reg5", "reg6", "reg7"}
_ACL_REGS = {"reg1", "reg2", "reg3"}
_CT = {"ct_state", "ct_mark"}
_RULE = _IP | {"tcp_src", "tcp_dst", "icmpv4_code", "conj_id"}

CLASSIFY, PORT_SECURITY, INGRESS_ACL, SERVICES, L2_LOOKUP, L3_ROUTING, EGRESS_ACL, EGRESS = 0, 10, 20, 25, 30, 40, \
    50, 60
# After conntrack (a vport's ACL chain), the ACLs' rules (reached by resubmit only), the verdict.
INGRESS_ACL_CT, INGRESS_ACL_RULES, INGRESS_ACL_VERDICT = 21, 22, 23
EGRESS_ACL_CT, EGRESS_ACL_RULES, EGRESS_ACL_VERDICT = 51, 52, 53
EXTERNAL_IN = 35  # what arrives on an uplink to an external network (openflow/external.py)
EXTERNAL_NAT = 36  # after conntrack translated what comes from outside or leaves a translated vport
EXTERNAL_DNAT = 45  # after conntrack of what is routed to a floating IP (openflow/external.py)
METADATA = 26  # requests of local VMs to the metadata service and the agent's replies (openflow/metadata.py)
IRB_OUT, TUNNEL_OUT = 70, 75

TABLES = (
    Table(CLASSIFY, "classify", frozenset({"in_port", "vlan_vid", "tunnel_id", "eth_src"}),
          frozenset({PORT_SECURITY, SERVICES, L2_LOOKUP, L3_ROUTING, EXTERNAL_IN, METADATA}),
          "which vport (port, or trunk port + VLAN) or tunnel (VNI) a packet came from -> registers"),
    Table(PORT_SECURITY, "port_security", frozenset({"reg6"} | _L2 | _IP), frozenset({INGRESS_ACL}),
          "a VM may only send from its own MAC and IPs (and DHCP discovery); everything else drops"),
    Table(INGRESS_ACL, "ingress_acl", frozenset(_REGS | _L2 | _IP), frozenset({SERVICES, INGRESS_ACL_CT}),
          "traffic leaving a vport with ACLs (IP): into conntrack in the vport's zone; other traffic goes on"),
    Table(INGRESS_ACL_CT, "ingress_acl_ct", frozenset(_REGS | _CT), frozenset({INGRESS_ACL_RULES, INGRESS_ACL_VERDICT}),
          "after conntrack: invalid packets are denied; the vport's ACLs' rules are evaluated in order"),
    Table(INGRESS_ACL_RULES, "ingress_acl_rules", frozenset(_REGS | _ACL_REGS | _CT | _L2 | _RULE), frozenset(),
          "the rules of each ACL (egress direction) and its return-traffic checks: they only set the verdict"),
    Table(INGRESS_ACL_VERDICT, "ingress_acl_verdict", frozenset(_REGS | _ACL_REGS | {"eth_type"}), frozenset({SERVICES}),
          "allow (committing stateful connections with the rule's mark) or drop, counted per vport"),
    Table(SERVICES, "services", frozenset(_REGS | _L2 | _IP), frozenset({L2_LOOKUP, EGRESS, METADATA}),
          "ARP answered from flows for gateways and known IPs; DHCP sent to the controller; on a subnet's "
          "bare-metal gateway VRS, the same for what hardware VTEPs send over the tunnel; IP to the metadata "
          "service's address on to metadata"),
    Table(METADATA, "metadata", frozenset({"in_port", "reg6"} | _L2 | _IP | {"tcp_src", "tcp_dst"}),
          frozenset({EGRESS_ACL}),
          "a local VM's HTTP request to 169.254.169.254 to the metadata agent's port, its source rewritten to the "
          "address naming the VM's port; the agent's replies rewritten back and delivered to that port; ARP of "
          "the agent answered; anything else drops"),
    Table(L2_LOOKUP, "l2_lookup", frozenset(_REGS | _L2), frozenset({L3_ROUTING, EGRESS_ACL, TUNNEL_OUT, EXTERNAL_NAT}),
          "destination MAC in the subnet: local vport, remote VTEP, gateway (route; from a vport with a floating IP "
          "or a domain translated to the underlay, through conntrack's NAT first), or flood group"),
    Table(EXTERNAL_IN, "external_in", frozenset({"in_port"} | _L2 | _IP), frozenset({L3_ROUTING, EXTERNAL_NAT}),
          "from an external network's uplink: ARP for floating IPs and the hypervisor's address answered, the "
          "gateway's ARP answers to the controller, traffic to a floating IP routed in its VM's domain, traffic to "
          "the hypervisor's address into conntrack (the translation zone) to undo port address translation"),
    Table(EXTERNAL_NAT, "external_nat", frozenset(_REGS | _CT | _IP | {"eth_type"}), frozenset({L3_ROUTING}),
          "after the translation zone: replies of translated connections from outside, back at the inside address, "
          "routed in the domain that address is in (anything else from outside drops); what a translated vport or "
          "domain sends, translated if its connection is known, on to routing"),
    Table(L3_ROUTING, "l3_routing", frozenset(_REGS | _L2 | _IP),
          frozenset({EGRESS_ACL, IRB_OUT, TUNNEL_OUT, EXTERNAL_DNAT}),
          "longest prefix match in the domain: local host, remote VTEP over the L3 VNI (symmetric IRB); a local "
          "floating IP into conntrack; no route: translated out of the uplink (the flow that commits the "
          "translation of a new connection)"),
    Table(EXTERNAL_DNAT, "external_dnat", frozenset(_REGS | _CT | _IP | {"eth_type"}), frozenset({EGRESS_ACL}),
          "to a floating IP, after the translation zone: a new connection committed with the VM's address as "
          "destination (counted), known ones already translated; delivered to the VM through its egress policy"),
    Table(EGRESS_ACL, "egress_acl", frozenset(_REGS | _L2 | _IP | {"in_port"}), frozenset({EGRESS, EGRESS_ACL_CT}),
          "traffic entering a vport with ACLs (IP): into conntrack in the vport's zone; other traffic goes on"),
    Table(EGRESS_ACL_CT, "egress_acl_ct", frozenset(_REGS | _CT), frozenset({EGRESS_ACL_RULES, EGRESS_ACL_VERDICT}),
          "after conntrack: invalid packets are denied; the vport's ACLs' rules are evaluated in order"),
    Table(EGRESS_ACL_RULES, "egress_acl_rules", frozenset(_REGS | _ACL_REGS | _CT | _L2 | _RULE), frozenset(),
          "the rules of each ACL (ingress direction) and its return-traffic checks: they only set the verdict"),
    Table(EGRESS_ACL_VERDICT, "egress_acl_verdict", frozenset(_REGS | _ACL_REGS | {"eth_type"}), frozenset({EGRESS}),
          "allow (committing stateful connections with the rule's mark) or drop, counted per vport"),
    Table(EGRESS, "egress", frozenset(_REGS | {"in_port"}), frozenset(),
          "deliver to the egress vport: its port, or its trunk with its VLAN pushed"),
    Table(IRB_OUT, "irb_out", frozenset(), frozenset({TUNNEL_OUT}),
          "routed to a remote VTEP (symmetric IRB): this VRS's own Router's MAC as the source, then tunnel_out"),
    Table(TUNNEL_OUT, "tunnel_out", frozenset(), frozenset(),
          "out of this VRS's VXLAN port (tun_dst and tun_id already set)"),
)
BY_ID = {t.id: t for t in TABLES}
BY_NAME = {t.name: t for t in TABLES}


# How an answer made by the switch goes back out of the asking vport's own port (loopback allowed).
BACK_TO_PORT = (("set", REG_FLAGS, FLAG_LOOPBACK), ("move", REG_IN, REG_OUT), ("goto", EGRESS))


class PipelineError(ValueError):
    pass


OUTPUT_NAMES = ("in_port", "controller")  # the ports an output action may name instead of a number


ADDRESS_FIELDS = frozenset((  # fields whose value may be written as text (a MAC or IP address), else an integer
    "eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src",
    "tun_ipv4_dst", "ipv6_src", "ipv6_dst", "ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll"))


def _check_value(flow, what: str, name: str, value) -> None:
    """PipelineError unless ``value`` (not an int) is a value of field ``name``: text for an address field, a
    (value, mask) pair of such. A float equal to an int, a bool or text for an integer field is refused: the
    encoder's caches are keyed by the value, and ``1.0 == 1 == True`` would give one key two encodings (the
    float raised in a fresh encoder, and was written as the int once the int's bytes were cached)."""
    if value is None:
        raise PipelineError(f"{flow}: {what} {name} has no value (None)")
    if type(value) is tuple and len(value) == 2:  # a masked value
        for part in value:
            if type(part) is not int:
                _check_value(flow, what, name, part)
        return
    if type(value) is str and name in ADDRESS_FIELDS:
        return
    raise PipelineError(f"{flow}: {what} {name} has the value {value!r} of type {type(value).__name__}, not an "
                        f"integer{' or an address as text' if name in ADDRESS_FIELDS else ''}")


def check_flow(flow) -> None:
    """Raise PipelineError when a flow breaks the declaration. One pass over the match and one over the actions,
    allocating nothing for a valid flow: every distinct flow of a full compile (150,000 at 10,000 vports) is
    checked, and a set and two generators per flow were a fifth of that compile.

    A value missing where the encoder needs one (None: a priority, an output port, a match field, an action's
    argument) or of the wrong type (a priority or output port that is not an integer) is a compiler bug: raised
    here, with the flow and the field, so that the pass fails (logged, reported degraded, retried:
    controller/programloop.py). Left to the encoder, ``struct`` would refuse it like a value out of its field's
    range and the flow would be left out of the change set (openflow/changeset.py), quietly."""
    table = BY_ID.get(flow.table)
    if table is None:
        raise PipelineError(f"{flow}: table {flow.table} is not declared")
    if type(flow.priority) is not int:
        raise PipelineError(f"{flow}: priority {flow.priority!r} is not an integer")
    allowed = table.matches
    for name, value in flow.match:
        if name not in allowed:
            extra = {name for name, _ in flow.match} - allowed
            raise PipelineError(f"{flow}: table {table.name} may not match {sorted(extra)}")
        if type(value) is not int:
            _check_value(flow, "match field", name, value)
    goto_before_last = False
    last = len(flow.actions) - 1
    for n, action in enumerate(flow.actions):
        kind = action[0]
        if kind == "set" or kind == "move":  # the most common (an ARP answer: 7 of its 10 actions), asked first
            if kind == "set":  # the common one: its value
                if type(action[2]) is not int:
                    _check_value(flow, "action set of field", action[1], action[2])
            elif None in action:
                raise PipelineError(f"{flow}: action {kind} has no value (None) in {action!r}")
            continue
        if kind == "output":
            port = action[1]
            if type(port) is not int and port not in OUTPUT_NAMES:
                raise PipelineError(f"{flow}: output port {port!r} is neither a port number nor one of "
                                    f"{', '.join(OUTPUT_NAMES)}")
            continue
        if kind == "goto" or kind == "resubmit":  # a target of None is not among the next tables: raised below
            target = action[1]
        elif kind == "ct" or kind == "ct_nat":  # (zone, table or None, commit, mark or nat spec or None)
            if action[1] is None:
                raise PipelineError(f"{flow}: action {kind} has no zone (None)")
            if action[2] is None:
                continue
            target = action[2]
        else:
            if None in action:
                raise PipelineError(f"{flow}: action {kind} has no value (None) in {action!r}")
            if kind == "meter" and n:
                raise PipelineError(f"{flow}: a meter must be the first action")
            continue
        if target not in table.next:
            raise PipelineError(f"{flow}: table {table.name} may not continue to table {target}")
        if kind != "resubmit" and target <= flow.table:
            raise PipelineError(f"{flow}: goto must move forward")
        goto_before_last = goto_before_last or (kind == "goto" and n < last)
    if goto_before_last:
        raise PipelineError(f"{flow}: goto must be the last action")
