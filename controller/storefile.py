"""Whether the store's path still names the file the running controller opened (docs/store.md "The store's file
deleted or replaced").

SQLite keeps writing to the file it opened. If ``canopy.db`` is deleted (or another file moved over it) while the
controller runs, every later commit goes to a file no name reaches: it is acknowledged, and gone once the process
ends (the next start is refused, as the marker names a store that is not there: controller/storeguard.py). So the
store compares the path with the file it opened (device and inode) before each write transaction and refuses the
write (``Moved``, an OSError: the store's ``StoreFault``, REST's ``503 store_failed``) once they differ.

The first time it finds its file gone it also saves what it holds: SQLite's online backup from the open connection
(which reads through its write-ahead log, so every committed write is in it) to a new file beside the store,
``canopy.db.saved-<time>`` (``-2``, ... when that name is taken: ``claim``), for ``canopy restore`` once the
controller is stopped. Then it moves its write-ahead log and shared-memory index aside (``canopy.db.gone-<time>-wal``,
``-shm``; numbered too, never over another file: ``set_aside``): SQLite does not remove them when it closes a
database whose file has moved, and the next opener of ``canopy.db`` (a file put in its place, or a new store made with
``--accept-store``) would take that log for its own and replay the lost file's pages into it. A save that failed is
tried again (``SAVE_AGAIN``; an HA standby's renewal waits for it: ``kept``), and the store's close (the controller's
stop) looks once more (``closing``): a file that went after the last write, which no check noticed, is saved then.

The same check finds the file changed in place (same inode: ``cp other.db canopy.db``, ``truncate``, a restore tool
writing into it): in WAL mode only the store's own checkpoints write the database file, and they run inside its own
write transactions, after which the store notes the file's size and modification time (``wrote``); either changing
between two of them is a write by something else. The open connection then reads that file's pages under its own
log, so no copy of it is whole: nothing is saved, the log is moved aside (kept for inspection) and, at close, the
writer closes while the read-only reader is still open, so SQLite does not checkpoint the log into the file put
there (``overwritten``). Its write-ahead log deleted or replaced (``canopy.db-wal``: later commits would go to a log
no start reads) and a commit by another SQLite connection (``PRAGMA data_version``: a second controller or a tool on
the same file) are refused likewise; the first is saved and set aside as a deleted file is, the second saved only
(its log is the file's own). Not detectable: a write that leaves the size and the modification time as they were
(a tool that sets the time back), and one made during the store's own write transaction (it is noted after it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import sqlite3
import stat
import time

from controller.storedisk import network_warning
from controller.storetxn import note

log = logging.getLogger("canopy.store")
DATABASE_FILES = ("", "-wal", "-shm")  # a SQLite database's file, its write-ahead log and its index (one stem)
SAVE_AGAIN = 10.0  # seconds between two tries to save the open store while none succeeded (a full disk, no directory)
MOVES_LOOK = 0.02  # seconds between two looks while a ``canopy backup`` waits for a standby's renewal
WAITING_NAME = "canopy.renewal-waiting"  # a renewal a backup refused holds this file's flock: new backups give way
# a 'canopy restore' (or --accept-store) moving the store's files holds this file's flock, its name written in it: a
# backup waiting in vain names it (else the files move for an HA standby's renewal)
MOVER_NAME = "canopy.moving"
# the marks' mode, as SQLite makes the store's files (the umask applies to both): a backup that may read the store may
# read the marks (made 0640 before stop 50: a backup run by another user than Canopy's failed on a bare errno)
MARK_MODE = 0o644
RENEWAL = "an HA standby's renewal"
# seconds a renewal may stay deferred by backups before health says so, and a backup waits for one (the default of
# the setting ha.store_renewal_wait_ms)
DEFER_BOUND = 60.0


class Moved(OSError):
    """The store's path no longer names the file the store opened."""


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when nothing is there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def contents(path: str) -> tuple[int, int] | None:
    """(size, modification time in ns) of ``path``: what any write into the file changes; None when nothing is
    there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def stamp() -> str:
    """The time in the names of files set aside and saved (UTC, to the second: sorted by name, sorted by time)."""
    return time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())


def claim(base: str, suffixes=("",), tries: int = 100, siblings=()) -> str:
    """New, empty files named ``base`` + each of ``suffixes`` or, when one of those is taken (two within the same
    second: names are stamped to the second), ``base-2`` + each, ``base-3``...; the stem they share. Never an existing
    file (``O_EXCL``): a save that fails removes only what it made, one that succeeds overwrites no earlier copy, and a
    file set aside (``set_aside``) replaces only the empty file claimed for it. A stem where one of ``siblings`` is
    there is taken too (a database's files keep one stem: a log set aside alone never joins another database's file,
    nor its index another log). OSError when none can be made."""
    for n in range(1, tries + 1):
        stem, made = base if n == 1 else f"{base}-{n}", []
        if any(os.path.lexists(stem + sibling) for sibling in siblings):
            continue
        try:
            for suffix in suffixes:
                os.close(os.open(stem + suffix, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # as SQLite makes one
                made.append(suffix)
            return stem
        except BaseException as exc:
            discard(stem, made)  # what this try made, and only that
            if not isinstance(exc, FileExistsError):
                raise
    raise FileExistsError(errno.EEXIST, f"{base} and {tries - 1} numbered names after it are taken")


def set_aside(path: str, label: str, suffixes=DATABASE_FILES) -> list[str]:
    """Move the file at ``path`` and its write-ahead log and index (``suffixes``: those that are there) to
    ``<path>.<label>-<time>`` (``-2``, ``-3``... when a name is taken: ``claim``), never over an earlier one, under one
    stem no other database's file has; the paths they went to. OSError when one cannot be moved (those not moved yet
    stay where they are)."""
    there = [suffix for suffix in suffixes if os.path.lexists(path + suffix)]
    if not there:
        return []
    stem, moved = claim(f"{path}.{label}-{stamp()}", there, siblings=DATABASE_FILES), []
    try:
        for suffix in there:
            try:
                os.replace(path + suffix, stem + suffix)
                moved.append(stem + suffix)
            except FileNotFoundError:  # gone since it was looked at
                discard(stem, (suffix,))
    except BaseException as exc:
        discard(stem, [suffix for suffix in there if stem + suffix not in moved])  # the claimed names left empty
        if moved and isinstance(exc, OSError):
            raise PartlyMoved(exc, [(went, path + went.removeprefix(stem)) for went in moved]) from exc
        raise
    return moved


class PartlyMoved(OSError):
    """``set_aside`` moved some of a database's files, then one could not be moved: ``moved`` holds (where each
    went, where it was), for the caller to put back (``put_back``) or keep."""

    def __init__(self, exc: OSError, moved: list[tuple[str, str]]):
        super().__init__(exc.errno, exc.strerror or str(exc), exc.filename)
        self.moved = moved


def put_back(moved: list[tuple[str, str]]) -> list[str]:
    """Files ``set_aside`` moved (``PartlyMoved.moved``) back where they were, never over a file there now
    (``moved_back``); where those that could not be are (left set aside)."""
    left = []
    for went, was in reversed(moved):
        try:
            moved_back(went, was)
        except OSError as exc:
            note(log, logging.WARNING, "could not move %s back to %s: %s", went, was, exc)
            left.append(went)
    return left


NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS)  # link(2) on a file system without hard links (vfat, FUSE)


def moved_back(went: str, was: str) -> None:
    """The file at ``went`` moved to ``was``, never over a file there: a hard link to ``was`` (refused when one is
    there), then ``went`` removed. On a file system without hard links (NO_LINKS: before stop 48 nothing was put
    back there), one rename that never replaces (``renamed_no_replace``: FileExistsError when something is there);
    where the kernel or the file system has no such rename (some FUSE), a rename once nothing is at ``was``: a file
    put there in the moment between that look and the rename would be replaced, a window of two system calls."""
    try:
        os.link(went, was)
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        if renamed_no_replace(went, was):
            return
        if os.path.lexists(was):
            raise FileExistsError(errno.EEXIST, "a file is there", was) from None
        os.rename(went, was)
        return
    os.remove(went)


_RENAMEAT2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc 2.28 and later
AT_FDCWD, RENAME_NOREPLACE = -100, 1  # <fcntl.h>, <linux/fs.h>


def renamed_no_replace(src: str, dst: str) -> bool:
    """``src`` renamed to ``dst`` in one system call refused while anything is at ``dst`` (renameat2 with
    RENAME_NOREPLACE: FileExistsError); False, nothing done, where the C library, the kernel or the file system
    has no such rename."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), dst)  # (EEXIST: FileExistsError)


