"""An HA standby's renewal of its store refused while a ``canopy backup`` copies it (controller/store.py ``renew``,
storefile ``moving_files``, ``reading_files``): deferred, never starved by backups back to back, and counted apart
from the disk's refusals. Real files, real flocks and SQLite; a backup's waits are a pause of the test's (no sleeps)."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3

import pytest

from controller import loglimit, storefile, storeguard
from controller.store import Change, RenewalDeferred, StoreFault
from tests.unit.helpers import Controller
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open
from tests.unit.test_store_backup_renewal import _dump, _restored, _whole_store_at_the_path
from tests.unit.test_store_setaside import committed_by_another

BACKUPS = 5  # backups back to back in the starvation test
TICKS = 5  # a standby's ticks while a backup defers its renewal


def test_backups_back_to_back_no_longer_starve_a_renewal_they_refused(tmp_path, monkeypatch):
    """A backup copies; the renewal is refused (deferred). Each next backup begins while the one before still copies
    (back to back), and the standby tries again at every tick between. Before, every renewal was refused as long as
    the backups went on (``BACKUPS`` refusals here, without end in the field). Now the backups begun after the
    refusal wait for the renewal: it goes ahead once the backup copying at its refusal ends, and the next backup
    copies the new store."""
    store = _whole_store_at_the_path(tmp_path)
    data, old = str(tmp_path / "data"), _dump(store.path)
    copying, refusals, waits = contextlib.ExitStack(), [], []
    copying.enter_context(storefile.reading_files(data))  # the first backup: copying
    for number in range(BACKUPS):
        with pytest.raises(RenewalDeferred):
            store.renew()  # the standby's tick
        refusals.append(number)
        started = contextlib.ExitStack()

        def look_again(seconds, ended=copying):  # the backup's wait: the one before ends, the standby ticks
            waits.append(seconds)
            assert len(waits) < 100, "the backup waits for ever"
            ended.close()
            store.renew()

        monkeypatch.setattr(storeguard, "reading_files", functools.partial(storefile.reading_files, pause=look_again))
        try:
            started.enter_context(storeguard.reading_files(data))  # the next backup begins: back to back
        except RenewalDeferred:
            pass
        copying = started
        if store.deferral is None:
            break
    copying.close()
    assert refusals == [0] and len(waits) == 1, (refusals, waits)
    assert store.deferral is None and store.fault is None and _dump(store.path) != old
    dest = str(tmp_path / "backup.db")
    storeguard.backup(data, dest)
    assert _restored(tmp_path, dest) == _dump(store.path), "the backup after the renewal is not the new store"


def test_a_marker_left_without_its_lock_holds_no_backup_back(tmp_path):
    """The waiting mark is a flock: a file left behind (a standby killed while deferred) makes no backup wait."""
    store = _whole_store_at_the_path(tmp_path)
    directory = os.path.dirname(store.path)
    with storefile.reading_files(directory):
        with pytest.raises(RenewalDeferred):
            store.renew()
    assert os.path.exists(os.path.join(directory, storefile.WAITING_NAME))
    store._undeferred()  # (as the process's end lets go of its flock)
    with storefile.reading_files(directory, pause=lambda seconds: pytest.fail("the backup waited")):
        pass


def test_a_deferred_renewal_is_counted_apart_from_write_failures_and_health_says_so_past_its_bound(tmp_path):
    """While a backup refuses the renewal: ``canopy_store_renewals_deferred`` counts the refusals and
    ``canopy_store_write_failures`` (the disk's refusals) does not move; /v1/status ``store`` says "deferred: a backup
    is copying"; health does not name it until it lasted ``ha.store_renewal_wait_ms`` (one backup's copy), then says
    so. Before, each tick's refusal counted as a write failure and became the store's fault."""
    ctl = Controller(tmp_path)
    store = ctl.store
    committed_by_another(store)
    faults, fault = store.faults, dict(store.fault)
    with storefile.reading_files(os.path.dirname(store.path)):
        for _ in range(3):
            with pytest.raises(RenewalDeferred):
                store.renew()
        text = ctl.api.metrics.exposition()[0].decode()
        status = ctl.call("GET", "/v1/status")[1]
        assert "canopy_store_renewals_deferred_total 3.0" in text, text
        assert f"canopy_store_write_failures_total {float(faults)}" in text and store.fault == fault
        assert status["store"]["renewal"] == "deferred: a backup is copying" and status["store"]["faults"] == faults
        assert status["store"]["renewals_deferred"] == 3 and "deferred by" not in status.get("degraded_reason", "")
        store._deferred_at -= store.renewal_wait + 1  # (as if it had waited so long)
        status = ctl.call("GET", "/v1/status")[1]
        assert "deferred by 'canopy backup' for" in status["degraded_reason"], status
    store.renew()  # the next tick, the backup ended
    status = ctl.call("GET", "/v1/status")[1]
    assert status["store"]["renewal"] is None and status["store"]["state"] == "ok" and status["health"] == "ok", status
    ctl.close()


def _store_said(ctl):
    """(/v1/status store state, health, its reason, canopy_store_ok, canopy_store_renewal_deferred_seconds)."""
    status = ctl.call("GET", "/v1/status")[1]
    lines = ctl.api.metrics.exposition()[0].decode().splitlines()
    ok, waited = (float(next(line.split()[1] for line in lines if line.startswith(name + " ")))
                  for name in ("canopy_store_ok", "canopy_store_renewal_deferred_seconds"))
    return status["store"]["state"], status["health"], status.get("degraded_reason", ""), ok, waited


def test_waiting_for_a_backup_is_reported_as_a_deferral_not_as_the_store_failing(tmp_path):
    """A standby's store file went: until the renewal that mends it, the store refuses writes (failed, health
    degraded, ``canopy_store_ok`` 0), as the renewal is at the next tick. While that renewal waits for a backup, the
    store is reported as what it is: ``state`` deferred, ``canopy_store_ok`` 1, health ok until the wait passes
    ``ha.store_renewal_wait_ms`` (then degraded naming the deferral, not the file check), and
    ``canopy_store_renewal_deferred_seconds`` says how long. Before, the file check's refusal stood for the whole
    wait: ``canopy_store_ok`` 0 and health degraded by "the store refuses writes" from the first tick. A disk fault
    during the wait is still the store's."""
    ctl = Controller(tmp_path)
    store = ctl.store
    committed_by_another(store)
    state, health, reason, ok, waited = _store_said(ctl)
    assert (state, health, ok, waited) == ("failed", "degraded", 0.0, 0.0) and "refuses writes" in reason
    with storefile.reading_files(os.path.dirname(store.path)):
        with pytest.raises(RenewalDeferred):
            store.renew()
        store._deferred_at -= 5  # (as if it had waited 5 s)
        state, health, reason, ok, waited = _store_said(ctl)
        assert (state, health, ok) == ("deferred", "ok", 1.0) and waited >= 5, (state, health, reason, ok)
        store._deferred_at -= store.renewal_wait
        state, health, reason, ok, waited = _store_said(ctl)
        assert (state, health, ok) == ("deferred", "degraded", 1.0) and "refuses writes" not in reason, reason
        assert "deferred by 'canopy backup' for" in reason and waited > store.renewal_wait
        store._refused("its marker", OSError(28, "No space left on device"))  # the disk's own refusal meanwhile
        state, health, reason, ok, waited = _store_said(ctl)
        assert (state, ok) == ("failed", 0.0) and "No space left" in reason, reason
    store.renew()
    assert _store_said(ctl)[:4] == ("ok", "ok", "", 1.0)
    ctl.close()


