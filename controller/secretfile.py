"""Reading a secret from the file a setting names (the HA link secret, the REST tokens, the metadata agent's shared
secret and token, the Neutron driver's token): one reader, ``read_text`` (with ``read_token`` and ``read_secret`` on
top), and one error, ``Unusable``, that names the setting, the file and why it cannot be used.

A secret other users can read is no secret: like ssh with a private key and PostgreSQL with its TLS key, Canopy
refuses such a file at start and at a reload (and ``check-settings`` does), naming the file, its mode and the fix,
instead of using it silently. The rule is PostgreSQL's:

- other users (the mode's last digit): no access, ever (so a 0644 file, a Kubernetes secret's default, is refused);
- the group: may read it only when root owns the file: root handing a secret to a service's group, as
  docs/deploy.md does (0640 root:10001 for the container's user, who does not own it). A file a user owns and
  shares with a group is refused: its owner needs no group to read it;
- the owner: anything (0600 and 0400: what the README's and ha.md's commands make, and the token Canopy generates).

A secret file is a regular file of at most ``MAX_BYTES``, UTF-8 text. It is read at start and at every SIGHUP, on
the controller's event loop: a FIFO, a device or a socket could block the open or the read, or never end, and opening
a device can itself do something (a tape rewinds, a modem line is raised), so stat (following links, as open does)
refuses what is no regular file without opening it; the file is then opened without blocking and refused unless fstat
says it is a regular file (another file may have been put at the path between the two); a larger one is refused
before it is read (a secret is tens of bytes: a larger file is the wrong one). A secret (``read_secret``) is one
line, white space around it aside.

A REST token (``read_token``, ``token_problem``) travels in an HTTP header: it is printable ASCII without spaces,
and a token file holds the token and at most one line end, LF or CRLF (what ``echo TOKEN >file``, Canopy's
generated file and an editor on Windows write); a NUL, a CR elsewhere, a second line or spaces are refused, never
cut off silently.

``open_regular`` is that stat, non-blocking open and fstat for any file a setting names that must be a regular file:
the duplicate MAC flags (bgp/dupkeep.py) too. A library that opens a path itself (ssl's loaders: the TLS key and
certificates of controller/tls.py, the CA file of the CLI, the metadata agent and the Neutron driver) is given
``checked_path``'s: the file checked, not whatever is at the path by the time the library opens it.

This module is also the Neutron driver's (networking_canopy/networking_canopy/secretfile.py is a link to it: the
driver runs in Neutron's environment, where Canopy is not installed), so it imports nothing of Canopy's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

MAX_BYTES = 64 * 1024
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class NotRegular(OSError):
    """The file at ``path`` is ``kind`` (a FIFO, a directory, ...), not a regular file (``open_regular``)."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path, self.kind = path, kind


class Unusable(ValueError):
    """A secret file that the setting ``key`` names cannot be used: ``str()`` is ``KEY: PROBLEM``, and ``problem``
    names the file and why (without the key, for a caller that adds file and line). ``denied`` is True when this
    user was denied opening it (``check-settings`` may run as another user than the service that reads it)."""

    def __init__(self, key: str, problem: str, denied: bool = False):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem, self.denied = key, problem, denied


def read_token(key: str, path: str, reader: str = "Canopy") -> str:
    """The REST token in the file ``path`` that the setting ``key`` names: its text but one trailing LF or CRLF
    (``token_in``), which must be one token (``token_problem``). Unusable otherwise (``read_text``)."""
    token = token_in(read_text(key, path, reader))
    problem = token_problem(token)
    if problem:
        raise Unusable(key, f"{path}: the token in it {problem} (a token file holds the token and at most one line "
                            "end, LF or CRLF)")
    return token


def read_secret(key: str, path: str, reader: str = "Canopy") -> str:
    """The secret in the file ``path`` that the setting ``key`` names: its text without the white space around it.
    Unusable when there is none, when it spans more than one line (a secret is one line: Nova's shared secret is
    one config value, the HA secret what ``openssl rand -hex 32`` prints; a second line is the wrong file or a paste
    gone wrong, never part of the secret), or as ``read_text``."""
    secret = read_text(key, path, reader).strip()
    if not secret:
        raise Unusable(key, f"{path} is empty")
    lines = len(secret.splitlines())
    if lines > 1:
        raise Unusable(key, f"{path} holds {lines} lines: a secret file holds the secret on one line (a line break "
                            "inside is no part of a secret: is it the file you meant?)")
    return secret


def read_text(key: str, path: str, reader: str = "Canopy") -> str:
    """The whole text of the file ``path`` that the setting ``key`` names, read by the service ``reader``. Raises
    Unusable naming the key, the file and why: it does not exist, cannot be opened or read, is no regular file, is
    larger than MAX_BYTES, is too open (``too_open``) or is not UTF-8. Never opens a FIFO, a device or a socket (stat
    first), and never blocks on one put at the path between that stat and the open."""
    try:
        fd = open_regular(path, lambda st: _refuse(key, path, st, reader))
    except OSError as exc:
        raise _unopened(key, path, exc) from None
    try:
        data = _read_upto(fd, MAX_BYTES + 1)
    except OSError as exc:
        raise Unusable(key, f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:  # it grew after fstat
        raise Unusable(key, f"{path} {_too_large(len(data))}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unusable(key, f"{path} is not UTF-8 text (byte {exc.start + 1} is {data[exc.start]:#04x})") from None


def open_regular(path: str, refuse=None) -> int:
    """A descriptor of the file at ``path`` opened read-only, which the caller closes. ``refuse(stat_result)`` raises
    for a file that may not be opened; by default NotRegular (an OSError) for what is no regular file. Never opens a
    FIFO, a device or a socket (stat first, following links as open does: opening a device can itself do something,
    a FIFO's open waits for a writer), and never blocks on one put at the path between that stat and the open: the
    open does not wait, and ``refuse`` then looks at the file that was opened (fstat). OSError as os.open raises it."""
    refuse = refuse or (lambda st: _regular(path, st))
    refuse(os.stat(path))  # what the path names now: no FIFO or device is opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        refuse(os.fstat(fd))  # the file opened: another may have been put at the path since the stat
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def checked_path(path: str):
    """A path to give a library that opens a path itself (ssl's loaders), valid within the block: ``/proc/self/fd/N``
    of the regular file at ``path`` opened by ``open_regular`` (OSError, NotRegular, as it raises them). Opening it
    opens that same file: one put at ``path`` after the check (a FIFO that would block the library's open, another
    certificate) is not what the library reads. OSError naming /proc when it is not there to say so."""
    fd = open_regular(path)
    try:
        proc = f"/proc/self/fd/{fd}"
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(proc))
        except FileNotFoundError:
            same = False
        if not same:
            raise OSError(errno.ENOENT, f"{proc} does not name it (is /proc mounted?): it is needed to load the file "
                                        "that was checked, and no other put at its path since")
        yield proc
    finally:
        os.close(fd)


def token_in(text: str) -> str:
    """The token a token file's ``text`` holds: all of it but one trailing LF or CRLF (then checked by
    token_problem)."""
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            return text[:-len(end)]
    return text


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a REST token, or None: it must be 1 or more printable ASCII characters, no space."""
    if not token:
        return "is empty"
    for i, char in enumerate(token):
        if not "!" <= char <= "~":
            return (f"holds {char!r} at character {i + 1}: a token is printable ASCII without spaces "
                    "(it is sent in an HTTP Authorization header)")
    return None


def file_problem(st: os.stat_result, reader: str = "Canopy") -> str | None:
    """Why a file with this status cannot hold a secret ``reader`` (the service) reads, or None: it is no regular
    file, is larger than MAX_BYTES or is too open (``too_open``)."""
    kind = _kind(st)
    if kind:
        return f"is {kind}, not a regular file: a secret file must be one{blocking_note(kind, reader)}"
    if st.st_size > MAX_BYTES:
        return _too_large(st.st_size)
    return too_open(st, reader)


def too_open(st: os.stat_result, reader: str = "Canopy") -> str | None:
    """Why a file with this status is too open to hold a secret ``reader`` (the service) reads, or None."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        return (f"has mode {mode:04o}: every user of the host can read or change it; make it private "
                f"(chmod 600, or 640 owned by root with the group of the user {reader} runs as)")
    if mode & 0o070 and st.st_uid != 0:
        return (f"has mode {mode:04o}: its group can read it, and only a file root owns may be shared with a "
                f"group; chmod 600 it (or chown root and chgrp it to the group of the user {reader} runs as)")
    return None


def blocking_note(kind: str, reader: str = "Canopy") -> str:
    """Why a file of this ``kind`` (NotRegular.kind) is not read, for an error message: "" for a directory."""
    return "" if kind == "a directory" else f" (reading {kind} could block {reader} or never end)"


def _kind(st: os.stat_result) -> str | None:
    """What a file with this status is when it is no regular file ("a FIFO", "a directory", ...), else None."""
    if stat.S_ISREG(st.st_mode):
        return None
    return next((kind for is_kind, kind in _KINDS if is_kind(st.st_mode)), "something else")


def _regular(path: str, st: os.stat_result) -> None:
    kind = _kind(st)
    if kind:
        raise NotRegular(path, kind)


def _refuse(key: str, path: str, st: os.stat_result, reader: str) -> None:
    """Raise Unusable when a file with this status cannot hold a secret (``file_problem``)."""
    problem = file_problem(st, reader)
    if problem:
        raise Unusable(key, f"{path} {problem}")


def _unopened(key: str, path: str, exc: OSError) -> Unusable:
    """Why ``path`` could not be looked at or opened (``exc``): it does not exist, or the error, ``denied`` when it is
    this user's (EACCES, EPERM)."""
    if isinstance(exc, FileNotFoundError):
        return Unusable(key, f"{path} does not exist")
    return Unusable(key, f"cannot read {path}: {exc.strerror or exc}", denied=exc.errno in (errno.EACCES, errno.EPERM))


def _too_large(size: int) -> str:
    return (f"holds {size} bytes: a secret file holds one secret, at most {MAX_BYTES} bytes (is it the file you "
            "meant?)")


def _read_upto(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes of ``fd`` from where it is: fewer only at its end."""
    chunks, size = [], 0
    while size < limit:  # each turn reads at least one byte, or ends
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
