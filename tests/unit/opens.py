"""Counting the opens of one file, for the tests that a secret file which is a FIFO is refused without being opened:
Linux's inotify reports every open of the watched inode (``IN_OPEN``, sent by the kernel in the open call itself,
before it returns), and never a stat. The standard library has no inotify: its three libc calls through ctypes.
Watch a node of the test's own (a FIFO): an inode another process opens too (the system's /dev/null) would count its
opens as well, and a device node of the test's own needs root (mknod), which the unit tests do not have. The
unpatched os reads the events: eventlet's (after a test, or ``canopy run``, monkey-patched os) waits on its hub for
an event instead of saying there is none yet."""

import contextlib
import ctypes
import os
import struct

from eventlet import patcher

IN_OPEN = 0x20
IN_NONBLOCK = os.O_NONBLOCK
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name: none for a watched file)
_libc = ctypes.CDLL(None, use_errno=True)
_os = patcher.original("os")


@contextlib.contextmanager
def opens_of(path):
    """Yields a function returning how many times ``path``'s inode was opened since the block began (until it ended,
    once it has)."""
    fd = _libc.inotify_init1(IN_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    seen, watching = [0], [True]

    def count() -> int:
        while watching[0]:  # every event queued so far: the kernel queued each before its open returned
            try:
                data = _os.read(fd, 4096)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                seen[0] += bool(mask & IN_OPEN)
                offset += _EVENT.size + size
        return seen[0]

    try:
        if _libc.inotify_add_watch(fd, os.fsencode(path), IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        yield count
    finally:
        count()
        watching[0] = False
        _os.close(fd)