def test_a_disk_fault_of_the_renewal_stays_reported_through_the_refusals_of_the_file_gone_after_it(tmp_path):
    """The backup ended, the renewal went to the disk and the disk refused it (full): the store failed. A backup began
    again (the renewal deferred) and the active's next write reached this standby, refused as its file is gone. That
    refusal is the file gone's, which the renewal mends, but the renewal's own last try was the disk's: the store
    stays failed, ``canopy_store_ok`` 0, health degraded, until a write succeeds. Before, the file gone's refusal
    replaced the disk's and the store read deferred, health ok, on a full disk; and the renewal the disk refused
    stayed marked waiting for backups, so that each backup begun then waited ``ha.store_renewal_wait_ms`` for it."""
    ctl = Controller(tmp_path)
    store = ctl.store
    committed_by_another(store)
    with storefile.reading_files(os.path.dirname(store.path)):
        with pytest.raises(RenewalDeferred):
            store.renew()
    real = store._connected

    def full(kept):
        raise sqlite3.OperationalError("database or disk is full")

    store._connected = full
    with pytest.raises(StoreFault, match="disk is full"):
        store.renew()  # the backup ended: the renewal reached the disk
    assert _store_said(ctl)[:2] == ("failed", "degraded")
    with storefile.reading_files(os.path.dirname(store.path), wait=0) as passed:  # no renewal waits for backups now
        assert not passed, "a backup waits for a renewal the disk refused"
        with pytest.raises(RenewalDeferred):
            store.renew()
        with pytest.raises(StoreFault, match="its file was"):
            store.apply_replicated([Change("tenant", "b", "put", {"id": "b"}, seq=store.last_seq() + 1, txn=1,
                                           ts=1.0)], {})
        state, health, reason, ok, _ = _store_said(ctl)
        assert (state, health, ok) == ("failed", "degraded", 0.0), (state, health, reason)
    store._connected = real
    store.renew()
    assert _store_said(ctl)[:4] == ("ok", "ok", "", 1.0)
    ctl.close()


