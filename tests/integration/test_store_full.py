"""The store on a full disk (docs/store.md "A full or failing disk"): a real tmpfs mounted by the test holds the data
directory and is filled to the last byte.

- A write gets 503 store_failed naming the store and SQLite's reason; nothing changes in memory or on disk; the
  status and the metrics show the fault; once space is freed the next write succeeds without a restart, and a restart
  finds every acknowledged write (and no refused one).
- A commit that fits (SQLite reuses its write-ahead log's space) while the marker beside it does not: the write
  stands (the marker lags the store, which the start-up check accepts).
- A real controller keeps its switch programmed meanwhile: flows unchanged, the VMs keep pinging.
- A stopped store on a full disk cannot be opened (SQLite cannot make its shared-memory file): refused as unreadable,
  never as damaged, and never moved aside, even with --accept-store.
- An I/O error (ext4 shut down under the open store, EIO): the same refusal, and the mended disk holds no refused
  write.
- HA: a standby whose disk is full refuses the batch, and the active refuses the write at once, naming the standby's
  store; an active whose own disk refuses a write the standby already took gives the standby its store back
  (a snapshot), so the pair never keeps a write the active refused.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

import pytest

from controller.policy import Policy
from controller.service import NotActive
from controller.store import Store, StoreFault
from controller.storeguard import StoreUnreadable, verify
from tests.integration.test_foundation import switch_of
from tests.integration.test_store_guard import programmed, tenant_flows
from tests.unit.helpers import Controller
from tests.unit.replication_pair import Node, assert_same, free_port, in_step, wait_for

pytestmark = pytest.mark.integration

DISK = "4m"  # the tmpfs: room for a small store, quickly filled


class Disk:
    """A tmpfs mounted on ``path`` (unmounted by the fixture); ``fill()`` takes its last byte, ``free()`` gives it
    back."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
        try:
            for chunk in (1 << 16, 4096, 1):  # to the last page, then its last byte
                try:
                    while True:
                        os.write(fd, b"x" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(lab_capable, tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0755", "tmpfs", str(mount)], check=True,
                   timeout=30)
    try:
        yield Disk(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def names(policy) -> set:
    return {o["name"] for o in policy.all("tenant")}


def test_a_full_disk_refuses_writes_clearly_changes_nothing_and_recovers_without_a_restart(disk):
    ctl = Controller(disk.path)  # data_dir on the tmpfs
    acked = [ctl.create("tenants", {"name": f"before{i}"})["name"] for i in range(3)]
    objects, seq = ctl.store.load_objects(), ctl.store.last_seq()
    disk.fill()

    for method, path, body in (("POST", "/v1/tenants", {"name": "refused"}),
                               ("POST", "/v1/apply", {"source": "doc", "document": {"tenants": [{"name": "doc"}]}})):
        status, reply = ctl.call(method, path, body)
        assert status == 503 and reply["error"]["code"] == "store_failed", reply
        message = reply["error"]["message"]
        assert message.startswith(f"the store {ctl.store.path} could not commit a write of 1 change(s): "
                                  "database or disk is full (SQLITE_FULL); 0 bytes free"), message
        assert message.endswith("nothing was written"), message
    assert ctl.store.load_objects() == objects and ctl.store.last_seq() == seq == ctl.state.last_seq
    assert ctl.state.policy.objects == Policy(objects).objects  # State never holds what the store does not

    status, reply = ctl.call("GET", "/v1/status")
    assert status == 200 and reply["store"]["state"] == "failed" and reply["store"]["faults"] == 2, reply["store"]
    assert reply["health"] == "degraded" and "database or disk is full" in reply["degraded_reason"], reply
    scrape = ctl.api.handle(_get("/metrics")).encoded().decode()
    assert "canopy_store_ok 0.0" in scrape and "canopy_store_write_failures_total 2.0" in scrape
    assert ctl.call("GET", "/v1/tenants")[0] == 200  # reads go on

    disk.free()
    acked.append(ctl.create("tenants", {"name": "after"})["name"])
    status, reply = ctl.call("GET", "/v1/status")
    assert reply["store"]["state"] == "ok" and reply["health"] == "ok", reply
    assert "canopy_store_ok 1.0" in ctl.api.handle(_get("/metrics")).encoded().decode()
    data_dir = ctl.settings.data_dir
    ctl.close()

    again = Store(data_dir)  # a restart: the start-up check passes, every acknowledged write is there
    assert names(Policy(again.load_objects())) == set(acked)
    again.close()


def test_a_store_on_a_full_disk_is_refused_as_unreadable_never_as_damaged_and_never_moved_aside(disk):
    """Stopped, SQLite removed its write-ahead log and shared-memory files; a start on the full disk cannot make them
    again (SQLITE_IOERR_SHMSIZE). That store is whole: refused saying so, also with --accept-store (which moved a
    store it could not read aside, making an empty one), and served again once space is freed."""
    ctl = Controller(disk.path)
    acked = {ctl.create("tenants", {"name": f"t{i}"})["name"] for i in range(3)}
    data_dir = ctl.settings.data_dir
    ctl.close()
    disk.fill()
    files = sorted(os.listdir(data_dir))
    for accept in (False, True):
        with pytest.raises(StoreUnreadable, match=r"canopy.db cannot be read now \(disk I/O error, SQLITE_IOERR_\w+; 0 "
                                                  r"bytes free on its file system\): free space or mend the disk"):
            verify(data_dir, accept=accept)
    with pytest.raises(StoreUnreadable):
        Store(data_dir)
    left = os.listdir(data_dir)  # SQLite's attempts may leave empty -wal and -shm files
    assert set(files) <= set(left) and not [f for f in left if "replaced" in f], "nothing is moved aside"
    disk.free()
    again = Store(data_dir)
    assert names(Policy(again.load_objects())) == acked
    again.close()


def _get(path):
    from controller.rest.wire import Request

    return Request("GET", path)


class FailingDisk:
    """An ext4 file system on a loop device (an image file), mounted on ``path``; ``fail()`` shuts it down as
    xfstests do (EXT4_IOC_SHUTDOWN, its journal not flushed): from then on every write and fsync on it gets EIO, a
    real I/O error of the kernel. ``mend()`` mounts it again (its journal replayed), as after a repair."""

    SHUTDOWN = 0x8004587D  # EXT4_IOC_SHUTDOWN, _IOR('X', 125, __u32)
    NOLOGFLUSH = 2  # EXT4_GOING_FLAGS_NOLOGFLUSH

    def __init__(self, image: Path, path: Path):
        self.image, self.path = image, path

    def mount(self) -> None:
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.path)], check=True, timeout=30)

    def fail(self) -> None:
        import fcntl
        import struct

        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, self.SHUTDOWN, struct.pack("I", self.NOLOGFLUSH))
        finally:
            os.close(fd)

    def mend(self) -> None:
        """Unmounted, then mounted again once the image's loop device is gone: ``mount -o loop`` detaches it after the
        unmount (autoclear), and a mount made before that had its reads fail with EIO (10 of 390 such cycles
        without the wait, none of 360 with it: the test failed 2 in 10 runs reading the store's marker)."""
        subprocess.run(["umount", str(self.path)], check=True, timeout=30)
        wait_for(lambda: not subprocess.run(["losetup", "-j", str(self.image)], capture_output=True, text=True,
                                            timeout=30).stdout.strip(), "the loop device of the failed disk to go")
        self.mount()


