"""The external gateway's MAC, resolved by ARP from each VRS that translates to an external network without a
static ``gateway_mac`` (docs/external.md).

The controller asks: an ARP request from the VRS's own address on the network (the hypervisor's address, else a
floating IP active there) is sent out of the uplink by packet-out, again every ``refresh`` seconds; the gateway's
answer comes back by packet-in (the uplink owner's flow in ``external_in``, openflow/external.py) and becomes
State (``State.gateway_learned``), from which the translation flows take it. A MAC not confirmed for ``timeout``
seconds is forgotten: outbound translation stops until the gateway answers again. Pure bookkeeping here; the Ryu
app sends and receives (controller/app.py). The resolved MACs and when each was last confirmed also go to the HA
standby (controller/gatewaykeep.py), whose ``heard`` then holds the active's confirmation times.
"""

from __future__ import annotations

import ipaddress

from controller.extnet import GatewayNeed
from openflow.flows import OFPVID_PRESENT

ETH_ARP = b"\x08\x06"
ARP_HEADER = b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, 6, 4


def request_frame(need: GatewayNeed) -> bytes:
    """A broadcast ARP request for the gateway's address, from the VRS's address and MAC on the network."""
    mac = bytes.fromhex(need.sender_mac.replace(":", ""))
    arp = ARP_HEADER + b"\x00\x01" + mac + ipaddress.IPv4Address(need.sender_ip).packed + b"\x00" * 6 + \
        ipaddress.IPv4Address(need.gateway_ip).packed
    return b"\xff" * 6 + mac + ETH_ARP + arp + b"\x00" * 18


def request_actions(need: GatewayNeed) -> list:
    tag = [("push_vlan",), ("set", "vlan_vid", need.vlan | OFPVID_PRESENT)] if need.vlan else []
    return tag + [("output", need.uplink_ofport)]


def parse_reply(frame: bytes) -> tuple[str, str] | None:
    """(sender IP, sender MAC) of an ARP reply (untagged: the uplink's VLAN is popped first); None otherwise."""
    if len(frame) < 42 or frame[12:14] != ETH_ARP or frame[14:20] != ARP_HEADER or frame[20:22] != b"\x00\x02":
        return None
    mac = ":".join(f"{b:02x}" for b in frame[22:28])
    return str(ipaddress.IPv4Address(frame[28:32])), mac


class GatewayResolver:
    """When to ask, which answers count, what to forget. Keys are (VRS session, external network id)."""

    def __init__(self, refresh: float, timeout: float):
        self.refresh, self.timeout = refresh, timeout
        self.asked: dict[tuple[str, str], float] = {}  # last request sent
        self.heard: dict[tuple[str, str], float] = {}  # last answer accepted (or the HA active's, replicated)
        self.confirmed = 0  # answers accepted so far: the HA active sends the confirmation times again after one

    def due(self, view, now: float) -> list[GatewayNeed]:
        """The needs to ask for now (never asked, or asked ``refresh`` ago); forgets when it asked for keys no longer
        needed (when they were last heard is kept until ``expired`` forgets them: a MAC no longer needed ages out)."""
        needs = {(s, n): need for s, by_net in view.external.gateways.items() for n, need in by_net.items()}
        for key in [k for k in self.asked if k not in needs]:
            del self.asked[key]
        return [need for key, need in sorted(needs.items()) if now - self.asked.get(key, -self.refresh) >= self.refresh]

    def sent(self, need: GatewayNeed, now: float) -> None:
        self.asked[(need.session, need.network_id)] = now

    def answer(self, view, session: str, in_port: int, frame: bytes, now: float) -> tuple[str, str] | None:
        """(network id, gateway MAC) when ``frame``, received from ``in_port`` of ``session``, is the awaited
        gateway's ARP answer; None otherwise (it changes nothing)."""
        got = parse_reply(frame)
        if got is None:
            return None
        for net_id, need in view.external.gateways.get(session, {}).items():
            if need.uplink_ofport == in_port and need.gateway_ip == got[0]:
                self.heard[(session, net_id)] = now
                self.confirmed += 1
                return net_id, got[1]
        return None

    def expired(self, resolved, now: float) -> list[tuple[str, str]]:
        """Resolved keys whose answer is older than ``timeout`` (or never heard by this controller); forgets when
        keys no longer resolved were heard."""
        for key in [k for k in self.heard if k not in resolved]:
            del self.heard[key]
        out = []
        for key in resolved:
            heard = self.heard.setdefault(key, now)  # learnt before this resolver existed: a full timeout from now
            if now - heard >= self.timeout:
                out.append(key)
        return out
