"""The store's close (the controller's stop, last: controller/app.py ``_shut_down``) while a transaction still runs in
the thread pool for a caller that stopped waiting (the programming loop killed at the stop: ryu_compat.blocking waits
``KILLED_WAITS``, 5 s at most, then lets it go with the store's lock): the close waits for the transaction
(``ABANDONED_WAIT`` at most) instead of closing the connection under it, and past that leaves the connection open
rather than close it under a running transaction. Before, the close closed it at once: the pool thread's COMMIT then
ran on a closed connection. Real eventlet hub, real OS threads, real SQLite; KILLED_WAITS made short so that the
caller lets go at once (a transaction longer than its wait)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

STOP_DURING = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from controller import ryu_compat, storetxn
    from controller.ryu_compat import blocking, hub
    from ryu.cmd import manager                       # noqa: F401 - as run_manager: it patches all but threads
    hub.patch(thread=True)                            # as run_manager does before the apps (and their Store) exist
    from eventlet import patcher
    from controller.store import Store
    from tests.unit.green import spawned, turns_until
    os_threading = patcher.original("threading")
    ryu_compat.KILLED_WAITS = 1                       # the killed caller waits 10 ms: the transaction outlasts it
    storetxn.ABANDONED_WAIT = {bound}
    store = Store({data!r})
    store.offload = blocking                          # as controller/app.py sets it
    entered, go, outcome = os_threading.Event(), os_threading.Event(), []
    commit = store._set_meta_committed

    def slow(key, value):                             # a slow disk: the transaction waits for the test
        entered.set()
        go.wait(60)
        try:
            commit(key, value)
            outcome.append("committed")
        except Exception as exc:
            outcome.append(type(exc).__name__)

    store._set_meta_committed = slow
    writer = spawned(store.set_meta, "switches", 1)
    turns_until(entered.is_set, writer, bound=6000, sleep=0.01)  # its transaction in an OS thread (failed: raised)
    hub.kill(writer)                                  # the stop kills the programming loop
    for _ in range(6000):                             # bounded: until the killed writer let go
        if writer.dead:
            break
        hub.sleep(0.01)
    os_threading.Timer(0.5, go.set).start()           # the disk answers half a second later
    turns = []                                        # the hub's other green threads (heartbeats) meanwhile

    def ticker():
        while True:
            turns.append(1)
            hub.sleep(0.01)

    ticking = hub.spawn(ticker)
    hub.sleep(0)
    before = len(turns)
    store.close()                                     # the stop closes the store
    print("at the close's end:", outcome or ["running"], flush=True)
    print("the hub turned during the close:", len(turns) > before, flush=True)
    hub.kill(ticking)
    go.set()
    for _ in range(6000):                             # bounded: until the transaction ended
        if outcome:
            break
        hub.sleep(0.01)
    print("the transaction:", outcome, flush=True)
    again = Store({data!r})
    print("written:", again.get_meta("switches"), flush=True)
    again.close()
""")


@pytest.mark.parametrize("bound, at_close", [(30.0, "committed"), (0.1, "running")], ids=["waited", "abandoned"])
def test_a_stop_during_a_transaction_waits_for_it_or_leaves_its_connection_open(tmp_path, bound, at_close):
    """Within the bound the close waits and the transaction commits before it (then the connections close); past it
    (a bound of 0.1 s, the disk answering after 0.5 s) the close returns with the transaction running, and its COMMIT
    still succeeds on the connection left open. Either way a new opener finds the store whole, the write in it, and
    the hub served its other green threads while the close waited (its wait is green, not a sleep of the hub's OS
    thread: heartbeats go on)."""
    code = STOP_DURING.format(root=os.getcwd(), data=str(tmp_path / "data"), bound=bound)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"at the close's end: ['{at_close}']", "the hub turned during the close: True",
                                        "the transaction: ['committed']", "written: 1"], done.stderr[-2000:]


class Killed(BaseException):
    """The caller of a write killed while it waited (ryu_compat.blocking re-raises once it stopped waiting)."""


