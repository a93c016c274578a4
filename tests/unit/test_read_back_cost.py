"""What a switch's read-back costs the controller per flow, counted in Python calls (never timed): a restart of
vrs_scale parses, keys and plans 800,000 flow-stats entries (50 switches of 16,000 flows), most of its controller's
CPU (docs/benchmarks.md, "restart CPU, stop 37"; tests/benchmarks/read_back_cost.py).

- Ryu's parse of a flow-stats reply makes one Python call an entry (the entry's parser): its fixed fields are read
  in C (controller/flowstats.py), where each was a property of a function;
- the reconciler keys the entries read back (table, priority, cookie) in C, a few calls per CHUNK of them;
- the full plan that follows makes about one call a flow desired (its key) besides its work per owner;
- entries still compare and hash by identity, and entries sharing a key are each logged, the last one kept, with
  the event loop given turns between them (each is described: its match and instructions parsed).
"""

from __future__ import annotations

import logging
import sys

from controller.ryu_compat import ofproto_protocol
from openflow import decode
from openflow.flows import Group
from openflow.installed import CHUNK
from tests.benchmarks.read_back_cost import parse, replies
from tests.unit.test_reconcile_pacing import desired, reconciler

OWNERS = 2_000  # two flows each (tests/unit/test_reconcile_pacing.py flows_of)


class PythonCalls:
    """Counts the calls of Python functions (not built-ins) made while on (``sys.setprofile``)."""

    def __init__(self):
        self.count = 0

    def _event(self, frame, event, arg):
        if event == "call" and frame.f_code is not _EXIT:
            self.count += 1

    def __enter__(self):
        sys.setprofile(self._event)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


_EXIT = PythonCalls.__exit__.__code__  # the counter's own, not counted


def read_back_world():
    """A reconciler whose desired flows are OWNERS owners', and the flow-stats replies holding exactly those flows
    (in messages under 64 KiB, as OVS sends them)."""
    rec, switch = reconciler()
    want = desired(count=OWNERS)
    rec.set_desired_owners(want, [Group(7, ())])
    flows = [f for fs in want.values() for f in fs]
    return rec, switch, flows, replies(switch, flows)


def test_an_entrys_fixed_fields_are_read_without_a_python_call():
    dp = ofproto_protocol.ProtocolDesc(5)
    _, _, flows, data = read_back_world()
    entries = parse(dp, data)
    read = []
    with PythonCalls() as calls:
        for e in entries:
            read.append((e.length, e.table_id, e.priority, e.cookie, e.packet_count, e.byte_count))
    assert calls.count == 0
    assert [r[1:4] for r in read] == [f.key for f in flows]


def test_parsing_a_reply_makes_one_python_call_an_entry():
    dp = ofproto_protocol.ProtocolDesc(5)
    _, _, flows, data = read_back_world()
    with PythonCalls() as calls:
        entries = parse(dp, data)
    assert len(entries) == len(flows)
    assert calls.count <= len(entries) + 20 * len(data)  # the entry's parser; Ryu's parsing of each message


def test_a_read_back_keys_its_entries_without_a_python_call_each():
    rec, switch, flows, data = read_back_world()
    entries = parse(switch, data)
    with PythonCalls() as calls:
        rec._take_in(entries, [])
    assert set(rec._book.loose) == {f.key for f in flows}
    assert calls.count <= 2 * len(entries) // CHUNK + 20  # a slice and a tick every CHUNK entries; the log line


def test_the_full_plan_after_a_read_back_makes_about_one_python_call_a_flow():
    rec, switch, flows, data = read_back_world()
    rec._take_in(parse(switch, data), [])
    with PythonCalls() as calls:
        plan = rec._plan_ops()
    assert len(plan) == 1  # the group (not read back): every flow is installed as desired
    # measured: 1 a flow (its key) and 6 an owner (the book's walk of its owners, the record of them installed)
    assert calls.count <= 1.2 * len(flows) + 7 * OWNERS


def test_entries_compare_and_hash_by_identity_as_ryus_own():
    dp = ofproto_protocol.ProtocolDesc(5)
    _, _, _, data = read_back_world()
    first, again = parse(dp, data)[0], parse(dp, data)[0]
    assert first == first and first != again and len({first, again}) == 2
    assert hash(first) != hash(again)


def test_entries_sharing_a_key_are_each_logged_and_the_last_kept(caplog):
    rec, switch, flows, data = read_back_world()
    entries = parse(switch, data)
    again = parse(switch, data)[:3]
    with caplog.at_level(logging.WARNING, logger="test.reconciler"):
        rec._take_in(entries + again, [])
    shared = [r.getMessage() for r in caplog.records if "share table, priority and cookie" in r.getMessage()]
    assert len(shared) == 3
    assert all(f"cookie={f.cookie:#x}," in line for f, line in zip(flows[:3], shared))
    assert all(rec._book.loose[f.key] is e for f, e in zip(flows[:3], again))
    assert len(rec._book.loose) == len(flows)


def test_entries_sharing_a_key_are_logged_with_pauses_between(monkeypatch):
    described = []
    pauses = []
    rec, switch = reconciler(pause=lambda: pauses.append(len(described)), every=CHUNK)
    want = desired(count=OWNERS)
    rec.set_desired_owners(want, [Group(7, ())])
    entries = parse(switch, replies(switch, [f for fs in want.values() for f in fs]))
    describe = decode.describe_stats
    monkeypatch.setattr(decode, "describe_stats", lambda ofp, stats: described.append(1) or describe(ofp, stats))
    rec._take_in(entries + entries, [])  # a switch that answers every flow twice
    assert len(described) == len(entries)
    marks = [0] + pauses + [len(described)]
    assert max(b - a for a, b in zip(marks, marks[1:])) <= CHUNK  # a pause at least every CHUNK described
