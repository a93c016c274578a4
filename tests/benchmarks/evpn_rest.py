"""The REST answers evpn_routes asks the controller for, as its routes grow: Python bytecodes, pauses, longest stretch.

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/evpn_rest.py [--routes 1000 10000] [--repeat 3] [--share 4]

evpn_routes (tests/benchmarks/evpn_routes.py, its clock evpn_routes_clock.py) asks during its phases for
``GET /v1/bgp/peers`` (its ``acked`` and ``received`` probes, every 0.1 s or 2 % of the phase's time), at each
phase's end for ``GET /v1/status`` (the lag it reports), and between the announce and the withdraw for
``GET /v1/bgp/routes?direction=out&type=2`` (every route Canopy announced); the controller's max lag is since its start,
so each counts in it. Each is answered here in-process as the app wires and serves it (controller/app.py: the BGP
routes and the Api with the REST lane's pause, a ``Lane`` whose turns are given into a recorder, not the event loop,
and the controller's ``BUDGET`` of wall clock; the status with its ``bgp`` part; the answer's bytes made as the REST
server makes them, ``Api.encoded``: paced), over evpn_routes' policy with N vports bound on kvm1
(tests/benchmarks/evpn_announce.py ``report``), a programming pass and ``Federation.publish`` into a real Speaker, not
started, whose book holds every route announced (as ExaBGP's acknowledgements leave it). The baseline, in the same
run: the same answers paused by the count alone (the pause the recorder itself, as this benchmark measured before stop
47: the lane's budget not in it).

Per answer: its Python bytecodes (tests/bytecodes.py: independent of the machine's load), its pauses, the most
bytecodes between two pauses (while counted, the lane's clock is the bytecodes run at ``--share`` of a CPU of 20 M
bytecodes a second, as tests/unit/test_paced_wiring.py: 4, a loaded machine's loop, by default; so these too are
independent of the load); and the longest stretch of CPU (``time.thread_time``) between two pauses, median of
``--repeat`` runs with the collector off and the lane on the wall clock (CPU, not wall: less dependent on the load,
not independent of it). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager

from tests.bytecodes import Bytecodes

RATE = 20_000_000  # bytecodes a second of a CPU (tests/unit/test_paced_wiring.py)

ASKED = (("GET /v1/bgp/peers", "/v1/bgp/peers", {}), ("GET /v1/status", "/v1/status", {}),
         ("GET /v1/bgp/routes?direction=out&type=2", "/v1/bgp/routes", {"direction": "out", "type": "2"}))


def world(n: int, tmp: pathlib.Path):
    """(the API's Controller, {"lane": an Api answering as the app's does, through a REST lane with the app's budget;
    "count only": one whose pause is the recorder itself}, the recorder of pauses) with ``n`` vports bound and
    announced; the Controller is to be closed."""
    from bgp.federation import Federation
    from controller import policy as pol
    from controller import policydoc, settings
    from controller.programmer import Programmer
    from controller.rest import bgp as rest_bgp
    from controller.pacer import BUDGET
    from controller.rest.api import Api
    from controller.rest.lane import Lane
    from controller.state import State
    from controller.yamldoc import Doc
    from tests.benchmarks.evpn_announce import report
    from tests.benchmarks.evpn_routes import policy
    from tests.unit.helpers import Controller

    bgp = settings.from_doc(Doc("<bench>", {"bgp": {"router_id": "10.250.0.1", "neighbors": [
        {"address": "10.250.0.2", "asn": 65002}]}})).bgp
    ctl = Controller(tmp)
    plan = policydoc.plan(pol.Policy(), policy(n), "bench", pol.Allocator({}, 65000, (10000, 20000)))
    state = State(plan.policy)
    programmer = Programmer(state)
    federation = Federation(bgp, str(tmp), state)  # its Speaker not started: no process
    state.vrs_update(report(n))
    programmer.refresh(full=True)
    federation.publish(programmer.view)
    book = federation.speaker._book
    book.announced.update(book.desired)  # as ExaBGP's acknowledgements leave it
    if len(book.announced) < n:
        raise SystemExit(f"the speaker announced {len(book.announced)} routes for {n} vports")
    pauses = Pauses()
    apis = {}
    for name, pause, budget in (("lane", Lane(pauses).pause, BUDGET), ("count only", pauses, None)):  # (app.py's)
        api = apis[name] = Api(ctl.service, state, ctl.settings,
                               extra_routes=rest_bgp.routes(federation, pause, budget=budget),
                               status_parts={"bgp": lambda: rest_bgp.status_part(federation)})
        api.pause, api.budget = pause, budget
    return ctl, apis, pauses


class Pauses:
    """A pause into nothing that records each stretch since the one before: bytecodes (``counter``) and CPU."""

    def __init__(self):
        self.counter: Bytecodes | None = None
        self.stretches: list[tuple[int, float]] = []
        self.last = time.thread_time()

    def start(self, counter: Bytecodes | None) -> None:
        self.counter, self.stretches, self.last = counter, [], time.thread_time()

    def __call__(self) -> None:
        now = time.thread_time()
        self.stretches.append((self.counter.count if self.counter else 0, now - self.last))
        if self.counter:
            self.counter.count = 0
        self.last = time.thread_time()


def answer(api, pauses: Pauses, path: str, query: dict, counter: Bytecodes | None) -> list[tuple[int, float]]:
    """The stretches of one answer, its body encoded as the REST server does (the last one: from the last pause to
    the end)."""
    from controller.rest.api import Request

    def ask():
        response = api.handle(Request("GET", path, query, {}, b"", "127.0.0.1"))
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status}")
        return api.encoded(response)

    pauses.start(counter)
    if counter is None:
        ask()
    else:
        counter.run(ask)
    pauses()
    return pauses.stretches


@contextmanager
def counted_clock(counter: Bytecodes, share: float):
    """While counted, the lane's pacers read the bytecodes of the stretch under way (``Pauses`` starts each at 0) at
    ``share`` of a CPU for their clock (tests/unit/test_paced_wiring.py ``Stretches``): the tracer's own cost, and the
    machine's load, left out."""
    from controller.rest import lane

    made = lane.BoundedPacer

    class Counted(made):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.clock = lambda: counter.count * share / RATE
            self._since = self.clock()

    lane.BoundedPacer = Counted
    try:
        yield
    finally:
        lane.BoundedPacer = made


