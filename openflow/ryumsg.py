"""Flows and groups (openflow.flows) as Ryu message objects, built with the negotiated ``datapath.ofproto_parser``:
``flow_add``, ``flow_delete_strict``, ``group_mod``, ``packet_out``, the read-back requests, role requests and bundle
controls. The reference encoder (the action tuples' meaning: openflow/encode.py, whose ``WireEncoder`` packs the same
bytes faster for the hot messages: the unit tests compare them); it serves the rare messages."""

from __future__ import annotations

from openflow.encode import (ALL_ONES, CT_ZONE_OFS_NBITS, NX_CT_F_COMMIT, NX_CT_RECIRC_NONE, NX_IN_PORT,
                             OFP_NO_BUFFER, OFPG_ANY, OFPP_ANY, _GROUP_COMMANDS, _port, _split_goto, nat_spec)
from openflow.flows import MARK, MARK_MASK, MARK_SHIFT, Flow, Group
from openflow.oxm import EncodeError


def ryu_action(parser, action):
    """One action tuple (not goto) as a Ryu action object."""
    ofp, kind = parser.ofproto, action[0]
    if kind == "output":
        return parser.OFPActionOutput(*_port(ofp, action[1]))
    if kind == "set":
        return parser.OFPActionSetField(**{action[1]: action[2]})
    if kind == "move":
        bits = _field_bits(ofp, action[1])
        return parser.NXActionRegMove(src_field=action[1], dst_field=action[2], n_bits=bits)
    if kind == "push_vlan":
        return parser.OFPActionPushVlan(0x8100)
    if kind == "pop_vlan":
        return parser.OFPActionPopVlan()
    if kind == "dec_ttl":
        return parser.OFPActionDecNwTtl()
    if kind == "resubmit":
        return parser.NXActionResubmitTable(in_port=NX_IN_PORT, table_id=action[1])
    if kind == "group":
        return parser.OFPActionGroup(action[1])
    if kind == "ct":
        _, zone, table, commit, mark = action
        nested = [ryu_action(parser, ("move", mark, "ct_mark"))] if mark else []
        return parser.NXActionCT(NX_CT_F_COMMIT if commit else 0, zone, CT_ZONE_OFS_NBITS,
                                 NX_CT_RECIRC_NONE if table is None else table, 0, nested)
    if kind == "ct_nat":  # an immediate zone, and nat(src=ip), nat(dst=ip) or plain nat (openflow/external.py)
        _, zone, table, commit, spec = action
        flags, ip = nat_spec(spec)
        nat = parser.NXActionNAT(flags, ip, ip) if ip else parser.NXActionNAT(0)
        return parser.NXActionCT(NX_CT_F_COMMIT if commit else 0, "", zone,
                                 NX_CT_RECIRC_NONE if table is None else table, 0, [nat])
    if kind == "conjunction":
        return parser.NXActionConjunction(action[2] - 1, action[3], action[1])
    raise EncodeError(f"unknown or misplaced action {action!r}")


def ryu_actions(parser, actions) -> list:
    """Action tuples (no goto) as a list of Ryu action objects, e.g. for a packet-out or a bucket."""
    return [ryu_action(parser, a) for a in actions]


def ryu_instructions(parser, actions) -> list:
    """A flow's action tuples as instructions: apply-actions (if any) then goto-table (if any)."""
    actions, goto = _split_goto(actions)
    ofp = parser.ofproto
    meter = []
    if actions and actions[0][0] == "meter":  # openflow/meters.py
        meter, actions = [parser.OFPInstructionMeter(actions[0][1], ofp.OFPIT_METER)], actions[1:]
    applied = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, ryu_actions(parser, actions))] if actions else []
    out = meter + applied  # a meter alone (no action after it) kept too
    if goto is not None:
        out.append(parser.OFPInstructionGotoTable(goto))
    return out


def ryu_match(parser, match):
    """A Flow's match tuple as an OFPMatch."""
    return parser.OFPMatch(**dict(match))