@pytest.fixture
def failing_disk(lab_capable, tmp_path):
    image, mount = tmp_path / "ext4.img", tmp_path / "ext4"
    mount.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, timeout=60)
    disk = FailingDisk(image, mount)
    disk.mount()
    try:
        yield disk
    finally:  # lazily: a store the failed test left open must not keep the mount (the loop device goes with it)
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def test_an_io_error_refuses_writes_clearly_changes_nothing_and_a_restart_finds_no_refused_write(failing_disk):
    """The disk fails under an open store (EIO, not a full disk): the same path, proved on a real I/O error."""
    ctl = Controller(failing_disk.path)
    acked = {ctl.create("tenants", {"name": f"before{i}"})["name"] for i in range(3)}
    objects, seq = ctl.store.load_objects(), ctl.store.last_seq()
    failing_disk.fail()

    status, reply = ctl.call("POST", "/v1/tenants", {"name": "refused"})
    assert status == 503 and reply["error"]["code"] == "store_failed", reply
    message = reply["error"]["message"]
    assert message.startswith(f"the store {ctl.store.path} could not commit a write of 1 change(s): disk I/O error "
                              "(SQLITE_IOERR"), message
    assert message.endswith("nothing was written"), message
    assert ctl.state.policy.objects == Policy(objects).objects and ctl.state.last_seq == seq
    status, reply = ctl.call("GET", "/v1/status")
    assert reply["store"]["state"] == "failed" and reply["health"] == "degraded", reply
    assert ctl.call("GET", "/v1/tenants")[0] == 200  # reads go on
    data_dir = ctl.settings.data_dir
    ctl.close()

    failing_disk.mend()
    again = Store(data_dir)  # a restart on the mended disk: every acknowledged write, not the refused one
    assert names(Policy(again.load_objects())) == acked and again.last_seq() == seq
    again.close()


