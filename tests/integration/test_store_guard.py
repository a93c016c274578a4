"""A damaged or empty store must not wipe the fabric: a real controller programs a real OVS switch, its
canopy.db is replaced by a zero-length file, and the restarted controller refuses in one line (exit 4)
while the switch keeps every flow; ``canopy restore`` of a backup taken while it ran brings it back, and the
switch is resynced without losing a flow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import process
from tests.harness.policy import acme_web, create
from tests.integration.test_foundation import switch_of

pytestmark = pytest.mark.integration

CANOPY = str(Path(sys.executable).parent / "canopy")
REFUSAL_TIMEOUT = 30.0


def tenant_flows(hv):
    """br-int's flows without counters, sorted."""
    return sorted(line.strip() for line in hv.ofctl("--no-stats", "dump-flows", "br-int").splitlines()
                  if "cookie=" in line)


def in_ns(ctl_host, *argv, timeout=60):
    return subprocess.run(["ip", "netns", "exec", ctl_host.ns, CANOPY, *argv], capture_output=True, text=True,
                          timeout=timeout)


def programmed(lab, settings=None):
    """A controller (``settings`` over the lab's) with acme/prod/web and two vports, a hypervisor with their VMs
    pinging each other."""
    ctl_host = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl_host, settings)
    api = canopy.api
    tenant, domain, subnet = acme_web(api)
    for i, mac in enumerate(("02:00:00:00:01:01", "02:00:00:00:01:02")):
        create(api, "vports", {"subnet_id": subnet["id"], "name": f"vm{i}", "mac": mac, "ips": [f"10.0.1.{10 + i}"],
                               "binding": {"flavour": "kvm", "iface_id": f"vm{i}"}})
    hv = lab.add_hypervisor("hv1")
    hv.connect(ctl_host)
    vms = [lab.add_vm(hv, f"vm{i}", mac=mac, ip=f"10.0.1.{10 + i}/24", vnic_id=f"vm{i}")
           for i, mac in enumerate(("02:00:00:00:01:01", "02:00:00:00:01:02"))]
    lab.wait_until(lambda: (s := switch_of(api, hv.name)) and s["openflow"]["connected"], timeout=15,
                   what="hv1 connected")
    hv.set_max_backoff(1000)  # back within a second of a restart, not after OVS's 1, 2, 4, 8 s (docs/vrs.md)
    lab.wait_until(lambda: vms[0].ping("10.0.1.11"), timeout=15, what="vm0 pings vm1 through Canopy's flows")
    flows = tenant_flows(hv)
    assert any("02:00:00:00:01:01" in f for f in flows)
    return ctl_host, canopy, hv, vms, flows


def data_dir_of(canopy):
    return Path(canopy.config_path.read_text().split("data_dir:")[1].split("\n")[0].strip().strip("'\""))


def test_an_empty_store_is_refused_and_the_switch_keeps_its_flows(lab, tmp_path):
    ctl_host, canopy, hv, vms, flows = programmed(lab)
    config = str(canopy.config_path)
    data_dir = data_dir_of(canopy)
    backup = tmp_path / "backup.db"
    made = in_ns(ctl_host, "backup", str(backup), "--config", config)
    assert made.returncode == 0 and "up to change" in made.stdout, made.stderr

    canopy.stop()
    db = data_dir / "canopy.db"
    os.truncate(db, 0)  # what a full disk, a bad copy or an operator's "> canopy.db" leaves

    child = process.spawn("canopy-empty", [CANOPY, "run", "--config", config], tmp_path / "empty.log", ctl_host.ns)
    try:
        lab.wait_until(lambda: not child.alive() or tenant_flows(hv) != flows, timeout=REFUSAL_TIMEOUT,
                       what="the controller to refuse the empty store and exit")
        assert tenant_flows(hv) == flows, "the switch lost flows to an empty store"
        assert not child.alive(), "the controller started on an empty store"
    finally:
        process.stop([child], 5)
    assert child.popen.returncode == 4
    said = (tmp_path / "empty.log").read_text().strip().splitlines()
    assert len(said) == 1 and "cannot start: " in said[0] and "is empty (0 bytes)" in said[0]
    assert "canopy restore FILE" in said[0] and "Traceback" not in said[0]
    assert os.path.getsize(db) == 0, "a refused store is left as it was"
    assert vms[0].ping("10.0.1.11"), "traffic still flows while the controller is down"

    restored = in_ns(ctl_host, "restore", str(backup), "--config", config)
    assert restored.returncode == 0 and "restored the store up to change" in restored.stdout, restored.stderr
    canopy.start()
    lab.wait_until(lambda: (s := switch_of(canopy.api, hv.name)) and s["openflow"]["connected"]
                   and s["openflow"].get("in_sync", True), timeout=20, what="hv1 back with the restored store")
    assert len(canopy.api.get("/v1/vports").json["items"]) == 2
    lab.wait_until(lambda: tenant_flows(hv) == flows, timeout=10, what="the same flows after the restore")
    assert vms[0].ping("10.0.1.11")