@pytest.mark.parametrize("answers", [True, False], ids=["waits", "refused past the bound"])
def test_a_write_after_an_abandoned_transaction_waits_for_it_or_is_refused(tmp_path, monkeypatch, answers):
    """The next write's transaction starts only once the abandoned one ended (both written, in that order); while it
    still runs past ``ABANDONED_WAIT`` the write is refused and changes nothing. Before, the next write started its
    transaction on the same connection at once, the abandoned one still to come."""
    import threading

    from controller import storetxn
    from controller.store import Change, Store, StoreFault

    monkeypatch.setattr(storetxn, "ABANDONED_WAIT", 5.0 if answers else 0.1)
    store = Store(str(tmp_path / "data"))
    go, entered, order, threads = threading.Event(), threading.Event(), [], []
    real = store._commit_unlocked

    def commit(changes, meta):
        order.append(("begins", changes[0].id))
        if changes[0].id == "first":
            entered.set()
            go.wait(30)  # a slow disk
        try:
            return real(changes, meta)
        finally:
            order.append(("ends", changes[0].id))

    store._commit_unlocked = commit

    def abandoned(function, *args):
        thread = threading.Thread(target=function, args=args)
        thread.start()
        threads.append(thread)
        assert entered.wait(30)
        raise Killed()  # the caller stops waiting; the transaction goes on in its OS thread

    store.offload = abandoned
    with pytest.raises(Killed):
        store.commit([Change("tenant", "first", "put", {"id": "first"})])
    store.offload = lambda function, *args: function(*args)
    try:
        if answers:
            assert order == [("begins", "first")]
            threading.Timer(0.3, go.set).start()  # the disk answers later
            store.commit([Change("tenant", "second", "put", {"id": "second"})])
            assert order == [("begins", "first"), ("ends", "first"), ("begins", "second"), ("ends", "second")], order
        else:
            with pytest.raises(StoreFault, match="abandoned by a stopped caller"):
                store.commit([Change("tenant", "second", "put", {"id": "second"})])
            assert order == [("begins", "first")]
            go.set()
        threads[0].join(30)
        assert not threads[0].is_alive()
        held = set(store.load_objects()["tenant"])
        assert held == ({"first", "second"} if answers else {"first"}), held
    finally:
        go.set()
        store.close()


def test_a_read_after_an_abandoned_transaction_waits_for_it_to_end(tmp_path, monkeypatch):
    """A read on the writer's connection (``last_seq``, ``get_meta``, ``history``: the HA pair's position, the REST
    allocator's counters) while a transaction a killed caller left runs in the pool: it waits for it to end, as a
    write does, and reads what was committed. Before, it ran at once on the connection under that transaction (on the
    hub: blocked on SQLite's connection mutex while the transaction's statement ran) and read its uncommitted rows: a
    position that the transaction's rollback then took back."""
    import threading
    import types

    from controller import storetxn
    from controller.store import Change, Store

    store = Store(str(tmp_path / "data"))
    go, entered, threads = threading.Event(), threading.Event(), []
    real = store._commit_changes

    def commit(changes, meta):
        real(changes, meta)  # written in the transaction, not committed
        entered.set()
        go.wait(30)  # a slow disk
        raise OSError(5, "I/O error")  # refused: rolled back

    store._commit_changes = commit

    def abandoned(function, *args):
        thread = threading.Thread(target=lambda: _swallow(function, *args))
        thread.start()
        threads.append(thread)
        assert entered.wait(30)
        raise Killed()

    def waiting(seconds):  # the read's first look finds the transaction running: the disk answers then
        go.set()
        threads[0].join(30)

    store.offload = abandoned
    try:
        with pytest.raises(Killed):
            store.commit([Change("tenant", "first", "put", {"id": "first"})])
        monkeypatch.setattr(storetxn, "time", types.SimpleNamespace(sleep=waiting))
        assert store.last_seq() == 0  # before: 1, the uncommitted change's
        assert store.get_meta("last_txn") is None
    finally:
        go.set()
        for thread in threads:
            thread.join(30)
        store.offload = lambda function, *args: function(*args)
        store.close()


def _swallow(function, *args):
    try:
        function(*args)
    except OSError:
        pass
