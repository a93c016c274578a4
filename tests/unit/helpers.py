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


# ------------------------------------------------------------------ a fake switch for compiled flows

def _as_int(value):
    """A match or packet value as an int: MACs, IPv4 addresses and ints alike (for masked matches)."""
    import ipaddress

    if isinstance(value, int):
        return value
    if value.count(":") == 5:
        return int(value.replace(":", ""), 16)
    return int(ipaddress.IPv4Address(value))


def _matches(flow_, packet) -> bool:
    for name, want in flow_.match:
        have = packet.get(name, 0 if name.startswith("reg") else None)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = (_as_int(w) for w in want)
            if _as_int(have) & mask != value & mask:
                return False
        elif have != want:
            return False
    return True


def trace(desired, packet, table=0, _depth=0):
    """Run a packet (a dict of match fields; registers default to 0) through a switch's compiled flows and
    groups, as OVS would: per table the highest-priority match (two at the same priority is an error), its
    actions applied in order, goto/resubmit/group followed. Returns [(output port, packet as sent), ...];
    an output to "in_port" is reported as the packet's in_port, and an output to the packet's in_port by
    number is dropped (OpenFlow never sends a packet back where it came from unless asked with in_port)."""
    flows = desired.all_flows() if hasattr(desired, "all_flows") else desired[0]
    groups = desired.all_groups() if hasattr(desired, "all_groups") else desired[1]
    assert _depth < 32, "resubmit loop"
    candidates = [f for f in flows if f.table == table and _matches(f, packet)]
    if not candidates:
        return []
    top = max(f.priority for f in candidates)
    best = [f for f in candidates if f.priority == top]
    assert len(best) == 1, f"ambiguous match in table {table}: {[str(f) for f in best]}"
    return _apply(best[0].actions, dict(packet), (flows, groups), _depth)


def _apply(actions, packet, tables, depth):
    out = []
    for action in actions:
        kind = action[0]
        if kind == "set":
            packet["in_port" if action[1] == "in_port_nxm" else action[1]] = action[2]
        elif kind == "move":
            packet[action[2]] = packet.get(action[1], 0)
        elif kind == "dec_ttl":
            packet["ttl"] = packet.get("ttl", 64) - 1
        elif kind == "pop_vlan":
            packet.pop("vlan_vid", None)
        elif kind == "push_vlan":
            packet["vlan_vid"] = 0
        elif kind == "output":
            if action[1] != "in_port" and action[1] == packet.get("in_port"):
                continue  # OpenFlow suppresses output to the ingress port unless it is asked for as in_port
            port = packet["in_port"] if action[1] == "in_port" else action[1]
            out.append((port, dict(packet)))
        elif kind in ("goto", "resubmit"):
            out += trace(tables, packet, action[1], depth + 1)
        elif kind == "group":
            for bucket in tables[1][action[1]].buckets:
                out += _apply(bucket, dict(packet), tables, depth + 1)
        else:
            raise AssertionError(f"unknown action {action}")
    return out
