"""Fuzz Ryu's OpenFlow parser with what a hostile switch could send; the pass condition is that every message is
parsed, or refused (Ryu logs and drops it), within a bound, and nothing else is raised.

    .venv/bin/python -m tests.fuzz.openflow [--seed N] [--random N] [--budget-ms N] [--ryu-only]

Every message goes through ``ofproto_parser.msg`` as Ryu's receive loop calls it, with Canopy's guard installed
(controller/ofcheck.py; ``--ryu-only``: without it, to see what Ryu alone does). Messages: real ones of every kind a
switch sends to a controller in OpenFlow 1.3 and 1.4 (``seeds``: hello, errors, echo, features, packet-in,
flow-removed, port status, role replies and status, the multipart replies Canopy asks for and others, with matches,
instructions, Nicira actions with nested actions and properties), each mutated deterministically (every 16-bit
field set to 0, 1, 4 and 0xffff: the lengths a parse loop steps by; cut at every 8th byte) and at random (``--random``
random byte changes per seed). Each parse runs under an interval timer (``--budget-ms``): one that runs out is a
spin, reported with the line of Ryu's parser it was in. Outcomes: ``parsed``, ``dropped`` (Ryu logged and dropped
it: a refusal), ``raised`` (an exception left ``ofproto_parser.msg``: it ends the switch's connection), ``spin``, and
for flow-stats entries, whose match and instructions are parsed on first use, and group descriptions, whose buckets
are, ``use-refused`` (a ValueError) and ``use-raised`` (another exception; Canopy's uses, openflow/decode.py
``describe_stats`` and ``decode_group``, catch every one).
Exit status 0 only when no spin was found (``raised`` is reported, not failed: Ryu raises OFPTruncatedMessage on
purpose, and a connection ending is bounded).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import signal
import struct
import sys
import traceback
from collections import Counter

from controller import ofcheck
from controller.flowstats import LazyFlowStats
from controller.groupdesc import LazyGroupDesc
from controller.ryu_compat import (ofproto_parser, ofproto_protocol, ofproto_v1_3, ofproto_v1_3_parser,
                                   ofproto_v1_4, ofproto_v1_4_parser)
from ryu.exception import OFPTruncatedMessage  # noqa: E402 - after the door (controller.ryu_compat)

BUDGET_MS = 200
PARSERS = {ofproto_v1_3: ofproto_v1_3_parser, ofproto_v1_4: ofproto_v1_4_parser}


class Spin(BaseException):
    """The parse ran out of its time budget (not an Exception: a guard that catches and logs those, as
    controller/ofcheck.py does around Ryu's parser, must not hide it)."""


@contextlib.contextmanager
def steps(count: int):
    """Spin raised once the block has run ``count`` lines of Python (a count, not a time: for unit tests)."""
    left = [count]

    def trace(frame, event, arg):
        if event == "line":
            left[0] -= 1
            if left[0] < 0:
                raise Spin()
        return trace
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(None)


@contextlib.contextmanager
def _budget(seconds: float):
    def ring(*_):
        raise Spin()
    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def parse(buf: bytes, budget: float = BUDGET_MS / 1000, lines: int | None = None) -> tuple[str, str]:
    """(outcome, where) of Ryu parsing ``buf`` as its receive loop does; ``where``: the innermost Ryu lines of a
    spin, or the exception's type of a ``raised``. Bounded by ``budget`` seconds, or by ``lines`` lines of Python."""
    def _bound():
        return steps(lines) if lines else _budget(budget)

    version, kind, length, xid = ofproto_parser.header(buf)
    datapath = ofproto_protocol.ProtocolDesc(version if version in (1, 3, 4, 5, 6) else 4)
    parser = ofproto_parser._MSG_PARSERS.get(version)  # noqa: SLF001 - what ofproto_parser.msg calls
    if parser is None:
        return "raised", "OFPUnknownVersion"
    try:  # ofproto_parser.msg, whose bare except would also catch the Spin
        with _bound():
            msg = parser(datapath, version, kind, max(length, 8), xid, buf[:max(length, 8)])
    except Spin as spin:
        return "spin", _where(spin)
    except OFPTruncatedMessage:  # the one exception ofproto_parser.msg raises on: out of Ryu's receive loop
        return "raised", "OFPTruncatedMessage"
    except Exception:  # noqa: BLE001 - ofproto_parser.msg logs it and drops the message
        return "dropped", ""
    body = getattr(msg, "body", None)
    for entry in body if isinstance(body, list) else ():
        if isinstance(entry, (LazyFlowStats, LazyGroupDesc)):  # first used as Canopy uses it (a stale flow's delete,
            # a listing; a read-back's groups decoded)
            try:
                with _bound():
                    _first_use(entry)
            except Spin as spin:
                return "spin", "first use: " + _where(spin)
            except ValueError:  # a use that fails with a ValueError is a refusal (docs/limits.md)
                return "use-refused", ""
            except Exception as exc:  # noqa: BLE001
                return "use-raised", type(exc).__name__
    return ("parsed" if msg is not None else "dropped"), ""


def _first_use(entry) -> None:
    if isinstance(entry, LazyGroupDesc):
        entry.buckets  # noqa: B018
    else:
        entry.instructions, entry.match  # noqa: B018


def _where(spin: Spin) -> str:
    """The innermost three lines of Ryu's parser a spin was in."""
    frames = [f for f in traceback.extract_tb(spin.__traceback__) if "/ryu/" in f.filename][-3:]
    return " < ".join(f"{f.filename.rsplit('/ryu/', 1)[1]}:{f.lineno}" for f in reversed(frames)) or "?"


def _msg(version: int, kind: int, body: bytes = b"", xid: int = 7) -> bytes:
    return struct.pack("!BBHI", version, kind, 8 + len(body), xid) + body


def _multipart(version: int, stats: int, body: bytes, flags: int = 0) -> bytes:
    return _msg(version, 19, struct.pack("!HH4x", stats, flags) + body)


def _ser(obj) -> bytes:
    buf = bytearray()
    obj.serialize(buf, 0)
    return bytes(buf)


def _actions(ofp, parser) -> list:
    """Actions as a switch reads them back, Nicira ones with nested actions and properties among them."""
    nested = [parser.OFPActionSetField(reg6=3), parser.NXActionNAT(flags=1, range_ipv4_min="10.0.0.1",
                                                                  range_ipv4_max="10.0.0.9")]
    return [
        parser.OFPActionOutput(3), parser.OFPActionSetField(eth_dst="02:00:00:00:00:01"),
        parser.OFPActionPushVlan(), parser.OFPActionGroup(5),
        parser.NXActionCT(flags=1, zone_src="reg5", zone_ofs_nbits=15, recirc_table=20, alg=0, actions=nested),
        parser.NXActionController2(max_len=128, controller_id=3, reason=1, userdata=[1, 2, 3, 4, 5], pause=True),
        parser.NXActionResubmitTable(in_port=0xfff8, table_id=40), parser.NXActionRegLoad2(dst="reg7", value=9),
        parser.NXActionNote(note=[1, 2, 3, 4, 5, 6]), parser.NXActionConjunction(clause=1, n_clauses=2, id_=9),
        parser.NXActionBundle(algorithm=0, fields=0, basis=0, slave_type=0x00010000, n_slaves=2, ofs_nbits=0,
                              dst=0, slaves=[1, 2]),
        parser.NXActionMultipath(fields=0, basis=0, algorithm=0, max_link=1, arg=0, ofs_nbits=31, dst="reg0"),
        parser.NXActionSample2(probability=1, collector_set_id=1, obs_domain_id=1, obs_point_id=1,
                               sampling_port=2),
        parser.NXActionDecTtlCntIds(cnt_ids=[1, 2]),
    ]


def _match(parser) -> bytes:
    return _ser(parser.OFPMatch(in_port=3, eth_type=0x0800, ipv4_src=("10.0.0.0", "255.0.0.0"), reg6=7,
                                metadata=5, tunnel_id=9))


def _instructions(ofp, parser) -> bytes:
    acts = parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(ofp, parser))
    return b"".join(_ser(i) for i in (acts, parser.OFPInstructionGotoTable(5),
                                      parser.OFPInstructionWriteMetadata(1, 0xff)))


