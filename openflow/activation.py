"""The flows of a live migration's standby ports (controller/state_activation.py): each sends what its VM sends from
its own MAC to the controller (through its port's activation meter: openflow/meters.py), which makes that port the
vport's active one.

Owner ``activation`` (id: the switch's session), on a switch with standby ports (``SwitchInfo.standby``): per port,
in classify, ``in_port`` + ``eth_src`` = the vport's MAC -> controller. Nothing else of the port is classified: the
table's default drops what else it sends, and nothing is delivered to it (the vport is not located on it), so a
destination whose VM is not running yet gets nothing, and sends nothing anywhere, until its VM's first packet (QEMU's
RARP announcement as it resumes; any frame from the VM's MAC). The controller answers none of these packets; it only
re-locates the vport, after which the port's own flows replace this one.
"""

from __future__ import annotations

from openflow import pipeline as p
from openflow.flows import Owner, flow
from openflow.meters import punt

OWNER_KINDS = ("activation",)
PRIORITY = 90  # in classify: below the vports' own classifiers (100), which a standby port never has


def present(view, session: str, owner: Owner) -> bool:
    sw = view.switches.get(session)
    return owner.id == session and sw is not None and bool(sw.standby)


def owners_on(view, session: str) -> set[Owner]:
    sw = view.switches.get(session)
    return {Owner("activation", session)} if sw is not None and sw.standby else set()


def _standby(view, sw, owner):
    return [flow(p.CLASSIFY, PRIORITY, {"in_port": ofport, "eth_src": mac}, punt("activation", ofport), owner)
            for ofport, mac, _vid in sw.standby]


COMPILERS = {"activation": _standby}
