"""A REST answer is one snapshot, whatever changes in its pauses (controller/rest/paced.py, controller/rest/lane.py).

Since stop 46 an answer's JSON is encoded a run at a time with pauses between (the lane's 8 ms budget), and other
green threads change State meanwhile. The encoding walks copies of the body's dicts and lists taken before its first
pause (``paced._spine``: no "dictionary changed size during iteration", no 500, no torn answer), every route's body is
built of containers no one changes afterwards (checked here for each route the app serves against a run of changes),
and the answers built with pauses (``GET /v1/switches``, a listing, a FIB, a switch's flows) take the policy (a value)
and where vports are bound before their first pause. The changes are those of a running controller: vports created,
renamed and deleted, a subnet renamed, ports removed from a switch or reporting another MAC, a switch's first report.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from controller.discovery import PortInfo, VrsSnapshot
from controller.pacer import Pacer
from controller.rest import api as rest_api
from controller.rest import paced
from controller.rest.lane import Lane
from controller.rest.paced import paced_json
from controller.rest.wire import Request, Response, Route
from tests.bytecodes import Bytecodes

from .helpers import TOKEN, Controller, app_routes

VPORTS = 600
EVERY = 40  # elements encoded (or ports described) between two pauses here: many pauses, each with a change


def _mac(i: int) -> str:
    return "02:00:00:00:%02x:%02x" % (i // 256, i % 256)


def _switch(indexes, session="s1", dpid=1, other_mac=()) -> VrsSnapshot:
    """A KVM switch with a tap port per vport ``v{i}`` (its iface-id and MAC); ``other_mac``: indexes whose port
    reports a MAC not the vport's (a MAC mismatch)."""
    ports = []
    for i in indexes:
        mac = "02:ff:00:00:%02x:%02x" % (i // 256, i % 256) if i in other_mac else _mac(i)
        ports.append(PortInfo(name=f"tap{i}", ofport=i + 1, mac=mac,
                              external_ids=(("attached-mac", mac), ("iface-id", f"v{i}"))))
    return VrsSnapshot(session=session, chassis=f"hv-{session}", hostname=f"hv-{session}", peer="127.0.0.1:1",
                       bridge="br-int", bridge_present=True, datapath_id=dpid, vtep_ip=f"192.0.2.{dpid}",
                       flavour="kvm", ports=tuple(ports))


def _controller(tmp_path, count: int) -> Controller:
    """``count`` vports v0.. in subnet acme/web, all bound on switch s1 (datapath 1)."""
    ctl = Controller(tmp_path)
    ports = [{"name": f"v{i}", "mac": _mac(i), "ips": ["10.0.%d.%d" % (i // 250, i % 250 + 2)],
              "binding": {"flavour": "kvm"}} for i in range(count)]
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.0.0/16", "gateway": "10.0.255.1", "vports": ports}]}]}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    ctl.state.vrs_update(_switch(range(count)))
    return ctl


class Changes:
    """One change of State per call, in turn (those the module docstring lists); ``made`` counts them."""

    def __init__(self, ctl, count: int):
        self.ctl, self.count, self.made = ctl, count, 0
        self.ports, self.other_mac = set(range(count)), set()

    def __call__(self) -> None:
        n, service, policy = self.made, self.ctl.service, self.ctl.state.policy
        self.made += 1
        step = n % 6
        if step == 0:  # a vport renamed (its port's iface-id no longer names it: unbound)
            vport = policy.find("vport", f"acme/web{self._subnet_suffix()}/v{n}")
            service.update("vport", vport["id"], {"name": f"renamed{n}"})
        elif step == 1:  # a vport deleted
            vport = policy.find("vport", f"acme/web{self._subnet_suffix()}/v{self.count - 1 - n}")
            service.delete("vport", vport["id"])
        elif step == 2:  # a vport created
            subnet = next(iter(policy.all("subnet")))
            service.create("vport", {"subnet_id": subnet["id"], "name": f"new{n}", "mac": _mac(5000 + n),
                                     "binding": {"flavour": "kvm"}})
        elif step == 3:  # ports removed from the switch, one reporting another MAC
            self.ports -= {n + 1, n + 2}
            self.other_mac.add(n + 3)
            self.ctl.state.vrs_update(_switch(sorted(self.ports), other_mac=self.other_mac))
        elif step == 4:  # the subnet renamed: every vport's ref changes
            subnet = next(iter(policy.all("subnet")))
            service.update("subnet", subnet["id"], {"name": f"web{n}"})
        else:  # another switch's first report
            self.ctl.state.vrs_update(_switch([5000 + n], session=f"s{n}", dpid=100 + n))

    def _subnet_suffix(self) -> str:
        name = next(iter(self.ctl.state.policy.all("subnet")))["name"]
        return name[len("web"):]


def _get(path: str) -> Request:
    return Request("GET", path, {}, {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1")


def _write(method: str, path: str, body: dict) -> Request:
    return Request(method, path, {}, {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
                   json.dumps(body).encode(), "127.0.0.1")


# ------------------------------------------------------------------ the encoding

def test_a_body_changed_in_the_encodings_pauses_is_written_as_it_was_before_its_first_pause():
    """Live containers in a body (a list and dicts the pauses change in place, a key removed from the body itself):
    the bytes are those of the body as it was, and nothing raises. Before, the walk read them live: the removed key
    raised (KeyError: a 500), and the list's later runs skipped and repeated elements."""
    rows = [{"n": i} for i in range(300)]
    meta, nested = {"a": 1}, {"inner": [{"m": i} for i in range(50)], "note": "x"}
    body = {"items": rows, "meta": meta, "more": list(range(100)), "nested": nested, "zz": rows}
    expected = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()
    changed = []

    def change(_units=1):
        changed.append(1)
        rows.insert(0, {"n": -len(changed)})
        del rows[-1]
        meta["b" * len(changed)] = len(changed)
        body.pop("more", None)
        body["new"] = [0] * 40
        nested["inner"].append({"m": -1})
        nested["note"] = "changed"

    assert paced_json(body, change) == expected
    assert len(changed) > 10


def test_the_copies_cost_what_the_walked_dicts_hold_not_the_big_lists_elements():
    """The walk's copies (``_spine``), in bytecodes: the same for a listing of 600 views as of 1,200 (the list copied
    in C, its elements not), and for a body whose elements each hold a big list (a switch and its ports) in
    proportion to those elements; next to the encoding's own bytecodes, under 1 %."""

    def copies_and_encoding(body) -> tuple[int, int]:
        spent, real = Bytecodes(), paced._spine
        counted = lambda value: spent.run(lambda: real(value))  # noqa: E731
        paced._spine = counted
        try:
            paced_json(body, Pacer().tick)
        finally:
            paced._spine = real
        total = Bytecodes()
        total.run(lambda: paced_json(body, Pacer().tick))
        return spent.count, total.count

    def listing(n):
        return {"items": [{"id": f"v{i}", "ips": [f"10.0.0.{i % 250}"], "binding": {"flavour": "kvm"},
                           "location": {"chassis": "hv1", "port": f"tap{i}"}} for i in range(n)], "count": n}

    def switches(n):
        return {"items": [{"name": f"hv{s}", "ovsdb": {"connected": True}, "ports": [
            {"name": f"tap{i}", "vport": {"id": f"v{i}"}} for i in range(40)]} for s in range(n)], "count": n}

    small, small_total = copies_and_encoding(listing(600))
    large, large_total = copies_and_encoding(listing(1200))
    assert small == large and large * 100 < large_total, (small, large, large_total)
    one, _ = copies_and_encoding(switches(10))
    two, two_total = copies_and_encoding(switches(20))
    assert 1.8 * one <= two <= 2.2 * one and two * 100 < two_total, (one, two, two_total)


@pytest.fixture(scope="module")
def bound(tmp_path_factory):
    ctl = _controller(tmp_path_factory.mktemp("snapshots"), VPORTS)
    yield ctl
    ctl.close()


def test_a_listing_encoded_through_the_lane_while_state_changes_is_the_answer_it_was_built_as(bound, monkeypatch):
    """``GET /v1/vports`` of 600 vports answered as the REST server does (``Api.handle``, then ``Api.encoded``)
    through the app's lane, State changed in every pause of the encoding: the bytes are the answer's as built, the
    status 200."""
    ctl = bound
    changes, encoding = Changes(ctl, VPORTS), [False]
    monkeypatch.setattr(rest_api, "ANSWER_EVERY", EVERY)
    monkeypatch.setattr(ctl.api, "pause", Lane(lambda: encoding[0] and changes()).pause)
    resp = ctl.api.handle(_get("/v1/vports"))
    assert resp.status == 200 and resp.body["count"] == VPORTS
    built = resp.encoded()  # no pause: as built
    encoding[0] = True
    assert ctl.api.encoded(resp) == built
    assert changes.made >= VPORTS // EVERY // 2
    after = ctl.api.handle(_get("/v1/vports"))
    assert after.status == 200 and after.encoded() != built  # (State did change)


def test_a_listing_made_while_its_subnet_is_renamed_names_every_vport_as_it_began(tmp_path, monkeypatch):
    """``GET /v1/vports`` made 40 views a stretch, the subnet renamed in every pause of its making: every vport's
    ``ref`` is the one of the policy as the listing began (as its order is). Before, views made after a pause named
    the vports by the new name (half the answer ``acme/web/...``, half ``acme/web6/...``)."""
    ctl = _controller(tmp_path, 200)
    try:
        before = ctl.api.handle(_get("/v1/vports"))
        renamed, turned = [], []

        def give_way():  # not in the answer's turn, before it begins
            if turned:
                subnet = next(iter(ctl.state.policy.all("subnet")))
                ctl.service.update("subnet", subnet["id"], {"name": f"web{len(renamed)}"})
                renamed.append(1)
            turned.append(1)

        monkeypatch.setattr(rest_api, "LIST_EVERY", EVERY)
        monkeypatch.setattr(rest_api, "LIST_CHUNK", 10)
        monkeypatch.setattr(ctl.api, "pause", Lane(give_way).pause)
        during = ctl.api.handle(_get("/v1/vports"))
        assert during.status == 200 and len(renamed) >= 5
        assert during.encoded() == before.encoded()
    finally:
        ctl.close()


def test_the_switches_described_while_state_changes_are_the_switches_as_the_answer_began(tmp_path, monkeypatch):
    """``GET /v1/switches`` (a switch of 600 ports, each a vport's) changed in every pause of its making and its
    encoding: the answer is the one made before any change. Before, a port's vport was described as State said at
    that port's turn: refs of a renamed subnet from the first pause on, deleted and renamed vports unbound, ports
    of a switch's first report left out or in by when it came."""
    ctl = _controller(tmp_path, VPORTS)
    try:
        before = ctl.api.handle(_get("/v1/switches"))
        assert before.status == 200
        changes, turned = Changes(ctl, VPORTS), []

        def give_way():  # the answer's first pause is its turn, before it begins: no change there
            if turned:
                changes()
            turned.append(1)

        monkeypatch.setattr(rest_api, "SWITCHES_EVERY", EVERY)
        monkeypatch.setattr(ctl.api, "pause", Lane(give_way).pause)
        during = ctl.api.handle(_get("/v1/switches"))
        assert during.status == 200 and changes.made >= VPORTS // EVERY
        assert json.loads(during.encoded()) == json.loads(before.encoded())
        monkeypatch.setattr(ctl.api, "pause", None)
        assert json.loads(ctl.api.handle(_get("/v1/switches")).encoded()) != json.loads(before.encoded())
    finally:
        ctl.close()


# ------------------------------------------------------------------ every route's body


def _routes_world(tmp_path):
    """A controller of 40 bound vports, an ACL, a hardware VTEP binding, with every route module the app serves
    (controller/app.py) over a programmer that has made its View; (ctl, programmer)."""
    from controller.programmer import Programmer
    from controller.rest.api import Api

    ctl = _controller(tmp_path, 40)
    tenant = ctl.state.policy.find("tenant", "acme")
    ctl.create("acls", {"tenant_id": tenant["id"], "name": "web-in", "rules": [
        {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "22"}]})
    subnet = ctl.state.policy.find("subnet", "acme/web")
    ctl.create("vtep-bindings", {"switch": "tor1", "port": "p1", "vlan": 10, "subnet_id": subnet["id"]})
    programmer = Programmer(ctl.state)
    programmer.refresh(full=True)
    server = SimpleNamespace(sessions=lambda tick=None: [],  # (an OVSDB server without sessions)
                             first_reads=SimpleNamespace(status=lambda: {"limit": 4, "waiting": 0, "waited": 0}))
    ctl.api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=app_routes(ctl, programmer, server),
                  status_parts={"flood_limits": programmer.floods.status})
    ctl.api.floods = programmer.floods
    return ctl, programmer


def _filled(ctl, route) -> str:
    """``route``'s path with its parameters those of objects that exist (404 where none does: its body too)."""
    policy, path = ctl.state.policy, route.pattern
    kinds = {"/v1/domains/{id}/fib": "domain", "/v1/vports/{id}/dhcp": "vport", "/v1/vports/{id}/acl-stats": "vport",
             "/v1/acls/{id}/stats": "acl", "/v1/floating-ips/{id}/stats": "floating_ip",
             "/v1/external-networks/{id}/stats": "external_network"}
    kind = route.kind or kinds.get(path)
    if "{id}" in path:
        found = next(iter(policy.all(kind)), None) if kind else None
        path = path.replace("{id}", found["id"] if found else "none")
    return path.replace("{dpid}", "1").replace("{name}", "tor1")


def _bodies(api, routes, fill) -> dict:
    """route pattern -> (status, its body's JSON as built, the Response)."""
    out = {}
    for route in routes:
        resp = api.handle(_get(fill(route)))
        assert resp.status < 500, (route.pattern, resp.body)
        out[route.pattern] = (resp.status, resp.encoded(), resp)
    return out


def test_no_routes_body_changes_with_state_after_it_is_built(tmp_path):
    """Every GET route of the app (those above) and the bodies writes echo (an object created and changed, an apply's
    changes), each body built, then State changed in every way ``Changes`` does and the View made again: each body
    encodes to the same bytes as before (it holds no container that the controller changes in place afterwards), and
    no answer is a 500. The check sees such a body: a route answering with a dict of State's (``vrs_since``, changed
    by a switch's first report) fails it."""
    ctl, programmer = _routes_world(tmp_path)
    try:
        live = Route("GET", "/v1/test/live", lambda req: Response(200, {"since": ctl.state.vrs_since}), "live")
        ctl.api.routes.append(live)
        ctl.api._compiled.append((live, live.regex))
        gets = [r for r in ctl.api.routes if r.method == "GET"]
        assert len(gets) >= 25
        bodies = _bodies(ctl.api, gets, lambda route: _filled(ctl, route))
        assert sum(status == 200 for status, _, _ in bodies.values()) >= 20
        vport = ctl.state.policy.find("vport", "acme/web/v20")
        apply = {"document": {"tenants": [{"name": "beta", "domains": [{"name": "d", "subnets": [
            {"name": "s", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "vports": [
                {"name": "b1", "mac": "02:00:00:09:00:01", "binding": {"flavour": "kvm"}}]}]}]}]}}
        for name, request in (("POST /v1/tenants", _write("POST", "/v1/tenants", {"name": "gamma"})),
                              ("PATCH /v1/vports", _write("PATCH", f"/v1/vports/{vport['id']}", {"name": "v20b"})),
                              ("POST /v1/apply", _write("POST", "/v1/apply", apply))):
            resp = ctl.api.handle(request)
            assert resp.status in (200, 201), (name, resp.body)
            bodies[name] = (resp.status, resp.encoded(), resp)
        changes = Changes(ctl, 40)
        for _ in range(12):
            changes()
            programmer.refresh()
        changed = sorted(pattern for pattern, (_, built, resp) in bodies.items() if resp.encoded() != built)
        assert changed == ["/v1/test/live"]
    finally:
        ctl.close()


def test_a_floating_ips_counters_answer_when_its_switch_leaves_the_view_while_they_are_asked():
    """``GET /v1/floating-ips/{id}/stats`` waits for the switch's flow statistics; a programming pass may meanwhile
    replace the View with one without that switch. The answer names the switch it was active on when asked (before:
    the new View's switches looked up by the old session, KeyError: a 500)."""
    from types import SimpleNamespace

    from controller.rest import external
    from openflow.flows import Owner

    def view(floating, switches):
        return SimpleNamespace(external=SimpleNamespace(floating=floating, pat={}), switches=switches)

    flow = SimpleNamespace(cookie=5, table=0, priority=0, match=(), actions=())
    programmer = SimpleNamespace(view=view({"f1": SimpleNamespace(session="s1")},
                                          {"s1": SimpleNamespace(chassis="hv1", datapath_id=1)}),
                                 desired={"s1": SimpleNamespace(flows={Owner("fip", "f1"): (flow,)})})

    class Switch:
        def flow_stats(self, cookie, mask):
            programmer.view = view({}, {})  # a pass while the switch answered: it left
            return {5: 3}

    state = SimpleNamespace(policy=SimpleNamespace(
        get=lambda kind, oid: {"id": oid, "address": "203.0.113.5"} if kind == "floating_ip" else None))
    stats = next(r for r in external.routes(state, programmer, lambda: {1: Switch()}) if "floating" in r.pattern)
    resp = stats.handler(_get("/v1/floating-ips/f1/stats"), id="f1")
    assert resp.status == 200 and resp.body["active_on"] == "hv1" and resp.body["unanswered"] == []


def test_a_fib_whose_tenant_is_renamed_while_it_waits_for_its_turn_names_everything_by_one_policy(tmp_path):
    """``GET /v1/domains/{id}/fib`` waits for its turn of the lane; the tenant renamed meanwhile: the domain's ``ref``
    and its routes' subnets' refs are of one policy, the one of when the answer began. Before, the domain's was read
    before the turn and the routes' after it: ``acme/prod`` beside subnets ``renamed/web``."""
    from controller.rest import dataplane

    ctl, programmer = _routes_world(tmp_path)
    try:
        tenant, domain = ctl.state.policy.find("tenant", "acme"), ctl.state.policy.find("domain", "acme/prod")
        turns = []

        def pause():  # the first: its turn, before it begins
            if not turns:
                ctl.service.update("tenant", tenant["id"], {"name": "renamed"})
            turns.append(1)

        fib = next(r for r in dataplane.routes(ctl.state, programmer, dict, pause=pause)
                   if r.pattern == "/v1/domains/{id}/fib")
        body = fib.handler(_get(f"/v1/domains/{domain['id']}/fib"), domain["id"]).body
        subnets = {route["subnet"]["ref"] for route in body["routes"] if route["subnet"]}
        assert turns and ctl.state.policy.find("tenant", "renamed") is not None
        assert body["ref"] == "acme/prod" and subnets == {"acme/web"}
    finally:
        ctl.close()
