"""The flocks between ``canopy backup`` and an HA standby's renewal of its store (controller/storefile.py
``reading_files``, ``moving_files``, ``waiting_renewal``), across real processes: a backup in one process and the
renewal in another, as in the field (the tests beside this one hold both in one process). Each side waits for the
other's line on a pipe (bounded), never for a time."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from controller import storefile, storeguard
from controller.store import RenewalDeferred
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open
from tests.unit.test_store_backup_renewal import _dump, _restored, _whole_store_at_the_path

BOUND = 30.0  # seconds a test waits for a line of a child process before it fails
TRIES = 200  # a renewal's tries (the standby's ticks) while a backup that gives way looks at the lock now and then

# A process of its own, doing what each line of its standard input says and answering on its standard output:
#   hold DIR          a backup's lock on the store (reading_files) taken: "copying"; "release" lets it go: "released"
#   standby DIR       a standby's store whose file another connection committed to: "gone"
#   renew             that store renewed: "renewed", or "deferred" while a backup copies
#   backup DIR DEST   storeguard.backup, saying "waiting" at its first wait: "copied SEQ RENEWED"
CHILD = textwrap.dedent("""
    import contextlib, functools, sys, time
    sys.path.insert(0, {root!r})
    from controller import storefile, storeguard
    from controller.store import Change, RenewalDeferred, Store
    from tests.unit.test_store_setaside import committed_by_another

    def say(word):
        print(word, flush=True)

    said = []
    def pause(seconds):
        if not said:
            said.append(say("waiting"))
        time.sleep(seconds)

    held, store = contextlib.ExitStack(), None
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "hold":
            held.enter_context(storefile.reading_files(args[0]))
            say("copying")
        elif verb == "release":
            held.close()
            say("released")
        elif verb == "standby":
            store = Store(args[0])
            store.commit([Change("tenant", "a", "put", {{"id": "a"}})])
            committed_by_another(store)
            say("gone")
        elif verb == "renew":
            try:
                store.renew()
                say("renewed")
            except RenewalDeferred:
                say("deferred")
        elif verb == "backup":
            storeguard.reading_files = functools.partial(storefile.reading_files, pause=pause)
            facts = storeguard.backup(args[0], args[1])
            say(f"copied {{facts.seq}} {{facts.renewed is not None}}")
""")


class Child:
    """A child process running CHILD: ``tell`` a line, ``expect`` the next line it says (within BOUND)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=os.getcwd())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def tell(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, said: str) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], BOUND)
        assert ready, f"the child said nothing within {BOUND:.0f} s (expected {said!r})"
        line = self.proc.stdout.readline().strip()
        assert line.startswith(said), (line, said)
        return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(BOUND)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def children():
    made: list[Child] = []

    def child() -> Child:
        made.append(Child())
        return made[-1]

    yield child
    for one in made:
        one.kill()


class Waited(Exception):
    """A backup waited (``_waited``: its pause)."""


def _waited(seconds):
    raise Waited(seconds)


def _standby(children, data) -> Child:
    """A standby's store in a process of its own, its file gone (its next tick renews it)."""
    standby = children()
    standby.tell(f"standby {data}")
    standby.expect("gone")
    return standby


def _renewed(store) -> int:
    """The standby's ticks until its renewal went ahead (a backup that gives way holds the directory's shared lock
    for a moment at each look: a tick then is deferred once more); fails past TRIES."""
    for tick in range(1, TRIES + 1):
        try:
            store.renew()
            return tick
        except RenewalDeferred:
            continue
    pytest.fail(f"the renewal was deferred {TRIES} times after the backup before it ended")


