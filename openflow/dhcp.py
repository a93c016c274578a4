"""Canopy's DHCP server, as pure functions: what to offer a vport, how to read a request, what to answer.

The VRS sends a VM's DHCP request to the controller as a packet-in; the controller looks the client's
MAC up among its vports, builds a ``Lease`` with ``lease_for`` and sends ``reply(request, lease)`` back
as a packet-out. Only the configured IP of a known vport is ever offered; nothing here keeps state or
touches a datapath.

Reading is done here with ``struct`` (Ryu's DHCP parser stops at the first PAD option, does not check
the magic cookie and raises UnicodeDecodeError on a non-ASCII sname); writing uses Ryu's packet
library, which computes the IPv4 and UDP checksums.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from controller.derive import L2_SERVER_MAC
from controller.policy import dhcp_server_ip
from controller.ryu_compat import pkt_dhcp, pkt_ethernet, pkt_ipv4, pkt_packet, pkt_udp

VXLAN_OVERHEAD = 50
SERVER_PORT, CLIENT_PORT = 67, 68
BROADCAST_IP, BROADCAST_MAC, ZERO_IP = "255.255.255.255", "ff:ff:ff:ff:ff:ff", "0.0.0.0"
BOOTREQUEST, BOOTREPLY = 1, 2
BROADCAST_FLAG = 0x8000
MAGIC_COOKIE = bytes((99, 130, 83, 99))
MIN_BOOTP_LEN = 300  # RFC 1542: some clients drop shorter BOOTP messages

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MESSAGE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
                 NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}
CLIENT_MESSAGES = frozenset({DISCOVER, REQUEST, DECLINE, RELEASE, INFORM})

# Option tags (RFC 2132, RFC 3442).
PAD, SUBNET_MASK, ROUTER, DNS, DOMAIN_NAME, MTU, NTP = 0, 1, 3, 6, 15, 26, 42
REQUESTED_IP, LEASE_TIME, MESSAGE_TYPE, SERVER_ID, PARAM_REQUEST_LIST = 50, 51, 53, 54, 55
RENEWAL_TIME, REBINDING_TIME, CLIENT_ID, CLASSLESS_ROUTES, END = 58, 59, 61, 121, 255

_ETH = struct.Struct("!6s6sH")
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s")  # up to chaddr; sname and file follow (192 bytes)
_BOOTP_LEN = 236  # fixed part, before the magic cookie
_ETH_IP, _ETH_VLAN, _IPPROTO_UDP = 0x0800, 0x8100, 17


@dataclass(frozen=True)
class Lease:
    """Everything Canopy tells one client. Addresses are dotted-quad strings, MACs lower-case."""

    client_mac: str
    ip: str
    prefix_len: int
    server_ip: str  # the server identifier (option 54) and the IP source of our replies
    server_mac: str  # the Ethernet source of our replies
    router: str | None = None
    dns_servers: tuple[str, ...] = ()
    domain_name: str | None = None
    lease_time: int = 86400
    mtu: int | None = None
    routes: tuple[tuple[str, str], ...] = ()  # (prefix, next_hop) for option 121
    ntp_servers: tuple[str, ...] = ()

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix_len}").netmask)


@dataclass(frozen=True)
class Request:
    """A parsed client message (DISCOVER, REQUEST, DECLINE, RELEASE or INFORM)."""

    message_type: int
    xid: int
    chaddr: str  # client hardware address, lower-case
    eth_src: str
    flags: int
    ciaddr: str
    giaddr: str
    requested_ip: str | None = None  # option 50
    server_id: str | None = None  # option 54
    client_id: bytes | None = None  # option 61
    param_request_list: tuple[int, ...] = ()  # option 55

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def describe(self) -> str:
        """One line for logs: "DHCPREQUEST xid=0x1234abcd from 02:00:00:00:00:01 (requested 10.0.1.11)"."""
        extra = f" (requested {self.requested_ip})" if self.requested_ip else ""
        name = MESSAGE_NAMES.get(self.message_type, str(self.message_type))
        return f"DHCP{name} xid={self.xid:#010x} from {self.chaddr}{extra}"


# ----------------------------------------------------------------------------------------------- lease

def lease_for(policy_subnet: dict, vport: dict, domain: dict | None, underlay_mtu: int) -> Lease | None:
    """The lease for ``vport`` in ``policy_subnet`` (stored objects, see controller/model.py), or None.

    None when the subnet's DHCP is disabled, it has no cidr, or the vport has no IP in it. The server
    identifier is the subnet gateway (for an L2-only subnet without one: the last host address of the
    cidr); the router is the gateway when there is one; the MTU defaults to the underlay's minus VXLAN.
    """
    cfg = policy_subnet.get("dhcp") or {}
    if not cfg.get("enabled", True) or not policy_subnet.get("cidr"):
        return None
    net = ipaddress.IPv4Network(policy_subnet["cidr"], strict=False)
    ip = next((a for a in vport.get("ips") or () if ipaddress.IPv4Address(a) in net), None)
    if ip is None:
        return None
    gateway = policy_subnet.get("gateway")
    return Lease(
        client_mac=vport["mac"].lower(), ip=ip, prefix_len=net.prefixlen,
        server_ip=dhcp_server_ip(policy_subnet),
        server_mac=((domain or {}).get("gateway_mac") or L2_SERVER_MAC).lower(),
        router=gateway, dns_servers=tuple(cfg.get("dns_servers") or ()), domain_name=cfg.get("domain_name"),
        lease_time=cfg.get("lease_time") or 86400, mtu=cfg.get("mtu") or underlay_mtu - VXLAN_OVERHEAD,
        routes=tuple((r["prefix"], r["next_hop"]) for r in cfg.get("routes") or ()),
        ntp_servers=tuple(cfg.get("ntp_servers") or ()))


# --------------------------------------------------------------------------------------------- parsing

def parse_request(frame: bytes) -> Request | None:
    """The DHCP client message in an Ethernet frame (UDP 68 -> 67), or None; never raises.

    Accepts one 802.1Q tag. Checksums are not verified: a packet-in may carry a partial UDP checksum
    left by TX offload in the VM.
    """
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        return None
    try:
        return _parse(bytes(frame))
    except (struct.error, ValueError, IndexError):
        return None


def _parse(frame: bytes) -> Request | None:
    udp_payload, eth_src = _udp_payload(frame)
    if udp_payload is None or len(udp_payload) < _BOOTP_LEN + len(MAGIC_COOKIE):
        return None
    op, htype, hlen, _hops, xid, _secs, flags, ciaddr, _yi, _si, giaddr, chaddr = _BOOTP.unpack_from(udp_payload)
    if op != BOOTREQUEST or htype != 1 or hlen != 6 or udp_payload[_BOOTP_LEN:_BOOTP_LEN + 4] != MAGIC_COOKIE:
        return None
    opts = _parse_options(udp_payload[_BOOTP_LEN + 4:])
    if opts is None or len(opts.get(MESSAGE_TYPE, b"")) != 1 or opts[MESSAGE_TYPE][0] not in CLIENT_MESSAGES:
        return None
    if any(tag in opts and len(opts[tag]) != 4 for tag in (REQUESTED_IP, SERVER_ID)):
        return None
    return Request(
        message_type=opts[MESSAGE_TYPE][0], xid=xid, chaddr=_mac_text(chaddr[:6]), eth_src=eth_src, flags=flags,
        ciaddr=_ip_text(ciaddr), giaddr=_ip_text(giaddr), requested_ip=_ip_option(opts, REQUESTED_IP),
        server_id=_ip_option(opts, SERVER_ID), client_id=opts.get(CLIENT_ID),
        param_request_list=tuple(opts.get(PARAM_REQUEST_LIST, b"")))


def _udp_payload(frame: bytes) -> tuple[bytes | None, str]:
    """(payload of a UDP 68 -> 67 datagram in an unfragmented IPv4 packet, Ethernet source), else (None, "")."""
    _dst, src, ethertype = _ETH.unpack_from(frame)
    offset = _ETH.size
    if ethertype == _ETH_VLAN:
        (ethertype,) = struct.unpack_from("!H", frame, offset + 2)
        offset += 4
    if ethertype != _ETH_IP:
        return None, ""
    version_ihl, total_len, frag, proto = frame[offset], *struct.unpack_from("!H2xHxB", frame, offset + 2)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or proto != _IPPROTO_UDP or frag & 0x3FFF:
        return None, ""
    ip_packet = frame[offset:offset + total_len]
    if len(ip_packet) != total_len or total_len < ihl + 8:
        return None, ""
    sport, dport, udp_len = struct.unpack_from("!HHH", ip_packet, ihl)
    if (sport, dport) != (CLIENT_PORT, SERVER_PORT) or udp_len < 8 or ihl + udp_len > total_len:
        return None, ""
    return ip_packet[ihl + 8:ihl + udp_len], _mac_text(src)


def _parse_options(data: bytes) -> dict[int, bytes] | None:
    """Options as {tag: value}, repeated tags concatenated (RFC 3396); None if an option is truncated."""
    opts: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        tag = data[i]
        if tag == END:
            return opts
        if tag == PAD:
            i += 1
            continue
        if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
            return None
        opts[tag] = opts.get(tag, b"") + data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return opts  # no END: tolerated, as most servers do


def _ip_option(opts, tag) -> str | None:
    return _ip_text(opts[tag]) if tag in opts else None


def _ip_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# ---------------------------------------------------------------------------------------------- replies

def reply(request: Request, lease: Lease) -> bytes | None:
    """The whole Ethernet frame answering ``request`` from ``lease``, or None when nothing is sent.

    DISCOVER -> OFFER; REQUEST -> ACK for the lease IP, NAK for any other, nothing when it selects
    another server (RFC 2131 4.3.2); INFORM -> ACK without lease; RELEASE, DECLINE -> nothing. A request
    whose chaddr is not the lease's client gets nothing.
    """
    if request.chaddr != lease.client_mac.lower():
        return None
    if request.message_type == DISCOVER:
        return _frame(request, lease, OFFER, yiaddr=lease.ip, ciaddr=ZERO_IP)
    if request.message_type == INFORM:  # RFC 2131 3.4: configuration only, no address, no lease time
        return _frame(request, lease, ACK, yiaddr=ZERO_IP, ciaddr=request.ciaddr, with_lease=False)
    if request.message_type != REQUEST:
        return None
    verdict = request_verdict(request, lease)
    if verdict == ACK:
        return _frame(request, lease, ACK, yiaddr=lease.ip, ciaddr=request.ciaddr)
    if verdict == NAK:
        return _frame(request, lease, NAK, yiaddr=ZERO_IP, ciaddr=ZERO_IP)
    return None


def request_verdict(request: Request, lease: Lease) -> int | None:
    """ACK, NAK, or None (silence) for a DHCPREQUEST.

    With a server identifier (SELECTING) that is not ours the client chose another server: silence.
    Otherwise the address asked for (option 50, else ciaddr) must be the lease's IP.
    """
    if request.server_id is not None and request.server_id != lease.server_ip:
        return None
    asked = request.requested_ip or (request.ciaddr if request.ciaddr != ZERO_IP else None)
    return ACK if asked == lease.ip else NAK


def reply_options(lease: Lease, message_type: int, with_lease: bool = True) -> list[tuple[int, bytes]]:
    """(tag, value) pairs of a reply in wire order, without END; long values are split later.

    A NAK carries only the message type and server identifier; ``with_lease`` adds lease, T1 and T2.
    """
    opts = [(MESSAGE_TYPE, bytes([message_type])), (SERVER_ID, _ip(lease.server_ip))]
    if message_type == NAK:
        return opts
    opts.append((SUBNET_MASK, _ip(lease.netmask)))
    if lease.router:
        opts.append((ROUTER, _ip(lease.router)))
    if lease.dns_servers:
        opts.append((DNS, b"".join(_ip(a) for a in lease.dns_servers)))
    if lease.domain_name:
        opts.append((DOMAIN_NAME, lease.domain_name.encode()))
    if lease.mtu:
        opts.append((MTU, struct.pack("!H", lease.mtu)))
    if lease.ntp_servers:
        opts.append((NTP, b"".join(_ip(a) for a in lease.ntp_servers)))
    if lease.routes:
        opts.append((CLASSLESS_ROUTES, classless_routes(lease.routes, lease.router)))
    if with_lease:
        opts += [(LEASE_TIME, struct.pack("!I", lease.lease_time)),
                 (RENEWAL_TIME, struct.pack("!I", lease.lease_time // 2)),
                 (REBINDING_TIME, struct.pack("!I", lease.lease_time * 7 // 8))]
    return opts


def classless_routes(routes, router: str | None) -> bytes:
    """Option 121 value (RFC 3442): each route as prefix length, significant octets, next hop.

    A client that gets option 121 ignores option 3, so the default route via ``router`` is added last.
    """
    out = b""
    for prefix, next_hop in list(routes) + ([("0.0.0.0/0", router)] if router else []):
        net = ipaddress.IPv4Network(prefix, strict=False)
        out += bytes([net.prefixlen]) + net.network_address.packed[:(net.prefixlen + 7) // 8] + _ip(next_hop)
    return out


def destination(request: Request, message_type: int, yiaddr: str) -> tuple[str, str]:
    """(IP, MAC) a reply goes to, per RFC 2131 4.1 without relays.

    NAK: broadcast. ciaddr set: unicast to it. Broadcast flag (or no yiaddr): broadcast. Else unicast
    to yiaddr at chaddr.
    """
    if message_type == NAK:
        return BROADCAST_IP, BROADCAST_MAC
    if request.ciaddr != ZERO_IP:
        return request.ciaddr, request.chaddr
    if request.broadcast or yiaddr == ZERO_IP:
        return BROADCAST_IP, BROADCAST_MAC
    return yiaddr, request.chaddr


def _frame(request: Request, lease: Lease, message_type: int, yiaddr: str, ciaddr: str,
           with_lease: bool = True) -> bytes:
    """Ethernet/IPv4/UDP 67 -> 68 frame carrying one BOOTREPLY."""
    ip_dst, eth_dst = destination(request, message_type, yiaddr)
    options = [pkt_dhcp.option(tag, chunk) for tag, value in reply_options(lease, message_type, with_lease)
               for chunk in _chunks(value)]
    message = pkt_dhcp.dhcp(op=BOOTREPLY, chaddr=request.chaddr, options=pkt_dhcp.options(option_list=options),
                            xid=request.xid, flags=request.flags, ciaddr=ciaddr, yiaddr=yiaddr,
                            giaddr=request.giaddr)
    length = _BOOTP_LEN + len(MAGIC_COOKIE) + sum(2 + len(o.value) for o in options) + 1
    pkt = pkt_packet.Packet()
    pkt.add_protocol(pkt_ethernet.ethernet(dst=eth_dst, src=lease.server_mac, ethertype=_ETH_IP))
    pkt.add_protocol(pkt_ipv4.ipv4(src=lease.server_ip, dst=ip_dst, proto=_IPPROTO_UDP, ttl=64))
    pkt.add_protocol(pkt_udp.udp(src_port=SERVER_PORT, dst_port=CLIENT_PORT))
    pkt.add_protocol(message)
    pkt.add_protocol(bytes(max(0, MIN_BOOTP_LEN - length)))
    pkt.serialize()
    data = bytearray(pkt.data)
    udp_csum = _ETH.size + 20 + 6
    if data[udp_csum:udp_csum + 2] == b"\0\0":  # Ryu sends a computed 0 as 0 ("none"); RFC 768 says 0xFFFF
        data[udp_csum:udp_csum + 2] = b"\xff\xff"
    return bytes(data)


def _chunks(value: bytes):
    """A long option value split into 255-byte pieces, sent as repeated options (RFC 3396)."""
    return [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]


def _ip(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed
