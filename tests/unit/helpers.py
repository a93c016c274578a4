"""Small builders shared by the unit tests."""

import json

from controller import settings as settings_mod
from controller.core import build_core
from controller.rest.api import Api, Request
from controller.yamldoc import Doc

TOKEN = "unit-token"


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


def demo_net(ctl):
    """tenant acme, domain prod, subnet web 10.0.1.0/24; returns (tenant, domain, subnet)."""
    tenant = ctl.create("tenants", {"name": "acme"})
    domain = ctl.create("domains", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = ctl.create("subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                    "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    return tenant, domain, subnet


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
