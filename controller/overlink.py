"""Runtime state an active hands to its HA standby beside the store's stream (docs/ha.md): the steps the duplicate
MAC flags (bgp/dupkeep.py) and the external gateways' resolved MACs (controller/gatewaykeep.py) share.

Neither is policy: it is never a write to confirm, never refused for a standby away, never numbered in the change
history. The active sends its whole table as one message, ``{"t": MESSAGE, FIELD: [...]}``, whenever it changed and
again on each new connection of the link (looked at on each of the standby's heartbeats, ``offer``: from there at
most one table per heartbeat interval; the duplicate MAC flags also offer theirs after each programming pass that
changed them, bgp/dupkeep.py ``sync``); the standby takes the active's. A node that is not the active forgets what
it sent: once it is the active again it sends anew (the other may have changed its own meanwhile and not sent it).

A subclass says what it sends (``MESSAGE``, ``FIELD``, ``rows``), what names the table's version (``version``: a
table is sent once per version and link connection), and what a standby does with a table (``receive``) and with
the active's heartbeats (``heartbeat``); ``counts`` is what ``GET /v1/ha`` shows of it (``runtime``). A table
refused whole (``Refused``: malformed or hostile) changes nothing and is counted and warned of (``take_or_refuse``);
``table_of`` and ``entry_of`` are the checks every table's entries share.
"""

from __future__ import annotations

import logging

from controller.loglimit import warn_limited

log = logging.getLogger("canopy.ha")
HEARTBEATS = ("hb", "hello")  # the peer's heartbeat messages (controller/ha.py)
SHOWN = 3  # unknown fields of an entry named in its refusal (the rest counted: a hostile peer's line stays bounded)
MAX_NAME = 255  # characters of a name in an entry (a vport, a switch, a port, an external network)


class Refused(ValueError):
    """Why a table from the HA peer is refused whole (the entry, the field, the reason)."""


def table_of(field: str, rows, most: int, refused=Refused) -> list:
    """``rows``, the message's table under ``field``, or ``refused`` (its own Refused) when it is not a list of at
    most ``most`` entries (what an active sends)."""
    if not isinstance(rows, list):
        raise refused(f"{field}: must be a list, not {type(rows).__name__}")
    if len(rows) > most:
        raise refused(f"{field}: {len(rows)} entries, more than the {most} an active sends")
    return rows


def entry_of(where: str, row, keys: frozenset, names=(), refused=Refused) -> dict:
    """``row`` (the entry at ``where``), a map of exactly the fields ``keys``, those of ``names`` strings of 1-MAX_NAME
    characters; else ``refused`` naming what is missing, the first ``SHOWN`` unknown fields (shortened) and how many,
    or the field and why."""
    if not isinstance(row, dict):
        raise refused(f"{where}: must be a map, not {type(row).__name__}")
    if set(row) != keys:
        missing, extra = sorted(keys - set(row)), sorted(map(repr, set(row) - keys))
        unknown = ", ".join(f"{name:.40}" for name in extra[:SHOWN]) + \
            (f", ... ({len(extra)} in all)" if len(extra) > SHOWN else "")
        raise refused(f"{where}: " + "; ".join(filter(None, (missing and f"missing {', '.join(missing)}",
                                                             extra and f"unknown {unknown}"))))
    for name in names:
        value = row[name]
        if not (isinstance(value, str) and 0 < len(value) <= MAX_NAME):
            raise refused(f"{where}.{name}: must be a string of 1-{MAX_NAME} characters, not {value!r:.80}")
    return row


class OverLink:
    MESSAGE = ""  # the message's "t"
    FIELD = ""  # the key of its table

    def __init__(self):
        self.link = None  # the HA link (controller.pairlink.PairLink) once paired: ``pair_with``
        self._sent = None  # the version last sent (``version``), None: nothing sent since this node was the active

    def pair_with(self, pair) -> None:
        """Send over ``pair``'s link (controller.ha.Pair), hear its peer's messages, and show in its ``status``
        (``runtime``, under ``MESSAGE``: ``counts``)."""
        self.link = pair.link
        pair.listeners.append(self.on_peer_message)
        pair.runtime[self.MESSAGE] = self.counts

    def on_peer_message(self, msg: dict, role: str) -> None:
        """Every message from the HA peer (controller.ha.Pair.listeners): an active offers its table on each
        heartbeat (sent once per version); any other node takes the active's."""
        kind = msg.get("t")
        if role == "active":
            if kind in HEARTBEATS:
                self.offer()
            return
        self._sent = None  # sent anew once this node is the active again, whatever it sent before
        if kind in HEARTBEATS:
            self.heartbeat()
        elif kind == self.MESSAGE:
            self.receive(msg.get(self.FIELD))

    def take_or_refuse(self, rows, parse, take, what: str) -> None:
        """Not the active: ``take(parse(rows))``, or, when ``parse`` refuses the table (``Refused``), nothing changed:
        counted (``refused``) and warned of (``what`` names the table), at most once a period (controller/loglimit)."""
        try:
            table = parse(rows)
        except Refused as exc:
            self.refused += 1
            warn_limited(log, (self.MESSAGE, "refused"), "%s from the HA peer refused, nothing changed (%d refused so "
                         "far): %s", what, self.refused, exc)
            return
        take(table)

    def offer(self) -> None:
        """The table to the standby if its version changed (or the link reconnected) since it was last sent, and
        ``hold`` does not keep it back."""
        link = self.link
        if link is None:
            return
        version = self.version(link)
        if version == self._sent or self.hold(version, self._sent):
            return
        if link.send({"t": self.MESSAGE, self.FIELD: self.rows()}):
            self._sent = version
            self.sent()

    # ------------------------------------------------------------------ what a subclass says
    def version(self, link) -> tuple:
        """What names the table to send now (with ``link.out_epoch``: a new connection sends it again)."""
        raise NotImplementedError

    def rows(self) -> list:
        """The table to send."""
        raise NotImplementedError

    def receive(self, rows) -> None:
        """Not the active: the active's table (the message's ``FIELD``, unchecked)."""
        raise NotImplementedError

    def counts(self) -> dict:
        """What ``GET /v1/ha`` shows of it (``runtime``, under ``MESSAGE``): what was refused or not kept."""
        raise NotImplementedError

    def hold(self, version: tuple, last: tuple | None) -> bool:
        """True: do not send ``version`` yet (``last``: the version sent last, if any)."""
        return False

    def sent(self) -> None:
        """After a table went out."""

    def heartbeat(self) -> None:
        """Not the active: at each of the active's heartbeats."""
