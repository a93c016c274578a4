"""The Canopy metadata agent: one per hypervisor, it answers the VMs' requests to the OpenStack metadata service
(http://169.254.169.254/) by relaying them to Nova's metadata API, with no Neutron agent (docs/metadata.md).

It owns an internal port on the integration bridge (``port``, default ``canopy-md``) holding 169.254.169.254, with
a route to 240.0.0.0/4 through it, and marks it ``external_ids:canopy-metadata-agent=true`` once it listens: the
controller then steers each local VM's HTTP requests to it, their source rewritten to an address that names the
VM's port on the switch (openflow/metadata.py). So the source address alone tells the agent which port asked. It
asks Canopy's REST API which vport is bound there (``GET /v1/switches/{datapath id}``), its ``instance_id`` and its
tenant's ``project_id``, and relays the request to Nova with the headers Nova checks: ``X-Instance-ID``,
``X-Tenant-ID``, ``X-Forwarded-For`` (the vport's first address) and ``X-Instance-ID-Signature`` (HMAC-SHA256 of
the instance id with the shared secret, hex). A vport without ``instance_id`` (or whose tenant has no
``project_id``) gets 404 and nothing is relayed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from controller import secretfile, yamldoc
from controller.discovery import METADATA_AGENT_KEY
from openflow import metadata

log = logging.getLogger("canopy.metadata")
MAX_BODY = 64 * 1024  # a VM's POST (openstack/latest/password is 255 bytes)
MAX_REPLY = 16 * 1024 * 1024  # what Nova may answer (user data is at most 64 KiB)
RELAYED_METHODS = ("GET", "HEAD", "POST")


# ------------------------------------------------------------------------------------------ settings

class SettingsError(Exception):
    """Agent settings that cannot be used; ``str()`` names the file, line and key."""


@dataclass(frozen=True)
class AgentSettings:
    nova_metadata_url: str  # Nova's metadata API, e.g. http://192.0.2.10:8775
    shared_secret_file: str  # Nova's [neutron] metadata_proxy_shared_secret, alone in a file
    canopy_url: tuple[str, ...]  # Canopy's REST API, e.g. https://canopy.example:8080; a pair: both nodes
    token_file: str  # Canopy's read-only REST token (rest.read_token: the agent only reads), alone in a file
    bridge: str = "br-int"
    port: str = "canopy-md"  # the agent's internal port on the bridge
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"
    ca_file: str | None = None  # CA bundle for https URLs (default: the system's)
    timeout: float = 10.0  # seconds for each request to Canopy or Nova

    def secret(self) -> bytes:
        """Nova's shared secret, refused (SettingsError naming the key) like the controller's own secret files
        (controller/secretfile.py): it lets anyone sign requests for any instance's metadata."""
        return _read(secretfile.read_secret, "shared_secret_file", self.shared_secret_file).encode()

    def token(self) -> str:
        """Canopy's read-only REST token, refused as the controller refuses its own token files."""
        return _read(secretfile.read_token, "token_file", self.token_file)

    def tls_context(self) -> ssl.SSLContext | None:
        """The context for https URLs: only ``ca_file``'s CA certificates, or None (the system's). Refused
        (SettingsError naming ``ca_file``) when it is no regular file (a FIFO there held the agent's start until a
        writer came), cannot be read or holds no PEM certificate. ssl loads the file checked, not one put at the path
        since (secretfile.checked_path)."""
        if not self.ca_file:
            return None
        try:
            with secretfile.checked_path(self.ca_file) as checked:
                return ssl.create_default_context(cafile=checked)
        except secretfile.NotRegular as exc:
            problem = f"{exc}{secretfile.blocking_note(exc.kind, 'the metadata agent')}"
        except ssl.SSLError as exc:  # an OSError too: first
            problem = f"{self.ca_file} holds no PEM CA certificate ({exc.reason or exc})"
        except OSError as exc:
            problem = f"cannot read {self.ca_file}: {exc.strerror or exc}"
        raise SettingsError(f"ca_file: {problem}")


