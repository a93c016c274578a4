"""Canopy's ExaBGP extension: with its API side ``bgp.exabgp_ext_api``, the only modules that import exabgp
(STYLE rule 7).

ExaBGP decodes EVPN but has no API command to announce it. This module:

- checks at import that the installed ExaBGP is exactly the pinned version and that every
  internal it uses is still where it was (``ExaBGPPinError`` otherwise, naming the pin);
- adds a Router's MAC extended community (RFC 9135: type 0x06, sub-type 0x03, 6-byte MAC);
- turns ``bgp.routes`` objects into ExaBGP's own EVPN NLRI (MAC, Multicast, Prefix) and
  attributes (route targets, encapsulation VXLAN, MAC mobility, PMSI ingress replication,
  Router's MAC). VNIs go into labels as raw 24-bit values; the next hop is set on the NLRI
  and no NEXT_HOP attribute is added;
- registers ``announce evpn`` / ``withdraw evpn`` in ExaBGP's API command registry (the
  payload format is ``bgp.routes.to_command``, or ``to_batch_command`` for many routes in one line);
  one acknowledgement per command line, whatever the number of routes in it (all are injected, or
  none when one of them is invalid); a route announced before is withdrawn with the NLRI its announcement
  built (``shared_nlri``; ``bgp.routes.parse_batch_command`` hands out the same route for the same text);
  and ``canopy ping``, the speaker's liveness probe (``bgp.watchdog``), answered in order with them;
- sends the EVPN routes queued together that share their path attributes in few UPDATEs (one
  MP_REACH_NLRI / MP_UNREACH_NLRI per next hop; withdrawals up to the message size, announcements
  ANNOUNCED_PER_UPDATE at most: GoBGP's cost per route grows with the routes of its UPDATE); ExaBGP 5.0.15
  itself groups only IPv4 unicast and MVPN and sends one UPDATE per EVPN route;
- keys the type 2 and type 5 routes it injects in ExaBGP's outgoing RIB by their RFC route key
  (RFC 7432 section 7.2, RFC 9136 section 3: no ESI, labels or gateway IP), as ``route.key`` does,
  so a route whose VNI changes replaces the old one (BGP implicit withdraw) instead of joining it;
- makes ExaBGP accept an EVPN MP_REACH_NLRI next hop of 16 or 32 bytes (ExaBGP 5.0.15 knows only 4
  and resets the session with NOTIFICATION 3/9): an IPv4-mapped IPv6 address (as FRR sends for its
  type 5 routes) becomes its IPv4 address, another IPv6 address is passed on (``bgp.received``
  refuses it: treated as withdrawn), any other length makes the update's routes withdrawals
  (RFC 7606 treat-as-withdraw), never a session reset (the bytes rewritten by ``bgp.evpnwire.evpn_next_hop``);
- installs its API side (``bgp.exabgp_ext_api``): what ExaBGP writes to Canopy held and written together,
  received EVPN NLRIs read and written cheaply (a withdrawn one kept as its bytes, JSON of code and raw hex only),
  and received EVPN withdrawals read without ExaBGP's attribute machinery and handed over a batch per message;
- lets ExaBGP run under a uid other than root's as it is (``_drop_privileges``);
- runs ExaBGP's hold timer, keepalives and reconnect back-off on the monotonic clock (``_MONOTONIC``): on the
  wall clock, a step forward past the hold time reset every session and a step back stopped the keepalives;
- ``main(argv)``: install, then run ExaBGP's own main: ``python -m bgp.exabgp_ext <config>``.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import time
from itertools import repeat
from operator import is_, itemgetter, methodcaller

from bgp import routes
from bgp.evpnwire import evpn_next_hop
from bgp.plaincopy import copied, copies_with
from bgp.updategroup import UpdateGroup

PINNED_EXABGP = "5.0.15"


class ExaBGPPinError(RuntimeError):
    """The installed ExaBGP is not the pinned one, or an internal this module uses moved."""


def _pin_failure(detail: str) -> ExaBGPPinError:
    return ExaBGPPinError(
        f"bgp.exabgp_ext is written against exabgp=={PINNED_EXABGP} internals: {detail}. "
        f"Install exabgp=={PINNED_EXABGP} or port and re-test bgp/exabgp_ext.py."
    )


try:
    from exabgp import version as _exabgp_version
    from exabgp.application import main as _exabgp_main
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attributes
    from exabgp.bgp.message.update.attribute.community.extended import ExtendedCommunity
    from exabgp.bgp.message.update.attribute.community.extended.communities import ExtendedCommunities
    from exabgp.bgp.message.update.attribute.community.extended.encapsulation import Encapsulation
    from exabgp.bgp.message.update.attribute.community.extended.mac_mobility import MacMobility
    from exabgp.bgp.message.update.attribute.community.extended.rt import (
        RouteTargetASN2Number,
        RouteTargetASN4Number,
        RouteTargetIPNumber,
    )
    from exabgp.bgp.message.update.attribute.mprnlri import MPRNLRI
    from exabgp.bgp.message.update.attribute.nexthop import NextHop
    from exabgp.bgp.message.update.attribute.pmsi import PMSIIngressReplication
    from exabgp.bgp.message.update.nlri.evpn import MAC, Multicast, Prefix
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN, GenericEVPN
    from exabgp.bgp.message.update.nlri.nlri import NLRI
    from exabgp.bgp.message.update.nlri.qualifier import (
        ESI,
        EthernetTag,
        Labels,
        RouteDistinguisher,
    )
    from exabgp.bgp.message.update.nlri.qualifier import MAC as MACQualifier
    from exabgp.protocol.family import AFI, SAFI, Family
    from exabgp.protocol.ip import IP
    from exabgp.rib.outgoing import OutgoingRIB
    from exabgp.reactor.api.command import Command
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors
    from exabgp.rib.change import Change
    from exabgp.bgp.message import Update
    from exabgp.bgp.message.direction import Direction
    from exabgp.configuration.check import _negotiated
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log as _exabgp_log
    from exabgp.reactor.api.response import Response
    from exabgp.reactor.api import API
    from exabgp.bgp.message import Message
    from exabgp.reactor.api.processes import Processes
    from exabgp.reactor.daemon import Daemon
    from exabgp.reactor.loop import Reactor
    from exabgp.bgp import timer as _exabgp_timer
    from exabgp.reactor import delay as _exabgp_delay
except ImportError as _error:  # pragma: no cover - exercised only on a broken install
    raise _pin_failure(f"import failed ({_error})") from _error

# What ExaBGP's timer and delay modules call ``time``: they use only ``time.time()``, and for durations only
# (docs/operations.md "When a part fails": the wall clock stepped).
_MONOTONIC = type(sys)("exabgp_monotonic_time")
_MONOTONIC.time = time.monotonic


def check_pin() -> None:
    """Raise ExaBGPPinError unless ExaBGP is the pinned version with the internals we use."""
    if _exabgp_version.release != PINNED_EXABGP:
        raise _pin_failure(f"found exabgp {_exabgp_version.release}")
    expectations = {
        "EVPN route classes 2, 3, 5": {2: MAC, 3: Multicast, 5: Prefix}.items()
        <= EVPN.registered_evpn.items(),
        "Command.register/callback/functions": callable(getattr(Command, "register", None))
        and set(Command.callback) >= {"text", "json", "neighbor", "options"}
        and isinstance(Command.functions, list),
        "ExtendedCommunity.registered_extended": isinstance(ExtendedCommunity.registered_extended, dict),
        "Labels(raw_labels=...)": "raw_labels" in Labels.__init__.__code__.co_varnames,
        "PMSIIngressReplication(raw_label=...)": "raw_label"
        in PMSIIngressReplication.__init__.__code__.co_varnames,
        "MAC NLRI signature": MAC.__init__.__code__.co_varnames[1:8]
        == ("rd", "esi", "etag", "mac", "maclen", "label", "ip"),
        "Prefix NLRI signature": Prefix.__init__.__code__.co_varnames[1:8]
        == ("rd", "esi", "etag", "label", "ip", "iplen", "gwip"),
        "exabgp.application.main.main": callable(getattr(_exabgp_main, "main", None)),
        "Update.messages/unpack_message": hasattr(Update, "messages") and hasattr(Update, "unpack_message"),
        "Response.JSON(...).update": hasattr(Response.JSON, "update"),
        "json encoder version 5.0.0": _exabgp_version.json == "5.0.0",
        "Family.size[l2vpn evpn] next hop lengths": Family.size.get((AFI.l2vpn, SAFI.evpn), ((), 0))[0]
        in ((4,), _EVPN_NEXT_HOP_LENGTHS),
        "MPRNLRI.unpack(data, direction, negotiated)": MPRNLRI.unpack.__func__.__code__.co_varnames[:4]
        == ("cls", "data", "direction", "negotiated"),
        "OutgoingRIB.add_to_rib(change, force)": OutgoingRIB.add_to_rib.__code__.co_varnames[:3]
        == ("self", "change", "force"),
        "OutgoingRIB.updates(self, grouped)": OutgoingRIB.updates.__code__.co_varnames[:2] == ("self", "grouped"),
        "Update(nlris, attributes).nlris/.attributes": Update.__init__.__code__.co_varnames[1:3]
        == ("nlris", "attributes"),
        "EVPN.unpack_nlri(afi, safi, bgp, action, addpath), GenericEVPN(code, packed), NLRI.consume_path_information":
        EVPN.unpack_nlri.__func__.__code__.co_varnames[1:6] == ("afi", "safi", "bgp", "action", "addpath")
        and GenericEVPN.__init__.__code__.co_varnames[1:3] == ("code", "packed")
        and hasattr(NLRI, "consume_path_information"),
        "EVPN._raw(self) from pack_nlri": callable(getattr(EVPN, "_raw", None))
        and "pack_nlri" in EVPN._raw.__code__.co_names,
        "Processes.write(process, string, neighbor), .terminate(), ._process": Processes.write.__code__.co_varnames[:4]
        == ("self", "process", "string", "neighbor") and callable(getattr(Processes, "terminate", None)),
        "Reactor._wait_for_io(sleeptime) and .processes": Reactor._wait_for_io.__code__.co_varnames[:2]
        == ("self", "sleeptime") and "processes" in Reactor.__init__.__code__.co_names,
        "Processes._dispatch[UPDATE](self, peer, direction, update, negotiated, header, body), ._notify, ._encoder":
        callable(Processes._dispatch.get(Message.CODE.UPDATE)) and callable(getattr(Processes, "_notify", None))
        and "_encoder" in Processes.__init__.__code__.co_names + Processes.clean.__code__.co_names,
        "exabgp.bgp.timer, exabgp.reactor.delay: time.time() only": all(
            module.time in (time, _MONOTONIC) and set(re.findall(r"\btime\.(\w+)", inspect.getsource(module)))
            == {"time"} for module in (_exabgp_timer, _exabgp_delay)),
        "Daemon.drop_privileges(self)": Daemon.drop_privileges.__code__.co_varnames[:1] == ("self",),
        "API.response(self, reactor, service, command, use_json)": API.response.__code__.co_varnames[:5]
        == ("self", "reactor", "service", "command", "use_json"),
        "Update.unpack_message(cls, data, direction, negotiated)":
        Update.unpack_message.__func__.__code__.co_varnames[:4] == ("cls", "data", "direction", "negotiated"),
    }
    moved = [name for name, present in expectations.items() if not present]
    if moved:
        raise _pin_failure("moved or changed: " + ", ".join(moved))


_EVPN_NEXT_HOP_LENGTHS = (4, 16)  # what ExaBGP accepts once installed (32 is cut to its first 16 bytes)
check_pin()

from bgp import exabgp_ext_api  # noqa: E402 - the extension's API side, imported once the pin holds


# --------------------------------------------------------------------------- Router's MAC


class RouterMac(ExtendedCommunity):
    """RFC 9135 Router's MAC extended community (EVPN type 0x06, sub-type 0x03)."""

    COMMUNITY_TYPE = 0x06
    COMMUNITY_SUBTYPE = 0x03
    DESCRIPTION = "router-mac"

    def __init__(self, mac: str, community: bytes | None = None):
        self.mac = mac.lower()
        packed = community or self._subtype(transitive=True) + bytes.fromhex(self.mac.replace(":", ""))
        ExtendedCommunity.__init__(self, packed)

    def __hash__(self):
        return hash(self.community)

    def __repr__(self):
        return f"{self.DESCRIPTION}:{self.mac}"

    @staticmethod
    def unpack(data):
        """Decode the 8 wire bytes (ExaBGP's ExtendedCommunity.unpack calls this)."""
        return RouterMac(data[2:8].hex(":"), data[:8])


