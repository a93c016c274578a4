"""What one switch's reconciler reports: counts, flows and hit counters for REST and metrics.

``SwitchReport`` is the read side of ``openflow.reconciler.SwitchReconciler`` (which inherits it): it reads the
reconciler's records (``_book``, ``_rejected``, the groups) and asks the switch for counters, and never changes what
is desired or installed. ``status()`` and ``flows()`` run in green threads of their own and may pause (``pacer``) on
copies of the records.
"""

from __future__ import annotations

from controller.pacer import Pacer, collector_paused
from openflow import decode, meters, ryumsg
from openflow.flows import Flow, Owner, owner_kind_of, render_flow
from openflow.installed import listing_order, paced
from openflow.pacedsort import sorted_paced
from openflow.pipeline import BY_ID

#: owner kinds whose flows make an object "programmed" (owner_programmed): a vport's own and its ACL chain's
PROGRAMMED_KINDS = ("vport", "acl_port", "subnet", "domain")
OPENFLOW_NAMES = {4: "1.3", 5: "1.4"}


class SwitchReport:
    """The reconciler's counts and listings (module docstring)."""

    def status(self, tick=None) -> dict:
        """Counts for REST: desired, installed, pending (still to add or remove), rejected, kept (installed flows
        Canopy would delete but keeps, ``keep_stale``: not pending, so a switch holding them is not behind); groups
        alike. May pause (counting 10,000 changed owners is long), so call it from a green thread of its own:
        ``tick`` is the reader's (a REST answer's pacer, a scrape's), so that a read waits for the readers' turn, not
        behind the reconcilers' lane (the reconciler's own ``pacer``, the default: controller/rest/lane.py); the count
        is made on copies of the records, as they were when it began.

        ``state``: connected, reading (read-back), waiting (read back, no desired state handed to it yet), syncing (a
        change set in flight), in_sync, standby (held: an HA standby), not_master (the switch refused changes), error
        (a round failed: read back again after a pause) or stopped; ``sent`` counts messages by kind; ``meters``: the
        meters of the flows to the controller (openflow/meters.py): ``supported`` None until read, False on a switch
        without meters (``warning`` says why: its flows to the controller are not metered); ``packet_ins``: the
        packets the switch sent to the controller on this connection, by meter kind."""
        with collector_paused():  # a count's temporaries (a plan of the changed owners) are freed before it ends
            desired, installed, pending, kept = self._book.tally(tick or self.pacer.tick, self._keep)
        return {
            "datapath": self.dpid, "openflow": OPENFLOW_NAMES.get(self.ofp.OFP_VERSION, "?"),
            "mode": "bundle" if self._bundles else "barrier", "state": self.state,
            "desired": desired, "installed": installed, "pending": pending,
            "rejected": len(self._rejected), "kept": kept,
            "groups": {"desired": len(self._desired_groups), "installed": len(self._installed_groups),
                       "rejected": len(self._rejected_groups)},
            "meters": {"supported": self.meter_support, "desired": len(self._desired_meters) if self.meter_support
                       is not False else 0, "installed": len(self._installed_meters),
                       "rejected": len(self._rejected_meters), "warning": self.meter_note},
            "packet_ins": dict(self.packet_ins),
            "sent": dict(self.counters), "last_change": dict(self.last_change),
        }

    def count_packet_in(self, owner_kind: str | None) -> None:
        """One packet-in from a flow of ``owner_kind`` (its cookie's), counted by the meter kind it passed."""
        kind = meters.KIND_OF_OWNER.get(owner_kind, "other")
        self.packet_ins[kind] = self.packet_ins.get(kind, 0) + 1

    def flow_stats(self, cookie: int, cookie_mask: int) -> dict | None:
        """{cookie: packet count} of the installed flows whose cookie matches, asked of the switch now; None
        when it does not answer (for REST counters: ACL rule hits, drops per vport)."""
        stats = self._request(ryumsg.flow_stats_request(self.datapath, cookie, cookie_mask))
        if stats is None:
            return None
        out: dict = {}
        for entry in stats:
            out[entry.cookie] = out.get(entry.cookie, 0) + entry.packet_count
        return out

    def owner_programmed(self, owner_id: str) -> bool:
        """Whether ``owner_id`` (a vport, subnet or domain id) has desired flows here and all of them are
        installed (confirmed by the switch): its owners' installed sets equal their desired ones."""
        book = self._book
        if book.desired is None:
            return False
        owners = [o for o in (Owner(kind, owner_id) for kind in PROGRAMMED_KINDS) if o in book.desired]
        return bool(owners) and all(book.installed.get(o) == book.desired[o] for o in owners)

    def flows(self, pacer: Pacer | None = None) -> list[dict]:
        """Every desired or installed flow (installed only = stale, not yet removed; ``kept`` while keep_stale keeps
        it: not to be removed, the switch in sync with it), in table order (table, priority highest first, cookie);
        ``pacer``: ticked once a flow, it may pause (on copies of the records)."""
        tick = (pacer or Pacer()).tick
        listed, sharers = self._book.listing(tick)
        return [self._flow_row(*row, sharers) for row in paced(sorted_paced(listed, tick, _listed_order), tick)]

    def _flow_row(self, key, wanted: Flow | None, have, sharers: dict) -> dict:
        """One flow of the listing; ``shared_with``: the other owners of a flow owners whose hints collide share
        (FlowBook.listing), most often none."""
        table, priority, cookie = key
        known = wanted if wanted is not None else have if isinstance(have, Flow) else None
        shared_with = []
        if key in sharers:
            owner, *shared_with = named(sharers[key])
        elif known is not None:
            owner = {"kind": known.owner.kind, "id": known.owner.id}
        else:
            owner = {"kind": owner_kind_of(cookie), "id": None}
        text = render_flow(known) if known is not None else decode.describe_stats(self.ofp, have)
        return {"table": table, "table_name": BY_ID[table].name if table in BY_ID else None,
                "priority": priority, "cookie": f"{cookie:#018x}", "owner": owner,
                "shared_with": shared_with, "flow": text,
                "desired": wanted is not None, "installed": have is not None,
                "kept": wanted is None and have is not None and self._keep, "error": self._rejected.get(key)}


def named(owners: tuple) -> list[dict]:
    """The owners of a shared flow (``owners``, sorted: ``shared_flows``) as the listing shows them: its row's
    ``owner`` is the first, whichever of the equal Flows the row holds, so that a connected switch's listing and
    one known over OVSDB only name the same; ``shared_with`` the others."""
    return [{"kind": o.kind, "id": o.id} for o in owners]


def _listed_order(row) -> int:
    return listing_order(row[0])