def test_a_backup_in_another_process_defers_the_renewal_and_the_next_backup_waits_for_it(tmp_path, children):
    """A backup copying in one process refuses the standby's renewal in this one (deferred); a backup begun in a
    third process then waits for the renewal (it says so), which goes ahead once the first backup's process let go,
    and copies the new store."""
    store = _whole_store_at_the_path(tmp_path)
    data, dest = str(tmp_path / "data"), str(tmp_path / "backup.db")
    first, second = children(), children()
    first.tell(f"hold {data}")
    first.expect("copying")
    with pytest.raises(RenewalDeferred):
        store.renew()
    second.tell(f"backup {data} {dest}")
    second.expect("waiting")
    first.tell("release")
    first.expect("released")
    _renewed(store)
    assert second.expect("copied") == "copied 0 True", "the backup did not copy the renewed store"
    assert _restored(tmp_path, dest) == _dump(store.path)


def test_a_renewal_in_another_process_holds_new_backups_back_until_it_went_ahead(tmp_path, children, monkeypatch):
    """The standby in a process of its own, deferred by a backup here: a backup begun here waits for it (the
    waiting mark is that process's flock), and copies the renewed store once the standby's next tick renewed it."""
    data, dest = tmp_path / "data", str(tmp_path / "backup.db")
    standby = _standby(children, data)
    first, looks = contextlib.ExitStack(), []
    first.enter_context(storefile.reading_files(str(data)))
    standby.tell("renew")
    standby.expect("deferred")

    def pause(seconds):  # the backup gave way: the first one ends, the standby's next tick renews
        looks.append(seconds)
        assert len(looks) < TRIES, "the backup waits for ever"
        if len(looks) == 1:
            first.close()
            standby.tell("renew")
            standby.expect("renewed")

    monkeypatch.setattr(storeguard, "reading_files", functools.partial(storefile.reading_files, pause=pause))
    notes: list[str] = []
    facts = storeguard.backup(str(data), dest, notes=notes)
    assert len(looks) == 1 and facts.renewed is not None and facts.seq == 0, (looks, facts)
    assert any("renewed at" in note for note in notes), notes


def test_a_standby_killed_while_deferred_holds_no_backup_back(tmp_path, children):
    """The waiting mark is the standby process's flock: killed (-9) while deferred, it leaves the file but no lock,
    and a backup copies at once."""
    data, dest = tmp_path / "data", str(tmp_path / "backup.db")
    standby = _standby(children, data)
    with storefile.reading_files(str(data)):
        standby.tell("renew")
        standby.expect("deferred")
    with pytest.raises(Waited):  # alive, its mark holds a backup back
        with storefile.reading_files(str(data), pause=_waited):
            pass
    standby.kill()
    assert os.path.exists(data / storefile.WAITING_NAME)
    with storefile.reading_files(str(data), pause=_waited):
        pass
    assert storeguard.backup(str(data), dest).seq >= 1


def test_canopy_backup_passes_a_renewal_waiting_longer_than_its_setting_and_copies(tmp_path, children):
    """``canopy backup`` (its own process) begun while a standby's renewal (another process) waits for a backup
    copying (this one, never ending): it waits ``ha.store_renewal_wait_ms`` (1 s here), then copies beside that
    backup, exit 0, and says what it copied. Before, it failed (exit 4) after 10 s: a backup failed because a
    standby wanted to renew."""
    data, dest = tmp_path / "data", tmp_path / "backup.db"
    config = tmp_path / "canopy.yaml"
    config.write_text(json.dumps({"data_dir": str(data), "ha": {"store_renewal_wait_ms": 1000}}))
    standby = _standby(children, data)
    with storefile.reading_files(str(data)):
        standby.tell("renew")
        standby.expect("deferred")
        done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "canopy"), "backup", str(dest),
                               "--config", str(config)], capture_output=True, text=True, timeout=BOUND)
        standby.tell("renew")
        standby.expect("deferred")  # (the renewal still waits for the backup copying here)
    assert done.returncode == 0, done.stderr
    assert "note: an HA standby's renewal of this store waited" in done.stderr and dest.exists(), done.stderr
    standby.tell("renew")
    standby.expect("renewed")
