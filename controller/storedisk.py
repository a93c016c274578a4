"""What the data directory's file system gives the store (controller/store.py, storefile.py): whether it is a network
file system, on which SQLite's write-ahead log and the flocks between ``canopy backup`` and an HA standby's renewal are
not what they are on a local one (docs/operations.md "The data directory's file system").

SQLite's WAL mode keeps its index in shared memory (``canopy.db-shm``, mapped by every connection): it needs every
process using the database on one host, and its own documentation says WAL does not work over a network file system.
On NFS, Linux emulates ``flock`` on regular files with byte-range locks held by the server (an exclusive one needs the
file open for writing), and a mount without its lock service refuses them (ENOLCK). Canopy says so at start (a
warning line) and in ``GET /v1/status`` ``store.file_system``; a flock refused is reported naming the file system and
what to do (storefile ``LocksRefused``), never as an unexplained I/O error."""

from __future__ import annotations

import os
import re

MOUNTINFO = "/proc/self/mountinfo"
# file system types that are not local disks (as /proc/self/mountinfo names them)
NETWORK = frozenset(("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs",
                     "sshfs", "9p", "afs", "lustre", "gpfs", "fuse.s3fs", "davfs", "fuse.davfs2", "ocfs2", "gfs2"))


def file_system(path: str, mountinfo: str | None = None) -> tuple[str, str] | None:
    """(mount point, file system type) of the mount holding ``path`` (the longest mount point that is a prefix of its
    real path), or None when the mount table cannot be read. Compared as bytes, as the kernel writes them (a name in
    any encoding; ``os.fsdecode`` of them returned)."""
    try:
        with open(mountinfo or MOUNTINFO, "rb") as fh:
            lines = fh.read().split(b"\n")  # (a name's newline is escaped, its carriage return is not)
    except OSError:
        return None
    real, best = os.fsencode(os.path.realpath(path)), None
    for line in lines:
        fields, _, after = line.partition(b" - ")
        fields, after = fields.split(), after.split()
        if len(fields) < 5 or not after:
            continue
        point = _unescaped(fields[4])
        holds = real == point or real.startswith(point.rstrip(b"/") + b"/")
        if holds and (best is None or len(point) >= len(best[0])):
            best = (point, after[0])
    return None if best is None else (os.fsdecode(best[0]), os.fsdecode(best[1]))


# a byte mountinfo escapes (space, tab, newline, backslash): ``\\040``; ``\\400`` and above are no byte (a line the
# kernel would not write: left as it is, not a ValueError at start)
_ESCAPE = re.compile(rb"\\([0-3][0-7]{2})")


def _unescaped(field: bytes) -> bytes:
    """A mountinfo path with its octal escapes undone: the mount point's bytes (before stop 49: undone as Latin-1
    text, so a name beyond ASCII beside an escape was garbled)."""
    return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 8),)), field) if b"\\" in field else field


def network_warning(data_dir: str, mountinfo: str | None = None) -> str | None:
    """One line for the operator when ``data_dir`` is on a network file system; None on a local one (or unknown)."""
    found = file_system(data_dir, mountinfo)
    if found is None or found[1] not in NETWORK:
        return None
    point, kind = found
    return (f"data_dir {data_dir} is on a network file system ({kind} at {point}): SQLite's write-ahead log needs a "
            "local one (its index is shared memory), and the locks between 'canopy backup' and an HA standby's "
            "renewal may be emulated or refused there; keep data_dir on a local file system (docs/operations.md)")
