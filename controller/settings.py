"""The controller's own settings (not tenant policy): typed, validated, frozen.

Read from a YAML file (``canopy run --config FILE``; see config/canopy.yaml for every key). Unknown keys
and wrong types are refused with file, line and reason, before anything starts. Runtime state never
lives here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from controller import fields as f
from controller import secretfile, settings_bgp, tls, yamldoc
from controller import settingvalues as values
from controller.model import Field, normalise_fields
from controller.settings_bgp import (  # noqa: F401 - the bgp section's types, named here as before
    BgpNeighbor, BgpSettings, DuplicateMacSettings, GracefulRestartSettings)
from controller.settingvalues import MIN_SECRET
from controller.tls import TlsFiles

DEFAULT_DATA_DIR = "/var/lib/canopy"


HOLD_MAX = 60  # seconds: restart.hold_max when absent (unless hold_time is larger)
TLS_FILE = values.path("leave the whole tls section out for plain listeners")
CHASSIS_HINT = "the hypervisor's system-id: ovs-vsctl get Open_vSwitch . external_ids:system-id"


def _endpoint(listen, port, doc):
    return (Field("listen", "string", f"{doc} listen address", values.listen, default=listen, nullable=False),
            Field("port", "integer", f"{doc} TCP port", values.port, default=port, nullable=False))


def _tls_switch(doc):
    return Field("tls", "boolean", f"serve {doc} over TLS (default: yes when the tls section is set)", f.boolean)


def _limit(name, doc, low, high, default):
    return Field(name, "integer", doc, lambda v: f.integer(v, low, high), default=default, nullable=False)


def _meter(kind, doc):
    rate, burst = values.PUNT_METER_DEFAULTS[kind]
    return Field(kind, "object", doc, fields=(
        _limit("rate", "packets per second the switch sends to the controller through this meter", 1, 1000000, rate),
        _limit("burst", "packets it may send at once over the rate", 1, 1000000, burst),
    ), default=dict, nullable=False)


PUNT_METERS = Field(
    "punt_meters", "object", "OpenFlow meters on the flows that send packets to the controller: one per port (a vport's "
    "DHCP, a pending port's frames) or per VRS (the rest); packets over a meter's rate are dropped by the switch "
    "(docs/vrs.md, \"Packets to the controller\")", fields=(
        _meter("activation", "each live migration's pending port: its VM's frames, the first of which activates it"),
        _meter("dhcp", "DHCP requests: each vport's port a meter of its own; a bare-metal gateway VRS's servers one"),
        _meter("other", "the answers to the controller's ARP requests for external networks' gateways"),
        _meter("switch", "every packet a VRS sends to the controller, whatever its port or kind, after the meter of "
               "its own: one per VRS (OpenFlow's controller meter)"),
    ), default=dict, nullable=False)


# Connection limits of the three listeners (docs/limits.md). An OVSDB message of a
# real 10,000-port hypervisor (the initial monitor reply Canopy asks for) is about 5.6 MB: see
# tests/integration/test_hostile_net.py::test_ovsdb_cap_fits_a_10000_port_hypervisor.
OPENFLOW_LIMITS = (
    _limit("handshake_timeout_ms", "a peer that has not sent HELLO and its features by then is dropped",
           100, 600000, 10000),
    _limit("max_connections_per_source", "open OpenFlow connections per source address", 1, 100000, 32),
    Field("dead_after_ms", "integer", "a connection whose switch's host stops acknowledging TCP (it died, or its "
          "network went) is closed after this long (TCP keepalive and user timeout, answered by the host's kernel, so "
          "a busy switch is never dropped; 0: never, else at least 2000)", values.dead_after_ms, default=30000,
          nullable=False),
)
OVSDB_LIMITS = (
    _limit("handshake_timeout_ms", "each handshake request (list_dbs, get_schema) must be answered by then",
           100, 600000, 5000),
    _limit("sync_timeout_ms", "a peer whose first full copy of its database has not arrived by then is dropped "
           "(its session's wait for a turn to ask for it not counted)", 1000, 3600000, 120000),
    _limit("max_connections_per_source", "open OVSDB connections per source address", 1, 100000, 16),
    _limit("max_message_bytes", "a longer OVSDB message drops its session", 65536, 1 << 31, 32 << 20),
    _limit("probe_interval_ms", "a peer silent this long is sent an echo request; silent for two intervals, its session "
           "is dropped (a hung ovsdb-server, or a host gone without closing the connection)", 1000, 3600000, 5000),
    _limit("reconnect_grace_ms", "a VRS or hardware VTEP whose OVSDB connection ended stays known this long: a "
           "reconnect of the same chassis (Physical_Switch name) meanwhile is the same switch (docs/vrs.md, "
           "docs/vtep.md)", 0, 600000, 10000),
)
REST_LIMITS = (
    _limit("header_timeout_ms", "request line and headers must arrive within this (also the keep-alive "
           "idle time)", 100, 600000, 10000),
    _limit("body_timeout_ms", "the declared body must arrive within this", 100, 600000, 30000),
    _limit("max_body_bytes", "a larger body is refused with 413 before it is read", 1024, 1 << 31, 32 << 20),
    _limit("max_connections", "open REST connections in all", 1, 100000, 256),
    _limit("max_connections_per_source", "open REST connections per source address", 1, 100000, 64),
    _limit("write_wait_ms", "a write waits at most this for the writes before it and a replicated batch the HA "
           "applier has in hand (State's commit section); past it: 503 commit_busy with Retry-After, nothing "
           "changed (reads never wait)", 0, 600000, 5000),
)


SETTINGS = (
    Field("data_dir", "string", "where the store and the generated REST token live",
          values.path("it meant the directory canopy started in: write that directory, or leave data_dir out "
                      f"for {DEFAULT_DATA_DIR}"),
          default=DEFAULT_DATA_DIR, nullable=False),
    Field("log_level", "string", "debug, info, warning or error", f.one_of("debug", "info", "warning", "error"),
          default="info", nullable=False),
    Field("log_format", "string", "text (one line per record) or json (one JSON object per line)",
          f.one_of("text", "json"), default="text", nullable=False),
    Field("stall_report_ms", "integer", "log the event loop's stack and lag split when it did not turn for this long "
          "(docs/operations.md; 0: off)", values.stall_report_ms, default=100, nullable=False),
    Field("openflow", "object", "OpenFlow listener for VRS bridges",
          fields=_endpoint("0.0.0.0", 6653, "OpenFlow") + (_tls_switch("OpenFlow"),) + OPENFLOW_LIMITS,
          default=dict, nullable=False),
    Field("ovsdb", "object", "OVSDB manager listener for VRS and hardware VTEPs",
          fields=_endpoint("0.0.0.0", 6640, "OVSDB") + (_tls_switch("OVSDB"),) + OVSDB_LIMITS,
          default=dict, nullable=False),
    Field("rest", "object", "REST API", fields=_endpoint("127.0.0.1", 8080, "REST") + (
        Field("token", "string", "bearer token for writes (default: generated into data_dir/rest-token)",
              values.token("leave rest.token out for the token generated into data_dir/rest-token")),
        Field("token_file", "string", "read the bearer token from this file",
              values.path("leave token_file out for rest.token, else the token generated into data_dir/rest-token")),
        Field("read_token", "string", "a second bearer token that may only read (for agents on every hypervisor); "
              "writes with it are refused 403 (default: none)", values.token("leave rest.read_token out for none")),
        Field("read_token_file", "string", "read the read-only token from this file instead",
              values.path("leave read_token_file out for rest.read_token, else no read-only token")),
        Field("open_reads", "string", "who may read without the token: loopback, always or never",
              f.one_of("loopback", "always", "never"), default="loopback", nullable=False),
        Field("access_log", "boolean", "log one line per request at info (default: at debug); never with the "
              "query string", f.boolean, default=False, nullable=False),
        _tls_switch("REST (HTTPS)"),
    ) + REST_LIMITS, default=dict, nullable=False),
    Field("tls", "object", "certificates for TLS on the OpenFlow, OVSDB and REST listeners (docs/security.md); "
          "off while absent", fields=(
              Field("key", "string", "this controller's private key (PEM)", TLS_FILE, required=True),
              Field("cert", "string", "this controller's certificate (PEM)", TLS_FILE, required=True),
              Field("ca_cert", "string", "the CA certificate(s) (PEM) that switches' and VTEPs' certificates must "
                    "be signed by", TLS_FILE, required=True),
          )),
    Field("vrs", "object", "virtual switches", fields=(
        Field("bridge", "string", "integration bridge name", f.name, default="br-int", nullable=False),
        Field("default_flavour", "string", "flavour of a VRS that does not say (external_ids:canopy-flavour)",
              f.one_of("kvm", "hyperv", "esxi"), default="kvm", nullable=False),
        Field("underlay_mtu", "integer", "underlay MTU; VM MTU offered by DHCP is this minus 50 (VXLAN)",
              lambda v: f.integer(v, 1280, 9216), default=1500, nullable=False),
        _limit("gateway_arp_refresh_ms", "how often a VRS asks by ARP for the MAC of an external network's gateway "
               "that has no static gateway_mac (docs/external.md)", 100, 3600000, 30000),
        _limit("gateway_arp_timeout_ms", "a gateway MAC not confirmed by an ARP answer for this long is forgotten "
               "(outbound translation stops until it answers again)", 300, 86400000, 100000),
        _limit("tunnel_probe_refresh_ms", "how often each VRS is made to resolve again every VTEP it tunnels to, "
               "below Open vSwitch's tnl/neigh/aging (docs/vrs.md)", 1000, 3600000, 300000),
        _limit("tunnel_probe_rate", "tunnel probes sent per second on average, all VRS together (a switch's leave "
               "together); a switch's wait until its flows are in (docs/vrs.md)", 1, 100000, 500),
        _limit("tunnel_probe_retry_ms", "each first tunnel probe towards a VTEP is sent once more this long after it left, "
               "in case its ARP request or reply was lost (not the refresh round's: docs/vrs.md); 0: never", 0, 3600000, 10000),
        PUNT_METERS,
        Field("hosts", "array", "per-hypervisor overrides of what its OVSDB says", items=Field(
            "host", "object", "", fields=(
                Field("chassis", "string", "the hypervisor's system-id", values.filled(255, CHASSIS_HINT),
                      required=True),
                Field("vtep_ip", "string", "its VTEP IP", f.ipv4),
                Field("flavour", "string", "its flavour", f.one_of("kvm", "hyperv", "esxi")),
            )), default=list, nullable=False),
    ), default=dict, nullable=False),
    Field("allocation", "object", "automatic allocation pools", fields=(
        Field("vni_min", "integer", "lowest VNI allocated", f.vni, default=10000, nullable=False),
        Field("vni_max", "integer", "highest VNI allocated", f.vni, default=99999, nullable=False),
    ), default=dict, nullable=False),
    settings_bgp.SECTION,
    Field("restart", "object", "hitless restarts (docs/pipeline.md)", fields=(
        Field("hold_time", "integer", "after a start nothing is written to switches or hardware VTEPs (only the EVPN "
              "routes of the switches back are announced, no End-of-RIB) until every switch connected before has "
              "reported, or until none of them came back for this many seconds (0: no hold)",
              lambda v: f.integer(v, 0, 600), default=15, nullable=False),
        Field("hold_max", "integer", "seconds after a start the hold ends at the latest, however slowly the "
              f"switches connected before come back (at least hold_time; absent: {HOLD_MAX:g}, or hold_time if "
              "larger)", lambda v: f.integer(v, 0, 3600)),
    ), default=dict, nullable=False),
    Field("ha", "object", "active/standby pair (off while no peer is configured)", fields=(
        Field("node_id", "string", "this node's name in the pair (default: its hostname)", f.name),
        Field("peer", "string", "the other controller's address on the HA link", f.ipv4),
        Field("peer_port", "integer", "the other controller's HA link port (default: port)", values.port),
        Field("listen", "string", "HA link listen address (default: this node's address towards ha.peer)",
              values.listen),
        Field("port", "integer", "HA link TCP port", values.port, default=6690, nullable=False),
        Field("priority", "integer", "preference to be active when both start (higher wins)",
              lambda v: f.integer(v, 0, 255), default=100, nullable=False),
        Field("heartbeat_interval_ms", "integer", "how often each node tells the other it is alive",
              lambda v: f.integer(v, 20, 10000), default=200, nullable=False),
        Field("dead_interval_ms", "integer", "silence after which the peer is taken for dead",
              lambda v: f.integer(v, 60, 60000), default=1000, nullable=False),
        Field("ack_timeout_ms", "integer", "how long a write waits for the standby's acknowledgement (plus 0.5 ms "
              "per change of the write)",
              lambda v: f.integer(v, 10, 60000), default=2000, nullable=False),
        Field("secret", "string", "shared secret authenticating the HA link (the same on both nodes; at least "
              f"{MIN_SECRET} characters); required with peer unless secret_file is set", values.secret),
        Field("secret_file", "string", "read the HA link secret from this file instead",
              values.path("leave secret_file out and give ha.secret")),
        Field("solo", "boolean", "start in solo mode: acknowledge writes the standby did not confirm (they are "
              "lost if this node dies before the standby catches up)", f.boolean, default=False, nullable=False),
        _limit("store_renewal_wait_ms", "how long a standby's renewal of its store (its file went: docs/store.md) "
               "may wait for 'canopy backup's copying the store before health says degraded; a backup begun "
               "meanwhile waits for the renewal at most this long, then copies beside those before it", 1000, 3600000,
               60000),
    ), default=dict, nullable=False),
)



class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class HaSettings:
    node_id: str = ""
    peer: str | None = None
    peer_port: int = 6690
    listen: str = "127.0.0.1"  # from_doc: ha.listen, else this node's address towards the peer
    port: int = 6690
    priority: int = 100
    heartbeat_interval: float = 0.2  # seconds
    dead_interval: float = 1.0
    ack_timeout: float = 2.0
    secret: str | None = field(default=None, repr=False)  # authenticates the HA link (HMAC-SHA256)
    secret_from: str = "ha.secret"  # the setting it came from, which /v1/ha names (ha.secret_file: its path)
    solo: bool = False  # start in solo mode (writes acknowledged without the standby's confirmation)
    store_renewal_wait: float = 60.0  # seconds: ha.store_renewal_wait_ms (storefile DEFER_BOUND)

    @property
    def enabled(self) -> bool:
        return self.peer is not None


@dataclass(frozen=True)
class Limits:
    """Connection limits (seconds and bytes); see OPENFLOW_LIMITS, OVSDB_LIMITS and REST_LIMITS."""

    openflow_handshake_timeout: float = 10.0
    openflow_per_source: int = 32
    openflow_dead_after: float = 30.0
    ovsdb_handshake_timeout: float = 5.0
    ovsdb_sync_timeout: float = 120.0
    ovsdb_per_source: int = 16
    ovsdb_max_message: int = 32 << 20
    ovsdb_reconnect_grace: float = 10.0
    ovsdb_probe_interval: float = 5.0
    rest_header_timeout: float = 10.0
    rest_body_timeout: float = 30.0
    rest_max_body: int = 32 << 20
    rest_max_connections: int = 256
    rest_per_source: int = 64
    rest_write_wait: float = 5.0


def _limits(raw) -> Limits:
    of, ovsdb, rest = raw["openflow"], raw["ovsdb"], raw["rest"]
    return Limits(openflow_handshake_timeout=of["handshake_timeout_ms"] / 1000,
                  openflow_per_source=of["max_connections_per_source"], openflow_dead_after=of["dead_after_ms"] / 1000,
                  ovsdb_handshake_timeout=ovsdb["handshake_timeout_ms"] / 1000,
                  ovsdb_sync_timeout=ovsdb["sync_timeout_ms"] / 1000,
                  ovsdb_per_source=ovsdb["max_connections_per_source"], ovsdb_max_message=ovsdb["max_message_bytes"],
                  ovsdb_reconnect_grace=ovsdb["reconnect_grace_ms"] / 1000,
                  ovsdb_probe_interval=ovsdb["probe_interval_ms"] / 1000,
                  rest_header_timeout=rest["header_timeout_ms"] / 1000,
                  rest_body_timeout=rest["body_timeout_ms"] / 1000,
                  rest_max_body=rest["max_body_bytes"], rest_max_connections=rest["max_connections"],
                  rest_per_source=rest["max_connections_per_source"], rest_write_wait=rest["write_wait_ms"] / 1000)


@dataclass(frozen=True)
class Settings:
    data_dir: str
    log_level: str
    openflow_listen: str
    openflow_port: int
    ovsdb_listen: str
    ovsdb_port: int
    rest_listen: str
    rest_port: int
    rest_token: str | None  # None until resttoken.resolved() resolved it
    rest_token_file: str
    open_reads: str
    bridge: str
    default_flavour: str
    underlay_mtu: int
    hosts: tuple  # ((chassis, {"vtep_ip":..., "flavour":...}), ...) from vrs.hosts
    vni_range: tuple[int, int]
    asn: int
    bgp: "BgpSettings" = None  # None only in hand-built Settings; from_doc always sets it
    ha: "HaSettings" = None
    restart_hold: float = 15.0  # seconds: restart.hold_time
    restart_hold_max: float = 60.0  # seconds: restart.hold_max
    source: str = "<defaults>"
    limits: Limits = Limits()
    log_format: str = "text"
    stall_report: float | None = 0.1  # seconds: stall_report_ms (None: off)
    access_log: bool = False
    tls: TlsFiles | None = None  # the tls section's files; None: no TLS anywhere
    openflow_tls: bool = False  # serve OpenFlow over TLS (mutual: the switch's certificate is checked)
    ovsdb_tls: bool = False  # serve OVSDB over TLS (mutual)
    rest_tls: bool = False  # serve REST over HTTPS
    gateway_arp_refresh: float = 30.0  # seconds: vrs.gateway_arp_refresh_ms
    gateway_arp_timeout: float = 100.0  # seconds: vrs.gateway_arp_timeout_ms
    tunnel_probe_refresh: float = 300.0  # seconds: vrs.tunnel_probe_refresh_ms
    tunnel_probe_rate: int = 500  # probes per second, every VRS's together: vrs.tunnel_probe_rate
    tunnel_probe_retry: float = 10.0  # seconds: vrs.tunnel_probe_retry_ms (0: no second probe)
    # vrs.punt_meters: ((kind, (packets per second, burst)), ...) of openflow/meters.py's kinds
    punt_meters: tuple = tuple(values.PUNT_METER_DEFAULTS.items())
    # the read-only REST token: rest.read_token, or (once resttoken.resolved read it) rest.read_token_file's content
    rest_read_token: str | None = field(default=None, repr=False)
    rest_read_token_file: str | None = None  # absolute
    # every setting by its key as the file names it ("restart.hold_time"), after defaults: what a reload compares,
    # so that it names the keys an operator wrote, not these attributes
    keys: tuple = field(default=(), compare=False, repr=False)
    # the line of each key the file writes ({"rest.token_file": 7}): what is checked after loading (the token files,
    # controller/resttoken.py) names it as load's errors do
    lines: dict = field(default_factory=dict, compare=False, repr=False)

    def where(self, key: str) -> str:
        """Where ``key`` is set: FILE:LINE, FILE when the file does not write it, or the built-in settings."""
        if self.source == "<defaults>":
            return "the built-in settings"
        return f"{self.source}:{self.lines[key]}" if key in self.lines else self.source


def defaults() -> Settings:
    return from_doc(yamldoc.Doc("<defaults>", {}))


def load(path: str | None) -> Settings:
    """Settings from a YAML file (None: all defaults). Raises SettingsError naming file, line and reason."""
    doc = yamldoc.load_file(path) if path else yamldoc.Doc("<defaults>", {})
    return from_doc(doc)


def from_doc(doc: yamldoc.Doc) -> Settings:
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise SettingsError(f"{doc.where('')}: settings must be a mapping")
    if data and not any(spec.name in data for spec in SETTINGS):
        from controller.policydoc import DOC_KEYS  # only for this refusal: a policy document given as the settings

        if set(data) <= DOC_KEYS:
            raise SettingsError(f"{doc.where('')}: this is a policy document ({', '.join(map(str, data))}), not the "
                                "controller's settings: check it with 'canopy check FILE' and apply it to the running "
                                "controller with 'canopy apply FILE'; the settings are config/canopy.yaml's keys")
    problems = []
    raw = normalise_fields(SETTINGS, data, "", problems, "settings")
    written = () if problems else tuple(_keyed(raw))  # before ha.secret (from its file) and ha.listen are derived
    if not problems and raw["allocation"]["vni_min"] > raw["allocation"]["vni_max"]:
        problems.append(_problem("allocation.vni_min", "must not be above vni_max"))
    seen = set()
    for i, host in enumerate(raw["vrs"]["hosts"] if not problems else []):
        if host["chassis"] in seen:
            problems.append(_problem(f"vrs.hosts[{i}].chassis", f"{host['chassis']!r} is listed twice"))
        seen.add(host["chassis"])
    if not problems:
        problems += settings_bgp.check(raw["bgp"])
        ha = raw["ha"]
        if raw["vrs"]["gateway_arp_timeout_ms"] < 2 * raw["vrs"]["gateway_arp_refresh_ms"]:
            problems.append(_problem("vrs.gateway_arp_timeout_ms", "must be at least two refresh intervals "
                                     "(vrs.gateway_arp_refresh_ms)"))
        if ha["dead_interval_ms"] < 3 * ha["heartbeat_interval_ms"]:
            problems.append(_problem("ha.dead_interval_ms", "must be at least three heartbeat intervals"))
        hold_max = raw["restart"]["hold_max"]
        if hold_max is not None and hold_max < raw["restart"]["hold_time"]:
            problems.append(_problem("restart.hold_max", "must be at least restart.hold_time "
                                     f"({raw['restart']['hold_time']} s)"))
        problems += _restart_time_problems(raw)
        if raw["rest"]["read_token"] and raw["rest"]["read_token_file"]:
            problems.append(_problem("rest.read_token_file", "set rest.read_token or rest.read_token_file, not both"))
        problems += _ha_secret(ha)
        problems += _ha_listen(ha)
        problems += _tls_problems(raw)
    if problems:
        raise SettingsError("\n".join(f"{doc.where(p.field)}: {p.field}: {p.reason}" for p in problems))
    data_dir = os.path.abspath(raw["data_dir"])
    rest = raw["rest"]
    return Settings(
        data_dir=data_dir, log_level=raw["log_level"],
        openflow_listen=raw["openflow"]["listen"], openflow_port=raw["openflow"]["port"],
        ovsdb_listen=raw["ovsdb"]["listen"], ovsdb_port=raw["ovsdb"]["port"],
        rest_listen=rest["listen"], rest_port=rest["port"], rest_token=rest["token"],
        rest_token_file=os.path.abspath(rest["token_file"]) if rest["token_file"] else token_path(data_dir),
        open_reads=rest["open_reads"], bridge=raw["vrs"]["bridge"], default_flavour=raw["vrs"]["default_flavour"],
        underlay_mtu=raw["vrs"]["underlay_mtu"],
        hosts=tuple((h["chassis"], {"vtep_ip": h["vtep_ip"], "flavour": h["flavour"]}) for h in raw["vrs"]["hosts"]),
        vni_range=(raw["allocation"]["vni_min"], raw["allocation"]["vni_max"]), asn=raw["bgp"]["asn"],
        bgp=settings_bgp.from_raw(raw["bgp"]), ha=_ha(raw["ha"]), restart_hold=float(raw["restart"]["hold_time"]),
        restart_hold_max=_hold_max(raw["restart"]),
        source=doc.filename, limits=_limits(raw), tunnel_probe_refresh=raw["vrs"]["tunnel_probe_refresh_ms"] / 1000,
        tunnel_probe_rate=raw["vrs"]["tunnel_probe_rate"],
        tunnel_probe_retry=raw["vrs"]["tunnel_probe_retry_ms"] / 1000,
        punt_meters=tuple((kind, (m["rate"], m["burst"])) for kind, m in raw["vrs"]["punt_meters"].items()),
        log_format=raw["log_format"], access_log=rest["access_log"], stall_report=raw["stall_report_ms"] / 1000 or None,
        tls=_tls_files(raw["tls"]), openflow_tls=_tls_on(raw, "openflow"), ovsdb_tls=_tls_on(raw, "ovsdb"),
        rest_tls=_tls_on(raw, "rest"), gateway_arp_refresh=raw["vrs"]["gateway_arp_refresh_ms"] / 1000,
        gateway_arp_timeout=raw["vrs"]["gateway_arp_timeout_ms"] / 1000, keys=written,
        lines={key: doc.lines[key] for key, _ in written if key in doc.lines},
        rest_read_token=rest["read_token"],
        rest_read_token_file=rest["read_token_file"] and os.path.abspath(rest["read_token_file"]))


def _keyed(raw: dict, fields=SETTINGS, prefix: str = ""):
    """(dotted key, value) of every leaf of the normalised settings as the file gives them (a list, such as
    bgp.neighbors, is one leaf; an absent optional section, such as tls, has none: its keys are those a file that
    sets it writes)."""
    for spec in fields:
        value = raw[spec.name]
        if spec.type != "object":
            yield f"{prefix}{spec.name}", value
        elif value is not None:
            yield from _keyed(value, spec.fields, f"{prefix}{spec.name}.")


TLS_LISTENERS = ("openflow", "ovsdb", "rest")


def _tls_files(raw) -> TlsFiles | None:
    if raw is None:
        return None
    return TlsFiles(**{k: os.path.abspath(raw[k]) for k in ("key", "cert", "ca_cert")})


def _tls_on(raw, listener: str) -> bool:
    """Whether ``listener`` serves TLS: its own ``tls`` switch, else yes when the tls section is set."""
    switch = raw[listener]["tls"]
    return raw["tls"] is not None if switch is None else switch


def _tls_problems(raw) -> list:
    """A listener asked for TLS without the tls section; certificate files that cannot be used."""
    problems = [_problem(f"{name}.tls", "needs the tls section (key, cert, ca_cert)") for name in TLS_LISTENERS
                if raw[name]["tls"] and raw["tls"] is None]
    files = _tls_files(raw["tls"])
    if files is not None:
        try:
            tls.check(files)
        except tls.TlsError as exc:
            problems.append(_problem(f"tls.{exc.field}", str(exc)))
    return problems


def _ha_listen(ha) -> list:
    """ha.listen defaults to the address this node uses to reach ha.peer (never all addresses)."""
    if ha["listen"] is not None or not ha["peer"]:
        return []
    try:
        ha["listen"] = source_address(ha["peer"])
    except OSError as exc:
        return [_problem("ha.listen", f"no default: no route to ha.peer {ha['peer']} ({exc.strerror or exc}); "
                                      "set the HA link's listen address")]
    return []


def source_address(peer: str) -> str:
    """The local address the kernel would use to reach ``peer`` (a UDP connect: nothing is sent)."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((peer, 9))
        return probe.getsockname()[0]