_REQUIRED = ("nova_metadata_url", "shared_secret_file", "canopy_url", "token_file")
_OPTIONAL = ("bridge", "port", "ovsdb", "ca_file", "timeout")


def load_settings(path: str) -> AgentSettings:
    """The agent's settings from a YAML file: unknown keys, missing ones and bad values name file and line."""
    try:
        doc = yamldoc.load(Path(path).read_text(), path)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    except yamldoc.DocError as exc:
        raise SettingsError(str(exc)) from None
    raw = doc.data
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: the settings must be a mapping of keys to values")
    problems = [f"{path}:{doc.line_of(k) or '?'}: {k}: unknown setting (known: {', '.join(_REQUIRED + _OPTIONAL)})"
                for k in raw if k not in _REQUIRED + _OPTIONAL]
    problems += [f"{path}: {k}: required" for k in _REQUIRED if k not in raw]
    for key, value in raw.items():
        reason = _bad(key, value)
        if reason:
            problems.append(f"{path}:{doc.line_of(key) or '?'}: {key}: {reason}")
    if problems:
        raise SettingsError("\n".join(problems))
    return AgentSettings(**{k: _value(k, v) for k, v in raw.items()})


def _value(key, value):
    if key == "timeout":
        return float(value)
    if key == "canopy_url":  # one URL, or a list (the nodes of a pair)
        return tuple(value) if isinstance(value, list) else (value,)
    return value


def _bad(key, value) -> str | None:
    if key == "timeout":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 300
        return None if ok else "must be a number of seconds in (0, 300]"
    if key == "ca_file" and value is None:
        return None
    if key == "canopy_url" and isinstance(value, list):
        reasons = [_bad(key, one) for one in value] if value else ["must not be an empty list"]
        return next((reason for reason in reasons if reason), None)
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if key in ("nova_metadata_url", "canopy_url"):
        url = urllib.parse.urlsplit(value)
        if url.scheme not in ("http", "https") or not url.netloc:
            return f"{value!r} is not an http:// or https:// URL"
    if key in ("bridge", "port") and (len(value) > 15 or not value.replace("-", "").replace("_", "").isalnum()):
        return "must be an interface name (at most 15 letters, digits, '-' or '_')"
    return None


def _read(read, key: str, path: str) -> str:
    """What ``read`` (secretfile.read_secret or read_token) finds in the file ``path`` that ``key`` names."""
    try:
        return read(key, path, reader="the metadata agent")
    except secretfile.Unusable as exc:
        raise SettingsError(str(exc)) from None


# ------------------------------------------------------------------------------------------ who asked

class Refused(Exception):
    """A request the agent answers itself, with ``status`` and ``reason`` (never relayed)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Identity:
    """The vport behind a request and what Nova needs to know about it."""

    vport_id: str
    vport_ref: str
    instance_id: str | None
    project_id: str | None
    address: str  # the vport's first address: the one its requests are steered from


def resolve(get, dpid: int, client: str) -> Identity:
    """Which vport asked, from the request's source address (openflow/metadata.py ``source_address``): the vport
    Canopy has bound to that port (and VLAN) of this switch. ``get(path)`` reads Canopy's REST API."""
    where = metadata.port_of(client)
    if where is None:
        raise Refused(403, f"{client} is not an address the switch gives a VM's port: not steered by Canopy")
    ofport, vlan = where
    switch = get(f"/v1/switches/{dpid:016x}")
    port = next((p for p in switch.get("ports") or () if p.get("ofport") == ofport), None)
    brief = None
    if port is not None:
        brief = next((v.get("vport") for v in port.get("vnics") or () if v.get("vlan") == vlan), None) if vlan \
            else port.get("vport")
    if not brief or brief.get("status") != "bound":
        raise Refused(404, f"no vport is bound to port {ofport}" + (f" VLAN {vlan}" if vlan else "") +
                      " of this switch")
    vport = get(f"/v1/vports/{urllib.parse.quote(brief['id'], safe='')}")
    subnet = get(f"/v1/subnets/{urllib.parse.quote(vport['subnet_id'], safe='')}")
    tenant = get(f"/v1/tenants/{urllib.parse.quote(subnet['tenant_id'], safe='')}")
    if not vport.get("ips"):
        raise Refused(404, f"vport {vport.get('ref')} has no address")
    return Identity(vport["id"], vport.get("ref") or vport["id"], vport.get("instance_id"), tenant.get("project_id"),
                    vport["ips"][0])


