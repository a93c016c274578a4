"""Small builders shared by the unit tests."""

import contextlib
import json

import pytest

from controller import logs, runtime
from controller import policy as pol
from controller import policydoc, yamldoc
from controller import settings as settings_mod
from controller.core import build_core
from controller.discovery import PortInfo, VrsSnapshot, VtepPort, VtepSnapshot
from controller.rest.api import Api
from controller.rest.wire import Request
from controller.yamldoc import Doc

TOKEN = "unit-token"
VM_PORT, TUNNEL_PORT = 5, 99  # ofports of a snapshot's first VM and of its VXLAN port
TOR_IP = "10.251.0.9"  # tunnel IP of tor1 in the view tests


def app_routes(ctl, programmer, sessions=None) -> list:
    """The routes controller/app.py serves beside the Api's own, as it assembles them, over ``ctl``'s State and
    ``programmer`` (no switch connected, BGP's without a speaker); ``sessions``: the OVSDB server GET
    /v1/ovsdb/sessions asks (None: never asked)."""
    from controller.rest import bgp, dataplane, external, inspection, security, vteps
    from controller.rest import sessions as ovsdb_sessions
    from controller.rest.watch import VportWatch

    return (ovsdb_sessions.routes(sessions) + dataplane.routes(ctl.state, programmer, dict)
            + security.routes(ctl.state, programmer, dict) + external.routes(ctl.state, programmer, dict)
            + vteps.routes(ctl.state, programmer) + inspection.routes(ctl.state, programmer)
            + [VportWatch(ctl.state, dict).route()] + bgp.routes(None))


def make_settings(tmp_path, **rest):
    data = {"data_dir": str(tmp_path / "data"), "rest": {"token": TOKEN, **rest}}
    return settings_mod.from_doc(Doc("<test>", data))


class Controller:
    """The framework-free core plus its API, on a temporary data directory."""

    def __init__(self, tmp_path, **rest):
        self.settings = make_settings(tmp_path, **rest)
        self.store, self.state, self.service = build_core(self.settings)
        self.api = Api(self.service, self.state, self.settings)

    def call(self, method, path, body=None, token=TOKEN, remote="127.0.0.1", raw=None, query=None, ctype=None):
        headers = {"content-type": ctype or "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        resp = self.api.handle(Request(method, path, query or {}, headers, data, remote))
        return resp.status, json.loads(resp.encoded() or b"null")

    def create(self, collection, body):
        status, reply = self.call("POST", f"/v1/{collection}", body)
        assert status == 201, reply
        return reply

    def close(self):
        self.store.close()


@contextlib.contextmanager
def running(ctl):
    """``ctl`` as the running controller (runtime.SETTINGS, runtime.API: what lifecycle.reload changes); yields the
    log level, put back after, and closes ``ctl``."""
    runtime.SETTINGS, runtime.API, level = ctl.settings, ctl.api, logs.current_level()
    try:
        yield level
    finally:
        runtime.SETTINGS = runtime.API = None
        logs.set_level(level)
        ctl.close()


def demo_net(ctl):
    """tenant acme, domain prod, subnet web 10.0.1.0/24; returns (tenant, domain, subnet)."""
    tenant = ctl.create("tenants", {"name": "acme"})
    domain = ctl.create("domains", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = ctl.create("subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                    "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    return tenant, domain, subnet


# ------------------------------------------------------------------ a State with switches, for view tests

def state_from(doc_text: str, **kwargs):
    """A State holding the policy of a YAML document, planned as a first apply (VNIs from 10000)."""
    from controller.state import State

    plan = policydoc.plan(pol.Policy(), yamldoc.load(doc_text).data, "t", pol.Allocator({}, 65000, (10000, 20000)))
    return State(plan.policy, **kwargs)


def vrs_snapshot(session: str, vtep_ip: str, vms) -> VrsSnapshot:
    """VRS ``session`` (also its chassis) with a KVM tap port per vport name in ``vms`` (iface-id, ofports from
    VM_PORT) and its VXLAN port (TUNNEL_PORT); its datapath id is the last digit of ``vtep_ip``."""
    ports = tuple(PortInfo(f"tap-{vm}", VM_PORT + i, external_ids=(("iface-id", vm),)) for i, vm in enumerate(vms))
    return VrsSnapshot(session, "p", session, vtep_ip=vtep_ip, datapath_id=int(vtep_ip[-1]), bridge_present=True,
                       ports=ports + (PortInfo("vxlan0", TUNNEL_PORT, type="vxlan"),))


def tor_snapshot(local_macs=()) -> VtepSnapshot:
    """Hardware VTEP tor1 (tunnel IP TOR_IP) with VLAN 100 of its port p1 bound to VNI 5001."""
    return VtepSnapshot("v1", "p", "tor1", tunnel_ips=(TOR_IP,), ports=(VtepPort("p1", ((100, 5001),)),),
                        local_macs=tuple(local_macs))


# ------------------------------------------------------------------ packets through compiled flows

def trace(desired, packet):
    """Run a packet (a dict of match fields; registers default to 0) through a switch's compiled flows and
    groups with the product's tracer (openflow/trace.py). Returns [(output port, packet as sent), ...] for
    every copy sent out (to a port, the tunnel port or the controller); an output to "in_port" is reported as
    the packet's in_port. Two flows matching at the same top priority fail the test."""
    from openflow.trace import walk

    flows = desired.all_flows() if hasattr(desired, "all_flows") else desired[0]
    groups = desired.all_groups() if hasattr(desired, "all_groups") else desired[1]
    result = walk(flows, groups, packet)
    assert not result.ambiguous, f"ambiguous match: {result.ambiguous}"
    return [(e.packet["in_port"] if e.port == "in_port" else e.port, e.packet) for e in result.exits
            if e.kind != "drop"]


class FederationStandIn:
    """What /metrics and /v1/status read of a bgp.federation.Federation: the given speaker and its peers, a fresh
    Mobility and the DuplicateKeeper over its flags (no data directory, no HA link)."""

    def __init__(self, speaker, peers):
        from bgp.dupkeep import DuplicateKeeper
        from bgp.mobility import Mobility

        self.speaker, self.peers = speaker, peers
        self.mobility = Mobility()
        self.keeper = DuplicateKeeper(lambda: self.mobility.duplicates, None)


@contextlib.contextmanager
def flagging(owner, name: str, inside: list):
    """``owner``'s method ``name`` setting ``inside[0]`` while it runs (False again when it returns or raises), for
    the block."""
    real = getattr(owner, name)

    def flagged(self, *args):
        inside[0] = True
        try:
            return real(self, *args)
        finally:
            inside[0] = False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(owner, name, flagged)
        yield