def test_a_marker_the_full_disk_refuses_does_not_fail_the_write(disk):
    """The commit fits in the write-ahead log's space (restarted by a checkpoint), the marker's new file does not:
    the write is acknowledged and in State (failing it then left State without a committed write), the fault shows,
    and the lagging marker is accepted at the next start."""
    ctl = Controller(disk.path)
    for i in range(20):
        ctl.create("tenants", {"name": f"t{i}-" + "x" * 50})
    with ctl.store._lock:  # the next commit writes the log from its start again; through the store's own connection,
        # as another process's checkpoint writes into its file and is refused as such (controller/storefile.py)
        assert ctl.store._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0] == 0
        ctl.store.file.wrote()
    disk.fill()
    status, reply = ctl.call("POST", "/v1/tenants", {"name": "fits"})
    assert status == 201, reply
    assert "fits" in names(ctl.state.policy) and "fits" in names(Policy(ctl.store.load_objects()))
    status, reply = ctl.call("GET", "/v1/status")
    assert reply["store"]["state"] == "failed" and "marker" in reply["store"]["fault"]["what"], reply["store"]
    marker = ctl.store.marker_path
    assert '"seq": 20' in Path(marker).read_text() and not os.path.exists(marker + ".tmp")
    data_dir = ctl.settings.data_dir
    ctl.close()
    disk.free()
    again = Store(data_dir)
    assert "fits" in names(Policy(again.load_objects())) and again.last_seq() == 21
    again.close()


def test_a_controller_on_a_full_disk_keeps_its_switch_programmed_and_loses_nothing_acknowledged(lab, disk):
    ctl_host, canopy, hv, vms, flows = programmed(lab, {"data_dir": str(disk.path / "data")})
    api = canopy.api
    subnet = api.get("/v1/subnets").json["items"][0]
    disk.fill()
    for path, body in (("/v1/tenants", {"name": "refused"}),  # a third vport would change the switch's flows
                       ("/v1/vports", {"subnet_id": subnet["id"], "name": "vm2", "mac": "02:00:00:00:01:03",
                                       "ips": ["10.0.1.12"], "binding": {"flavour": "kvm", "iface_id": "vm2"}})):
        reply = api.post(path, body)
        assert reply.status == 503 and reply.json["error"]["code"] == "store_failed", reply.text
        assert "database or disk is full" in reply.json["error"]["message"] and reply.headers.get("Retry-After")
    assert vms[0].ping("10.0.1.11", count=3), "traffic stopped while the store's disk is full"
    assert tenant_flows(hv) == flows and canopy.alive()
    status = api.get("/v1/status").json
    assert status["store"]["state"] == "failed" and status["health"] == "degraded", status
    assert "canopy_store_ok 0.0" in api.get("/metrics").text
    assert len(api.get("/v1/vports").json["items"]) == 2

    disk.free()
    after = api.post("/v1/tenants", {"name": "after"})
    assert after.status == 201, after.text  # no restart needed
    assert api.get("/v1/status").json["store"]["state"] == "ok"
    canopy.restart()
    assert {t["name"] for t in canopy.api.get("/v1/tenants").json["items"]} == {"acme", "after"}
    lab.wait_until(lambda: (s := switch_of(canopy.api, hv.name)) and s["openflow"]["connected"]
                   and s["openflow"].get("in_sync", True), timeout=20, what="hv1 back after the restart")
    lab.wait_until(lambda: tenant_flows(hv) == flows, timeout=10, what="the same flows after the restart")
    assert vms[0].ping("10.0.1.11")


