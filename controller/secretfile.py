"""Reading a secret from a file (the HA link secret, the REST token, the metadata agent's shared secret and token)
only when the file is private.

A secret other users can read is no secret: like ssh with a private key and PostgreSQL with its TLS key, Canopy
refuses such a file at start and at a reload (the HA secret also in ``check-settings``), naming the file, its mode and the fix,
instead of using it silently. The rule is PostgreSQL's:

- other users (the mode's last digit): no access, ever (so a 0644 file, a Kubernetes secret's default, is refused);
- the group: may read it only when root owns the file: root handing a secret to a service's group, as
  docs/deploy.md does (0640 root:10001 for the container's user, who does not own it). A file a user owns and
  shares with a group is refused: its owner needs no group to read it;
- the owner: anything (0600 and 0400: what the README's and ha.md's commands make, and the token Canopy generates).

A REST token (``read_token``, ``token_problem``) travels in an HTTP header: it is printable ASCII without spaces,
and a token file holds the token and at most one trailing newline (what ``echo TOKEN >file`` and Canopy's generated
file hold); a NUL, a second line or spaces are refused, never cut off silently.

This module is also the Neutron driver's (networking_canopy/networking_canopy/secretfile.py is a link to it: the
driver runs in Neutron's environment, where Canopy is not installed), so it imports nothing of Canopy's.
"""

from __future__ import annotations

import os
import stat


class NotPrivate(ValueError):
    """The file is readable by more users than the secret is for; the message says how to fix it."""


class BadToken(ValueError):
    """A REST token that cannot be sent in an HTTP header as it is; the message says what is wrong."""


def read_private(path: str) -> str:
    """The stripped text of ``path``; OSError when it cannot be read, NotPrivate when it is too open."""
    return _read(path).strip()


def read_token(path: str, reader: str = "Canopy") -> str:
    """The REST token in the private file ``path``: its whole text but one trailing newline. OSError when it cannot
    be read, NotPrivate when it is too open (for ``reader``, the service that reads it), BadToken (naming the file)
    when the text is not one token."""
    token = token_in(_read(path, reader))
    problem = token_problem(token)
    if problem:
        raise BadToken(f"{path}: the token in it {problem} (a token file holds the token and at most one newline)")
    return token


def token_in(text: str) -> str:
    """The token a token file's ``text`` holds: all of it but one trailing newline (then checked by token_problem)."""
    return text[:-1] if text.endswith("\n") else text


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a REST token, or None: it must be 1 or more printable ASCII characters, no space."""
    if not token:
        return "is empty"
    for i, char in enumerate(token):
        if not "!" <= char <= "~":
            return (f"holds {char!r} at character {i + 1}: a token is printable ASCII without spaces "
                    "(it is sent in an HTTP Authorization header)")
    return None


def _read(path: str, reader: str = "Canopy") -> str:
    with open(path, encoding="utf-8") as fh:
        problem = too_open(os.fstat(fh.fileno()), reader)  # the file that was opened, not one put there meanwhile
        if problem:
            raise NotPrivate(f"{path} {problem}")
        return fh.read()


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
