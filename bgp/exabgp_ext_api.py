"""Canopy's ExaBGP extension, its API side: what ExaBGP writes to Canopy, received NLRIs, its collector, and how
it finds Canopy's command in a line.

Part of the extension (``bgp.exabgp_ext`` checks the pin before importing this module, and its ``install``
calls ``install`` here); nothing else in Canopy imports it. It changes how ExaBGP 5.0.15 hands received
messages to its API process (Canopy's relay) and finds the command in a line from it, never what goes on the wire:

- **held writes**: ExaBGP writes (and flushes) each API message on its own: one system call and one wake-up of
  the relay (then of the speaker) per received UPDATE, which GoBGP sends one route at a time. Messages are held
  and written together: when the reactor is about to sleep, once API_HOLD_BYTES are held, or once the oldest is
  API_HOLD_SECONDS old; in order, and at once when ExaBGP terminates its processes.
- **received EVPN NLRIs, cheap**: the "raw" hex of each (ExaBGP's ``EVPN._raw``) formatted with ``bytes.hex``
  (the same text; ExaBGP formats it byte by byte, a cost paid for every route received), and only that hex and
  the route type's code written as the NLRI's JSON (``bgp.received`` decodes the rest from the hex); a withdrawn
  EVPN NLRI is not parsed at all, only kept as its bytes (GenericEVPN).
- **withdrawals read without the attribute machinery**: an UPDATE that holds nothing but one MP_UNREACH_NLRI
  of l2vpn evpn with at least one NLRI (how GoBGP and FRR withdraw, one route per UPDATE from GoBGP) is read by
  ``evpn_withdrawals``: the same Update of GenericEVPN NLRIs ExaBGP's own unpack gives (a withdrawn
  EVPN NLRI kept as its bytes), at about a third of its CPU. Anything else (an End-of-RIB, other
  flags, ADD-PATH, a length that does not add up) goes to ExaBGP's own unpack, which judges it.
- **withdrawals batched**: consecutive withdraw-only EVPN UPDATEs of one peer become one API message: ExaBGP's
  own JSON for an UPDATE withdrawing all of their NLRIs, in order (``bgp.received`` reads it as it reads one).
  ExaBGP's header and neighbor text (host name, pids, time, addresses) were ~40 % of its JSON per withdrawal,
  and Canopy parsed and handled a message per route. The batch closes before any other message to that process
  (order kept), and when held writes would go out: the reactor about to sleep, API_HOLD_SECONDS after its first
  withdrawal, or API_HOLD_BYTES of NLRIs.
- **Canopy's commands found by their head**: ExaBGP dispatches a command line by trying each registered command
  (reverse-sorted) against it, ``name + " " in line`` among others: 34 names, each searched through the whole line,
  before ``announce evpn``; a batch of 230 routes is a 60 KB line (0.8 ms a line, ~35 ms of ExaBGP's CPU for
  10,000 routes announced). A line that starts ``[neighbor <ip> ]announce evpn `` or ``withdraw evpn `` (how
  ``bgp.routes`` writes them) goes to that command at once; any other to ExaBGP's own dispatch.
- **the collector kept off the routes during a burst of commands**: after a command of FREEZE_ROUTES routes or
  more what exists is frozen (``gc.freeze``), so a full collection does not walk the 10,000 routes ExaBGP holds
  in the middle of the burst; IDLE_COLLECT seconds after the last such command (or FROZEN_MAX after the first),
  the reactor about to sleep, everything is unfrozen and collected once.
"""

from __future__ import annotations

import gc
import re
import time

from exabgp.bgp.message import Action, Message, Update
from exabgp.bgp.message.direction import Direction
from exabgp.bgp.message.update.attribute import Attributes
from exabgp.bgp.message.update.nlri.evpn import MAC, Multicast, Prefix
from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN, GenericEVPN
from exabgp.bgp.message.update.nlri.nlri import NLRI
from exabgp.protocol.family import AFI, SAFI
from exabgp.reactor.api import API
from exabgp.reactor.api.processes import ProcessError, Processes
from exabgp.reactor.api.response import Response
from exabgp.reactor.loop import Reactor

from bgp.evpnwire import EVPN_AFI_SAFI, mp_unreach_value