def copy_into(backup, dest: str) -> None:
    """SQLite's online backup into a new connection to ``dest``, closed after, whatever happens: ``backup`` is the
    source connection's ``backup`` (or any function of the new connection)."""
    out = sqlite3.connect(dest)
    try:
        backup(out)
    finally:
        out.close()


def remove(paths, why: str) -> None:
    """Remove the files ``paths`` (those that are there); one that cannot be removed is logged (``why``) and left."""
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            note(log, logging.WARNING, "could not remove %s (%s): %s", path, why, exc)


def discard(path: str, suffixes=DATABASE_FILES) -> None:
    """Remove the file at ``path`` and its write-ahead log and index (those that are there)."""
    for suffix in suffixes:
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


class FilesRefused(OSError):
    """The store's files cannot be taken for a move or a copy now; ``strerror`` says why and what to do."""


class FilesBusy(FilesRefused):
    """The store's files are held by the other side: a renewal moving them, or a backup reading them."""


class FilesUnreadable(FilesRefused):
    """A backup may not open the data directory or a mark in it to see whether their files move (PermissionError: run
    by another user than Canopy's, a mark made by another): said naming the file, never as a bare errno."""


@contextlib.contextmanager
def moving_files(directory: str, mover: str = RENEWAL):
    """While an HA standby's renewal moves the store's files in ``directory`` aside and makes a new store there
    (store.py ``_renewed``), no ``canopy backup`` reads them (``reading_files``): a backup opened between two of its
    moves copied one store's database with the other's log (or without its log). An exclusive ``flock`` on the
    directory. Never waits (the renewal holds the store's lock, which the event loop may wait for): FilesBusy while a
    backup reads them, and the next tick tries again. ``mover``: who moves them, when not the renewal (a 'canopy
    restore'): marked (``MOVER_NAME``) for a backup that waits in vain to name (best effort: a disk refusing the mark
    leaves it unnamed, the move goes ahead)."""
    fd = _flocked(directory, fcntl.LOCK_EX)
    if fd is None:
        raise FilesBusy(errno.EBUSY, f"a 'canopy backup' is copying the store in {directory} (tried again later)")
    mark = _mover_marked(directory, mover) if mover != RENEWAL else None
    try:
        yield
    finally:
        if mark is not None:
            os.close(mark)
        os.close(fd)  # (the lock goes with it)


