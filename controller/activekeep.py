"""The active ports of live migrations in flight (controller/state_activation.py), handed to the HA standby beside
the store's stream (controller/overlink.py), so that a takeover in the middle of a migration keeps the port the VM's
first packet made active (a standby hears no packet-in: Open vSwitch sends them to its master only).

- **The active** sends its whole table, ``{"t": "active_ports", "ports": [{"vport", "switch", "port"}]}``, whenever
  it changed (``State.active_version``; looked at on each of the standby's heartbeats), again on each new connection
  of the link, and once it is the active again. At most ``KEPT`` entries (the rest counted, not sent).
- **The standby** takes the table as its own record (``State.take_active``): the vports whose record changed are
  re-located, so its View and flows are the active's; it stores it in its own meta as it stores its own records.
- **Refused**: a message whose table is not a list of at most ``KEPT`` well-formed entries (the three fields, no
  other; strings of 1-255 characters; no vport twice) is refused whole with one warning naming the entry, the field
  and why, and counted (``refused``, GET /v1/ha): nothing changes.
"""

from __future__ import annotations

from controller import overlink
from controller.overlink import OverLink

MESSAGE = "active_ports"
KEPT = 65536  # entries sent and held (~100 bytes each): vports whose live migration is in flight
ROW_KEYS = frozenset(("vport", "switch", "port"))


class Refused(overlink.Refused):
    """Why an active_ports message is refused (the entry, the field, the reason)."""


class ActiveKeeper(OverLink):
    MESSAGE, FIELD = MESSAGE, "ports"

    def __init__(self, state):
        super().__init__()
        self.state = state
        self.refused = 0
        self.not_kept = 0

    def version(self, link) -> tuple:
        return self.state.active_version, link.out_epoch

    def rows(self) -> list[dict]:
        items = sorted(self.state.activated.items())
        self.not_kept = max(0, len(items) - KEPT)
        return [{"vport": vid, "switch": session, "port": port} for vid, (session, port) in items[:KEPT]]

    def receive(self, rows) -> None:
        self.take_or_refuse(rows, parse, self.state.take_active, "live migrations' active ports")

    def counts(self) -> dict:
        return {"refused": self.refused, "not_kept": self.not_kept}


def parse(rows) -> dict[str, tuple[str, str]]:
    """{vport id: (switch, port)} of an ``active_ports`` message; raises Refused naming the first entry that is not
    well-formed (the whole message is refused)."""
    out = {}
    for i, row in enumerate(overlink.table_of("ports", rows, KEPT, Refused)):
        where = f"ports[{i}]"
        overlink.entry_of(where, row, ROW_KEYS, ("vport", "switch", "port"), Refused)
        if row["vport"] in out:
            raise Refused(f"{where}: vport {row['vport']!r} listed twice")
        out[row["vport"]] = (row["switch"], row["port"])
    return out
