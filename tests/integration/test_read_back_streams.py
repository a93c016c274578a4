"""Switches read back at the same time share the OpenFlow reply streams' gate (controller.ryu_compat.StreamGate),
against real Open vSwitch: several userspace bridges, each of thousands of flows, read back at once by the test
driver (tests/integration/ofdriver.py), stay connected with the shortest inactivity probe OVS keeps (5 s, its
default too: it raises the 1 s asked here to 5, lib/rconn.c), and at most STREAMS_AT_ONCE of their connections held a
slot at a time (a connection holds one only while its socket has reply bytes to parse: on loopback OVS often sends
slower than they are parsed, so whether one waited varies from run to run; tests/unit/test_stream_gate.py counts the
turns).
"""

from __future__ import annotations

import pickle
import time

import pytest

from controller.ryu_compat import STREAMS_AT_ONCE
from tests.benchmarks.flow_rate import OF_PORT, l2_flows, start_driver
from tests.harness.hosts import BR_INT
from tests.integration.ofdriver import read_report

pytestmark = pytest.mark.integration

SWITCHES = 4
FLOWS = 6000  # per switch: ~0.9 MB of flow stats, two pieces of READ_PAUSE_BYTES
PROBE_MS = 1000  # asked of OVS; it probes after 5 s at the least (lib/rconn.c: MAX(5, interval) seconds)


def all_synced_since(lab, workdir, since: float) -> dict:
    def done():
        entries = read_report(workdir)
        return entries if len(entries) == SWITCHES and all(e["synced_at"] > since for e in entries.values()) \
            else None

    return lab.wait_until(done, timeout=120, interval=0.05, what=f"{SWITCHES} switches in sync")


def test_switches_read_back_at_once_take_turns_and_stay_connected(lab):
    ctl = lab.add_controller_host("ctl")
    hvs = [lab.add_hypervisor(f"hv{n}") for n in range(1, SWITCHES + 1)]
    workdir = lab.workdir / "driver"
    workdir.mkdir()
    (workdir / "desired.pickle").write_bytes(pickle.dumps((1, l2_flows(FLOWS), [])))
    start_driver(lab, ctl, workdir)
    for hv in hvs:
        hv.vsctl("set-controller", BR_INT, f"tcp:{ctl.ip}:{OF_PORT}")
        hv.vsctl("set", "Controller", BR_INT, f"inactivity_probe={PROBE_MS}")
    first = all_synced_since(lab, workdir, 0)
    assert all(e["status"]["installed"] == FLOWS for e in first.values())
    for hv in hvs:  # the flows are there, and stay: nothing is sent during the read-backs
        assert len(hv.ofctl("--no-stats", "dump-flows", BR_INT).splitlines()) >= FLOWS

    resync = time.time()  # (no idle wait before: OVS would probe an idle connection after 5 s only, not 2.5)
    (workdir / "resync").touch()  # every switch read back at once
    again = all_synced_since(lab, workdir, resync)

    for dpid, entry in again.items():  # the same connections: none dropped and made again
        assert entry["connected_at"] == first[dpid]["connected_at"], dpid
        sent = entry["status"]["sent"]
        assert (sent["read_backs"], sent["flow_add"], sent["flow_delete"]) == (2, FLOWS, 0), dpid
    streams = max((e["streams"] for e in again.values()), key=lambda s: s["most"])
    # the bound: whether a connection had to wait depends on OVS filling the sockets faster than they are parsed
    assert 1 <= streams["most"] <= STREAMS_AT_ONCE
