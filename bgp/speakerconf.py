"""What Canopy's BGP speaker runs ExaBGP with: its peers (``Neighbor``), the speaker's settings (``SpeakerConfig``),
``exabgp.conf`` rendered from them (``render_config``) and ExaBGP's environment (``exabgp_env``).

Part of ``bgp.speaker`` (which re-exports these names), apart so that module stays about the child process and the
conversation with it. No ExaBGP import here (STYLE rule 7).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from bgp.routebook import GracefulRestart

REPO_ROOT = Path(__file__).resolve().parents[1]
PROCESS_NAME = "canopy"  # the API process exabgp.conf names: the relay (bgp/relay.py)


@dataclass(frozen=True)
class Neighbor:
    """One configured BGP peer."""

    address: str  # peer IP
    asn: int
    port: int = 179  # peer's TCP port we connect to
    md5_password: str | None = None
    hold_time: int = 90
    local_address: str | None = None  # our source address (None: ExaBGP picks, router_id identifies)
    passive: bool = False  # only accept (needs SpeakerConfig.listen)
    rr_client: bool = False  # the peer is a route reflector and we its client (iBGP); info only here


@dataclass(frozen=True)
class SpeakerConfig:
    """What the speaker runs: local AS, router id, peers, where it listens, where its files live."""

    asn: int
    router_id: str
    neighbors: tuple[Neighbor, ...]
    listen: str | None = None  # address ExaBGP listens on; None: it listens on no address
    listen_port: int = 179
    workdir: str = "/var/lib/canopy/bgp"  # exabgp.conf, the relay socket, exabgp.log, exabgp.out
    graceful_restart: GracefulRestart = GracefulRestart()
    api_timeout: float = 5.0  # seconds ExaBGP may leave its commands unacknowledged before its peers are reported down
    api_restart_after: float = 30.0  # ... before it is killed and restarted (bgp.watchdog)

    @property
    def conf_path(self) -> str:
        return os.path.join(self.workdir, "exabgp.conf")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.workdir, "api.sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "exabgp.log")

    @property
    def output_path(self) -> str:
        """ExaBGP's own stdout and stderr (tracebacks, early errors)."""
        return os.path.join(self.workdir, "exabgp.out")


def _word(value: str, what: str) -> str:
    """``value`` double-quoted for exabgp.conf; ValueError if ExaBGP's tokeniser cannot carry it."""
    if any(char in value for char in "\"'\\\n\r"):
        raise ValueError(f"{what}: {value!r} cannot be written into exabgp.conf (quote or backslash)")
    return f'"{value}"'


def _local_address(neighbor: Neighbor, config: SpeakerConfig) -> str | None:
    """The neighbor's local-address: its own, else the listen address if that is one specific IP."""
    if neighbor.local_address:
        return neighbor.local_address
    if config.listen and not ipaddress.ip_address(config.listen).is_unspecified:
        return config.listen
    return None


def render_config(config: SpeakerConfig) -> str:
    """exabgp.conf for ``config`` (ExaBGP 5.0.15 grammar); ValueError if a path cannot be written.

    The MD5 password is written base64-encoded (``md5-base64 true``) so no character of it can
    clash with the configuration syntax. A neighbor with an MD5 password whose local address is
    the listen address also gets ``listen <port>``: that is how ExaBGP installs the key for the
    peer on the listening socket, which accepting a signed connection needs.
    """
    relay = f"run {_word(sys.executable, 'python')} -m bgp.relay {_word(config.socket_path, 'workdir')};"
    lines = [f"process {PROCESS_NAME} {{", f"    {relay}", "    encoder json;", "}"]
    for neighbor in config.neighbors:
        local = _local_address(neighbor, config)
        lines += ["", f"neighbor {neighbor.address} {{", f"    router-id {config.router_id};",
                  f"    local-as {config.asn};", f"    peer-as {neighbor.asn};"]
        if local:
            lines.append(f"    local-address {local};")
        lines += [f"    hold-time {neighbor.hold_time};", f"    connect {neighbor.port};"]
        if neighbor.passive:
            lines.append("    passive true;")
        if neighbor.md5_password:
            encoded = base64.b64encode(neighbor.md5_password.encode()).decode()
            lines += [f"    md5-password {encoded};", "    md5-base64 true;"]
            if config.listen and local == config.listen:
                lines.append(f"    listen {config.listen_port};")
        if config.graceful_restart.enabled:
            lines.append(f"    capability {{ graceful-restart {config.graceful_restart.restart_time}; }}")
        lines += ["    manual-eor true;",  # Canopy sends End-of-RIB once its routes are in (bgp.endofrib)
                  "    family { l2vpn evpn; }",
                  "    adj-rib-in false;",  # Canopy keeps what peers send (RouteBook); ExaBGP's copy cost per route
                  f"    api {{ processes [ {PROCESS_NAME} ]; neighbor-changes; receive {{ parsed; update; open; }} }}",
                  "}"]
    return "\n".join(lines) + "\n"


def write_config(config: SpeakerConfig) -> None:
    """exabgp.conf rendered from ``config`` into its workdir (made if missing), mode 0600: it holds MD5 passwords."""
    os.makedirs(config.workdir, mode=0o700, exist_ok=True)
    text = render_config(config)
    fd = os.open(config.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as conf:
        conf.write(text)


def _daemon_user() -> str:
    """A name for ExaBGP's daemon.user, which it checks against the user database even when it drops nothing: this
    process's own, or ``nobody`` where its uid has no name (a container run with an arbitrary uid, where looking
    the name up failed each time the speaker started ExaBGP: BGP never came up)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "nobody"


def exabgp_env(config: SpeakerConfig, base: dict | None = None) -> dict:
    """The environment ExaBGP runs with: listen only where configured, log to the workdir, acks on."""
    env = dict(os.environ if base is None else base)
    env.update({
        "exabgp_tcp_bind": config.listen or "",
        "exabgp_daemon_drop": "false",
        "exabgp_daemon_user": _daemon_user(),
        "exabgp_daemon_daemonize": "false",
        "exabgp_log_destination": config.log_path,
        "exabgp_api_ack": "true",
        "exabgp_api_cli": "false",  # no named-pipe CLI: nothing else can command this ExaBGP
        "exabgp_log_statistics": "false",  # else one log line per UPDATE received (a tenth of its CPU at 10,000)
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
    })
    if config.listen:
        env["exabgp_tcp_port"] = str(config.listen_port)
    else:
        env.pop("exabgp_tcp_port", None)
    return env