# --------------------------------------------------------------------------- building


@functools.lru_cache(maxsize=4096)  # one object per RD (and per label stack below): built once, never mutated
def _rd(text: str):
    admin, _, number = text.rpartition(":")
    return RouteDistinguisher.fromElements(admin, int(number))


def _route_target(text: str):
    admin, _, number = text.rpartition(":")
    if "." in admin:
        return RouteTargetIPNumber(admin, int(number))
    if int(admin) < 1 << 16:
        return RouteTargetASN2Number(int(admin), int(number))
    return RouteTargetASN4Number(int(admin), int(number))


def _esi(value: int):
    return ESI(value.to_bytes(10, "big"))


@functools.lru_cache(maxsize=4096)
def _labels(*vnis: int):
    """VNIs as raw 24-bit labels (RFC 8365), never shifted like MPLS labels."""
    return Labels([], raw_labels=list(vnis))


_EVPN_FAMILY_OBJECT = Family(AFI.l2vpn, SAFI.evpn)


class _CachedIndex:
    """The NLRI's RIB index computed once, its family shared: ExaBGP sorts the NLRIs of an UPDATE by the index
    (``NLRI.__lt__`` calls ``index()`` on both sides of every comparison: most of the CPU of a batch of 500
    withdrawals)."""

    _canopy_index = None

    def family(self):
        """One Family object for every EVPN NLRI (ExaBGP's makes a new one per call, eight calls per route
        between a command and its UPDATE: most of what a withdrawal costs once its NLRI exists)."""
        return _EVPN_FAMILY_OBJECT

    def index(self):
        if self._canopy_index is None:
            self._canopy_index = Family.index(self) + bytes([self.CODE]) + self._key()
        return self._canopy_index

    def __lt__(self, other):
        return self.index() < other.index()