API_HOLD_BYTES = 1 << 16  # written once this much is held for a process (also: a batch of withdrawals closes)
API_HOLD_SECONDS = 0.01  # or once the oldest held message is this old; and at once whenever the reactor goes idle
FREEZE_ROUTES = 100  # after a command of this many routes, what exists is frozen out of the cyclic collector's sight
IDLE_COLLECT = 0.5  # seconds after the last such command: unfrozen and collected once, the reactor going idle
FROZEN_MAX = 60.0  # seconds after the first freeze: collected at the next idle turn even if big commands go on
_FROZEN = {"first": None, "last": None}  # monotonic times of the first and last freeze since the last collection
_THROUGH: dict = {}  # ExaBGP's own functions this module wraps (install())

_EVPN_FAMILY = (AFI.l2vpn, SAFI.evpn)
EVPN_AFI_SAFI = b"\x00\x19\x46"  # AFI 25 (L2VPN), SAFI 70 (EVPN)
_MP_UNREACH = 15
_OPTIONAL, _EXTENDED = 0x80, 0x10  # MP_UNREACH_NLRI is optional non-transitive (RFC 4760)
_NLRI_JSON_BYTES = 28  # an NLRI's JSON besides its hex: '{ "code": 2, "raw": "" }, '


# --------------------------------------------------------------------------- received withdrawals, read


def evpn_withdrawals(data: bytes, direction, negotiated) -> Update | None:
    """A received UPDATE body (no header) that only withdraws EVPN routes, as the Update ExaBGP's unpack makes
    of it (GenericEVPN NLRIs, no attributes); None when it is anything else (ExaBGP's own unpack reads it)."""
    if direction != Direction.IN:
        return None
    value = mp_unreach_value(bytes(data))
    if value is None or value[:3] != EVPN_AFI_SAFI or len(value) == 3:  # 3: an End-of-RIB
        return None
    if _EVPN_FAMILY not in negotiated.families or negotiated.addpath.receive(*_EVPN_FAMILY):
        return None
    nlris, rest = [], value[3:]
    while rest:
        if len(rest) < 2 or len(rest) < rest[1] + 2:
            return None
        nlri, rest = EVPN.unpack_nlri(AFI.l2vpn, SAFI.evpn, rest, Action.WITHDRAW, False)
        nlris.append(nlri)
    return Update(nlris, Attributes())


def _unpack_update(cls, data, direction, negotiated):
    """Update.unpack_message, with ``evpn_withdrawals`` first."""
    update = evpn_withdrawals(data, direction, negotiated)
    return update if update is not None else _THROUGH["unpack_update"](cls, data, direction, negotiated)


# --------------------------------------------------------------------------- received EVPN NLRIs, cheap

_exabgp_evpn_unpack_nlri = EVPN.unpack_nlri.__func__


def _raw_hex(self) -> str:
    """ExaBGP's EVPN._raw (the NLRI's bytes in upper-case hex for the JSON "raw" field), without formatting
    each byte in Python: the same text, a twentieth of the CPU (it ran for every route received)."""
    return self.pack_nlri().hex().upper()


def _evpn_unpack_nlri(cls, afi, safi, bgp, action, addpath):
    """EVPN.unpack_nlri, a withdrawn NLRI kept as its bytes (GenericEVPN), its fields not parsed into objects:
    Canopy reads only code and bytes (``_nlri_json``), nothing else reads it with ``adj-rib-in false`` (a
    quarter of ExaBGP's CPU for a one-route withdrawal). Announced NLRIs go through ExaBGP's own, as do bad ones."""
    path_info, data = NLRI.consume_path_information(bgp, addpath)
    if action != Action.WITHDRAW or len(data) < 2 or len(data) < data[1] + 2:
        return _exabgp_evpn_unpack_nlri(cls, afi, safi, bgp, action, addpath)
    nlri = GenericEVPN(data[0], data[2:data[1] + 2])
    nlri.action, nlri.addpath = action, path_info
    return nlri, data[data[1] + 2:]


def _nlri_json(self, compact=None) -> str:
    """A received EVPN NLRI in the JSON ExaBGP writes to Canopy: its route type code and "raw" hex only.
    ``bgp.received`` decodes every route from "raw" (the wire bytes); ExaBGP's own text adds the name and each
    parsed field formatted one by one (RD, ESI, tag, MAC, labels, IP: a fifth of ExaBGP's CPU for a received
    withdrawal, and a third of the message Canopy then reads), which nothing reads."""
    return '{ "code": %d, "raw": "%s" }' % (self.CODE, self._raw())