def nova_headers(identity: Identity, secret: bytes) -> dict[str, str]:
    """The headers Nova's metadata API checks (nova/api/metadata/handler.py, instance id requests)."""
    if not identity.instance_id:
        raise Refused(404, f"vport {identity.vport_ref} has no instance_id: no compute instance is known for it, "
                      "so there is no metadata to serve")
    if not identity.project_id:
        raise Refused(404, f"the tenant of vport {identity.vport_ref} has no project_id: Nova would not answer")
    signature = hmac.new(secret, identity.instance_id.encode(), hashlib.sha256).hexdigest()
    return {"X-Instance-ID": identity.instance_id, "X-Tenant-ID": identity.project_id,
            "X-Forwarded-For": identity.address, "X-Instance-ID-Signature": signature}


# ------------------------------------------------------------------------------------------ the relay

class CanopyReader:
    """``GET`` on Canopy's REST API with the agent's token; failures become ``Refused``. With several URLs (the
    nodes of a pair, both serve reads) it asks the one that last answered, and the next when one cannot answer."""

    def __init__(self, settings: AgentSettings, token: str, context=None):
        self.settings, self.token, self.context = settings, token, context
        self.current = 0  # index into settings.canopy_url of the node that last answered

    def __call__(self, path: str) -> dict:
        urls = self.settings.canopy_url
        for step in range(len(urls)):
            index = (self.current + step) % len(urls)
            try:
                reply = self._get(urls[index], path)
            except Refused as exc:
                if exc.status == 404:  # an answer: this node is asked first next time as well
                    self.current = index
                    raise
                refused = exc
                continue
            self.current = index
            return reply
        raise refused

    def _get(self, base: str, path: str) -> dict:
        req = urllib.request.Request(base.rstrip("/") + path,
                                     headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout, context=self.context) as resp:
                return json.loads(resp.read(MAX_REPLY))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise Refused(404, f"Canopy knows no {path}") from None
            log.warning("Canopy at %s answered %s to %s", base, exc.code, path)
            raise Refused(503, f"Canopy answered {exc.code} to {path}") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # no answer, a broken one, or no JSON
            # the VM reads the reason: the controller's address (a TLS error names it) stays in the log
            log.warning("Canopy at %s cannot be asked: %s", base, exc)
            raise Refused(503, "Canopy cannot be asked: try again") from None


class Agent:
    """Answers one request: who asked (``canopy_get``: Canopy's REST API), then Nova. No state of its own:
    ``dpid()`` gives the switch's datapath id."""

    def __init__(self, settings: AgentSettings, dpid, secret: bytes, canopy_get, context=None):
        self.settings, self.dpid, self.secret, self.canopy_get = settings, dpid, secret, canopy_get
        self.context = context

    def handle(self, method: str, path: str, client: str, body: bytes | None) -> tuple[int, dict, bytes]:
        try:
            if method not in RELAYED_METHODS:
                raise Refused(405, f"method {method} is not relayed")
            if not path.startswith("/"):
                raise Refused(400, "the request target must be a path")
            identity = resolve(self.canopy_get, self._dpid(), client)
            headers = nova_headers(identity, self.secret)
        except Refused as exc:
            log.info("metadata request %s %s from %s refused: %s", method, path[:200], client, exc.reason)
            return exc.status, {"Content-Type": "text/plain; charset=utf-8"}, (exc.reason + "\n").encode()
        log.info("metadata request %s %s from vport %s (instance %s)", method, path[:200], identity.vport_ref,
                 identity.instance_id)
        return self._relay(method, path, body, headers)

    def _dpid(self) -> int:
        try:
            return self.dpid()
        except (OSError, RuntimeError, ValueError) as exc:
            raise Refused(503, f"the integration bridge's datapath id cannot be read ({exc}): try again") from None

    def _relay(self, method, path, body, headers) -> tuple[int, dict, bytes]:
        url = self.settings.nova_metadata_url.rstrip("/") + path
        req = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout, context=self.context) as resp:
                return resp.status, _passed(resp.headers), resp.read(MAX_REPLY)
        except urllib.error.HTTPError as exc:
            return exc.code, _passed(exc.headers), exc.read(MAX_REPLY)
        except (OSError, http.client.HTTPException) as exc:  # no answer, or no HTTP one
            log.warning("Nova's metadata API at %s cannot be reached: %s", self.settings.nova_metadata_url, exc)
            return 502, {"Content-Type": "text/plain; charset=utf-8"}, b"the metadata service cannot be reached\n"


