"""The longest stretch of CPU a ``POST /v1/apply`` of 10,000 vports holds the event loop, end to end through the REST
layer, in-process (issue 15 item 1; docs/benchmarks.md "bursts").

    .venv/bin/python -m tests.benchmarks.apply_stretches [--count 10000] [--where]

The controller's core (store, State, service) with its pauses wired as controller/app.py wires them (the service's
``Pacer(hub.sleep(0), 40)``, State's every ``STATE_EVERY``, the REST answers' ``hub.sleep(0)``), threads
monkey-patched as ``run_manager`` does (the store's transaction runs in eventlet's thread pool), serves the apply of
tests.benchmarks.bursts through ``RestServer.application`` (the WSGI application eventlet's server calls: body
read, parse, plan, commit, the answer encoded and written), the document of ``--count`` vports in subnet ``out``
applied before, the apply adding ``--count`` more in subnet ``apply``. Every switch between green threads is traced
(tests.benchmarks.reconcile_stretches.Stretches): the figure is the longest ``time.thread_time()`` between two
switches, CPU time of the event loop's thread, so the load matters little. ``--where`` prints where the longest
stretches began and ended (the innermost Canopy frames of the green thread switching). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pathlib
import sys
import tempfile
import time
import traceback

import greenlet

from controller.ryu_compat import hub
from tests.benchmarks.reconcile_stretches import Stretches
from tests.unit.helpers import TOKEN

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def where(frame) -> str:
    """The innermost frames of Canopy's own code on the stack of ``frame``."""
    frames = [f for f in traceback.extract_stack(frame) if f.filename.startswith(ROOT)
              and "/.venv/" not in f.filename and "benchmarks" not in f.filename]
    return " < ".join(f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} {f.name}" for f in reversed(frames[-3:]))


class Located:
    """``Stretches`` that also keeps the ``top`` longest stretches with where each began and ended."""

    def __init__(self, top: int = 6):
        self.stretches = Stretches()
        self.top = top
        self.found: list[tuple[float, str, str]] = []
        self._began = "start"

    def measure(self, work):
        """As ``Stretches.measure``, with the longest stretches located."""
        stretches = self.stretches
        stretches.longest, stretches.switches, stretches.collecting = 0.0, 0, 0.0
        started = stretches.last = time.thread_time()
        previous = greenlet.settrace(self)
        try:
            result = work()
            self("end", None)
        finally:
            greenlet.settrace(previous)
        return result, stretches.longest * 1000, (time.thread_time() - started) * 1000, stretches.switches, \
            stretches.longest_gc * 1000

    def __call__(self, event, args):
        now = time.thread_time()
        length = now - self.stretches.last
        self.stretches(event, args)
        if event in ("switch", "throw", "end"):  # the trace runs on the target's stack: the origin's is its frame
            ended = where(args[0].gr_frame if args else sys._getframe(1)) or "the hub"
            self.found = sorted(self.found + [(length, self._began, ended)], reverse=True)[:self.top]
            self._began = where(sys._getframe(1)) or "the hub"
        self.stretches.last = time.thread_time()  # the stack walk is not the loop's work


def environ(body: bytes) -> dict:
    """The WSGI environment of a POST /v1/apply of ``body`` from the loopback (eventlet's server makes it)."""
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/apply", "QUERY_STRING": "", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": "Bearer " + TOKEN, "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body)}


def controller(tmp: pathlib.Path):
    """The core with its pauses wired as controller/app.py wires them, and its REST server (not listening)."""
    from controller import app
    from controller.pacer import Pacer
    from controller.rest.server import RestServer
    from controller.ryu_compat import blocking
    from tests.unit.helpers import Controller

    ctl = Controller(tmp)
    ctl.store.offload = blocking
    ctl.service.pacer = Pacer(lambda: hub.sleep(0), 40)
    ctl.state.pacer = Pacer(lambda: hub.sleep(0), getattr(app, "STATE_EVERY", 500))
    ctl.api.pause = lambda: hub.sleep(0)
    return ctl, RestServer("127.0.0.1", 0, ctl.api, ctl.settings.limits)


def serve(server, body: bytes) -> tuple[str, bytes]:
    """What eventlet's server does with one request: call the application and write every piece it returns."""
    status = []
    pieces = server.application(environ(body), lambda line, headers: status.append(line))
    written = io.BytesIO()
    for piece in pieces:
        written.write(piece)
        hub.sleep(0)  # a socket write of a big piece: eventlet's sendall yields while the kernel's buffer is full
    return status[0], written.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--where", action="store_true", help="where the longest stretches began and ended")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # the controller's level, logged nowhere
    hub.patch(thread=True)  # as run_manager: the store's transactions run in eventlet's thread pool
    from tests.benchmarks.bursts import document

    with tempfile.TemporaryDirectory() as tmp:
        ctl, server = controller(pathlib.Path(tmp))
        try:
            base = json.dumps({"document": document(args.count, applied=False), "source": "bench"}).encode()
            assert serve(server, base)[0].startswith("200"), "the base document was not applied"
            body = json.dumps({"document": document(args.count, applied=True), "source": "bench"}).encode()
            located = Located()
            (status, answer), longest, cpu, switches, collecting = located.measure(lambda: serve(server, body))
        finally:
            ctl.close()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
          f"Python {sys.version.split()[0]}; CPU ms (thread_time)")
    print(f"apply of {args.count:,} vports ({status}; body {len(body):,} B, answer {len(answer):,} B): longest "
          f"stretch {longest:.1f} ms (collector {collecting:.0f}), CPU {cpu:.0f} ms, {switches} switches")
    if args.where:
        for length, began, ended in located.found:
            print(f"{length * 1000:7.1f} ms  from {began}\n{'':12}to   {ended}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