# --------------------------------------------------------------------------- held writes


def _held(processes) -> dict:
    """{process name: [monotonic time of the oldest held message, [messages], bytes]} of this Processes."""
    return processes.__dict__.setdefault("_canopy_held", {})


def _write_held(self, process, string, neighbor=None):
    """Processes.write, held (see API_HOLD_BYTES): the messages reach the process in the same order, at most
    API_HOLD_SECONDS later while ExaBGP is busy, at once when it goes idle or terminates its processes. A batch
    of withdrawals open for the process is closed first (it came before)."""
    if string is None:
        return True
    _close_withdrawals(self, process)
    return _hold(self, process, string, time.monotonic())


def _hold(processes, process, string, since: float) -> bool:
    entry = _held(processes).setdefault(process, [since, [], 0])
    entry[0] = min(entry[0], since)
    entry[1].append(string)
    entry[2] += len(string) + 1
    due = entry[2] >= API_HOLD_BYTES or time.monotonic() - entry[0] >= API_HOLD_SECONDS
    if due or processes.__dict__.get("_canopy_terminating"):
        _write_out(processes, process)
    return True


def _write_out(processes, process) -> None:
    """Write what is held for ``process`` with ExaBGP's own write: one write and one flush (ProcessError on a
    broken pipe, the process marked broken as ExaBGP does)."""
    entry = _held(processes).pop(process, None)
    if entry is not None and process in processes._process:
        _THROUGH["write"](processes, process, "\n".join(entry[1]))


def flush_api(processes, idle: bool = True) -> None:
    """Write what is held: all of it (``idle``), else what has been held for API_HOLD_SECONDS (batches of
    withdrawals closed the same way first)."""
    now = time.monotonic()
    for process, batch in list(_batches(processes).items()):
        if idle or now - batch[0] >= API_HOLD_SECONDS:
            _quietly(_close_withdrawals, processes, process)
    for process, entry in list(_held(processes).items()):
        if idle or now - entry[0] >= API_HOLD_SECONDS:
            _quietly(_write_out, processes, process)


def _quietly(write, processes, process) -> None:
    try:
        write(processes, process)
    except ProcessError:
        pass  # marked broken: the reactor stops that process's peers on its next turn


def _wait_for_io_flushed(self, sleeptime):
    """Reactor._wait_for_io, after writing what the API processes are owed (all of it before a sleep), and
    collecting what bursts of commands left frozen once they are over."""
    flush_api(self.processes, idle=bool(sleeptime))
    if sleeptime:
        collect_when_idle()
    return _THROUGH["wait_for_io"](self, sleeptime)


# --------------------------------------------------------------------------- the cyclic collector


def routes_taken(count: int) -> None:
    """A command put ``count`` routes in (or took them out of) the outgoing RIB. After a big one, what exists is
    frozen (``gc.freeze``): mostly the routes ExaBGP keeps, which the collector would otherwise walk in full
    whenever they grew by a quarter: a full collection of ExaBGP with 10,000 routes stalled it ~80 ms quiet (250 ms
    at load 13) in the middle of Canopy's withdrawals. What is frozen is still freed by reference counting; cyclic
    garbage frozen with it waits for ``collect_when_idle``."""
    if count >= FREEZE_ROUTES:
        gc.freeze()
        _FROZEN["last"] = time.monotonic()
        if _FROZEN["first"] is None:
            _FROZEN["first"] = _FROZEN["last"]


def collect_when_idle(now: float | None = None) -> bool:
    """Once IDLE_COLLECT seconds have passed since the last freeze (the burst of commands is over), or FROZEN_MAX
    since the first (big commands that never stop): unfreeze and collect everything once, so no cyclic garbage
    stays frozen. True if it collected."""
    first, last = _FROZEN["first"], _FROZEN["last"]
    now = time.monotonic() if now is None else now
    if last is None or (now - last < IDLE_COLLECT and now - first < FROZEN_MAX):
        return False
    _FROZEN["first"] = _FROZEN["last"] = None
    gc.unfreeze()
    gc.collect()
    return True