@pytest.fixture
def pair_with(disk, tmp_path):
    """pair_with(full) -> (active, standby): an HA pair over a real HA link, ``full``'s ("active" or "standby") data
    directory on the tmpfs, the links started and one write ("both") on both nodes."""
    ports = {"active": free_port(), "standby": free_port()}
    made = []

    def make(full):
        for role in ("active", "standby"):
            other = "standby" if role == "active" else "active"
            node = Node(disk.path if role == full else tmp_path, role, role, ports[role], ports[other],
                        ack_timeout=20.0)
            if node.replicator is not None:
                node.service.unreplicated = node.replicator.forget  # as controller/app.py wires it
            made.append(node)
        active, standby = made
        active.link.start()
        standby.link.start()
        wait_for(lambda: in_step(active, standby), "the pair to connect")
        active.tenant("both")
        wait_for(lambda: in_step(active, standby), "the pair in step")
        return active, standby

    yield make
    for node in made:
        node.link.stop()
    for node in made:
        node.store.close()


def test_a_standby_whose_disk_is_full_makes_the_active_refuse_the_write_at_once(pair_with, disk):
    active, standby = pair_with(full="standby")
    disk.fill()
    with pytest.raises(NotActive) as refused:
        active.tenant("refused")
    assert refused.value.code == "not_replicated"
    assert re.search(r"the standby refused it: the standby's store could not take it: the store \S+canopy.db could "
                     r"not commit a replicated batch of 1 change\(s\): database or disk is full", refused.value.reason)
    assert standby.applier.store_refusals == 1 and standby.applier.refused == 0  # not counted as invalid data
    assert names(active.state.policy) == names(standby.state.policy) == {"both"}
    assert_same(active, standby)
    active.solo = True  # the operator's way out while the standby's disk cannot be mended (docs/ha.md)
    active.tenant("solo")  # the standby refuses it (store_refusals 2), then the catch-up at a heartbeat (3)
    wait_for(lambda: standby.applier.store_refusals >= 3, "the standby to refuse the catch-up too")
    assert names(standby.state.policy) == {"both"}
    disk.free()  # the standby catches up at a heartbeat soon after, no restart: a refused catch-up is not taken
    # for on its way for the whole ack_timeout (20 s here; this wait failed 1 in 12 when the catch-up came first)
    wait_for(lambda: in_step(active, standby), "the pair in step", bound=active.replicator.ack_timeout / 2)
    assert_same(active, standby)
    active.solo = False
    active.tenant("after")
    assert names(standby.state.policy) == {"both", "solo", "after"}


def test_an_active_whose_disk_refuses_a_write_the_standby_took_gives_the_standby_its_store_back(pair_with, disk):
    active, standby = pair_with(full="active")
    disk.fill()
    with pytest.raises(StoreFault) as refused:
        active.tenant("refused")
    assert "could not commit a write of 1 change(s)" in str(refused.value)  # its own write, not a replicated batch
    assert names(active.state.policy) == {"both"}
    wait_for(lambda: names(standby.state.policy) == {"both"} and in_step(active, standby),
             "the standby to drop the write the active refused (a snapshot)")
    assert_same(active, standby, log=False)  # a snapshot replaces the log
    disk.free()
    active.tenant("after")
    wait_for(lambda: in_step(active, standby), "the pair in step")
    assert names(standby.state.policy) == names(active.state.policy) == {"both", "after"}


