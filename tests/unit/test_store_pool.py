"""The store's file check and its write transactions in the thread pool (controller/store.py ``offload``,
ryu_compat.blocking), with real SQLite on a real file system: what runs there must not take the hub's green locks
(logging does: its handlers' locks), and the note of the file as the store's own checkpoint left it must be taken
after that checkpoint, in the thread that ran it, even when the caller stopped waiting (a killed caller)."""

import os
import subprocess
import sys
import textwrap
import threading

from controller.store import Change, Store

POOL_LOGS = textwrap.dedent("""
    import logging, os, sys, threading
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)                            # as run_manager does before the apps (and their Store) exist
    from controller.store import Change, Store, StoreFault
    threads = []

    class Where(logging.Handler):
        def emit(self, record):
            threads.append(threading.get_native_id())

    logging.getLogger("canopy.store").addHandler(Where())
    store = Store({data!r})
    store.offload = blocking                          # as controller/app.py sets it
    store.commit([Change("tenant", "a", "put", {{"id": "a"}})])
    os.remove(store.path)
    try:
        store.commit([Change("tenant", "b", "put", {{"id": "b"}})])
    except StoreFault:
        pass
    store.close()
    main = threading.main_thread().native_id
    print(len(threads), sum(t != main for t in threads), flush=True)
""")


def test_the_file_check_in_the_thread_pool_logs_on_the_hub(tmp_path):
    """The check that finds the file deleted runs in the thread pool (the write's transaction); its error (and the
    refusal's warning) are logged from the hub's thread. Before, the check logged from the pool thread: logging's
    handler locks are green once threads are patched, and a pool thread must not touch one (blocking())."""
    code = POOL_LOGS.format(root=os.getcwd(), data=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    logged, off_hub = map(int, done.stdout.split())
    assert logged >= 2, "the file deleted was not logged: the test proves nothing"
    assert off_hub == 0, f"{off_hub} of {logged} store log records came from an OS thread other than the hub's"


class Killed(BaseException):
    """The caller of a write killed while it waited (ryu_compat.blocking re-raises once it stopped waiting)."""


def test_a_checkpoint_that_ends_after_its_caller_stopped_waiting_is_not_taken_for_an_overwrite(tmp_path):
    """ryu_compat.blocking stops waiting for a killed caller's transaction after KILLED_WAITS (a stop during a slow
    fsync) while the pool thread runs on, its checkpoint writing the file. Before, the store noted the file's size and
    time when the caller stopped waiting: the next write took that checkpoint for a write by something else, refused
    every write and, at the close, moved aside the log that held the acknowledged writes (the start after it without
    them)."""
    data = str(tmp_path / "data")
    store = Store(data)
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    store._db.execute("PRAGMA wal_autocheckpoint=1")  # every commit checkpoints: writes (and grows) the file
    go, entered, threads = threading.Event(), threading.Event(), []
    check = store.file.check

    def slow_check(*args, **kwargs):  # the transaction's first step, held until the caller stopped waiting
        entered.set()
        go.wait(30)
        return check(*args, **kwargs)

    store.file.check = slow_check

    def abandoned(function, *args):
        thread = threading.Thread(target=function, args=args)
        thread.start()
        threads.append(thread)
        assert entered.wait(30)
        raise Killed()  # the caller stops waiting once the transaction began (a job not started never starts)

    store.offload = abandoned
    size = os.path.getsize(store.path)
    try:
        store.commit([Change("vport", "v", "put", {"id": "v", "pad": "x" * 20000})])
    except Killed:
        pass
    go.set()
    threads[0].join(30)
    assert not threads[0].is_alive()
    assert os.path.getsize(store.path) > size, "no checkpoint wrote the file: the test proves nothing"
    store.offload = lambda function, *args: function(*args)
    store.commit([Change("tenant", "b", "put", {"id": "b"})])  # before: StoreFault, "overwritten in place"
    assert store.fault is None and store.file.gone is None
    store.close()
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and "v" in again.load_objects()["vport"]
    again.close()


RENEW_REFUSED = textwrap.dedent("""
    import glob, os, resource, signal, sys
    sys.path.insert(0, {root!r})
    from controller.store import Change, Store, StoreFault
    store = Store({data!r})
    store.commit([Change("tenant", "a", "put", {{"id": "a"}})])
    with open(store.path, "r+b") as fh:               # overwritten in place: what was put there, kept for inspection
        fh.truncate(0)
        fh.write(b"put here by an operator's tool")
    assert store.file_failed()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a file that may not grow: every write refused (EFBIG),
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))   # as on a full disk
    refused = 0
    for _ in range(3):                                # three ticks of the standby's pair
        try:
            store.renew()
        except StoreFault:
            refused += 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    kept = [p for p in glob.glob(store.path + ".renewed-*") if not p.endswith(("-wal", "-shm"))]
    foreign = [p for p in kept if open(p, "rb").read() == b"put here by an operator's tool"]
    print(refused, int(os.path.exists(store.path)), len(kept), len(foreign), flush=True)
    store.renew()                                     # the disk takes writes again: renewed
    print(int(store.file_failed()), flush=True)
""")


def test_a_renewal_the_disk_refuses_leaves_nothing_behind_and_keeps_the_file_put_there(tmp_path):
    """A standby's tick renews its store while the disk refuses writes: each refused try leaves nothing at the path.
    Before, the new file each try made stayed there, so the next try moved it aside too: a renewed-<time> file (and
    log) a second for as long as the disk stayed full, and within the same second over the file set aside first (the
    one put in place of the store, kept for the operator)."""
    code = RENEW_REFUSED.format(root=os.getcwd(), data=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split("\n")[:2]
    refused, at_path, kept, foreign = map(int, first.split())
    assert refused == 3, "the disk did not refuse the renewals: the test proves nothing"
    assert at_path == 0, "a refused renewal left its new file at the store's path"
    assert (kept, foreign) == (1, 1), f"{kept} file(s) set aside, {foreign} with what was put there"
    assert second == "0", "the renewal once the disk takes writes failed"