def _terminate_flushed(self):
    """Processes.terminate, after writing what is held; what it writes itself (a shutdown message to each
    process, right before stopping them) goes out at once."""
    flush_api(self)
    self.__dict__["_canopy_terminating"] = True
    return _THROUGH["terminate"](self)


# --------------------------------------------------------------------------- received withdrawals, batched


def _batches(processes) -> dict:
    """{process name: [monotonic time of the first withdrawal, neighbor, [NLRIs], bytes]} of this Processes."""
    return processes.__dict__.setdefault("_canopy_withdrawals", {})


def _withdraw_only(update) -> bool:
    return (type(update) is Update and not update.attributes and bool(update.nlris)
            and all(nlri.action == Action.WITHDRAW and nlri.family().afi_safi() == _EVPN_FAMILY
                    for nlri in update.nlris))


def _update_batched(self, peer, direction, update, negotiated, header, body):
    """ExaBGP's API dispatch of an UPDATE: a withdraw-only EVPN one received, for a process with the JSON
    encoder and neither the negotiated capabilities nor the packets asked for, joins that process's batch;
    anything else is written as ExaBGP writes it (after the batch)."""
    if direction != "receive" or negotiated is not None or header or body or not _withdraw_only(update):
        return _THROUGH["dispatch_update"](self, peer, direction, update, negotiated, header, body)
    for process in self._notify(peer, f"{direction}-{Message.CODE.UPDATE.SHORT}"):
        if not isinstance(self._encoder[process], Response.JSON):
            self.write(process, self._encoder[process].update(peer, direction, update, negotiated, header, body),
                       peer)
            continue
        batch = _batches(self).get(process)
        if batch is not None and batch[1] is not peer:
            _close_withdrawals(self, process)
            batch = None
        if batch is None:
            batch = _batches(self)[process] = [time.monotonic(), peer, [], 0]
        batch[2].extend(update.nlris)
        batch[3] += sum(2 * len(nlri) + _NLRI_JSON_BYTES for nlri in update.nlris)
        if batch[3] >= API_HOLD_BYTES:
            _close_withdrawals(self, process)


def _close_withdrawals(processes, process) -> None:
    """The open batch of ``process`` as one API message (ExaBGP's JSON of one UPDATE withdrawing its NLRIs),
    held like any other, counted from its first withdrawal."""
    batch = _batches(processes).pop(process, None)
    if batch is None:
        return
    since, peer, nlris, _ = batch
    text = processes._encoder[process].update(peer, "receive", Update(nlris, Attributes()), None, b"", b"")
    _hold(processes, process, text, since)


# --------------------------------------------------------------------------- Canopy's commands found by their head

_CANOPY_COMMAND = re.compile(r"(?:neighbor \S+ )?((?:announce|withdraw) evpn) ")


def _response(self, reactor, service, command, use_json):
    """API.response: a line that starts with an evpn command goes to it without ExaBGP's search of the whole line
    for every registered command (module docstring); any other line, or one whose command is not registered, to
    ExaBGP's own."""
    head = _CANOPY_COMMAND.match(command)
    if head is not None:
        callback = self.callback["json" if use_json else "text"].get(head.group(1))
        if callback is not None:
            return callback(self, reactor, service, command, use_json)
    return _THROUGH["response"](self, reactor, service, command, use_json)


def install() -> None:
    """Wrap ExaBGP's API writes, its UPDATE unpack, its API dispatch of UPDATEs and of command lines; read and write
    received EVPN NLRIs cheaply (idempotent)."""
    if _THROUGH:
        return
    _THROUGH.update(write=Processes.write, terminate=Processes.terminate, wait_for_io=Reactor._wait_for_io,
                    unpack_update=Update.unpack_message.__func__,
                    dispatch_update=Processes._dispatch[Message.CODE.UPDATE], response=API.response)
    Processes.write, Processes.terminate = _write_held, _terminate_flushed
    API.response = _response
    Reactor._wait_for_io = _wait_for_io_flushed
    Update.unpack_message = classmethod(_unpack_update)
    Processes._dispatch[Message.CODE.UPDATE] = _update_batched
    EVPN._raw = _raw_hex
    EVPN.unpack_nlri = classmethod(_evpn_unpack_nlri)
    for nlri_class in (EVPN, MAC, Multicast, Prefix, GenericEVPN):
        nlri_class.json = _nlri_json
