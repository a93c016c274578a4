"""A standby whose store's file went (deleted, or overwritten in place) while the pair ran: over a real HA link with
real SQLite stores. Before, its store refused every replicated batch for good (storefile: the file gone), so the
active refused every write (503 not_replicated) until an operator restarted the standby with a restored store. Now
the standby's tick (controller/ha.py ``Pair._loop``: ``Applier.renew``) takes a new, empty file, reports a position
on no history and gets the active's whole store, and the active's writes are confirmed again."""

import os

import pytest

from controller.replication import RENEWED
from controller.service import NotActive
from controller.store import Change, Store

from .replication_pair import assert_same, connected, in_step, pair, wait_for  # noqa: F401 - pair: a fixture


def _deleted(path):
    os.remove(path)


def _truncated(path):
    os.truncate(path, 0)


def _write(store, tenant: str) -> None:
    """Tenant ``tenant`` written to ``store``."""
    store.commit([Change("tenant", tenant, "put", {"id": tenant})])


def _lose_and_renew(store, fault=_deleted) -> None:
    """``store``'s file gone (``fault``: deleted, or overwritten in place), the loss seen and the file renewed."""
    fault(store.path)
    assert store.file_failed()
    store.renew()


def _stamped_store(tmp_path, monkeypatch, stamps) -> tuple:
    """(data, store): a store in ``tmp_path``/data whose set-aside files are named after ``stamps`` (storefile
    ``stamp``): ``_one_second``, every renewal within the same second; ``_a_second_each``, a second per name."""
    from controller import storefile

    monkeypatch.setattr(storefile, "stamp", stamps())
    data = tmp_path / "data"
    return data, Store(str(data))


def _one_second():
    return lambda: "20261206T000000Z"


def _a_second_each():
    import itertools

    ticks = itertools.count()
    return lambda: "20261206T%06dZ" % next(ticks)


@pytest.mark.parametrize("fault", [_deleted, _truncated], ids=["deleted", "overwritten-in-place"])
def test_a_standby_whose_file_went_renews_it_from_the_active_and_writes_are_confirmed_again(pair, fault):
    active, standby = pair("active"), pair("standby")
    connected(active, standby)
    active.tenant("a")
    active.tenant("b")
    known = {"vrs": ["hv1"], "vteps": []}
    standby.store.set_meta("known_devices", known)  # this node's own memory: kept by the new file
    inode = os.stat(standby.store.path).st_ino
    fault(standby.store.path)
    with pytest.raises(NotActive) as refused:  # the standby's store refuses the batch: so does the active
        active.tenant("c")
    assert refused.value.code == "not_replicated" and "its file was" in str(refused.value)
    assert standby.applier.renew()  # the pair's tick (Pair._loop) while this node is the standby
    assert standby.applier.renewals == 1  # and its position RENEWED: the snapshot may be in already
    assert os.stat(standby.store.path).st_ino != inode
    wait_for(lambda: in_step(active, standby), "the renewed standby to get the active's store")
    assert standby.applier.renewed is None and standby.store.fault is None
    active.tenant("d")  # confirmed again
    assert active.shipped[-1] is True
    assert_same(active, standby, log=False)  # a snapshot, then a change: not the whole log
    assert set(t["name"] for t in standby.store.load_objects()["tenant"].values()) == {"a", "b", "d"}
    assert standby.store.get_meta("known_devices") == known or fault is _truncated
    assert not standby.applier.renew()  # the new file is its own
    data = os.path.dirname(standby.store.path)
    standby.link.stop()
    standby.store.close()
    again = Store(data)  # the marker names the new file: its start is not refused
    assert again.history() == active.store.history()
    again.close()
    standby.store = Store(data)  # for the fixture's close