def lone_pair(disk, roles: list):
    """An HA node alone (its peer never answers), its data directory on the tmpfs: (pair, store)."""
    from controller import settings as settings_mod
    from controller.core import build_core
    from controller.ha import Pair
    from controller.yamldoc import Doc

    settings = settings_mod.from_doc(Doc("<t>", {"data_dir": str(disk.path / "d"), "ha": {
        "node_id": "b", "peer": "10.250.0.1", "heartbeat_interval_ms": 100, "dead_interval_ms": 500,
        "secret": "unit-test-pair-secret"}}))
    store, state, _ = build_core(settings)
    return Pair(settings.ha, store, state, lambda role, gen: roles.append((role, gen))), store


def test_a_node_that_cannot_record_its_new_generation_does_not_take_over(disk):
    """A takeover writes its generation before using it (switches fence the old master by it): on a full disk the
    decision fails (the pair's thread logs it and decides again) and the role is unchanged; freed, it takes over."""
    from controller.ha import STARTUP_DEAD_INTERVALS

    roles = []
    pair, store = lone_pair(disk, roles)
    disk.fill()
    alone = pair.started + STARTUP_DEAD_INTERVALS * 0.5
    with pytest.raises(StoreFault):
        pair._decide(alone)
    assert pair.role == "starting" and pair.generation == 0 and roles == []
    disk.free()
    pair._decide(alone)
    assert pair.role == "active" and roles == [("active", 1)] and store.get_meta("ha_generation") == 1
    store.close()


def test_a_takeover_the_full_disk_refuses_is_logged_in_one_limited_line_not_a_traceback_per_try(disk, caplog):
    """The pair's thread tries the takeover at every tick (twice per heartbeat interval) while the disk is full: the
    tries are the store's warning line, once per LOG_EVERY seconds with a count, and never a traceback ("HA decision
    failed" is for bugs)."""
    from tests.unit.interleave import finish, run

    roles = []
    pair, store = lone_pair(disk, roles)
    disk.fill()
    caplog.set_level("WARNING")
    looping, _, failed = run(pair._loop)
    try:
        wait_for(lambda: store.faults >= 3, "three takeovers the full disk refused")
    finally:
        pair._stop.set()
        finish(looping)
    assert not failed and pair.role == "starting" and roles == []
    assert not [r.getMessage() for r in caplog.records if r.exc_info], "a traceback per try"
    refused = [r for r in caplog.records if r.name == "canopy.store" and "'ha_generation'" in r.getMessage()]
    assert len(refused) == 1 < store.faults, "one line for the tries of the last LOG_EVERY seconds, not one per try"
    store.close()


def test_a_node_on_a_full_disk_hears_a_newer_generation_without_failing_each_heartbeat(disk):
    """A node that is not the active records the peer's newer generation at its heartbeats: on a full disk that write
    is refused (the store's one line) and the heartbeat is still handed on, not failed with a traceback at every
    heartbeat; freed, the next heartbeat records it. A takeover meanwhile would still go past it (it uses the
    largest generation it knows, and must record its own first)."""
    pair, store = lone_pair(disk, [])
    disk.fill()
    hb = {"t": "hb", "node": "a", "role": "active", "generation": 7, "seq": 0}
    pair._on_frame(hb)
    handed = []
    pair.applier.on_message = handed.append
    pair._on_message(hb)
    assert handed == [hb] and pair.generation == 0 and store.faults == 1
    disk.free()
    pair._on_message(hb)
    assert pair.generation == 7 and store.get_meta("ha_generation") == 7
    store.close()