def seeds(ofp) -> list[tuple[str, bytes]]:
    """(name, bytes) of a real message of every kind a switch sends to a controller in ``ofp``'s version."""
    parser = PARSERS[ofp]
    v = ofp.OFP_VERSION
    match, insts = _match(parser), _instructions(ofp, parser)
    actions = b"".join(_ser_action(a) for a in _actions(ofp, parser))
    flow = struct.pack("!HBxIIHHHH4xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, 0xabc, 10, 1000) + match + insts
    flow = struct.pack("!H", len(flow)) + flow[2:]
    bucket = struct.pack("!HHII4x", 16 + len(actions), 1, 0xffffffff, 0xffffffff) + actions
    group = struct.pack("!HBxI", 8 + len(bucket), 1, 5) + bucket
    port13 = struct.pack("!I4x6s2x16sIIIIIIII", 3, b"\x02" * 6, b"eth0".ljust(16, b"\0"), 0, 0, 0, 0, 0, 0, 0, 0)
    found = [
        ("hello", _msg(v, 0, struct.pack("!HHI", 1, 8, (1 << 4) | (1 << 5)))),
        ("error", _msg(v, 1, struct.pack("!HH", 5, 1) + _msg(v, 14, b"\0" * 40))),
        ("error-experimenter", _msg(v, 1, struct.pack("!HHI", 0xffff, 3, 0x2320) + b"data")),
        ("echo-request", _msg(v, 2, b"ping")), ("echo-reply", _msg(v, 3, b"pong")),
        ("experimenter", _msg(v, 4, struct.pack("!II", 0x2320, 20) + b"\0" * 16)),
        ("features", _msg(v, 6, struct.pack("!QIBB2xII", 7, 256, 254, 0, 0x4f, 0))),
        ("get-config", _msg(v, 8, struct.pack("!HH", 0, 128))),
        ("packet-in", _msg(v, 10, struct.pack("!IHBBQ", 0xffffffff, 60, 0, 1, 9) + match + b"\0\0" + b"\1" * 60)),
        ("flow-removed", _msg(v, 11, struct.pack("!QHBBIIHHQQ", 9, 100, 0, 1, 1, 2, 0, 0, 5, 6) + match)),
        ("barrier-reply", _msg(v, 21)),
        ("role-reply", _msg(v, 25, struct.pack("!I4xQ", 2, 5))),
        ("get-async-reply", _msg(v, 27, b"\0" * 24 if v == 4 else _async_props())),
        ("mp-desc", _multipart(v, 0, b"\0" * 1056)),
        ("mp-flow", _multipart(v, 1, flow + flow)),
        ("mp-aggregate", _multipart(v, 2, struct.pack("!QQI4x", 1, 2, 3))),
        ("mp-group-desc", _multipart(v, 7, group + group)),
        ("mp-experimenter", _multipart(v, 0xffff, struct.pack("!II", 0x2320, 1) + b"\0" * 8)),
    ]
    if v == 4:
        found += [("port-status", _msg(v, 12, struct.pack("!B7x", 0) + port13)),
                  ("mp-port-desc", _multipart(v, 13, port13 + port13)),
                  ("mp-table-features", _multipart(v, 12, _table_features(ofp)))]
    else:
        found += [("port-status", _msg(v, 12, struct.pack("!B7x", 0) + _port14())),
                  ("mp-port-desc", _multipart(v, 13, _port14() + _port14())),
                  ("role-status", _msg(v, 30, struct.pack("!IB3xQ", 2, 0, 5) + struct.pack("!HHII", 0xffff, 12, 1, 2)
                                       + b"\0" * 4)),
                  ("table-status", _msg(v, 31, struct.pack("!B7x", 0) + struct.pack("!HBxI", 16, 1, 0)
                                        + struct.pack("!HHI", 2, 8, 1))),
                  ("bundle-ctrl", _msg(v, 33, struct.pack("!IHH", 1, 1, 0) + struct.pack("!HHII", 0xffff, 12, 1, 2)
                                       + b"\0" * 4)),
                  ("mp-table-features", _multipart(v, 12, _table_features(ofp)))]
    return found


def _ser_action(action) -> bytes:
    buf = bytearray()
    action.serialize(buf, 0)
    return bytes(buf)


def _async_props() -> bytes:
    return b"".join(struct.pack("!HHI", kind, 8, 0xff) for kind in range(8))


def _port14() -> bytes:
    eth = struct.pack("!HH4xIIIIII", 0, 32, 0, 0, 0, 0, 0, 0)
    return struct.pack("!IH2x6s2x16sII", 3, 40 + len(eth), b"\x02" * 6, b"eth0".ljust(16, b"\0"), 0, 0) + eth


def _table_features(ofp) -> bytes:
    prop = struct.pack("!HH", 0, 4 + 8) + struct.pack("!HH", 1, 4) + struct.pack("!HH", 5, 4) + b"\0" * 4
    prop += struct.pack("!HH", 8, 4 + 4) + struct.pack("!I", 0x80000000 | (1 << 9) | 4) + b"\0" * 4
    body = struct.pack("!HB5x32sQQII", 64 + len(prop), 0, b"t0".ljust(32, b"\0"), 0, 0, 0, 1000) + prop
    return body


LENGTHS = (0, 1, 4, 0xFFFF)  # values every 16-bit field is set to: lengths a parse loop might step by


def mutants(buf: bytes, lengths=LENGTHS):
    """Every 16-bit field set to each of ``lengths``, and the message cut at every 8th byte (its header's length
    fixed up to match)."""
    for at in range(8, len(buf) - 1):
        for value in lengths:
            yield buf[:at] + struct.pack("!H", value) + buf[at + 2:]
    for end in range(16, len(buf), 8):
        yield buf[:2] + struct.pack("!H", end) + buf[4:end]


def random_mutants(buf: bytes, rng: random.Random, count: int):
    for _ in range(count):
        out = bytearray(buf)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(8, len(out)) if len(out) > 8 else 8
            if at < len(out):
                out[at] = rng.randrange(256)
        yield bytes(out)


def run(seed: int = 1, random_count: int = 200, budget: float = BUDGET_MS / 1000, guard: bool = True,
        lines: int | None = None, lengths=LENGTHS) -> dict:
    """Parse every seed's mutants; {(seed name, outcome, where): count}."""
    rng = random.Random(seed)
    found: Counter = Counter()
    with _quiet("ryu.ofproto.ofproto_parser", "canopy.openflow"), \
            (contextlib.nullcontext() if guard else ofcheck.uninstalled()):
        for ofp in (ofproto_v1_3, ofproto_v1_4):
            for name, buf in seeds(ofp):
                for mutant in (*mutants(buf, lengths), *random_mutants(buf, rng, random_count)):
                    outcome, where = parse(mutant, budget, lines)
                    found[(f"{ofp.OFP_VERSION:#x} {name}", outcome, where)] += 1
    return dict(found)


@contextlib.contextmanager
def _quiet(*names: str):
    """The loggers ``names`` disabled for the time of the block (not after it: the unit tests that follow in the
    same process read those loggers)."""
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, saved):
            logger.disabled = disabled


def main(argv=None) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--seed", type=int, default=1)
    args.add_argument("--random", type=int, default=200)
    args.add_argument("--budget-ms", type=int, default=BUDGET_MS)
    args.add_argument("--ryu-only", action="store_true", help="without Canopy's guard")
    opts = args.parse_args(argv)
    found = run(opts.seed, opts.random, opts.budget_ms / 1000, not opts.ryu_only)
    totals: Counter = Counter()
    for (name, outcome, where), count in sorted(found.items()):
        totals[outcome] += count
        if outcome in ("spin", "raised"):
            print(f"{name:28} {outcome:7} {count:6}  {where}")
    print("totals:", dict(totals))
    return 1 if totals["spin"] else 0


if __name__ == "__main__":
    sys.exit(main())