def flow_add(datapath, f: Flow):
    """OFPFlowMod ADD of ``f`` (replaces a flow with the same match and priority in place)."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPFlowMod(datapath, cookie=f.cookie, cookie_mask=0, table_id=f.table, command=ofp.OFPFC_ADD,
                             priority=f.priority, buffer_id=OFP_NO_BUFFER, out_port=OFPP_ANY,
                             out_group=OFPG_ANY, match=ryu_match(parser, f.match),
                             instructions=ryu_instructions(parser, f.actions))


def flow_delete_strict(datapath, table: int, priority: int, cookie: int, match):
    """OFPFlowMod DELETE_STRICT of exactly one flow: its match (an OFPMatch), priority and full cookie."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPFlowMod(datapath, cookie=cookie, cookie_mask=ALL_ONES, table_id=table,
                             command=ofp.OFPFC_DELETE_STRICT, priority=priority, buffer_id=OFP_NO_BUFFER,
                             out_port=OFPP_ANY, out_group=OFPG_ANY, match=match)


def group_mod(datapath, group: Group, command: str):
    """OFPGroupMod of an ALL group; ``command`` is "add", "modify" or "delete"."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    buckets = [] if command == "delete" else \
        [parser.OFPBucket(actions=ryu_actions(parser, b)) for b in group.buckets]
    return parser.OFPGroupMod(datapath, getattr(ofp, _GROUP_COMMANDS[command]), ofp.OFPGT_ALL,
                              group.group_id, buckets)


def packet_out(datapath, actions, data: bytes, in_port="controller"):
    """OFPPacketOut sending ``data`` through ``actions`` (action tuples, no goto), unbuffered."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    port = _port(ofp, in_port)[0]
    return parser.OFPPacketOut(datapath, buffer_id=OFP_NO_BUFFER, in_port=port,
                               actions=ryu_actions(parser, actions), data=data)


def canopy_flow_stats_request(datapath):
    """Flow stats of every table, only flows whose cookie carries Canopy's mark."""
    return flow_stats_request(datapath, MARK << MARK_SHIFT, MARK_MASK)


def flow_stats_request(datapath, cookie: int, cookie_mask: int):
    """Flow stats of every table, only flows whose cookie matches ``cookie`` under ``cookie_mask``."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, OFPP_ANY, OFPG_ANY, cookie, cookie_mask,
                                      parser.OFPMatch())


def meter_features_request(datapath):
    return datapath.ofproto_parser.OFPMeterFeaturesStatsRequest(datapath, 0)


def meter_config_request(datapath):
    """The configuration of every meter (Canopy's are picked out by id: openflow/meters.py METER_IDS)."""
    return datapath.ofproto_parser.OFPMeterConfigStatsRequest(datapath, 0, datapath.ofproto.OFPM_ALL)


def group_desc_request(datapath):
    return datapath.ofproto_parser.OFPGroupDescStatsRequest(datapath, 0)


ROLES = ("master", "slave", "equal", "nochange")


def role_request(datapath, role: str, generation: int):
    """OFPRoleRequest for ``role`` (master, slave, equal, nochange) with a 64-bit generation id."""
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {ROLES}")
    ofp = datapath.ofproto
    value = getattr(ofp, f"OFPCR_ROLE_{role.upper()}")
    return datapath.ofproto_parser.OFPRoleRequest(datapath, value, generation & 0xFFFFFFFFFFFFFFFF)


def role_name(ofp, value: int) -> str:
    """The name of an OFPCR_ROLE_* value."""
    return next((r for r in ROLES if getattr(ofp, f"OFPCR_ROLE_{r.upper()}") == value), str(value))


def bundle_ctrl(datapath, bundle_id: int, kind: str):
    """OFPBundleCtrlMsg (OpenFlow 1.4) of ``kind`` "OPEN", "COMMIT" or "DISCARD", atomic and ordered."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPBundleCtrlMsg(datapath, bundle_id, getattr(ofp, f"OFPBCT_{kind}_REQUEST"),
                                   ofp.OFPBF_ATOMIC | ofp.OFPBF_ORDERED, [])


def _field_bits(ofp, name: str) -> int:
    return ofp.oxm_get_field_info_by_name(name)[1].size * 8