def takes_over_once_the_snapshot_is_in(node, tmp_path, dead: float) -> None:
    """A renewed standby asks for a snapshot (on no history: not changes from 0); once the active's is in (the applier
    unstarted: applied at once) the renewal is over and the silent active's place is taken."""
    assert node.applier.hello() == RENEWED
    peer = Store(str(tmp_path / "peer"))
    node.applier.on_message({"t": "snapshot", "snapshot": peer.snapshot()})
    peer.close()
    assert node.applier.renewed is None
    node._decide(node.started + 20 * dead)
    assert node.role == "active"


def test_a_renewed_standby_does_not_take_over_until_the_actives_store_is_in_it(tmp_path):
    """Its new file is empty until the active's snapshot is in: a takeover meanwhile would serve an empty store (and
    so delete every tenant's flows) while the silent active held every write. The pair's tick renews it; the node
    says so in GET /v1/ha (``store_renewed``) and takes over a silent peer only once the snapshot is in."""
    from controller.core import build_core
    from controller.ha import Pair

    from .test_ha_rules import DEAD, ha_settings, hear

    settings = ha_settings(tmp_path)
    store, state, _ = build_core(settings)
    node = Pair(settings.ha, store, state, lambda role, gen: None)
    try:
        hear(node, node.started, "active", generation=3)
        node._decide(node.started)
        assert node.role == "standby"
        os.remove(store.path)
        node._renew_store()  # as Pair._loop does at each tick
        assert node.applier.renewed is not None and node.status()["replication"]["store_renewals"] == 1
        node._decide(node.started + 10 * DEAD)  # the active silent, no switch masters: a takeover but for the store
        assert node.role == "standby" and node.status()["replication"]["store_renewed"] is not None
        takes_over_once_the_snapshot_is_in(node, tmp_path, DEAD)
    finally:
        store.close()


def test_a_renewed_standby_restarted_before_the_snapshot_still_does_not_take_over(tmp_path):
    """The renewal is remembered in the new file (a local meta value a snapshot restore removes), not only in memory:
    a standby restarted after its renewal and before the active's snapshot (an operator answering the alarm while the
    active is down) starts on an empty store. Before, the restarted node knew nothing of it and took over a silent
    peer with that empty store (the marker, rewritten by the renewal, let it start): every tenant's flows deleted."""
    from controller.core import build_core
    from controller.ha import Pair

    from .test_ha_rules import DEAD, ha_settings, hear

    settings = ha_settings(tmp_path)
    store, state, _ = build_core(settings)
    node = Pair(settings.ha, store, state, lambda role, gen: None)
    hear(node, node.started, "active", generation=3)
    node._decide(node.started)
    assert node.role == "standby"
    os.remove(store.path)
    node._renew_store()
    assert node.applier.renewed is not None
    store.close()
    store, state, _ = build_core(settings)  # the restart
    node = Pair(settings.ha, store, state, lambda role, gen: None)
    try:
        hear(node, node.started, "active", generation=3)
        node._decide(node.started)
        assert node.role == "standby"
        node._decide(node.started + 10 * DEAD)  # the active silent, no switch masters
        assert node.role == "standby", "a restarted renewed standby took over with an empty store"
        takes_over_once_the_snapshot_is_in(node, tmp_path, DEAD)
    finally:
        store.close()
    again = Store(settings.data_dir)  # the snapshot's restore forgot the renewal
    assert again.get_meta("store_renewed") is None
    again.close()