class KeyedMAC(_CachedIndex, MAC):
    """ExaBGP's type 2 NLRI, indexed in its RIB by the RFC 7432 route key: RD, Ethernet tag, MAC, IP."""

    def _key(self):
        return self.rd.pack() + self.etag.pack() + self.mac.pack() + (self.ip.pack() if self.ip else b"")


class KeyedPrefix(_CachedIndex, Prefix):
    """ExaBGP's type 5 NLRI, indexed by the RFC 9136 route key: RD, Ethernet tag, IP prefix and length."""

    def _key(self):
        return self.rd.pack() + self.etag.pack() + bytes([self.iplen]) + self.ip.pack()


_ACTIONS = {routes.ANNOUNCE: Action.ANNOUNCE, routes.WITHDRAW: Action.WITHDRAW}
_NLRIS: dict = {}  # (id(route), action) -> (route, its NLRI, its attributes): the route is kept, so its id is not reused
_NLRIS_SIZE = 1 << 17


def shared_nlri(route: routes.Route, action: str):
    """``build_nlri(route, action)``, built once per route object and action: ``routes.parse_batch_command``
    hands out the same route object for the same text, so a withdrawal reuses what its announcement built
    (the NLRI, a third of what injecting a withdrawal costs ExaBGP). An NLRI is never changed once built
    (ExaBGP's RIB copies a change before it turns it into a withdrawal)."""
    return _shared(route, action)[1]


