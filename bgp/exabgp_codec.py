"""The offline codec: the BGP UPDATE messages ExaBGP (with Canopy's extension, bgp.exabgp_ext) puts on the wire
for a route or a batch of routes, and ExaBGP's JSON for a received UPDATE, without a session (as ``exabgp
decode``). For tests and benchmarks: the wire bytes Canopy's speaker sends, and what its API processes read."""

from __future__ import annotations

import copy

from bgp import routes
from bgp.exabgp_ext import ExaBGPPinError, build_change, install  # first: a wrong exabgp fails with the pin's message

from exabgp import version as _exabgp_version
from exabgp.bgp.message import Update
from exabgp.bgp.message.direction import Direction
from exabgp.configuration.check import _negotiated
from exabgp.configuration.configuration import Configuration
from exabgp.environment import getenv
from exabgp.logger import log as _exabgp_log
from exabgp.reactor.api.response import Response
from exabgp.rib.outgoing import OutgoingRIB

_CODEC_CONFIG = """neighbor 127.0.0.1 {
    router-id 10.0.0.2; local-address 127.0.0.1; local-as %d; peer-as %d;
    family { l2vpn evpn; }
}"""
_codec_cache: dict = {}


def _codec(local_as: int, peer_as: int):
    """A (neighbor, negotiated) pair for packing without a session (as ``exabgp decode``)."""
    if (local_as, peer_as) not in _codec_cache:
        env = getenv()
        _exabgp_log.silence()
        _exabgp_log.init(env)
        configuration = Configuration([_CODEC_CONFIG % (local_as, peer_as)], text=True)
        if not configuration.reload():
            raise ExaBGPPinError(f"codec configuration rejected: {configuration.error}")
        neighbor = next(iter(configuration.neighbors.values()))
        _codec_cache[local_as, peer_as] = (neighbor, _negotiated(neighbor))
    return _codec_cache[local_as, peer_as]


def encode_update(route: routes.Route, action: str, local_as: int = 65000, peer_as: int = 65001) -> bytes:
    """The BGP UPDATE (with header) ExaBGP sends for ``action`` on ``route`` (eBGP by default)."""
    install()
    _, negotiated = _codec(local_as, peer_as)
    change = build_change(route, action)
    return b"".join(Update([change.nlri], change.attributes).messages(negotiated))


def encode_rib_updates(batch, action: str, local_as: int = 65000, peer_as: int = 65001,
                       message_size: int | None = None) -> list[bytes]:
    """The BGP UPDATE messages (with headers) ExaBGP sends when ``action`` on every route of ``batch`` is in
    a peer's outgoing RIB at once: what one batched API command puts on the wire. ``message_size``: the session's
    (4,096 without RFC 8654's extended messages, as with GoBGP); by default the codec's, which negotiates them."""
    install()
    neighbor, negotiated = _codec(local_as, peer_as)
    if message_size is not None:
        negotiated = copy.copy(negotiated)
        negotiated.msg_size = message_size
    rib = OutgoingRIB(neighbor.rib.outgoing.cache, neighbor.families())
    for route in batch:
        rib.add_to_rib(build_change(route, action), force=True)
    return [message for update in rib.updates(True) for message in update.messages(negotiated)]


def decode_update(message: bytes, local_as: int = 65000, peer_as: int = 65001) -> str:
    """ExaBGP's JSON for a received UPDATE (with header), as its API processes see it."""
    install()
    neighbor, negotiated = _codec(local_as, peer_as)
    update = Update.unpack_message(message[19:], Direction.IN, negotiated)
    return Response.JSON(_exabgp_version.json).update(neighbor, "receive", update, None, "", "")


__all__ = ["decode_update", "encode_rib_updates", "encode_update"]
