"""The controller's CPU for one switch read back after a restart, measured in-process, step by step.

`.venv/bin/python -m tests.benchmarks.read_back_cost [--flows 16000] [--switches 5] [--code DIR]`

A restart of vrs_scale (50 VRS, 16,000 Canopy flows each) reads every switch back and plans it in full against its
desired flows, which all match: 800,000 flow-stats entries parsed, keyed and compared. Here one switch's flows (vport
owners of three flows each, tests/benchmarks/reconcile_stretches.py) are encoded as OVS sends them (flow-stats
replies of at most ``REPLY_BYTES`` each, match and instructions as a flow-mod carries them) and, for each of
``--switches`` switches (one Flow object shared by all, as the compiler's sets are):

- **parse**: Ryu's message parser over every reply, as the datapath's receive loop runs it;
- **take in**: the reconciler's ``_take_in`` (the entries keyed by table, priority and cookie; the book's read-back);
- **plan**: the full plan that follows (``_plan_ops``: every desired flow against every installed one; nothing to
  send).

For each step: CPU (``time.thread_time``, unprofiled; noisy on a shared machine) and, in a second round of as many
switches, the function calls it made (``cProfile``'s count of Python and built-in calls: exact, the figure to
compare before/after). ``--code DIR``: import the controller from DIR (a git
archive of another commit) to compare on one machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import struct
import sys
import time

REPLY_BYTES = 65_000  # an OFPMP_FLOW reply's size at most (OVS splits a dump into replies under 64 KiB)


def replies(dp, flows) -> list[bytes]:
    """``flows`` as OFPMP_FLOW multipart replies of at most REPLY_BYTES each."""
    from openflow import encode

    ofp = dp.ofproto
    wire = encode.WireEncoder(ofp)
    out, entries = [], []
    size = 0
    for i, f in enumerate(flows):
        body = wire.match(f.match) + wire.instructions(f.actions)
        fixed = [48 + len(body), f.table, 7, 8, f.priority, 0, 0, 0] + ([0] if ofp.OFP_VERSION == 5 else [])
        entry = struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, *fixed, f.cookie, i, 100 * i) + body
        if size + len(entry) > REPLY_BYTES:
            out.append(_reply(ofp, b"".join(entries), more=True))
            entries, size = [], 0
        entries.append(entry)
        size += len(entry)
    out.append(_reply(ofp, b"".join(entries), more=False))
    return out


def _reply(ofp, entries: bytes, more: bool) -> bytes:
    head = struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_FLOW, ofp.OFPMPF_REPLY_MORE if more else 0)
    length = ofp.OFP_HEADER_SIZE + len(head) + len(entries)
    return struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, length, 9) + head + entries


def parse(dp, data: list[bytes]) -> list:
    """Every entry of the replies, as the reconciler collects them (``waiter.replies.extend(msg.body)``)."""
    from controller.ryu_compat import ofproto_parser

    entries: list = []
    for raw in data:
        version, msg_type, length, xid = ofproto_parser.header(raw)
        entries.extend(ofproto_parser.msg(dp, version, msg_type, length, xid, bytearray(raw)).body)
    return entries


def measure(work, profiled: bool):
    """(result, CPU seconds, function calls) of ``work()``: CPU unprofiled, calls (cProfile's count, Python and
    built-in) when ``profiled`` (0 when not)."""
    if not profiled:
        started = time.thread_time()
        result = work()
        return result, time.thread_time() - started, 0
    profile = cProfile.Profile()
    profile.enable()
    result = work()
    profile.disable()
    return result, 0.0, pstats.Stats(profile).total_calls


def run(flows: int, switches: int, counted: bool = True) -> dict:
    from openflow.flows import Group
    from tests.benchmarks.reconcile_stretches import desired, reconciler

    want = desired(flows // 3)
    shared = [f for fs in want.values() for f in fs]
    for f in shared:
        f.key  # noqa: B018 - the cookies computed once, as the first switch's plan does for the others
    totals = {"parse": [0.0, 0], "take in": [0.0, 0], "plan": [0.0, 0]}
    data = replies(reconciler()[1], shared)  # what every switch answers (encoded once: not counted per switch)
    for profiled in (False,) * switches + (True,) * (switches if counted else 0):  # CPU, then the calls
        rec, switch = reconciler()
        rec.set_desired_owners(want, [Group(7, ())])
        entries, cpu, calls = measure(lambda: parse(switch, data), profiled)
        assert len(entries) == len(shared)
        _, cpu2, calls2 = measure(lambda: rec._take_in(entries, []), profiled)
        plan, cpu3, calls3 = measure(rec._plan_ops, profiled)
        assert len(plan) == 1, "every flow read back is desired: only the group (not read back) to add"
        for step, used, made in (("parse", cpu, calls), ("take in", cpu2, calls2), ("plan", cpu3, calls3)):
            totals[step][0] += used
            totals[step][1] += made
    return {"flows": len(shared), "switches": switches, **{k: tuple(v) for k, v in totals.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=16_000, help="Canopy flows per switch")
    parser.add_argument("--switches", type=int, default=5, help="switches read back, one after the other")
    parser.add_argument("--no-calls", action="store_true", help="skip the round that counts calls (to count "
                        "instructions under valgrind --tool=callgrind: against a run with --switches 0)")
    parser.add_argument("--code", metavar="DIR", help="import the controller from DIR (a checkout of another commit)")
    args = parser.parse_args(argv)
    if args.code:
        sys.path.insert(0, args.code)
    result = run(args.flows, args.switches, counted=not args.no_calls)
    n = result["flows"] * result["switches"]
    print(f"read back: {result['switches']} switches x {result['flows']:,} flows (all desired)")
    for step in ("parse", "take in", "plan"):
        cpu, calls = result[step]
        print(f"  {step:8s} {cpu * 1e6 / max(n, 1):6.2f} us CPU a flow, {calls / max(n, 1):6.2f} function calls a flow")
    cpu = sum(result[s][0] for s in ("parse", "take in", "plan"))
    calls = sum(result[s][1] for s in ("parse", "take in", "plan"))
    print(f"  {'all':8s} {cpu * 1e6 / max(n, 1):6.2f} us CPU a flow, {calls / max(n, 1):6.2f} function calls a flow "
          f"({cpu:.2f} s CPU in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