def _shared(route: routes.Route, action: str) -> tuple:
    """(route, NLRI, attributes) of ``action`` on ``route``, made once per route object and action; the other
    action's, when made already, gives both (the same fields: its NLRI copied with this action, its attributes)."""
    entry = _NLRIS.get((id(route), action))
    if entry is not None and entry[0] is route:
        return entry
    other = _NLRIS.get((id(route), routes.WITHDRAW if action == routes.ANNOUNCE else routes.ANNOUNCE))
    if other is not None and other[0] is route:  # the same fields, objects and index; another action
        nlri = copied(other[1])
        nlri.action = _ACTIONS[action]
        attributes = other[2]
    else:
        nlri, attributes = build_nlri(route, action), shared_attributes(route)
    if len(_NLRIS) >= _NLRIS_SIZE:
        _NLRIS.clear()
    entry = _NLRIS[id(route), action] = (route, nlri, attributes)
    return entry


def build_nlri(route: routes.Route, action: str):
    """ExaBGP's own EVPN NLRI for ``route``, with the next hop set on the NLRI."""
    if isinstance(route, routes.MacIpRoute):
        vnis = (route.l2_vni,) if route.l3_vni is None else (route.l2_vni, route.l3_vni)
        nlri = KeyedMAC(_rd(route.rd), _esi(route.esi), EthernetTag(route.ethernet_tag),
                        MACQualifier(route.mac), 48, _labels(*vnis),
                        IP.create(route.ip) if route.ip else None)
    elif isinstance(route, routes.InclusiveMulticastRoute):
        nlri = Multicast(_rd(route.rd), EthernetTag(route.ethernet_tag), IP.create(route.originator))
    elif isinstance(route, routes.IpPrefixRoute):
        address, length = route.prefix.split("/")
        nlri = KeyedPrefix(_rd(route.rd), _esi(route.esi), EthernetTag(route.ethernet_tag),
                           _labels(route.l3_vni), IP.create(address), int(length), IP.create(route.gateway))
    else:
        raise ValueError(f"not an EVPN route: {route!r}")
    nlri.nexthop = NextHop(route.next_hop)
    nlri.action = _ACTIONS[action]
    return nlri


