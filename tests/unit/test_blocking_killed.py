"""A green thread killed while it waits for ``blocking`` (controller/ryu_compat.py): the function goes on in its OS
thread, and the caller's locks must stay held until it has ended. The programming loop is killed so at a stop
(controller/app.py ``_shut_down``), possibly while its pass records the connected switches in the store
(controller/startup_hold.py ``remember``: ``Store.set_meta``); the HA pair and BGP stop after it, for up to a few
seconds, while other green threads may write the store (the pair's generation, a standby's replicated writes). Were
the store's lock released at the kill, one of them would start a transaction on the same SQLite connection while the
killed one's runs in its OS thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

KILLED_WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)                            # as run_manager does before the apps (and their Store) exist
    from eventlet import patcher
    from controller.store import Store
    from tests.unit.green import spawned, turns_until
    os_threading = patcher.original("threading")
    store = Store({data!r})
    store.offload = blocking                          # as controller/app.py sets it
    entered, go = os_threading.Event(), os_threading.Event()
    commit = store._set_meta_committed

    def slow(key, value):                             # a slow disk: the transaction waits for the test
        entered.set()
        go.wait(60)
        return commit(key, value)

    store._set_meta_committed = slow

    def free():                                       # whether another green thread could take the store's lock now
        taken = store._lock.acquire(blocking=False)
        if taken:
            store._lock.release()
        return taken

    writer = spawned(store.set_meta, "switches", 1)  # the pass's record of the connected switches
    turns_until(entered.is_set, writer, bound=6000, sleep=0.01)  # its transaction in an OS thread (failed: raised)
    hub.kill(writer)                                  # the stop kills the programming loop
    print("the lock free while the transaction runs:", free(), flush=True)
    go.set()
    for _ in range(6000):                             # bounded: until the killed writer has ended
        if writer.dead:
            break
        hub.sleep(0.01)
    print("the lock free after it:", free(), flush=True)
    print("written:", store.get_meta("switches"), flush=True)
""")


def test_a_writer_killed_while_its_transaction_runs_keeps_the_store_lock_until_it_ends(tmp_path):
    code = KILLED_WRITER.format(root=os.getcwd(), data=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["the lock free while the transaction runs: False",
                                        "the lock free after it: True", "written: 1"]