def test_a_waiting_mark_the_disk_refuses_is_logged_once_not_at_every_tick(tmp_path, monkeypatch, caplog):
    """A backup fills the disk and so defers the renewal, whose waiting mark (canopy.renewal-waiting) cannot be made:
    said once per ``LOG_EVERY`` with a count, as the store's other refusals at every tick are, naming the mark (since
    stop 50: a mark another user made, which Canopy's may not open, said only "Permission denied"). Before, one
    warning per tick (ten a second) for as long as the backup copied."""
    store = _whole_store_at_the_path(tmp_path)
    real = os.open

    def full(path, flags, *args, **kwargs):
        if os.path.basename(path) == storefile.WAITING_NAME and flags & os.O_CREAT:
            raise OSError(28, "No space left on device")
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", full)
    monkeypatch.setattr(loglimit, "LOG_EVERY", 1e9)  # (every tick below within one interval, however slow)
    with storefile.reading_files(os.path.dirname(store.path)):
        for _ in range(TICKS):
            with pytest.raises(RenewalDeferred):
                store.renew()
    said = [r for r in caplog.records if "could not mark itself waiting" in r.getMessage()]
    mark = os.path.join(os.path.dirname(store.path), storefile.WAITING_NAME)
    assert len(said) == 1 and f"({mark}: No space left" in said[0].getMessage(), [r.getMessage() for r in said]
    monkeypatch.undo()
    store.renew()


def test_a_step_of_the_wall_clock_is_no_deferral_of_hours(tmp_path, monkeypatch):
    """How long a renewal has been deferred is a duration, on the monotonic clock: the wall clock stepped 3 hours
    forward (NTP, an operator) while a backup copies made ``canopy_store_renewal_deferred_seconds`` read 10,800 and
    health degraded. ``deferral.since`` stays the wall-clock time it began (what /v1/status shows)."""
    import time

    ctl = Controller(tmp_path)
    store = ctl.store
    with storefile.reading_files(os.path.dirname(store.path)):
        with pytest.raises(RenewalDeferred):
            store.renew()
        since = store.deferral["since"]
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() + 3 * 3600)
        with pytest.raises(RenewalDeferred):
            store.renew()  # the next tick, after the step
        assert store.deferral["since"] == since and store.deferred_for() < 60
        state, health, reason, ok, waited = _store_said(ctl)
        assert (state, health, ok) == ("deferred", "ok", 1.0) and waited < 60, (state, health, reason, waited)
        monkeypatch.undo()
    store.renew()
    ctl.close()