def _passed(headers) -> dict:
    return {"Content-Type": headers.get("Content-Type", "text/plain")}


def handler_for(agent: Agent):
    class Handler(BaseHTTPRequestHandler):
        server_version = "canopy-metadata"
        protocol_version = "HTTP/1.1"

        def _serve(self):
            body = None
            if self.command == "POST":
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit() or int(length) > MAX_BODY:
                    return self._send(413, {"Content-Type": "text/plain"}, b"request body missing or too large\n")
                body = self.rfile.read(int(length))
            status, headers, data = agent.handle(self.command, self.path, self.client_address[0], body)
            self._send(status, headers, data)

        def _send(self, status, headers, data):
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = _serve  # noqa: N815 (http.server's names)

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.client_address[0], *args)

    return Handler


# ------------------------------------------------------------------------------------------ the port

class AgentPort:
    """The agent's internal port on the bridge, through ovs-vsctl and ip."""

    def __init__(self, settings: AgentSettings):
        self.s = settings

    def vsctl(self, *args: str) -> str:
        return _run(["ovs-vsctl", f"--db={self.s.ovsdb}", "--timeout=10", *args]).strip()

    def create(self) -> None:
        """The port, up, with 169.254.169.254 and the route back to the VMs' source addresses (not marked yet)."""
        name = self.s.port
        self.vsctl("--may-exist", "add-port", self.s.bridge, name, "--", "set", "Interface", name, "type=internal")
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, timeout=10).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"interface {name} did not appear after ovs-vsctl add-port")
            time.sleep(0.05)
        _run(["ip", "link", "set", name, "up"])
        _run(["ip", "addr", "replace", f"{metadata.METADATA_IP}/32", "dev", name])
        _run(["ip", "route", "replace", str(metadata.SOURCE_NET), "dev", name])

    def mark(self, on: bool) -> None:
        """Tell the controller (OVSDB) that the agent serves behind this port, or no longer does."""
        if on:
            self.vsctl("set", "Interface", self.s.port, f"external_ids:{METADATA_AGENT_KEY}=true")
        else:
            self.vsctl("--if-exists", "remove", "Interface", self.s.port, "external_ids", METADATA_AGENT_KEY)

    def datapath_id(self) -> int:
        return int(self.vsctl("get", "Bridge", self.s.bridge, "datapath_id").strip('"'), 16)


def _run(argv) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def serve(settings: AgentSettings) -> None:
    """Create and mark the port, then answer requests until SIGTERM or SIGINT (the mark is removed on the way
    out, so the controller stops steering to a port nobody answers on)."""
    secret, token = settings.secret(), settings.token()
    port = AgentPort(settings)
    port.create()
    context = settings.tls_context()
    agent = Agent(settings, port.datapath_id, secret, CanopyReader(settings, token, context), context)
    server = ThreadingHTTPServer((metadata.METADATA_IP, metadata.METADATA_PORT), handler_for(agent))
    server.daemon_threads = True

    def stop(signum, _frame):
        log.info("metadata agent stopping (signal %d)", signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    port.mark(True)
    log.info("metadata agent serving on %s:%d behind %s on %s; Nova at %s", metadata.METADATA_IP,
             metadata.METADATA_PORT, settings.port, settings.bridge, settings.nova_metadata_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        port.mark(False)
