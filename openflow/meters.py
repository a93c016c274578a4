"""OpenFlow 1.3 meters on the flows that send packets to the controller (punts), one per kind and switch.

Every flow of Canopy's whose actions send to the controller starts with ``("meter", id)`` (an OFPIT_METER instruction,
openflow/encode.py), the meter of its kind:

=============  ==========  =============================================================================
kind           meter id    flows
=============  ==========  =============================================================================
activation     0xCA000001  a live migration's standby port: its VM's frames (openflow/activation.py)
dhcp           0xCA000002  the DHCP punt of each local vport, and of a subnet's bare-metal gateway VRS
other          0xCA000003  the answers to the controller's ARP for an external network's gateway
=============  ==========  =============================================================================

Each meter has one ``drop`` band in packets per second with a burst (``vrs.punt_meters`` in the settings), so one
VM flooding frames that are punted costs its switch's controller connection at most its kind's rate, and the
other kinds keep theirs: a VM flooding from a pending port cannot starve another VM's DHCP on the same switch
(tests/integration/test_punt_meters.py). Packets over the rate are dropped by the switch before they are queued
for the controller (Open vSwitch queues at most ``controller_queue_size``, 100 by default, per connection).

Meters are device state like flows: ``desired(rates)`` is every switch's desired meters, and the switch reconciler
(openflow/reconciler.py) reads them back at connect (meter features, meter config), adds the missing ones before
the flows that name them, modifies those that differ, and deletes meters in Canopy's id range (``METER_RANGE``)
that are not desired, after the flows. A switch without meters (max_meter 0, or an error answering the
meter-features request) gets its flows without the meter instruction, and one warning.
"""

from __future__ import annotations

from typing import NamedTuple

from controller.settingvalues import PUNT_METER_DEFAULTS

METER_BASE = 0xCA000000
METER_RANGE = range(METER_BASE, METER_BASE + 0x100)  # Canopy's meter ids: only these are deleted as stale
KINDS = ("activation", "dhcp", "other")
IDS = {"activation": METER_BASE + 1, "dhcp": METER_BASE + 2, "other": METER_BASE + 3}
NAMES = {v: k for k, v in IDS.items()}
KIND_OF_OWNER = {"activation": "activation", "vport": "dhcp", "subnet": "dhcp", "uplink": "other"}  # a punt's owner

DEFAULT_RATES = PUNT_METER_DEFAULTS  # kind -> (packets per second, burst): vrs.punt_meters' defaults (why: there)


class Meter(NamedTuple):
    """One meter: a single drop band of ``rate`` packets per second, ``burst`` packets deep."""

    meter_id: int
    rate: int
    burst: int

    @property
    def kind(self) -> str:
        return NAMES.get(self.meter_id, "?")


def action(kind: str) -> tuple:
    """The action that puts a flow through ``kind``'s meter: the first of its actions."""
    return ("meter", IDS[kind])


def punt(kind: str) -> list:
    """The actions of a flow that sends packets to the controller through ``kind``'s meter."""
    return [("meter", IDS[kind]), ("output", "controller")]


def desired(rates: dict | None = None) -> dict:
    """Every switch's desired meters: {meter id: Meter}; ``rates``: kind -> (pktps, burst) (default: DEFAULT_RATES)."""
    rates = {**DEFAULT_RATES, **(rates or {})}
    return {IDS[kind]: Meter(IDS[kind], *rates[kind]) for kind in KINDS}


def render_meter(m: Meter) -> str:
    """``m`` in ovs-ofctl add-meter syntax."""
    return f"meter={m.meter_id},pktps,burst,stats,bands=type=drop,rate={m.rate},burst_size={m.burst}"


def decode_config(ofp, entry) -> Meter | None:
    """A meter-config entry read back as a Meter, to compare with the desired one; None if it is not one of
    Canopy's shape (packets per second with a burst, one drop band): modified to the desired one."""
    flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
    bands = getattr(entry, "bands", ())
    if (entry.flags & flags) != flags or len(bands) != 1 or bands[0].type != ofp.OFPMBT_DROP:
        return None
    return Meter(entry.meter_id, bands[0].rate, bands[0].burst_size)


def strip(actions: tuple) -> tuple:
    """``actions`` without their meter (a switch without meters)."""
    return actions[1:] if actions and actions[0][0] == "meter" else actions
