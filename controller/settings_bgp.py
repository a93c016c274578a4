"""The controller's ``bgp`` settings (EVPN federation through ExaBGP): the section's fields, its frozen typed form
and the checks across its keys (controller/settings.py reads the whole file; docs/evpn.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller import fields as f
from controller import settingvalues as values
from controller.model import Field, Problem

SECTION = Field("bgp", "object", "EVPN federation through ExaBGP (off while no neighbor is configured)", fields=(
    Field("asn", "integer", "local AS number (also derives route distinguishers and targets: ASN:VNI)", values.asn,
          default=65000, nullable=False),
    Field("router_id", "string", "BGP router id (default: the first neighbor's local_address)", f.ipv4),
    Field("listen", "string", "address to accept BGP sessions on (default: none, Canopy only connects)",
          values.listen),
    Field("port", "integer", "TCP port to accept BGP sessions on", values.port, default=179, nullable=False),
    Field("neighbors", "array", "BGP peers: other controllers, route reflectors, data-centre routers",
          items=Field("neighbor", "object", "", fields=(
              Field("address", "string", "the peer's IP", f.ipv4, required=True),
              Field("asn", "integer", "the peer's AS number", values.asn, required=True),
              Field("port", "integer", "the peer's TCP port", values.port, default=179, nullable=False),
              Field("local_address", "string", "our source address for the session", f.ipv4),
              Field("md5_password", "string", "TCP MD5 signature password (RFC 2385)",
                    values.password(80, "leave md5_password out for a session without TCP MD5")),
              Field("hold_time", "integer", "hold time in seconds (0 or 3..65535)", values.hold_time, default=90,
                    nullable=False),
              Field("passive", "boolean", "only accept the session (needs bgp.listen)", f.boolean,
                    default=False, nullable=False),
              Field("rr_client", "boolean", "the peer is a route reflector and Canopy its client (iBGP)",
                    f.boolean, default=False, nullable=False),
          )), default=list, nullable=False),
    Field("graceful_restart", "object", "BGP graceful restart (RFC 4724) with every neighbor", fields=(
        Field("enabled", "boolean", "advertise it, and keep a restarting peer's routes (stale) until it is "
              "back and sent End-of-RIB", f.boolean, default=True, nullable=False),
        Field("restart_time", "integer", "seconds peers are asked to keep our routes while we restart",
              lambda v: f.integer(v, 1, 4095), default=120, nullable=False),
        Field("stale_time", "integer", "seconds a restarted peer has to send End-of-RIB before its stale "
              "routes are removed", lambda v: f.integer(v, 1, 3600), default=360, nullable=False),
    ), default=dict, nullable=False),
    Field("duplicate_mac", "object", "duplicate MAC detection (RFC 7432 section 15.1): a MAC that moves "
          "max_moves times within window seconds is no longer announced until cleared", fields=(
        Field("enabled", "boolean", "detect duplicate MACs", f.boolean, default=True, nullable=False),
        Field("max_moves", "integer", "moves within the window that make a MAC a duplicate (at least 2: a VM "
              "live migration moves once)", lambda v: f.integer(v, 2, 1000), default=5, nullable=False),
        Field("window", "integer", "seconds the moves are counted over", lambda v: f.integer(v, 1, 86400),
              default=180, nullable=False),
        Field("recovery", "integer", "seconds a flag lasts: then it is cleared and the MAC's moves counted anew; "
              "permanent (or off): until cleared by DELETE /v1/bgp/duplicate-macs",
              f.seconds_or_permanent(1, 604800), default="permanent", nullable=False),
    ), default=dict, nullable=False),
    Field("api_timeout", "integer", "seconds ExaBGP may leave its API commands unacknowledged before its peers "
          "are reported down (a frozen or wedged ExaBGP: bgp/watchdog.py)", lambda v: f.integer(v, 1, 600),
          default=5, nullable=False),
    Field("api_restart_after", "integer", "seconds of that silence before ExaBGP is killed and restarted (more "
          "than api_timeout)", lambda v: f.integer(v, 2, 3600), default=30, nullable=False),
), default=dict, nullable=False)


@dataclass(frozen=True)
class BgpNeighbor:
    address: str
    asn: int
    port: int = 179
    local_address: str | None = None
    md5_password: str | None = None
    hold_time: int = 90
    passive: bool = False
    rr_client: bool = False

@dataclass(frozen=True)
class GracefulRestartSettings:
    enabled: bool = True
    restart_time: int = 120
    stale_time: int = 360


@dataclass(frozen=True)
class DuplicateMacSettings:
    enabled: bool = True
    max_moves: int = 5
    window: int = 180
    recovery: int | str = "permanent"  # seconds, or "permanent"


@dataclass(frozen=True)
class BgpSettings:
    asn: int = 65000
    router_id: str | None = None
    listen: str | None = None
    port: int = 179
    neighbors: tuple[BgpNeighbor, ...] = ()
    graceful_restart: GracefulRestartSettings = GracefulRestartSettings()
    duplicate_mac: DuplicateMacSettings = DuplicateMacSettings()
    api_timeout: int = 5
    api_restart_after: int = 30

    @property
    def enabled(self) -> bool:
        return bool(self.neighbors)

def from_raw(raw) -> BgpSettings:
    """The typed section from its normalised keys (router_id defaults to the first neighbor's local_address)."""
    neighbors = tuple(BgpNeighbor(**n) for n in raw["neighbors"])
    router_id = raw["router_id"] or next((n.local_address for n in neighbors if n.local_address), None)
    return BgpSettings(asn=raw["asn"], router_id=router_id, listen=raw["listen"], port=raw["port"],
                       neighbors=neighbors, graceful_restart=GracefulRestartSettings(**raw["graceful_restart"]),
                       duplicate_mac=DuplicateMacSettings(**raw["duplicate_mac"]),
                       api_timeout=raw["api_timeout"], api_restart_after=raw["api_restart_after"])


def check(raw) -> list:
    """The problems across the section's keys (each key alone is checked by its field)."""
    found, seen = [], set()
    for i, n in enumerate(raw["neighbors"]):
        where = f"bgp.neighbors[{i}]"
        if n["address"] in seen:
            found.append(problem(f"{where}.address", f"{n['address']} is listed twice"))
        seen.add(n["address"])
        if n["passive"] and not raw["listen"]:
            found.append(problem(f"{where}.passive", "a passive neighbor needs bgp.listen to accept on"))
        if n["rr_client"] and n["asn"] != raw["asn"]:
            found.append(problem(f"{where}.rr_client", f"a route reflector session is iBGP: asn {n['asn']} is "
                                                       f"not the local asn {raw['asn']}"))
    if raw["api_restart_after"] <= raw["api_timeout"]:
        found.append(problem("bgp.api_restart_after", f"must be more than bgp.api_timeout ({raw['api_timeout']} "
                                                      "s): the peers are reported down before ExaBGP is restarted"))
    if raw["neighbors"] and not raw["router_id"] and not any(n["local_address"] for n in raw["neighbors"]):
        found.append(problem("bgp.router_id", "required when neighbors are configured (or give a neighbor a "
                                              "local_address)"))
    return found


def problem(path, reason) -> Problem:
    return Problem("settings", "", path, reason)