_ATTRIBUTES_CACHE: dict = {}
_ATTRIBUTES_CACHE_SIZE = 4096


def _attribute_fields(route: routes.Route) -> tuple:
    """What ``build_attributes`` reads from a route."""
    pmsi = (route.vtep, route.vni) if isinstance(route, routes.InclusiveMulticastRoute) else None
    return (route.route_targets, route.encapsulation, getattr(route, "mobility_seq", None),
            getattr(route, "router_mac", None), pmsi, getattr(route, "sticky", False))


def shared_attributes(route: routes.Route):
    """``build_attributes(route)``, one object for every route with the same attribute fields (ExaBGP's RIB
    keeps changes per attribute set, and sends the changes of one set together)."""
    fields = _attribute_fields(route)
    attributes = _ATTRIBUTES_CACHE.get(fields)
    if attributes is None:
        if len(_ATTRIBUTES_CACHE) >= _ATTRIBUTES_CACHE_SIZE:
            _ATTRIBUTES_CACHE.clear()
        attributes = _ATTRIBUTES_CACHE[fields] = build_attributes(route)
    return attributes


def build_attributes(route: routes.Route):
    """Path attributes: extended communities and, for type 3, the PMSI tunnel. No NEXT_HOP."""
    communities = ExtendedCommunities()
    for target in route.route_targets:
        communities.add(_route_target(target))
    communities.add(Encapsulation(routes.ENCAPSULATIONS[route.encapsulation]))
    if getattr(route, "mobility_seq", None) is not None or getattr(route, "sticky", False):
        communities.add(MacMobility(route.mobility_seq or 0, getattr(route, "sticky", False)))
    if getattr(route, "router_mac", None) is not None:
        communities.add(RouterMac(route.router_mac))
    attributes = Attributes()
    attributes.add(communities)
    if isinstance(route, routes.InclusiveMulticastRoute):
        attributes.add(PMSIIngressReplication(route.vtep, raw_label=route.vni))
    return attributes


def build_change(route: routes.Route, action: str):
    """The ExaBGP Change (NLRI + attributes) that ``action`` on ``route`` injects in a RIB (the attributes
    object is shared with the other routes that have the same attribute fields; a withdrawal takes its
    announcement's, as its NLRI: ``_shared``)."""
    _route, nlri, attributes = _shared(route, action)
    return Change(nlri, attributes)


def build_changes(batch, action: str) -> list:
    """``[build_change(route, action) for route in batch]``, in C loops for a batch whose every route was built for
    this action already (its NLRIs and attributes taken again), or none of them but every one for the other action (a
    first withdraw after its announce: its NLRIs copied with this action; ``_shared``'s copy a route was most of what
    building 10,000 withdrawals cost, ~120 bytecodes each). Any other batch is built a route at a time."""
    ids = list(map(id, batch))
    built = list(map(_NLRIS.get, zip(ids, repeat(action)), repeat(_NO_ENTRY)))  # (an id reused: another route's)
    mine = list(map(is_, map(_FIRST, built), batch))
    if all(mine):
        return list(map(Change, map(_SECOND, built), map(_THIRD, built)))
    made = list(map(_NLRIS.get, zip(ids, repeat(_OTHER[action])), repeat(_NO_ENTRY)))
    if any(mine) or not all(map(is_, map(_FIRST, made), batch)):
        return [build_change(route, action) for route in batch]
    nlris, attributes = copies_with(list(map(_SECOND, made)), "action", _ACTIONS[action]), list(map(_THIRD, made))
    if nlris is None:
        return [build_change(route, action) for route in batch]
    if len(_NLRIS) + len(ids) > _NLRIS_SIZE:
        _NLRIS.clear()
    _NLRIS.update(zip(zip(ids, repeat(action)), zip(batch, nlris, attributes)))
    return list(map(Change, nlris, attributes))


