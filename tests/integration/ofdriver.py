"""A minimal Ryu app running one SwitchReconciler per switch, for the reconciler tests and benchmark.

Run it (inside a namespace) as ``python -m tests.integration.ofdriver WORKDIR PORT``; it listens for
OpenFlow on PORT and works with files in WORKDIR:

- ``desired.pickle`` (written atomically by the test): ``(generation, flows, groups)``; loaded at start
  and again whenever it changes, then handed to every reconciler with ``set_desired``;
- ``resync`` (created by the test): every reconciler ``resync()``s, then the file is removed; a desired
  state written before the file is loaded first (otherwise a look between the two writes would read back
  and sync the older state, report that, and find nothing left to report for the newer one);
- ``role`` (optional): "master" or "slave", the OpenFlow role claimed on connect and whenever the file
  changes (then followed by ``resync()``, as the app does when it becomes master);
- ``watch_failed`` (written by the driver when its watcher of these files died): the error, which the tests' waits
  for a report (``read_report``) raise at once instead of waiting their whole bound for a report that never comes;
- ``report.json`` (written by the driver, atomically) each time a switch is in sync:
  ``{dpid: {"generation", "connected_at", "synced_at", "status", "flows", "lag"}}`` (times from time.time();
  ``flows`` only up to FLOWS_IN_REPORT flows; ``lag``: the driver's event-loop lag, controller/lagprobe.py;
  ``streams``: the most connections that held a slot of controller.ryu_compat.STREAMS at once, and how many
  times one waited for a slot).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import traceback
from pathlib import Path

from controller.ryu_compat import (DEAD_DISPATCHER, MAIN_DISPATCHER, STREAMS, RyuApp, hub, ofp_event,
                                   ofproto_v1_3, ofproto_v1_4, run_manager, set_ev_cls)
from controller.lagprobe import LagProbe
from openflow.reconciler import REPLY_EVENTS, SwitchReconciler

WORKDIR_ENV = "CANOPY_OFDRIVER_DIR"
POLL = 0.02  # seconds between looks at the desired file
FLOWS_IN_REPORT = 2000
WATCH_FAILED = "watch_failed"


def read_report(workdir) -> dict:
    """``report.json`` as the driver last wrote it ({} before its first); a driver whose watcher died fails the test
    at once, with the watcher's error (``WATCH_FAILED``)."""
    failed = Path(workdir) / WATCH_FAILED
    if failed.exists():
        raise AssertionError(f"the driver's watcher died:\n{failed.read_text()}")
    path = Path(workdir) / "report.json"
    return json.loads(path.read_text()) if path.exists() else {}


class OfDriver(RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION, ofproto_v1_4.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.workdir = Path(os.environ[WORKDIR_ENV])
        self.reconcilers: dict[int, SwitchReconciler] = {}
        self.report: dict = {}
        self.mtime = None
        self.generation, self.flows, self.groups = self._load()
        self.role, self.role_generation = self._role(), 0
        self.watcher = hub.spawn(self._watch)
        self.lag = LagProbe()
        hub.spawn(self.lag.run, hub.sleep)

    def _load(self):
        path = self.workdir / "desired.pickle"
        self.mtime = path.stat().st_mtime_ns
        return pickle.loads(path.read_bytes())

    def _watch(self) -> None:
        try:
            while True:
                hub.sleep(POLL)
                self._check_desired()
                self._check_resync()
                self._check_role()
        except Exception:  # (its green thread's error is only logged: said where the test looks)
            draft = self.workdir / (WATCH_FAILED + ".tmp")
            draft.write_text(traceback.format_exc())
            draft.replace(self.workdir / WATCH_FAILED)
            raise

    def _check_desired(self) -> None:
        if (self.workdir / "desired.pickle").stat().st_mtime_ns != self.mtime:
            self.generation, self.flows, self.groups = self._load()
            self.logger.info("desired generation %s: %d flows, %d groups", self.generation,
                             len(self.flows), len(self.groups))
            for rec in self.reconcilers.values():
                rec.set_desired(self.flows, self.groups)

    def _check_resync(self) -> None:
        trigger = self.workdir / "resync"
        if trigger.exists():
            trigger.unlink()
            self._check_desired()
            for rec in self.reconcilers.values():
                rec.resync()

    def _check_role(self) -> None:
        if self._role() != self.role:
            self.role = self._role()
            for rec in self.reconcilers.values():
                self._claim_role(rec.datapath)
                rec.resync()

    def _role(self) -> str | None:
        path = self.workdir / "role"
        return path.read_text().strip() if path.exists() else None

    def _claim_role(self, dp) -> None:
        if self.role:
            self.role_generation += 1
            role = getattr(dp.ofproto, f"OFPCR_ROLE_{self.role.upper()}")
            dp.send_msg(dp.ofproto_parser.OFPRoleRequest(dp, role, self.role_generation))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state(self, ev):
        dp = ev.datapath
        if ev.state == MAIN_DISPATCHER:
            connected = time.time()
            self._claim_role(dp)
            rec = SwitchReconciler(dp, on_sync=lambda: self._synced(dp.id, connected))
            self.reconcilers[dp.id] = rec
            rec.start()
            rec.set_desired(self.flows, self.groups)
        elif dp.id in self.reconcilers and self.reconcilers[dp.id].datapath is dp:
            self.reconcilers.pop(dp.id).stop()

    @set_ev_cls(REPLY_EVENTS, MAIN_DISPATCHER)
    def _reply(self, ev):
        rec = self.reconcilers.get(ev.msg.datapath.id)
        if (rec is None or not rec.handle(ev.msg)) and ev.msg.msg_type == ev.msg.datapath.ofproto.OFPT_ERROR:
            self.logger.error("unmatched OpenFlow error %s", ev.msg)

    def _synced(self, dpid: int, connected: float) -> None:
        rec = self.reconcilers[dpid]
        status = rec.status()
        self.report[f"{dpid:016x}"] = {
            "generation": self.generation, "connected_at": connected, "synced_at": time.time(),
            "status": status, "flows": rec.flows() if status["desired"] <= FLOWS_IN_REPORT else None,
            "lag": self.lag.status(), "streams": {"most": STREAMS.most, "waits": STREAMS.waited}}
        draft = self.workdir / "report.json.tmp"
        draft.write_text(json.dumps(self.report))
        draft.replace(self.workdir / "report.json")


def main(argv: list[str]) -> int:
    workdir, port = argv
    os.environ[WORKDIR_ENV] = workdir
    return run_manager(["--ofp-tcp-listen-port", port, "--config-file", os.devnull, __spec__.name]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
