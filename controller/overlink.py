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
the active's heartbeats (``heartbeat``); ``counts`` is what ``GET /v1/ha`` shows of it (``runtime``).
"""

from __future__ import annotations

HEARTBEATS = ("hb", "hello")  # the peer's heartbeat messages (controller/ha.py)


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