def test_a_standby_whose_file_goes_again_and_again_keeps_the_files_of_its_newest_renewals_only(tmp_path, monkeypatch):
    """Each renewal leaves files beside the store: the copy saved of the file that went (``saved-<time>``), its log
    and index (``gone-<time>-wal``, ``-shm``), and what was at the path (``renewed-<time>``, with its log). Before, a
    file deleted or overwritten again and again (a clean-up script) left them all, for ever: now the files of the
    newest ``RENEWED_KEPT`` renewals stay, the older ones go; the store itself, its marker and anything else in the
    directory (an operator's file) are left."""

    from controller.store import RENEWED_KEPT

    data, store = _stamped_store(tmp_path, monkeypatch, _a_second_each)
    (data / "notes.txt").write_text("an operator's")
    made = []
    try:
        for round_ in range(RENEWED_KEPT + 3):
            _write(store, f"t{round_}")
            before = set(os.listdir(data))
            # overwritten in place (odd rounds): what was there is set aside as renewed-<time>
            _lose_and_renew(store, _truncated if round_ % 2 else _deleted)
            made.append(set(os.listdir(data)) - before - {"canopy.db", "canopy.db-wal", "canopy.db-shm"})
            assert made[-1], "a renewal that set nothing aside: the test proves nothing"
        left = set(os.listdir(data))
        newest = set().union(*made[-RENEWED_KEPT:])
        oldest = set().union(*made[:-RENEWED_KEPT])
        assert newest <= left, newest - left
        assert not oldest & left, oldest & left
        assert {"canopy.db", "canopy.db.marker", "notes.txt"} <= left
        assert any(".saved-" in name for name in newest) and any(".renewed-" in name for name in newest)
        _write(store, "after")  # the renewed store takes writes
    finally:
        store.close()


def test_renewals_within_one_second_keep_the_newest_renewals_files(tmp_path, monkeypatch):
    """Names are stamped to the second: renewals within one second (a clean-up script deleting the file in a loop,
    the standby ticking ten times a second) name their files ``-2``, ``-3``... (storefile ``claim``). Pruning the
    oldest renewal's files leaves the kept renewals' files."""
    from controller.store import RENEWED_KEPT

    data, store = _stamped_store(tmp_path, monkeypatch, _one_second)  # every renewal within the same second
    try:
        for round_ in range(RENEWED_KEPT + 2):
            _write(store, f"t{round_}")
            _lose_and_renew(store)
        saved = [name for name in os.listdir(data) if ".saved-" in name]
        assert len(saved) == RENEWED_KEPT, f"the newest renewals' saved copies: {sorted(os.listdir(data))}"
        held = sorted(tenant for name in saved for tenant in _saved_tenants(data / name))  # each a copy of its own
        assert held == [f"t{round_}" for round_ in range(2, RENEWED_KEPT + 2)], held
        _write(store, "after")
    finally:
        store.close()


def test_a_name_freed_by_another_and_reused_by_a_kept_renewal_is_not_pruned_with_the_older_one(tmp_path, monkeypatch):
    """(review45d) A renewal's file removed by another (a clean-up script) frees its name: a later renewal within the
    same second claims it again. Pruning the older renewal (by name) then removed the kept renewal's file: its saved
    copy gone, though it is one of the newest ``RENEWED_KEPT``. A name a kept renewal holds is not pruned."""
    from controller.store import RENEWED_KEPT

    data, store = _stamped_store(tmp_path, monkeypatch, _one_second)  # every renewal within the same second
    try:
        for round_ in range(RENEWED_KEPT + 1):
            _write(store, f"t{round_}")
            _lose_and_renew(store)
            if round_ == 0:  # the clean-up removes the first renewal's saved copy: its name is free again
                [first] = [name for name in os.listdir(data) if ".saved-" in name]
                os.remove(data / first)
        saved = [name for name in os.listdir(data) if ".saved-" in name]
        held = sorted(tenant for name in saved for tenant in _saved_tenants(data / name))
        assert held == [f"t{round_}" for round_ in range(1, RENEWED_KEPT + 1)], (held, sorted(os.listdir(data)))
    finally:
        store.close()