def _mover_marked(directory: str, mover: str) -> int | None:
    """A descriptor holding ``MOVER_NAME``'s exclusive flock, ``mover`` written in it; None when the disk refuses (the
    descriptor closed: left open, it held the mark for the life of the process, a controller's after --accept-store)."""
    try:
        fd = _marked(os.path.join(directory, MOVER_NAME))
    except OSError:
        return None
    if fd is not None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, mover.encode(), 0)
        except OSError:
            os.close(fd)
            return None
    return fd


def _mover(directory: str) -> str:
    """Who moves the store's files in ``directory`` now: the mover a held mark names (``moving_files``), else
    ``RENEWAL``."""
    path = os.path.join(directory, MOVER_NAME)
    try:
        if _held(path):
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read(200).strip() or RENEWAL
    except OSError:
        pass
    return RENEWAL


@contextlib.contextmanager
def reading_files(directory: str, wait: float = DEFER_BOUND, pause=time.sleep, clock=time.monotonic):
    """While a backup opens and copies the store in ``directory``, no renewal moves its files (``moving_files``: a
    shared ``flock`` on the directory). A renewal under way (milliseconds), or one a backup refused and so waiting
    (``waiting_renewal``), is waited for, ``wait`` seconds at most (``pause`` between two looks): backups back to back
    no longer starve a renewal, which waits for those already copying only. Past ``wait`` a renewal still waiting (for
    the backups before this one: long copies) is passed, the copy made beside those backups (yields True: the
    renewal waits on, and health names it), never refused (before stop 48: refused after 10 s, the backup failed);
    one still moving the files raises FilesBusy; a directory or a mark this user may not open, FilesUnreadable."""
    try:
        fd, passed = _read_lock(directory, wait, pause, clock)
    except PermissionError as exc:
        raise FilesUnreadable(exc.errno, _unreadable(exc.filename or directory, exc.strerror)) from None
    try:
        yield passed
    finally:
        os.close(fd)


