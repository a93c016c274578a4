"""How fast Canopy's speaker gets EVPN routes into ExaBGP: N type-2 routes announced then withdrawn, through a
real ExaBGP child (Canopy's extension, its relay), until ExaBGP has acknowledged every command
(docs/benchmarks.md, evpn_routes: "ExaBGP's command path alone").

    .venv/bin/python -m tests.benchmarks.exabgp_commands [--routes 10000] [--batch 500]

ExaBGP runs with one configured neighbor that never comes up (127.0.0.9, nothing listens), so the figure is
the command path alone: Canopy's speaker writing the commands, the relay, ExaBGP parsing them and putting the
routes into its outgoing RIB, the acknowledgements back; no BGP peer takes part. Baseline, in the same run:
the same routes one per command (``--batch 1``, how Canopy sent them before batching). Needs nothing but a
writable temporary directory. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from bgp.routes import MacIpRoute
from bgp.speaker import Neighbor, Speaker, SpeakerConfig

TIMEOUT = 600


def routes(count: int) -> dict:
    out = {}
    for i in range(count):
        route = MacIpRoute(rd="10.0.0.1:6102", mac=f"02:0e:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                           ip=f"10.2.{i >> 8 & 255}.{i & 255}", l2_vni=6102, l3_vni=9601, next_hop="10.0.0.1",
                           router_mac="02:00:00:00:00:01", route_targets=("65000:6102", "65000:9601"))
        out[route.key] = route
    return out


def run(desired: dict, batch: int) -> dict:
    """Seconds to announce, then to withdraw, ``desired`` with ``batch`` routes per command."""
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor("127.0.0.9", 65001, port=1799),),
                           workdir=tempfile.mkdtemp(prefix="canopy-exabgp-"))
    speaker = Speaker(config)
    speaker._book.batch = batch  # noqa: SLF001 - the benchmark's knob
    speaker.start()
    try:
        wait(lambda: speaker.status()["api_connected"], "ExaBGP's API connection")
        out = {}
        for phase, target in (("announce", desired), ("withdraw", {})):
            started = time.monotonic()
            speaker.set_desired(target)
            wait(lambda: len(speaker.announced()) == len(target) and not speaker.status()["pending_acks"], phase)
            out[phase] = time.monotonic() - started
        return out
    finally:
        speaker.stop()


def wait(check, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not reached in {TIMEOUT} s")
        time.sleep(0.02)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=500, help="routes per command (Canopy's default: 500)")
    args = parser.parse_args(argv)
    desired = routes(args.routes)
    base = run(desired, 1)
    batched = run(desired, args.batch)
    print(f"EVPN routes into ExaBGP (no peer up): {args.routes:,} type-2 routes, until every command is acknowledged")
    for phase in ("announce", "withdraw"):
        print(f"  {phase:9} {args.batch:4} per command {batched[phase]:7.2f} s ({args.routes / batched[phase]:8,.0f}/s)"
              f"   one per command (baseline) {base[phase]:7.2f} s ({args.routes / base[phase]:8,.0f}/s)"
              f"   {base[phase] / batched[phase]:5.1f} x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