def test_two_renewals_within_one_second_set_aside_every_file_under_its_own_name(tmp_path, monkeypatch):
    """(flake44) ``renewed-<time>`` and ``gone-<time>-wal`` of two renewals within one second shared a name: the later
    replaced the earlier, a file set aside lost. Now each is claimed (``O_EXCL``; ``-2``, ``-3``... when taken): every
    file each renewal set aside is still there, itself (the same inode), once the next renewals set theirs aside."""
    from controller.store import RENEWED_KEPT

    data, store = _stamped_store(tmp_path, monkeypatch, _one_second)  # every renewal within the same second
    inodes = {}
    try:
        for round_ in range(RENEWED_KEPT):  # none pruned yet
            _write(store, f"t{round_}")
            before = set(os.listdir(data))
            _lose_and_renew(store, _truncated)  # overwritten in place: the store's file, set aside as renewed-<time>
            for name in set(os.listdir(data)) - before:
                inodes[name] = os.stat(data / name).st_ino
        names = sorted(os.listdir(data))
        assert len([name for name in names if ".renewed-" in name and not name.endswith(("-wal", "-shm"))]) == \
            RENEWED_KEPT, names
        assert len([name for name in names if ".gone-" in name and name.endswith("-wal")]) == RENEWED_KEPT, names
        assert {name: os.stat(data / name).st_ino for name in inodes if (data / name).exists()} == inodes
    finally:
        store.close()


def test_a_file_put_at_the_path_while_the_renewal_moves_it_is_not_taken_for_the_stores(tmp_path, monkeypatch):
    """The renewal looked at the path (is it the store's own file?) and then moved what was there: a file another put
    at the path between the two was taken for the store's, and pruned with an older renewal's files. Now it looks once,
    at the file moved: another's is kept."""
    from controller import store as store_module
    from controller.store import RENEWED_KEPT

    real = store_module.set_aside
    data = tmp_path / "data"
    store = Store(str(data))
    theirs = tmp_path / "backup.db"

    def swapped_first(path, label, *args):  # another's file moved over the store's just before the renewal moves it
        theirs.write_bytes(b"an operator's only copy")
        os.replace(theirs, path)
        return real(path, label, *args)

    try:
        _write(store, "t")
        os.truncate(store.path, 0)  # overwritten in place: the path names the store's own file at the renewal's look
        assert store.file_failed()
        monkeypatch.setattr(store_module, "set_aside", swapped_first)
        store.renew()
        monkeypatch.setattr(store_module, "set_aside", real)
        [renewed] = [name for name in os.listdir(data) if ".renewed-" in name and not name.endswith(("-wal", "-shm"))]
        for round_ in range(RENEWED_KEPT + 1):
            _write(store, f"t{round_}")
            _lose_and_renew(store)
        assert (data / renewed).read_bytes() == b"an operator's only copy", sorted(os.listdir(data))
    finally:
        store.close()


def test_a_file_put_at_the_stores_path_by_another_is_set_aside_and_never_pruned(tmp_path, monkeypatch):
    """A file another put at the path (an operator's ``mv backup.db canopy.db`` on a running standby: replaced by
    another file) is set aside by the renewal as ``renewed-<time>``: not the store's, it is never removed by the
    pruning of older renewals (its only copy may be that one); the store's own files still are."""

    from controller.store import RENEWED_KEPT

    data, store = _stamped_store(tmp_path, monkeypatch, _a_second_each)
    try:
        _write(store, "t")
        theirs = tmp_path / "backup.db"
        theirs.write_bytes(b"an operator's only copy")
        os.replace(theirs, store.path)  # replaced by another file
        assert store.file_failed()
        store.renew()
        renewed = [name for name in os.listdir(data) if ".renewed-" in name]
        assert renewed and (data / renewed[0]).read_bytes() == b"an operator's only copy", renewed
        for round_ in range(RENEWED_KEPT + 1):
            _write(store, f"t{round_}")
            _lose_and_renew(store)
        assert (data / renewed[0]).read_bytes() == b"an operator's only copy", sorted(os.listdir(data))
        saved = sorted(name for name in os.listdir(data) if ".saved-" in name)
        assert len(saved) == RENEWED_KEPT, saved  # the store's own: pruned to the newest
    finally:
        store.close()