def _read_lock(directory: str, wait: float, pause, clock) -> tuple[int, bool]:
    """``reading_files``'s lock: (a descriptor holding it, whether a waiting renewal was passed)."""
    deadline = clock() + wait
    while True:
        fd = _flocked(directory, fcntl.LOCK_SH)
        try:
            if fd is not None and not _held(os.path.join(directory, WAITING_NAME)):
                return fd, False
        except BaseException:
            os.close(fd)
            raise
        if clock() >= deadline:
            if fd is None:
                mover = _mover(directory)
                raise FilesBusy(errno.EBUSY, f"{mover} of the store in {directory} was still moving its files after "
                                             f"{wait:.0f} s{' (its disk may hang)' if mover == RENEWAL else ''}; try "
                                             "again")
            return fd, True
        if fd is not None:
            os.close(fd)
        pause(MOVES_LOOK)


def _unreadable(path: str, reason: str) -> str:
    """One line for a backup that may not open ``path`` (the data directory or its renewal's mark) to lock it."""
    return (f"cannot open {path} ({reason}), which tells a backup whether an HA standby's renewal moves the store's "
            "files: run 'canopy backup' as the user Canopy runs as, or let this user read it as it reads the store's "
            "files; nothing was copied")


def waiting_renewal(directory: str) -> int | None:
    """Mark a renewal a backup refused as waiting (``reading_files`` gives way to it): a descriptor holding an
    exclusive flock on ``WAITING_NAME`` until closed (or the process ends); None while another holds it; OSError
    when the disk refuses it (the store says so, limited: it tries again at every tick)."""
    return _marked(os.path.join(directory, WAITING_NAME))


def readable_marks(directory: str, store: str) -> list[str]:
    """This user's marks in ``directory`` given the read bits the store's file ``store`` has, which they lack (made
    0640 before stop 50: a backup by a user who reads the store but is not Canopy's was refused on them for good, the
    mode applying only when a mark is made); the marks changed. Best effort: one that cannot be changed stays."""
    try:
        wanted = stat.S_IMODE(os.stat(store).st_mode) & 0o444
    except OSError:
        return []
    changed = []
    for path in (os.path.join(directory, WAITING_NAME), os.path.join(directory, MOVER_NAME)):
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and wanted & ~st.st_mode:
                os.chmod(path, stat.S_IMODE(st.st_mode) | wanted)
                changed.append(path)
        except OSError:
            pass
    return changed


