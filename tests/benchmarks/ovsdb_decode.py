"""CPU of decoding one long OVSDB message in process (ovsdb/jsonstream.py), and the longest stretch between two
pauses, for one or more checkouts interleaved in the same run (before/after on one machine). Not collected by pytest.

    .venv/bin/python -m tests.benchmarks.ovsdb_decode [--code DIR ...] [--shape NAME ...] [--runs 21]

Each run of a shape, for each ``--code`` (default: this checkout) in turn, is a child process importing that
checkout's decoder (PYTHONPATH=DIR): the message is framed by ``Parser.feed`` in 64 KiB reads (as a session reads
it) and decoded by ``Parser.finish`` with a pacer pausing every 100 ticks (a replica's, ovsdb/idl/replica.py
``PAUSE_ROWS``). Reported per code: ``finish``'s CPU (``time.thread_time``) best / median, the longest CPU between two
pauses (median over the runs; the stretches before the first and after the last pause included), ``feed``'s CPU
(median), and the pauses. Shapes:
- delete: evpn_routes' withdraw of 10,000 ports (an update3 deleting 10,000 Port and Interface rows, the bridge's
  ports difference of 10,000 uuids; 1.58 MB);
- insert: the update3 of 10,000 new ports (Interface rows with two external_ids, Port rows, the bridge's set);
- string, escapes: one 30 MB string value in a row (plain ASCII; all ``\\u00e9`` and ``\\ud83d\\ude00``);
- key: one 30 MB object key in a row;
- spaces: 30 MB of whitespace between two values of a row;
- tiny-tables: a peer's 300,000 tables, each ``{"a":0}`` but every third holding two rows keyed by uuids (13.7 MB:
  a table's rows decoded many in one C call, ``_members``, found a group for each tiny table).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIG = 30_000_000
SHAPES = ("delete", "insert", "string", "escapes", "key", "spaces", "tiny-tables")


def _uuid(i: int, kind: int) -> str:
    return f"{i:08x}-0000-4000-8000-{kind:012x}"


def _update3(tables: dict) -> str:
    return json.dumps({"id": None, "method": "update3", "params": [["monid", "Open_vSwitch"], "txn-1", tables]},
                      separators=(",", ":"))


def _row(column_json: str) -> str:
    """An update3 inserting one Port row whose column ``c`` is ``column_json`` (text as the peer sends it)."""
    return ('{"id":null,"method":"update3","params":[["monid","Open_vSwitch"],"txn-1",{"Port":{"' + _uuid(1, 2)
            + '":{"insert":{"name":"p","c":' + column_json + '}}}}]}')


def message(shape: str, ports: int = 10_000) -> str:
    """The text of one message of ``shape`` (see the module docstring)."""
    if shape == "delete":
        return _update3({
            "Interface": {_uuid(i, 1): {"delete": None} for i in range(ports)},
            "Port": {_uuid(i, 2): {"delete": None} for i in range(ports)},
            "Bridge": {_uuid(0, 0): {"modify": {"ports": ["set", [["uuid", _uuid(i, 2)] for i in range(ports)]]}}}})
    if shape == "insert":
        return _update3({
            "Interface": {_uuid(i, 1): {"insert": {"name": f"p-o{i}", "external_ids": ["map", [
                ["attached-mac", f"0e:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}"], ["iface-id", f"o{i}"]]]}}
                for i in range(ports)},
            "Port": {_uuid(i, 2): {"insert": {"name": f"p-o{i}", "interfaces": ["uuid", _uuid(i, 1)]}}
                     for i in range(ports)},
            "Bridge": {_uuid(0, 0): {"modify": {"ports": ["set", [["uuid", _uuid(i, 2)] for i in range(ports)]]}}}})
    if shape == "tiny-tables":
        return _update3({f"T{i}": {"a": 0} if i % 3 else {_uuid(2 * i, 1): {"a": {}}, _uuid(2 * i + 1, 1): {}}
                         for i in range(30 * ports)})
    if shape == "string":
        return _row('"' + "s" * BIG + '"')
    if shape == "escapes":
        return _row('"' + "\\u00e9\\ud83d\\ude00" * (BIG // 18) + '"')
    if shape == "key":
        return _row('["map",{"' + "k" * BIG + '":1}]')
    if shape == "spaces":
        return _row("[1," + " " * BIG + "2]")
    raise ValueError(shape)


def measure(shape: str) -> dict:
    """In the child: one framing and decoding of ``shape`` by the decoder on sys.path."""
    import time

    from controller.pacer import Pacer
    from ovsdb import jsonstream

    assert jsonstream.__file__.startswith(os.getcwd()), jsonstream.__file__

    text = message(shape)
    stretches = [0.0]
    since = [0.0]

    def pause():
        now = time.thread_time()
        stretches[0] = max(stretches[0], now - since[0])
        since[0] = time.thread_time()

    pacer = Pacer(pause, 100)
    parser = jsonstream.Parser(1 << 26, pacer)
    start = time.thread_time()
    for i in range(0, len(text), 65536):
        parser.feed(text[i:i + 65536])
    fed = time.thread_time()
    assert parser.is_done()
    since[0] = begun = time.thread_time()
    value = parser.finish()
    end = time.thread_time()
    pause()
    assert not isinstance(value, str), value
    return {"finish": end - begun, "feed": fed - start, "longest": stretches[0],
            "pauses": pacer.pauses, "chars": len(text)}


def run(code: str, shape: str) -> dict:
    env = dict(os.environ, PYTHONPATH=code)
    load = ("import importlib.util, json; spec = importlib.util.spec_from_file_location('bench', "
            f"{__file__!r}); bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench); "
            f"print(json.dumps(bench.measure({shape!r})))")  # this file by its path: the checkout's modules first
    out = subprocess.run([sys.executable, "-c", load],
                         env=env, cwd=code, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", action="append", metavar="DIR", help="a checkout to measure (repeatable)")
    parser.add_argument("--shape", action="append", choices=SHAPES)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    codes = args.code or [str(REPO)]
    for shape in args.shape or ["delete"]:
        results = {code: [] for code in codes}
        load = os.getloadavg()[0]
        for _ in range(args.runs):
            for code in codes:
                results[code].append(run(code, shape))
        print(f"{shape} ({results[codes[0]][0]['chars']:,} characters), {args.runs} runs interleaved, "
              f"load {load:.1f} -> {os.getloadavg()[0]:.1f}")
        for code in codes:
            got = results[code]
            ms = sorted(1000 * r["finish"] for r in got)
            print(f"  {code}: finish best {ms[0]:.2f} / median {statistics.median(ms):.2f} ms, longest stretch "
                  f"{1000 * statistics.median(r['longest'] for r in got):.2f} ms, feed "
                  f"{1000 * statistics.median(r['feed'] for r in got):.2f} ms, {got[0]['pauses']} pauses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