_OTHER = {routes.ANNOUNCE: routes.WITHDRAW, routes.WITHDRAW: routes.ANNOUNCE}
_NO_ENTRY = (None, None, None)  # ``_NLRIS``' entry of a route never built
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


# --------------------------------------------------------------------------- API commands


def _run_evpn_command(api, reactor, service, line: str) -> None:
    """Parse one evpn command line and inject it; exactly one acknowledgement per line."""
    descriptions, command = extract_neighbors(line)
    peers = match_neighbors(reactor.peers(service), descriptions)
    if not peers:
        api.log_failure(f"no neighbor matching the command : {command}")
        reactor.processes.answer_error(service)
        return
    try:
        _, action, batch = routes.parse_batch_command(command)
        first = build_changes(batch, action)  # every route checked before any goes in
    except (ValueError, TypeError) as error:
        api.log_failure(f"invalid evpn command ({error}) : {command[:300]}")
        reactor.processes.answer_error(service)
        return
    _inject(reactor.configuration, peers, batch, action, first)
    exabgp_ext_api.routes_taken(len(batch))
    more = f" (and {len(first) - 1} more route(s))" if len(first) > 1 else ""
    api.log_message(f"evpn {action} for {', '.join(peers)} : {first[0].extensive()}{more}")
    reactor.processes.answer_done(service)


def _inject(configuration, peers, batch, action: str, first: list) -> None:
    """Put the changes for ``batch`` in each peer's outgoing RIB, a Change object of its own per peer (the
    first peer takes ``first``). ExaBGP's own path copies each change with ``Neighbor.remove_self`` (a deep
    copy, to resolve "next-hop self"): Canopy's next hops are always explicit, and building the change again
    costs a third of that copy. ``force``: a route whose key is already there with other labels replaces it
    (ExaBGP's cache compares only attributes and next hop)."""
    changes = first
    for name in peers:
        neighbor = configuration.neighbors.get(name)
        if neighbor is None or (AFI.l2vpn, SAFI.evpn) not in neighbor.families():
            continue
        changes = changes if changes is not None else [build_change(route, action) for route in batch]
        rib = neighbor.rib.outgoing
        for change in changes:
            rib.add_to_rib(change, force=True)
        changes = None


def _evpn_handler(api, reactor, service, line, use_json):
    """ExaBGP command callback: run the command inside ExaBGP's scheduler, as built-ins do."""

    def callback():
        try:
            _run_evpn_command(api, reactor, service, line)
        except Exception as error:  # noqa: BLE001 - one answer per line, whatever happens
            api.log_failure(f"evpn command failed ({error!r}) : {line}")
            reactor.processes.answer_error(service)
        yield True

    reactor.asynchronous.schedule(service, line, callback())
    return True


def _ping_handler(api, reactor, service, line, use_json):
    """The speaker's liveness probe (bgp.watchdog): answered "done" from the command scheduler, so in order
    with the evpn commands scheduled before it (ExaBGP's own ``#`` or ``version`` answer at once, ahead of them)."""

    def callback():
        reactor.processes.answer_done(service)
        yield True

    reactor.asynchronous.schedule(service, line, callback())
    return True


# --------------------------------------------------------------------------- EVPN next hops

_exabgp_mp_reach_unpack = MPRNLRI.unpack.__func__


def _mp_reach_unpack(cls, data, direction, negotiated):
    """ExaBGP's MPRNLRI.unpack, with ``evpn_next_hop`` applied first (RFC 7606: treat-as-withdraw)."""
    data, unusable = evpn_next_hop(bytes(data))
    reach = _exabgp_mp_reach_unpack(cls, data, direction, negotiated)
    if unusable:
        _exabgp_log.warning(lambda: f"EVPN routes with an unusable next hop treated as withdrawn: {reach.nlris}",
                            "parser")
        for nlri in reach.nlris:
            nlri.action = Action.WITHDRAW
    return reach


# --------------------------------------------------------------------------- grouping EVPN UPDATEs

_exabgp_rib_updates = OutgoingRIB.updates
_EVPN_FAMILY = (AFI.l2vpn, SAFI.evpn)


