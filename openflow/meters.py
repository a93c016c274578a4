"""OpenFlow 1.3 meters on the flows that send packets to the controller (punts): one per port (or trunk VLAN vport)
where the punt is a port's, one per kind and switch where it is not, and OpenFlow's controller meter over them all.

Every flow of Canopy's whose actions send to the controller starts with ``("meter", id)`` (an OFPIT_METER instruction,
openflow/encode.py), the meter of its kind (and port):

==========  ==========================  ==========================================================================
kind        meter id                    flows
==========  ==========================  ==========================================================================
dhcp        0xCA010000 + the ofport     the DHCP punt of a local vport: one meter per vport (``PORT_DHCP``)
dhcp        0xD0000000 + the vport key  the DHCP punt of a trunk's VLAN vport (an ESXi vNIC; key: ofport << 12 |
                                        VLAN): one meter per vport, not per trunk (``VLAN_DHCP``)
activation  0xCA020000 + the ofport     a live migration's standby port: its VM's frames (openflow/activation.py),
                                        one meter per standby port (``PORT_ACTIVATION``)
dhcp        0xCA000002                  the DHCP punt of a subnet's bare-metal gateway VRS (its servers' requests
                                        come through a tunnel: no port of their own to meter), one per switch
other       0xCA000003                  the answers to the controller's ARP for an external network's gateway
switch      0xFFFFFFFE (OFPM_CONTROLLER)  named by no flow: Open vSwitch puts every packet it sends to a controller
                                        through it, after the flow's own meter (``CONTROLLER``): the switch's cap
==========  ==========================  ==========================================================================

A port's meter id is derived from its ofport (OpenFlow ofports are at most 0xfeff, 65,279), a trunk VLAN vport's from
its key, so the same input gives the same ids after a restart (nothing to change) and one VM's flood takes only its
own port's rate: another VM's DHCP on the same switch keeps its own meter (tests/integration/test_punt_meters.py).
A switch uses one meter per local vport with DHCP, one per standby port, the switch's two when it has bare-metal
servers or an uplink, and the controller meter, under Open vSwitch's userspace datapath's 262,144
(``MOST_PER_SWITCH``: the most for ports without trunks).

Each meter has one ``drop`` band in packets per second with a burst (``vrs.punt_meters`` in the settings: the rate of
each port's meter of that kind; ``switch``: the controller meter's). Packets over the rate are dropped by the switch
before they are queued for the controller (Open vSwitch queues at most ``controller_queue_size``, 100 by default, per
connection): what all the ports' meters let through together is cut to the controller meter's rate.

Meters are device state like flows: the desired meters of a switch are those its desired flows name (``named``) and
the controller meter, and the switch reconciler (openflow/reconciler.py) reads them back at connect (meter features,
meter config), adds the missing ones before the flows that name them, modifies those that differ, and deletes meters
of Canopy's ids (``METER_IDS``) that are not desired, after the flows (a vport gone: its meter once its flows are
deleted). A switch without meters (max_meter 0, an error answering the meter-features or meter-config request, or a
meter's add refused) gets its flows without the meter instruction, and one warning; one that refuses only the
controller meter keeps the others (its flows metered per port, no cap).
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from itertools import accumulate, chain, compress, count, repeat
from typing import NamedTuple

from controller.settingvalues import PUNT_METER_DEFAULTS

METER_BASE = 0xCA000000
PORT_DHCP = METER_BASE + 0x10000  # + the ofport: a vport's DHCP punt
PORT_ACTIVATION = METER_BASE + 0x20000  # + the ofport: a standby port's frames
VLAN_DHCP = 0xD0000000  # + the vport key (ofport << 12 | VLAN): a trunk's VLAN vport's DHCP punt (an ESXi vNIC)
MAX_OFPORT = 0xFEFF  # OpenFlow's highest port number (OFPP_MAX)
MAX_VLAN_KEY = MAX_OFPORT << 12 | 0xFFF
CONTROLLER = 0xFFFFFFFE  # OpenFlow's controller meter (OFPM_CONTROLLER): every packet the switch sends to a controller
KINDS = ("activation", "dhcp", "other")  # the kinds of punts (packet-ins are counted by these)
IDS = {"activation": METER_BASE + 1, "dhcp": METER_BASE + 2, "other": METER_BASE + 3}  # the switch's own meters
NAMES = {**{v: k for k, v in IDS.items()}, CONTROLLER: "switch"}
PORT_BASES = {"dhcp": PORT_DHCP, "activation": PORT_ACTIVATION}  # the kinds metered per port
# a port's two kinds on every port, the switch's dhcp and other, and the controller meter (docs/vrs.md: 130,561)
MOST_PER_SWITCH = len(PORT_BASES) * MAX_OFPORT + 3
KIND_OF_OWNER = {"activation": "activation", "vport": "dhcp", "subnet": "dhcp", "uplink": "other"}  # a punt's owner

DEFAULT_RATES = PUNT_METER_DEFAULTS  # kind -> (packets per second, burst): vrs.punt_meters' defaults (why: there)


class _MeterIds:
    """Canopy's meter ids (``in``): read back at connect, and deleted once no flow names them."""

    ranges = (range(METER_BASE, METER_BASE + 0x30000), range(VLAN_DHCP + 1, VLAN_DHCP + MAX_VLAN_KEY + 1))

    def __contains__(self, mid) -> bool:
        return mid == CONTROLLER or mid in self.ranges[0] or mid in self.ranges[1]


METER_IDS = _MeterIds()


