"""Many clients asking one big answer at once, in-process: the most CPU between two turns of a probe green thread.

    .venv/bin/python -m tests.benchmarks.rest_lane [--vports 3000] [--clients 60] [--runs 2]

``--clients`` green threads ask ``GET /v1/vports`` (``--vports`` vports) of one Api together and encode their
answers, as the REST server does; a probe green thread takes a turn whenever it can (as the lag probe, an OVSDB
probe or an HA heartbeat would). Printed per pause, alternating: ``lane`` (controller/rest/lane.py, as the controller
wires it) and ``sleep0`` (a plain turn of the loop, what the REST pacers did before): the most CPU
(``time.thread_time()``) between two of the probe's turns, and the CPU of all the answers. The controller's collector
policy is installed (controller/collector.py): what is left of the lane's figure above one answer's stretch is mostly
the collector walking the answers alive at once. Not a wall-clock figure; not collected by pytest.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import tempfile
import time

import eventlet

from controller import collector
from controller.rest.api import Request
from controller.rest.lane import Lane
from tests.unit.helpers import Controller


def with_vports(count: int) -> Controller:
    """A core and its Api holding ``count`` vports (subnets of 200)."""
    ctl = Controller(pathlib.Path(tempfile.mkdtemp(prefix="rest-lane-")))
    subnets = []
    for s in range(-(-count // 200)):
        ports = [{"name": f"v{s}-{i}", "mac": "02:00:00:%02x:%02x:%02x" % (s, i // 256, i % 256),
                  "ips": [f"10.{s}.{i // 250}.{i % 250 + 2}"], "binding": {"flavour": "kvm"}}
                 for i in range(min(200, count - 200 * s))]
        subnets.append({"name": f"s{s}", "cidr": f"10.{s}.0.0/16", "gateway": f"10.{s}.255.254", "vports": ports})
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": subnets}]}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    return ctl


def run(ctl: Controller, clients: int, pause) -> tuple[float, float]:
    """(the most CPU between two of the probe's turns, the CPU of all the answers), in ms."""
    ctl.api.pause = pause
    done, gaps = [], []

    def client():
        resp = ctl.api.handle(Request("GET", "/v1/vports", {}, {}, b"", "127.0.0.1"))
        assert resp.status == 200
        ctl.api.encoded(resp)
        done.append(1)

    def probe():
        while len(done) < clients:
            before = time.thread_time()
            eventlet.sleep(0)
            gaps.append(time.thread_time() - before)

    prober = eventlet.spawn(probe)
    eventlet.sleep(0)
    started = time.thread_time()
    threads = [eventlet.spawn(client) for _ in range(clients)]
    for thread in threads + [prober]:
        thread.wait()
    return max(gaps) * 1000, (time.thread_time() - started) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vports", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # the controller's level, logged nowhere
    ctl = with_vports(args.vports)
    collector.install()
    try:
        for _ in range(args.runs):
            for name, pause in (("lane", Lane(lambda: eventlet.sleep(0)).pause), ("sleep0", lambda: eventlet.sleep(0))):
                worst, total = run(ctl, args.clients, pause)
                print(f"{name}: most CPU between two probe turns {worst:.1f} ms; {args.clients} answers "
                      f"{total:.0f} ms CPU; load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        ctl.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
