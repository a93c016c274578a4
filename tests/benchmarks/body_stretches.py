"""The CPU a REST request's JSON body holds the event loop while decoded, per shape, in-process (issue 15; docs/
benchmarks.md "bursts", "Branch bodypace").

    .venv/bin/python -m tests.benchmarks.body_stretches [--code DIR] [--size MB] [SHAPE ...]

Calls controller/rest/api.py ``_json_body`` of ``--code`` (a checkout or snapshot of Canopy: before/after in the
same session) with a ``pause`` that records ``time.thread_time()``, for bodies of ``--size`` MB (default 32, the
default ``rest.max_body_bytes``) of one shape each: ``{"a": [X, X, ...]}`` for X an empty list, an empty object, a
float, an int, an empty string, a string full of commas, null; 30 nested lists of ints; one object of 2 M keys;
one string of escapes; and the apply of 10,000 vports of tests/unit/test_apply_pacing.py. Prints, per shape, the
CPU in all, the longest stretch between two pauses, the pauses, and the CPU of freeing the decoded body (when it
was accepted). CPU of this thread only, so the load matters little. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

MB = 1024 * 1024


def apply_body(count: int) -> str:
    vports = [{"name": f"v{i}", "mac": f"02:00:00:01:{i >> 8:02x}:{i & 0xff:02x}", "ips": [f"10.7.{i >> 8}.{i & 0xff}"],
               "binding": {"flavour": "kvm", "iface_id": f"v{i}"}} for i in range(10, 10 + count)]
    return json.dumps({"document": {"tenants": [{"name": "t", "domains": [{"name": "d", "subnets": [
        {"name": "s", "cidr": "10.7.0.0/16", "gateway": "10.7.0.1", "vports": vports}]}]}]}, "source": "s"})


def shapes(size: int) -> dict:
    def listed(member: str) -> str:
        return '{"a":[' + ",".join([member] * ((size - 10) // (len(member) + 1))) + "]}"

    return {
        "apply 10,000 vports": lambda: apply_body(10_000),
        "[] (empty lists)": lambda: listed("[]"), "{} (empty objects)": lambda: listed("{}"),
        "1.5 (floats)": lambda: listed("1.5"), "1 (ints)": lambda: listed("1"), '"" (strings)': lambda: listed('""'),
        '"a,a,a"': lambda: listed('"a,a,a"'), "null": lambda: listed("null"),
        "deep (30 levels) ints": lambda: '{"a":' + "[" * 30 + ",".join(["1"] * (size // 2 - 40)) + "]" * 30 + "}",
        "1 object, 2 M keys": lambda: "{" + ",".join(f'"k{i}":null' for i in range(size // 16)) + "}",
        "one string of \\n": lambda: '{"a":"' + "\\n" * (size // 2 - 8) + '"}',
    }


def measure(json_body, request, raw: bytes):
    """(CPU in all, the longest stretch, pauses, CPU freeing the body, outcome)."""
    stretches, last = [], [time.thread_time()]

    def pause():
        now = time.thread_time()
        stretches.append(now - last[0])
        last[0] = now

    start = time.thread_time()
    try:
        kept, outcome = json_body(request(raw), pause), "accepted"
    except Exception as exc:  # noqa: BLE001 - ApiError of the code measured
        kept, outcome = None, f"{getattr(exc, 'status', '?')} {getattr(exc, 'reason', exc)}"[:60]
    end = time.thread_time()
    stretches.append(end - last[0])
    freeing = time.thread_time()
    kept = None
    return end - start, max(stretches), len(stretches) - 1, time.thread_time() - freeing, outcome


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=".", help="the Canopy checkout to measure (default: this one)")
    parser.add_argument("--size", type=int, default=32, help="MB of each hostile body")
    parser.add_argument("shape", nargs="*", help="only these shapes (names as printed)")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.code)
    from controller.rest.api import Request, _json_body

    def request(raw):
        return Request("POST", "/v1/apply", {}, {"content-type": "application/json"}, raw)

    print("| shape | MB | CPU ms | longest ms | pauses | freeing ms | outcome |\n|---|---:|---:|---:|---:|---:|---|")
    for name, make in shapes(args.size * MB - 64).items():
        if args.shape and name not in args.shape:
            continue
        raw = make().encode()
        total, longest, pauses, freeing, outcome = measure(_json_body, request, raw)
        print(f"| {name} | {len(raw) / MB:.1f} | {total * 1e3:,.0f} | {longest * 1e3:,.1f} | {pauses} | "
              f"{freeing * 1e3:,.0f} | {outcome} |", flush=True)
        raw = None
        gc.collect()


if __name__ == "__main__":
    main()