def meter_id(kind: str, ofport: int | None = None, vlan: int | None = None) -> int:
    """The id of ``kind``'s meter: the port's (``ofport``, a kind of ``PORT_BASES``; a trunk's VLAN vport's own for
    ``dhcp`` with its ``vlan``, 1..4095) or the switch's (None, or an ofport that is no OpenFlow port number,
    1..MAX_OFPORT: never a shared id by mistake, the switch's meter)."""
    if isinstance(ofport, int) and 0 < ofport <= MAX_OFPORT and kind in PORT_BASES:
        if kind == "dhcp" and isinstance(vlan, int) and 0 < vlan <= 0xFFF:
            return VLAN_DHCP + (ofport << 12 | vlan)
        return PORT_BASES[kind] + ofport
    return IDS[kind]


def kind_of(mid: int) -> str:
    """The kind of the meter ``mid`` ("?" outside Canopy's ids; "switch": the controller meter)."""
    if mid in NAMES:
        return NAMES[mid]
    for kind, base in PORT_BASES.items():
        if base < mid <= base + MAX_OFPORT:
            return kind
    return "dhcp" if VLAN_DHCP < mid <= VLAN_DHCP + MAX_VLAN_KEY else "?"


def port_of(mid: int) -> int | None:
    """The ofport of a port's meter (a trunk's VLAN vport's: its trunk's); None for a switch's own."""
    if kind_of(mid) == "?" or mid in NAMES:
        return None
    return (mid - VLAN_DHCP) >> 12 if mid > VLAN_DHCP else mid & 0xFFFF


class Meter(NamedTuple):
    """One meter: a single drop band of ``rate`` packets per second, ``burst`` packets deep."""

    meter_id: int
    rate: int
    burst: int

    @property
    def kind(self) -> str:
        return kind_of(self.meter_id)


def action(kind: str, ofport: int | None = None, vlan: int | None = None) -> tuple:
    """The action that puts a flow through ``kind``'s meter (the port's, ``meter_id``): the first of its actions."""
    return ("meter", meter_id(kind, ofport, vlan))


def punt(kind: str, ofport: int | None = None, vlan: int | None = None) -> list:
    """The actions of a flow that sends packets to the controller through ``kind``'s meter (a port's or a trunk's VLAN
    vport's: ``meter_id``), then OpenFlow's controller meter (the switch's cap on them all, named by no flow)."""
    return [action(kind, ofport, vlan), ("output", "controller")]


def rates_of(rates: dict | None = None) -> dict:
    """kind -> (pktps, burst): ``rates`` (vrs.punt_meters) over the defaults; "switch": the controller meter's."""
    return {**DEFAULT_RATES, **(rates or {})}


def meter(mid: int, rates: dict) -> Meter:
    """The meter ``mid`` with its kind's rate and burst (``rates``: ``rates_of``)."""
    return Meter(mid, *rates[kind_of(mid)])


def desired(rates: dict | None = None) -> dict:
    """The switch's own meters (no port's): {meter id: Meter}; ``rates``: kind -> (pktps, burst) (default:
    DEFAULT_RATES). A switch's desired meters are those its flows name: ``named``."""
    rates = rates_of(rates)
    return {IDS[kind]: Meter(IDS[kind], *rates[kind]) for kind in KINDS}


def used(flows) -> set:
    """The meter ids ``flows`` name (a meter is a flow's first action)."""
    return {f.actions[0][1] for f in flows if f.actions and f.actions[0][0] == "meter"}


_ACTIONS = operator.attrgetter("actions")
_KIND = operator.itemgetter(0)
_ID = operator.itemgetter(1)
_OWNER_KIND = operator.itemgetter(0)  # an Owner's kind
_NO_ACTION = ("",)  # the first action of a flow that has none (a drop)


def punting(owners: list) -> list:
    """Those of ``owners`` of the kinds whose flows may send to the controller (``KIND_OF_OWNER``), picked in C."""
    return list(compress(owners, map(KIND_OF_OWNER.__contains__, map(_OWNER_KIND, owners))))


def _firsts(flowsets) -> list:
    """The first action of every flow of ``flowsets`` (chained), looked up in C; ``_NO_ACTION`` for a flow without."""
    return list(map(next, map(iter, map(_ACTIONS, chain.from_iterable(flowsets))), repeat(_NO_ACTION)))


def _metering(firsts: list):
    """Whether each of ``firsts`` is a meter's (lazily, in C)."""
    return map(operator.eq, map(_KIND, firsts), repeat("meter"))


def named_by(owners: list, flowsets: list) -> dict:
    """{owner: set of the meter ids its flows name} of those of ``owners`` whose flows (``flowsets``, in the same
    order) name a meter. Every flow's first action is looked at in C (maps and ``compress`` over the flows chained);
    Python runs once per flow that names a meter, not once per owner or flow (``used`` per owner: ~96 bytecodes each
    with the loop around it, 10,000 new vports without a port and so without a meter: ~960,000, docs/benchmarks.md
    "ann46")."""
    ends = list(accumulate(map(len, flowsets)))  # owners[i]'s flows end at ends[i] in the chain
    firsts = _firsts(flowsets)
    by_owner: dict = {}
    for at in compress(count(), _metering(firsts)):
        by_owner.setdefault(owners[bisect_right(ends, at)], set()).add(firsts[at][1])
    return by_owner


def named_in(flowsets) -> set:
    """The meter ids the flows of ``flowsets`` name, all of it in C (``named_by`` without the owners)."""
    firsts = _firsts(flowsets)
    return set(map(_ID, compress(firsts, _metering(firsts))))


def named(flows, rates: dict | None = None) -> dict:
    """The meters ``flows`` name, {meter id: Meter} with their kinds' rates: a switch's desired meters."""
    rates = rates_of(rates)
    return {mid: meter(mid, rates) for mid in sorted(used(flows))}


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