def _failing(save, fails):
    """``save`` (the store's backup into a file), raising as a full disk would while ``fails[0]`` > 0 (counted down);
    ``fails[1]`` counts the tries."""
    import sqlite3

    def failing(out):
        fails[1] += 1
        if fails[0] > 0:
            fails[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return save(out)

    return failing


def _saved_tenants(path):
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)  # (its header says WAL: no -shm made)
    try:
        return {row[0] for row in db.execute("SELECT id FROM objects WHERE kind = 'tenant'")}
    finally:
        db.close()


def test_a_renewal_after_a_failed_save_saves_what_the_store_held_first(tmp_path):
    """The save when the file went failed (a full disk for a moment, at load): before, the standby's next tick renewed
    the store anyway, closing the open connection, the only copy of what it held, and no ``saved-<time>`` file was
    ever made (a CI run at load ~10 found none). Now the renewal tries the save again first, at once."""
    import glob

    data = tmp_path / "data"
    store = Store(str(data))
    try:
        for oid in ("a", "b"):
            _write(store, oid)
        fails = [1, 0]
        store.file.save = _failing(store.file.save, fails)
        os.remove(store.path)
        assert store.file_failed() and store.file.saved is None and fails == [0, 1]
        assert glob.glob(store.path + ".saved-*") == []  # the failed try left nothing
        store.renew()
        [saved] = glob.glob(store.path + ".saved-*")
        assert fails[1] == 2 and _saved_tenants(saved) == {"a", "b"}
        _write(store, "c")  # the renewed store takes writes
    finally:
        store.close()


def test_a_renewal_waits_while_what_the_store_held_cannot_be_saved(tmp_path):
    """While the save keeps failing, the renewal is refused (StoreFault: the pair's tick tries again) and the open
    connection stays; it tries the save at once, then at most every SAVE_AGAIN seconds (a clock of the test's own:
    not a full copy per tick), and renews once one succeeded."""
    import glob

    from controller import storefile
    from controller.store import StoreFault

    data = tmp_path / "data"
    store = Store(str(data))
    try:
        _write(store, "a")
        now = [0.0]
        store.file.clock = lambda: now[0]
        fails = [3, 0]
        store.file.save = _failing(store.file.save, fails)
        os.remove(store.path)
        assert store.file_failed()
        with pytest.raises(StoreFault):  # tried again at once: failed
            store.renew()
        for _ in range(3):
            with pytest.raises(StoreFault):  # the next ticks, within SAVE_AGAIN: not tried
                store.renew()
        assert fails == [1, 2] and not os.path.exists(store.path)
        now[0] = storefile.SAVE_AGAIN
        with pytest.raises(StoreFault):
            store.renew()
        assert fails == [0, 3] and glob.glob(store.path + ".saved-*") == []
        now[0] = 2 * storefile.SAVE_AGAIN
        store.renew()
        [saved] = glob.glob(store.path + ".saved-*")
        assert fails[1] == 4 and _saved_tenants(saved) == {"a"} and store.fault is None
    finally:
        store.close()


def test_saves_within_one_second_neither_remove_nor_overwrite_an_earlier_copy(tmp_path, monkeypatch):
    """Names are stamped to the second: a second renewal's save within the same second took the first one's name.
    Before, a failed save removed that name (the first renewal's copy: gone) and a successful one wrote over it. Now
    each save makes a new file (``saved-<time>-2``...), and a failed one removes only what it made."""
    import glob


    data, store = _stamped_store(tmp_path, monkeypatch, _one_second)
    try:
        _write(store, "a")
        os.remove(store.path)
        assert store.file_failed()
        store.renew()
        [first] = glob.glob(store.path + ".saved-*")
        _write(store, "b")
        fails = [1, 0]
        store.file.save = _failing(store.file.save, fails)
        os.remove(store.path)
        assert store.file_failed() and store.file.saved is None
        assert glob.glob(store.path + ".saved-*") == [first] and _saved_tenants(first) == {"a"}
        store.renew()  # saved again first, under a name of its own
        [second] = set(glob.glob(store.path + ".saved-*")) - {first}
        assert _saved_tenants(first) == {"a"} and _saved_tenants(second) == {"b"}
    finally:
        store.close()
