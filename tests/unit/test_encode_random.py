"""openflow.encode's WireEncoder against Ryu on random flows and groups: one encoder (its caches warm, as a switch's
is) writes exactly the bytes Ryu serializes for every flow-mod and group-mod, whatever actions and values the
flows before it shared or not, also when its caches are full and start over mid-list. Actions are drawn from
small pools so that most repeat across flows in other lists and positions (the action byte cache, review37b), and
values equal across types (True and 1, 0 and False) meet in the same encoder."""

import random

import pytest

from openflow import encode, ryumsg
from openflow.flows import OFPVID_PRESENT, Group, Owner, flow
from tests.unit.test_encode import VERSIONS, protocol, serialized

_REGS = [f"reg{n}" for n in range(8)]
_MOVES = [("eth_src", "eth_dst"), ("arp_sha", "arp_tha"), ("arp_spa", "arp_tpa"), ("ipv4_src", "ipv4_dst"),
          ("tun_ipv4_src", "tun_ipv4_dst"), ("reg6", "reg7"), ("reg0", "reg1")]


def _mac(rng) -> str:
    return rng.choice(["02:00:00:00:00:01", "02:AA:00:00:00:01", "02:aa:00:00:00:01",
                       ":".join(f"{rng.randrange(256):02x}" for _ in range(6))])


def _ip(rng) -> str:
    return rng.choice(["10.0.0.1", "203.0.113.2", ".".join(str(rng.randrange(256)) for _ in range(4))])


def _number(rng, bits: int):
    return rng.choice([0, 1, True, False, 7, (1 << bits) - 1, rng.randrange(1 << bits)])


def _set(rng):
    field = rng.choice([*_REGS, "tunnel_id", "tun_ipv4_dst", "vlan_vid", "eth_src", "eth_dst", "arp_op", "arp_sha",
                        "arp_spa", "ipv4_src", "ipv4_dst", "icmpv4_type"])
    if field in ("eth_src", "eth_dst", "arp_sha"):
        return ("set", field, _mac(rng))
    if field in ("tun_ipv4_dst", "arp_spa", "ipv4_src", "ipv4_dst"):
        return ("set", field, _ip(rng))
    if field == "vlan_vid":
        return ("set", field, rng.choice([10, 30, rng.randrange(4096)]) | OFPVID_PRESENT)
    bits = {"tunnel_id": 64, "arp_op": 16, "icmpv4_type": 8}.get(field, 32)
    return ("set", field, _number(rng, bits))


def _action(rng):
    kind = rng.choice(["output", "set", "set", "set", "move", "push_vlan", "pop_vlan", "dec_ttl", "resubmit",
                       "group", "ct", "ct_nat", "conjunction"])
    if kind == "output":
        return ("output", rng.choice(["in_port", "controller", 1, 7, rng.randrange(1, 0xFFFFFF00)]))
    if kind == "set":
        return _set(rng)
    if kind == "move":
        return ("move", *rng.choice(_MOVES))
    if kind in ("push_vlan", "pop_vlan", "dec_ttl"):
        return (kind,)
    if kind == "resubmit":
        return ("resubmit", rng.choice([0, 1, 40, rng.randrange(255)]))
    if kind == "group":
        return ("group", rng.choice([0, 1, 10002, rng.randrange(1 << 32)]))
    table = rng.choice([None, 0, 1, 45, rng.randrange(255)])
    commit = rng.choice([True, False, 1, 0])
    if kind == "ct":
        return ("ct", rng.choice(["reg1", "reg6"]), table, commit, rng.choice([None, "reg2", "reg3"]))
    if kind == "ct_nat":
        return ("ct_nat", rng.choice([0, 1, 0xFF01, rng.randrange(1 << 16)]), table, commit,
                rng.choice([None, _ip(rng), ("dst", _ip(rng))]))
    clauses = rng.randrange(1, 5)
    return ("conjunction", rng.choice([1, 28673, rng.randrange(1 << 32)]), rng.randrange(1, clauses + 1), clauses)


def _actions(rng) -> tuple:
    actions = [_action(rng) for _ in range(rng.randrange(0, 10))]
    if rng.random() < 0.5:
        actions.append(("goto", rng.randrange(1, 255)))
    return tuple(actions)


def _flow(rng):
    match = {"reg5": rng.randrange(1 << 32)} if rng.random() < 0.8 else {}
    if rng.random() < 0.5:
        match["in_port"] = rng.randrange(1, 1 << 16)
    return flow(rng.randrange(255), rng.randrange(1 << 16), match, _actions(rng), Owner("vport", f"v{rng.random()}"))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cache", [encode.INSTRUCTION_CACHE, 5])
def test_random_flows_and_groups_are_byte_for_byte_ryu_through_one_warm_encoder(monkeypatch, version, cache):
    monkeypatch.setattr(encode, "INSTRUCTION_CACHE", cache)
    rng = random.Random(f"review37b-{version}-{cache}")
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    for n in range(1500):
        f = _flow(rng)
        assert wire.flow_add(f, n) == serialized(ryumsg.flow_add(dp, f), n), f
        if n % 10 == 0:
            group = Group(rng.randrange(1, 1 << 32),
                          tuple(tuple(a for a in _actions(rng) if a[0] != "goto") for _ in range(rng.randrange(4))))
            assert wire.group_mod(group, "add", n) == serialized(ryumsg.group_mod(dp, group, "add"), n), group
    assert len(wire._action_bytes) <= cache + 9  # bounded: cleared when full, before a list of at most 9 actions