def _is_evpn_single(message) -> bool:
    if not isinstance(message, Update) or len(message.nlris) != 1:
        return False
    family = message.nlris[0].family()  # (Canopy's NLRIs: the one shared object, no tuple made)
    return family is _EVPN_FAMILY_OBJECT or family.afi_safi() == _EVPN_FAMILY


# Routes announced per UPDATE and next hop, at most: GoBGP re-encodes a received path's whole MP_REACH_NLRI
# (every route of its UPDATE) for each peer it sends the path to, announced and then withdrawn (docs/evpn.md,
# "Grouped EVPN UPDATEs"). Withdrawals carry no MP_REACH_NLRI: they fill the message.
ANNOUNCED_PER_UPDATE = 8


def _grouped_updates(self, grouped):
    """ExaBGP's OutgoingRIB.updates, with consecutive one-route EVPN Updates that share the same attributes
    (ExaBGP yields them per attribute bucket, with that bucket's Attributes object) merged into one Update
    (``Update.messages`` then packs them per next hop up to the message size); a next hop's announcements
    leave in an Update of their own each time ANNOUNCED_PER_UPDATE of them are pending (bgp/updategroup.py)."""
    group = UpdateGroup(ANNOUNCED_PER_UPDATE, _INDEX)
    for message in _exabgp_rib_updates(self, grouped):
        if grouped and _is_evpn_single(message):
            if message.attributes is not group.attributes:
                yield from _flushed(group)
            nlri = message.nlris[0]
            if nlri.action != Action.ANNOUNCE:  # a withdrawal: no next hop
                group.withdrawn(nlri, message.attributes)
            elif (full := group.announced(nlri, message.attributes, str(nlri.nexthop))) is not None:
                yield Update(full, message.attributes)
            continue
        yield from _flushed(group)
        yield message
    yield from _flushed(group)


def _flushed(group: UpdateGroup):
    """The Update of everything ``group`` holds (ExaBGP splits it per next hop and at the message size), if any."""
    pending = group.flush()
    if pending is not None:
        yield Update(*pending)


_INDEX = methodcaller("index")  # an NLRI's RIB index, which orders NLRIs (ExaBGP's ``NLRI.__lt__``)


COMMANDS = ("announce evpn", "withdraw evpn")
PING = "canopy ping"  # bgp.watchdog.PROBE


def install() -> None:
    """Register the Router's MAC community and the evpn API commands, accept 16/32-byte EVPN next hops,
    group EVPN UPDATEs, and hold, batch and read cheaply what goes to the API processes (``exabgp_ext_api``;
    idempotent)."""
    ExtendedCommunity.register(RouterMac)
    Family.size[(AFI.l2vpn, SAFI.evpn)] = (_EVPN_NEXT_HOP_LENGTHS, 0)
    MPRNLRI.unpack = classmethod(_mp_reach_unpack)
    OutgoingRIB.updates = _grouped_updates
    exabgp_ext_api.install()
    if Daemon.drop_privileges is not _drop_privileges:
        Daemon.drop_privileges = _drop_privileges
    _exabgp_timer.time = _exabgp_delay.time = _MONOTONIC
    for name in COMMANDS:
        if Command.callback["text"].get(name) is not _evpn_handler:
            Command.register(name, json_support=True)(_evpn_handler)
    if Command.callback["text"].get(PING) is not _ping_handler:
        Command.register(PING, neighbor=False, json_support=True)(_ping_handler)


_exabgp_drop_privileges = Daemon.drop_privileges


def _drop_privileges(self) -> bool:
    """ExaBGP's own under root (to ``daemon.user``, root's own name: bgp.speakerconf), True under any other uid:
    nothing to drop. ExaBGP 5.0.15 still switches to the user's group when this gid is 0 (a container's arbitrary
    uid, in the root group), which only root may do, and refuses to run when that fails: BGP never came up."""
    return _exabgp_drop_privileges(self) if os.getuid() == 0 else True


def main(argv: list[str] | None = None) -> int:
    """Install the extension and run ExaBGP's normal main with ``argv`` (default: sys.argv[1:])."""
    install()
    sys.argv = ["exabgp"] + list(sys.argv[1:] if argv is None else argv)
    result = _exabgp_main.main()
    return result if isinstance(result, int) else 0


__all__ = ["PINNED_EXABGP", "ExaBGPPinError", "RouterMac", "build_attributes", "build_change",
           "build_nlri", "check_pin", "install", "main"]

if __name__ == "__main__":
    sys.exit(main())
