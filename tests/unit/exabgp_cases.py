"""EVPN routes and fakes shared by the ExaBGP extension's tests (test_exabgp_ext*.py): one route of each type,
ExaBGP's reactor and API processes with just enough of them, UPDATE bodies as GoBGP withdraws."""

import copy
import struct

from bgp import exabgp_codec, exabgp_ext, exabgp_ext_api
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute

TYPE2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
                   next_hop="192.0.2.1", route_targets=("65000:5001", "65000:9001"),
                   router_mac="02:00:00:00:00:01", mobility_seq=3)
TYPE2_L2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:57", l2_vni=5000, next_hop="192.0.2.1",
                      route_targets=("65000:5000",))
TYPE3 = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
TYPE5 = IpPrefixRoute(rd="65000:100", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                      route_targets=("65000:9001",), router_mac="02:00:00:00:00:01")
ALL = [TYPE2, TYPE2_L2, TYPE3, TYPE5]


def attributes(message: bytes) -> dict[int, bytes]:
    """Path attributes of a BGP UPDATE (with header), by type code."""
    body = message[19:]
    withdrawn = struct.unpack("!H", body[:2])[0]
    length = struct.unpack("!H", body[2 + withdrawn:4 + withdrawn])[0]
    data, found = body[4 + withdrawn:4 + withdrawn + length], {}
    while data:
        flags, code = data[0], data[1]
        size, head = (struct.unpack("!H", data[2:4])[0], 4) if flags & 0x10 else (data[2], 3)
        found[code], data = data[head:head + size], data[head + size:]
    return found


def communities(message: bytes) -> set[bytes]:
    value = attributes(message)[16]
    return {value[i:i + 8] for i in range(0, len(value), 8)}


class FakeReactor:
    """Just enough of ExaBGP's reactor for a command callback: records acks; the peer is a real ExaBGP
    neighbor (from a real configuration) with its real outgoing RIB."""

    def __init__(self, peers=("neighbor 127.0.0.2 local-ip 127.0.0.1",)):
        from exabgp.bgp.neighbor import Neighbor

        self._peers = list(peers)
        self.acks = []
        self.processes = self
        self.configuration = self
        self.asynchronous = self
        template, _ = exabgp_codec._codec(65000, 65001)
        neighbor = copy.deepcopy(template)
        neighbor.make_rib()
        neighbor.rib.outgoing.clear()  # ExaBGP keeps one RIB per neighbor name, shared between tests
        self.neighbors = {name: neighbor for name in self._peers}
        self.rib = neighbor.rib.outgoing
        assert isinstance(neighbor, Neighbor)

    @property
    def injected(self):
        """The changes the RIB will send next (and forgets them)."""
        return list(self.rib.queued_changes())

    def sent(self):
        """The NLRIs of the UPDATEs the RIB sends now, with their actions."""
        return [(str(nlri.action).lower().rsplit(".", 1)[-1], nlri.pack_nlri())
                for update in self.rib.updates(False) for nlri in update.nlris]

    def peers(self, service=""):
        return self._peers

    def answer_done(self, service, force=False):
        self.acks.append("done")

    def answer_error(self, service):
        self.acks.append("error")

    def schedule(self, service, line, callback):
        for _ in callback:
            pass


def dispatch(reactor, line):
    from exabgp.reactor.api import API

    exabgp_ext.install()
    API(reactor).process(reactor, "canopy", line)


def batch_of(count: int, next_hops=("192.0.2.1",)) -> list:
    return [MacIpRoute(rd="65000:100", mac=f"52:54:00:00:{i >> 8:02x}:{i & 0xff:02x}", ip=f"10.1.{i >> 8}.{i & 0xff}",
                       l2_vni=5001, l3_vni=9001, next_hop=next_hops[i % len(next_hops)],
                       router_mac="02:00:00:00:00:01", route_targets=("65000:5001",)) for i in range(count)]


class RecordingPipe:
    """A process's stdin as ExaBGP's Processes.write uses it: what is written, and how often it is flushed."""

    def __init__(self):
        self.writes, self.flushes = [], 0

    def write(self, data):
        self.writes.append(data)

    def flush(self):
        self.flushes += 1


def mp_unreach(*routes_, flags=0x90) -> bytes:
    """An UPDATE body (no header) as GoBGP withdraws EVPN routes: one MP_UNREACH_NLRI, nothing else."""
    value = struct.pack("!HB", 25, 70) + b"".join(exabgp_ext.build_nlri(r, "withdraw").pack_nlri() for r in routes_)
    length = struct.pack("!H", len(value)) if flags & 0x10 else bytes([len(value)])
    attribute = bytes([flags, 15]) + length + value
    return struct.pack("!HH", 0, len(attribute)) + attribute


def api_processes(monkeypatch):
    """ExaBGP's Processes with one JSON API process "canopy" writing into a RecordingPipe, every peer's received
    UPDATEs sent to it, nothing written before the reactor sleeps (no clock decides)."""
    from types import SimpleNamespace

    exabgp_ext.install()
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_SECONDS", 3600.0)
    processes, pipe = exabgp_ext.Processes(), RecordingPipe()
    processes._process["canopy"] = SimpleNamespace(stdin=pipe)
    processes._encoder["canopy"] = exabgp_ext.Response.JSON("5.0.0")
    monkeypatch.setattr(processes, "_notify", lambda neighbor, event: ["canopy"], raising=False)
    return processes, pipe


def received(processes, body: bytes, neighbor=None) -> None:
    """ExaBGP's reactor handing a received UPDATE body to its API processes (parsed, as Canopy configures)."""
    from exabgp.bgp.message.direction import Direction

    codec_neighbor, negotiated = exabgp_codec._codec(65000, 65001)
    update = exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated)
    processes.message(exabgp_ext.Message.CODE.UPDATE, neighbor or codec_neighbor, "receive", update, None, b"", b"")
