"""openflow/pipeline.py ``check_flow``'s shorter way (``_passes``: exact int and str values, the match pairs and plain
actions seen before passed over in C) against the whole way (``_check_flow``) on random flows of every odd shape: the
same flows taken, the same errors (type and text) for the others, whatever the two caches hold. Values are drawn
from small pools where ``1 == 1.0 == True`` and a ``str`` subclass equal to a ``str`` meet what the caches hold."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from openflow import pipeline as p
from openflow.compiler import arp_responder
from openflow.flows import Owner


class Text(str):
    pass


VALUES = (0, 1, 2, 7, 60, True, False, 1.0, 2.0, None, "1", "10.0.0.1", "02:00:00:00:00:01", Text("10.0.0.1"),
          (1, 255), ("10.0.0.0", "255.255.255.0"), (1, None), "in_port", "controller", Text("in_port"))
FIELDS = ("reg0", "reg5", "reg6", "reg7", "eth_type", "arp_op", "arp_tpa", "arp_spa", "eth_src", "eth_dst",
          "ipv4_dst", "in_port", "tunnel_id", "ct_state", "nonsense", 5)
KINDS = ("set", "move", "output", "goto", "resubmit", "ct", "ct_nat", "drop_it", "set", "move", "goto")


def _value(rng):
    return rng.choice(VALUES)


def _action(rng, tables):
    kind = rng.choice(KINDS)
    shape = rng.random()
    if shape < 0.05:
        return (kind,)
    if shape < 0.08:
        return [kind, rng.choice(FIELDS), _value(rng)]  # a list: unhashable
    if shape < 0.1:
        return kind  # not a tuple at all
    if kind in ("goto", "resubmit"):
        return (kind, rng.choice(tables + (None, 1.0, True, "60")))
    if kind in ("ct", "ct_nat"):
        return (kind, _value(rng), rng.choice(tables + (None,)), rng.choice((True, False)), _value(rng))
    if kind == "output":
        return (kind, _value(rng))
    if kind == "move":
        return (kind, rng.choice(FIELDS), rng.choice(FIELDS + (None,)))
    return (kind, rng.choice(FIELDS), _value(rng)) + ((1,) if rng.random() < 0.05 else ())


def _pair(rng):
    shape = rng.random()
    if shape < 0.03:
        return (rng.choice(FIELDS),)
    if shape < 0.05:
        return [rng.choice(FIELDS), _value(rng)]
    if shape < 0.06:
        return "ab"
    return (rng.choice(FIELDS), _value(rng))


def _good_flow(rng):
    """A flow the declaration mostly takes, now and then one item odd (a value from ``VALUES``)."""
    table = p.BY_ID[rng.choice(tuple(p.BY_ID))]
    fields = sorted(table.matches) or ["reg5"]
    odd = rng.random() < 0.3

    def value(name):
        if odd and rng.random() < 0.2:
            return _value(rng)
        return rng.choice(("10.0.0.1", "10.0.0.2", "02:00:00:00:00:01")) if name in p.ADDRESS_FIELDS \
            else rng.choice((1, 2, 5000))

    match = tuple((name, value(name)) for name in rng.sample(fields, min(len(fields), rng.randrange(4))))
    actions = []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.choice(("set", "move", "output"))
        if kind == "set":
            name = rng.choice(("eth_src", "arp_spa", "arp_op", "reg0", "reg7"))
            actions.append(("set", name, value(name)))
        elif kind == "move":
            actions.append(("move", rng.choice(FIELDS[:12]), rng.choice(FIELDS[:12])))
        else:
            actions.append(("output", rng.choice((1, 5, "in_port")) if not odd or rng.random() < 0.8 else _value(rng)))
    targets = sorted(table.next)
    if targets and rng.random() < 0.7:
        actions.append(("goto", rng.choice(targets) if not odd or rng.random() < 0.8 else rng.choice(tuple(p.BY_ID))))
    return SimpleNamespace(table=table.id, priority=100, match=match, actions=tuple(actions))


def _flow(rng):
    if rng.random() < 0.5:
        return _good_flow(rng)
    tables = tuple(p.BY_ID)
    table = rng.choice(tables + (999, True, 1.0))
    priority = rng.choice((100, 100, 100, 0, True, 1.0, None, "100"))
    match = tuple(_pair(rng) for _ in range(rng.randrange(5)))
    actions = tuple(_action(rng, tables) for _ in range(rng.randrange(6)))
    if rng.random() < 0.3:
        actions += (("goto", rng.choice(tables)),)
    return SimpleNamespace(table=table, priority=priority, match=match, actions=actions)


def _outcome(check, flow):
    try:
        check(flow)
    except Exception as exc:  # noqa: BLE001 (the kind and text of any error are what is compared)
        return type(exc), str(exc)
    return None


@pytest.mark.parametrize("seed", range(6))
def test_the_shorter_way_takes_and_refuses_what_the_whole_way_does(seed, monkeypatch):
    monkeypatch.setattr(p, "_PAIRS_SEEN", set())
    monkeypatch.setattr(p, "_PLAIN_SEEN", set())
    monkeypatch.setattr(p, "SEEN_LIMIT", 64 if seed % 2 else 8192)  # emptied often, or kept
    rng = random.Random(seed)
    taken = fast = 0
    for _ in range(6000):
        flow = _flow(rng)
        assert _outcome(p.check_flow, flow) == _outcome(p._check_flow, flow), flow
        taken += _outcome(p._check_flow, flow) is None
        try:
            fast += p._passes(flow)
        except Exception:  # noqa: BLE001 (an odd shape: the whole way's)
            pass
    assert taken > 1500 and fast > 1000, (taken, fast)  # both ways saw many good flows


def test_an_arp_answer_of_a_new_vport_is_taken_in_few_bytecodes():
    """The ARP answer of each new port (its MAC and IP new): ~440 Python bytecodes the whole way, ~185 the shorter."""
    from tests.benchmarks.evpn_withdraw import Opcodes

    flows = [arp_responder(5000, f"10.1.{i // 250}.{i % 250}", f"02:00:00:01:{i // 256:02x}:{i % 256:02x}",
                           Owner("vport", str(i))) for i in range(100)]
    for f in flows[:10]:
        p.check_flow(f)
    with Opcodes() as counted:
        for f in flows[10:]:
            p.check_flow(f)
    assert counted.count <= 200 * 90, counted.count
    with Opcodes() as whole:
        for f in flows[10:]:
            p._check_flow(f)
    assert whole.count > 400 * 90, whole.count