def _ha(raw) -> HaSettings:
    return HaSettings(node_id=raw["node_id"] or socket.gethostname(), peer=raw["peer"],
                      peer_port=raw["peer_port"] or raw["port"], listen=raw["listen"] or "127.0.0.1",
                      port=raw["port"],
                      priority=raw["priority"], heartbeat_interval=raw["heartbeat_interval_ms"] / 1000,
                      dead_interval=raw["dead_interval_ms"] / 1000, ack_timeout=raw["ack_timeout_ms"] / 1000,
                      secret=raw["secret"], solo=raw["solo"], store_renewal_wait=raw["store_renewal_wait_ms"] / 1000,
                      secret_from=f"ha.secret_file {raw['secret_file']}" if raw["secret_file"] else "ha.secret")


def _ha_secret(ha) -> list:
    """Check ha.secret / ha.secret_file; a secret read from the file goes into ha["secret"]."""
    if ha["secret"] and ha["secret_file"]:
        return [_problem("ha.secret_file", "set ha.secret or ha.secret_file, not both")]
    if ha["secret_file"]:
        path = os.path.abspath(ha["secret_file"])
        try:
            ha["secret"] = values.secret(secretfile.read_secret("ha.secret_file", path))
        except secretfile.Unusable as exc:
            return [_problem("ha.secret_file", exc.problem)]
        except f.Invalid as exc:
            return [_problem("ha.secret_file", f"the secret in {path} {exc}")]
    if ha["peer"] and not ha["secret"]:
        return [_problem("ha.secret", "is required with ha.peer (or ha.secret_file): the HA link is authenticated "
                                      "with it; generate one with 'openssl rand -hex 32' and give both nodes the same")]
    return []