def test_a_wiped_data_directory_starts_empty_and_deletes_nothing_until_told(lab):
    """Store and marker both gone: nothing says a store was there, so Canopy starts, but a new, empty store
    deletes nothing from the switches until the first policy change."""
    ctl_host, canopy, hv, vms, flows = programmed(lab)
    canopy.stop()
    shutil.rmtree(data_dir_of(canopy))
    canopy.start()
    dpid = f"{hv.datapath_id():016x}"

    def synced():
        reply = canopy.api.get(f"/v1/switches/{dpid}/flows")
        return reply.status == 200 and reply.json["status"].get("state") == "in_sync" and reply.json

    lab.wait_until(synced, timeout=20, what="hv1 reconciled by the new controller")
    assert tenant_flows(hv) == flows, "a new, empty store deleted the switch's flows"
    assert "keeping" in canopy.log_tail(200) and "store is new and empty" in canopy.log_tail(200)
    assert vms[0].ping("10.0.1.11"), "traffic still flows"

    create(canopy.api, "tenants", {"name": "other"})  # the operator's first change: now Canopy syncs fully
    lab.wait_until(lambda: not any("02:00:00:00:01:01" in f for f in tenant_flows(hv)), timeout=20,
                   what="the flows of the vports the new store does not hold removed")


def test_a_store_file_deleted_under_the_running_controller_refuses_writes_and_loses_none_acknowledged(lab, tmp_path):
    """``canopy.db`` removed while the controller runs (docs/store.md "The store's file deleted or replaced"):
    before 2026-12-06 the next write was acknowledged (201) into the deleted file and gone with the process, and the
    restart was refused. Now it is refused (503 store_failed) and changes nothing, the switch keeps its flows, the
    status says so, and the copy the store saved beside it, restored, holds every acknowledged write."""
    ctl_host, canopy, hv, vms, flows = programmed(lab)
    config = str(canopy.config_path)
    data_dir = data_dir_of(canopy)
    kept = create(canopy.api, "tenants", {"name": "kept"})  # acknowledged before the file goes
    os.remove(data_dir / "canopy.db")

    refused = canopy.api.post("/v1/tenants", {"name": "refused"})
    assert refused.status == 503 and refused.json["error"]["code"] == "store_failed", refused.text
    assert "its file was deleted" in refused.json["error"]["message"]
    assert canopy.api.get("/v1/status").json["health"] == "degraded"
    assert {t["name"] for t in canopy.api.get("/v1/tenants").json["items"]} == {"acme", "kept"}
    [saved] = sorted(data_dir.glob("canopy.db.saved-*"))
    assert str(saved) in refused.json["error"]["message"]
    assert tenant_flows(hv) == flows and vms[0].ping("10.0.1.11"), "the switch keeps its flows and traffic"

    canopy.stop()
    restored = in_ns(ctl_host, "restore", str(saved), "--config", config)
    assert restored.returncode == 0 and "restored the store up to change" in restored.stdout, restored.stderr
    canopy.start()
    assert {t["id"] for t in canopy.api.get("/v1/tenants").json["items"]} >= {kept["id"]}
    assert "refused" not in {t["name"] for t in canopy.api.get("/v1/tenants").json["items"]}
    assert len(canopy.api.get("/v1/vports").json["items"]) == 2
    lab.wait_until(lambda: (s := switch_of(canopy.api, hv.name)) and s["openflow"]["connected"]
                   and s["openflow"].get("in_sync", True), timeout=20, what="hv1 back with the restored store")
    lab.wait_until(lambda: tenant_flows(hv) == flows, timeout=10, what="the same flows after the restore")