def _marked(path: str) -> int | None:
    """A descriptor holding an exclusive flock on the file ``path`` (made if missing); None while another holds it."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, MARK_MODE))
    return _flocked(path, fcntl.LOCK_EX, False)


def _held(path: str) -> bool:
    """Whether a process holds the flock of the mark ``path`` (a file left without it says nothing)."""
    try:
        fd = _flocked(path, fcntl.LOCK_SH, False)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


class LocksRefused(FilesRefused):
    """The file system refused a flock outright (not held by another: ENOLCK of an NFS mount without its lock service,
    EBADF of an emulation): said naming the file system and what to do (controller/storedisk.py), never as a bare
    errno (before stop 48, a standby's every renewal was refused with one)."""


def _flocked(path: str, operation: int, directory: bool = True) -> int | None:
    """A descriptor of ``path`` (a directory unless ``directory`` is false) holding ``flock(operation)``, or None
    when the other side holds it. A file is opened for writing when the lock is exclusive: NFS emulates flock on files
    with byte-range locks, and an exclusive one needs a descriptor open for writing (before, EBADF there)."""
    flags = os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDWR if operation == fcntl.LOCK_EX else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        raise LocksRefused(exc.errno, refused_lock(path, exc)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def refused_lock(path: str, exc: OSError, sides: str = "'canopy backup' and an HA standby's renewal") -> str:
    """One line for a flock on ``path`` the file system refused: what cannot exclude each other there (``sides``) and
    what to do (storeguard ``lock`` too)."""
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    return (f"the file system of {directory} refused a flock on {os.path.basename(path)} ({exc.strerror}), so {sides} "
            "cannot exclude each other there: "
            + (network_warning(directory) or "keep data_dir on a local file system (docs/operations.md)"))


class FileWatch:
    """The identity of the store's file at open; ``check`` raises ``Moved`` once the path named another file or none,
    after saving a copy of the open store the first time (``save``: the open connection's contents to a file) and
    moving its write-ahead log aside. The store's file coming back does not end it: its log is no longer beside it.
    A save that failed (the disk full, the directory gone) is tried again at a later check, at most every
    ``SAVE_AGAIN`` seconds, until one succeeds: the open connection is then the only copy of what was acknowledged.
    Also once the file changed in place (``overwritten``: nothing saved), its log went (saved), or another connection
    committed to it (``shared``: saved, the log left), as the module's docstring says."""

    def __init__(self, path: str, save, version=lambda: 0, clock=time.monotonic):
        self.path = path
        self.opened = identity(path)
        self.log_opened = identity(path + "-wal")
        self.save = save
        self.version = version  # () -> PRAGMA data_version of the store's connection: other connections' commits
        self.seen = version()
        self.stamp = contents(path)  # as the store's last write transaction left it
        self.clock = clock
        self.gone: str | None = None  # how the file went ("deleted", "replaced by another file"), once it did
        self.overwritten = False  # changed in place: no copy of the open store is whole, and none is checkpointed
        self.shared = False  # another connection committed to it: the file and its log are whole, and left in place
        self.saved: str | None = None  # where the open store was saved then
        self.tried: float | None = None  # when saving it was last tried (``clock``), while none succeeded
        self.retried = False  # a renewal tried it again (``kept``): at once the first time, then paced
        self.made: list[str] = []  # the files it saved or set aside (a standby's renewal keeps the newest few)

    def wrote(self) -> None:
        """The store's write transaction ended (its checkpoint may have written the file): note the file as it left
        it. The caller holds the store's lock."""
        if self.gone is None:
            self.stamp = contents(self.path)

    def check(self, last: bool = False) -> None:
        """Moved once the path named another file or none at any check: for good, as the log was moved aside.
        ``last``: the store closes, so a save that failed is tried again at once (``closing``)."""
        if self.gone is None:
            self.gone = self._changed()
            if self.gone is None:
                return
            if not self.overwritten:  # its pages are still the store's: a copy through the connection is whole
                self.saved = self._save()
            if not self.shared:  # else the log is the file's own (the other's commits are in it): left
                self._set_aside()
            note(log, logging.ERROR, "the store %s was %s while this controller ran: every write is refused from now "
                 "on, so that none is acknowledged and then lost; %s", self.path, self.gone, self.advice())
        elif self.saved is None and not self.overwritten and (last or self.clock() - self.tried >= SAVE_AGAIN):
            self.saved = self._save()
            if self.saved:
                note(log, logging.ERROR, "the store %s: %s", self.path, self.advice())
        raise Moved(errno.ESTALE, f"its file was {self.gone} while the controller ran; {self.advice()}")

    def _changed(self) -> str | None:
        """How the store's file changed since it was opened or last written by the store, or None. One ``stat`` for
        both questions: with two, a file deleted (or replaced) between them was taken for one overwritten in place,
        and nothing was saved (a standby's tick at load: tests/unit/test_store_file.py)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        now = None if st is None else (st.st_dev, st.st_ino)
        if now != self.opened:
            return "deleted" if now is None else "replaced by another file"
        if self._committed_by_another():  # first: its own checkpoint writes the file as an overwrite would
            self.shared = True
            return "written to by another process (another SQLite connection committed to it)"
        if (st.st_size, st.st_mtime_ns) != self.stamp:
            self.overwritten = True
            return "overwritten in place (its size or modification time changed outside the store's own writes)"
        if identity(self.path + "-wal") != self.log_opened:
            return f"left without its write-ahead log ({self.path}-wal deleted or replaced)"
        return None

    def _committed_by_another(self) -> bool:
        """Whether another connection committed to the file (``PRAGMA data_version``); False when SQLite cannot read
        it (a file put there that is no database: its size or time tells)."""
        try:
            return self.version() != self.seen
        except sqlite3.Error:
            return False

    def closing(self) -> None:
        """The store closes (the controller stops): a file that went since the last write, which no write noticed,
        or one whose save failed, is saved now, as its contents go with the open connection."""
        try:
            self.check(last=True)
        except Moved:
            pass

    def advice(self) -> str:
        if self.overwritten:
            return ("what it held cannot be copied from this controller (it reads through the file put there), its "
                    f"write-ahead log is kept as {self.path}.gone-<time>-wal: take a 'canopy backup' on the HA peer "
                    "(or use a backup), stop this controller and 'canopy restore' it (docs/store.md)")
        if self.saved and self.shared:
            return (f"stop that process, then restart this controller: it reads the store as it is then, the other's "
                    f"writes included (a copy as this controller found it is in {self.saved}; docs/store.md)")
        if self.saved:
            return (f"what it held is saved in {self.saved}: stop the controller, then 'canopy restore {self.saved}'"
                    " (docs/store.md)")
        return (f"it could not be saved beside it: free space or make its directory again, before the controller stops "
                f"(a write, at most every {SAVE_AGAIN:.0f} s, and the stop try again), or restore a backup (docs/store.md)")

    def _set_aside(self) -> None:
        """Move the write-ahead log and its index away from the names the path's next opener would read, together:
        one stem (before, each claimed its own, so that a name taken for one of them, ``gone-<time>-wal`` of an
        earlier renewal within the second, gave the two different stems, the index joining another's log)."""
        try:
            self.made += set_aside(self.path, "gone", ("-wal", "-shm"))
        except OSError as exc:
            note(log, logging.ERROR, "the store %s: could not move its write-ahead log and index aside: %s", self.path,
                 exc)

    def kept(self) -> bool:
        """Before the open connection goes while its file is gone (an HA standby's renewal: Store.renew): whether what
        it held is saved (or cannot be: overwritten in place). A save that failed is tried again here, at once the
        first time (the renewal would otherwise close the only copy unsaved), then at most every ``SAVE_AGAIN``."""
        due = not self.retried or self.clock() - self.tried >= SAVE_AGAIN
        if self.saved is None and not self.overwritten and due:
            self.retried = True
            self.saved = self._save()
            if self.saved:
                note(log, logging.ERROR, "the store %s: %s", self.path, self.advice())
        return self.saved is not None or self.overwritten

    def _save(self) -> str | None:
        self.tried = self.clock()
        try:
            dest = claim(f"{self.path}.saved-{stamp()}", siblings=DATABASE_FILES)  # (a log there: SQLite deletes it)
        except OSError as exc:
            note(log, logging.ERROR, "the store %s: could not save what it holds beside it: %s", self.path, exc)
            return None
        try:
            copy_into(self.save, dest)
        except (sqlite3.Error, OSError) as exc:
            note(log, logging.ERROR, "the store %s: could not save what it holds to %s: %s", self.path, dest, exc)
            try:
                os.remove(dest)
            except OSError:
                pass
            return None
        self.made.append(dest)
        return dest