def _hold_max(restart: dict) -> float:
    """restart.hold_max, or when absent HOLD_MAX or hold_time if larger: a settings file that raised hold_time above
    HOLD_MAX before hold_max existed loads as it did (the hold ends hold_time after the start at the latest)."""
    given = restart["hold_max"]
    return float(given if given is not None else max(HOLD_MAX, restart["hold_time"]))


def _restart_time_problems(raw) -> list:
    """Canopy sends End-of-RIB restart_time after a session came up at the latest, its routes announced again or not
    (bgp/endofrib.py), and the start-up hold keeps them back until hold_max after the start at the latest: below it,
    End-of-RIB could go first, and the peers drop the routes they kept for Canopy until they are announced again."""
    graceful, hold_max = raw["bgp"]["graceful_restart"], _hold_max(raw["restart"]) if raw["restart"]["hold_time"] else 0
    if not raw["bgp"]["neighbors"] or not graceful["enabled"] or graceful["restart_time"] >= hold_max:
        return []
    return [_problem("bgp.graceful_restart.restart_time", f"must be at least restart.hold_max ({hold_max:g} s): "
                     "End-of-RIB goes that long after a session came up at the latest, and the start-up hold can keep "
                     "the routes back until hold_max (the peers would drop them meanwhile)")]


def _problem(path, reason):
    from controller.model import Problem

    return Problem("settings", "", path, reason)


def token_path(data_dir: str) -> str:
    return os.path.join(data_dir, "rest-token")