def figures(api, pauses: Pauses, path: str, query: dict, repeat: int, share: float) -> dict:
    counter = Bytecodes()
    with counted_clock(counter, share):
        counted = answer(api, pauses, path, query, counter)
    longest = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            longest.append(max(cpu for _, cpu in answer(api, pauses, path, query, None)) * 1000)
    finally:
        gc.enable()
    return {"bytecodes": sum(c for c, _ in counted), "pauses": len(counted) - 1,
            "most between two pauses": max(c for c, _ in counted), "longest stretch ms": statistics.median(longest)}


def measure(n: int, repeat: int, share: float) -> dict:
    """{answer: {"lane": its figures, "count only": the baseline's}}."""
    with tempfile.TemporaryDirectory() as tmp:
        ctl, apis, pauses = world(n, pathlib.Path(tmp))
        try:
            return {name: {way: figures(api, pauses, path, query, repeat, share) for way, api in apis.items()}
                    for name, path, query in ASKED}
        finally:
            ctl.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--share", type=float, default=4.0, help="the loop's share of a CPU is 1/SHARE (counted runs)")
    args = parser.parse_args(argv)
    print("Each figure: through the app's REST lane / by the count only (the baseline).")
    print("| routes | answer | bytecodes | pauses | most bytecodes between two pauses | longest stretch, CPU ms |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.routes:
        for name, ways in measure(n, args.repeat, args.share).items():
            lane, count = ways["lane"], ways["count only"]
            print(f"| {n:,} | {name} | {lane['bytecodes']:,} / {count['bytecodes']:,} | "
                  f"{lane['pauses']} / {count['pauses']} | {lane['most between two pauses']:,} / "
                  f"{count['most between two pauses']:,} | {lane['longest stretch ms']:.1f} / "
                  f"{count['longest stretch ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
