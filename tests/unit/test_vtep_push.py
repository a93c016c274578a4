"""The hardware VTEPs' desired rows follow the programming pass's delta (controller/viewvteps.py): a pass computes
the rows of the VTEPs its change reaches, not of every VTEP, and the app hands OVSDB only the rows that changed
(controller/app.py ``_push_vteps``). Counted: the calls of ``derive.vtep_desired`` and the rows handed out."""

from types import SimpleNamespace

import pytest

from controller import app, derive, policydoc
from controller import policy as pol
from controller.discovery import VtepPort, VtepSnapshot
from controller.programmer import Programmer
from controller.state import State
from tests.unit.helpers import vrs_snapshot

SUBNETS = {"web": (1, ["vm1", "vm2"]), "db": (2, []), "free": (3, ["vm3", "vm4"])}  # name -> (number, its vports)
BINDINGS = {"tor1": ("web", 100), "tor2": ("db", 200)}  # tor1 carries web, tor2 db, no VTEP carries free


def document() -> dict:
    subnets = [{"name": name, "cidr": f"10.0.{n}.0/24", "gateway": f"10.0.{n}.1", "vni": 5000 + n,
                "vports": [{"name": vm, "mac": f"02:00:00:00:0{n}:0{k}", "ips": [f"10.0.{n}.1{k}"],
                            "binding": {"flavour": "kvm"}} for k, vm in enumerate(vms, 1)]}
               for name, (n, vms) in SUBNETS.items()]
    return {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": subnets}]}],
            "vtep_bindings": [{"switch": tor, "port": "p1", "vlan": vlan, "subnet": f"acme/{sub}"}
                              for tor, (sub, vlan) in BINDINGS.items()]}


class Ovsdb:
    """What the app hands the OVSDB server: the rows per VTEP name, in order."""

    def __init__(self):
        self.handed = []

    def set_vtep_desired(self, name, desired):
        self.handed.append(name)


def tor(name, ip, vni):
    return VtepSnapshot(f"vtep:{name}", "p", name, tunnel_ips=(ip,), ports=(VtepPort("p1", ((100, vni),)),))


@pytest.fixture
def world(monkeypatch):
    """hv1 holds vm1 (web) and vm3 (free). Returns the State, the app as far as the VTEP push needs it, its OVSDB,
    and the names ``vtep_desired`` was called for."""
    plan = policydoc.plan(pol.Policy(), document(), "t", pol.Allocator({}, 65000, (10000, 20000)))
    state = State(plan.policy)
    state.vrs_update(vrs_snapshot("hv1", "10.251.0.1", ["vm1", "vm3"]))
    state.vtep_update(tor("tor1", "10.252.0.1", 5001))
    state.vtep_update(tor("tor2", "10.252.0.2", 5002))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    ovsdb = Ovsdb()
    glue = SimpleNamespace(programmer=programmer, state=state, ovsdb=ovsdb, _vtep_pushed={})
    app.CanopyApp._push_vteps(glue)
    assert sorted(ovsdb.handed) == ["tor1", "tor2"]
    calls = []
    real = derive.vtep_desired

    def counting(view, policy, name, *args, **kwargs):
        calls.append(name)
        return real(view, policy, name, *args, **kwargs)

    monkeypatch.setattr(derive, "vtep_desired", counting)
    monkeypatch.setattr(app, "vtep_desired", counting, raising=False)  # where the app computed them itself
    return SimpleNamespace(state=state, glue=glue, ovsdb=ovsdb, calls=calls)


def a_pass(w, *vms):
    """hv1 reports ``vms``; one programming pass, then the VTEP push; the names computed and handed out."""
    w.calls.clear()
    w.ovsdb.handed.clear()
    w.state.vrs_update(vrs_snapshot("hv1", "10.251.0.1", list(vms)))
    assert w.glue.programmer.refresh()
    app.CanopyApp._push_vteps(w.glue)
    return sorted(w.calls), sorted(w.ovsdb.handed)


def test_a_vport_on_a_logical_switch_no_vtep_carries_computes_no_vtep_rows(world):
    assert a_pass(world, "vm1", "vm3", "vm4") == ([], [])


def test_a_vport_on_a_bound_subnet_computes_and_hands_out_only_the_vtep_carrying_it(world):
    assert a_pass(world, "vm1", "vm2", "vm3") == (["tor1"], ["tor1"])
    rows = world.glue.programmer.vteps.desired
    assert "02:00:00:00:01:02" in {r[1] for r in rows["tor1"].remote_macs}
    assert a_pass(world, "vm1", "vm2") == ([], [])  # vm3 leaves free: nothing for either VTEP


def test_a_vtep_changing_its_tunnel_ip_computes_itself_and_the_vteps_flooding_to_it(world):
    """tor2 moves its tunnel IP: its own rows, and tor1's only if they share a subnet (they do not)."""
    world.calls.clear()
    world.state.vtep_update(tor("tor2", "10.252.1.2", 5002))
    world.glue.programmer.refresh()
    app.CanopyApp._push_vteps(world.glue)
    assert sorted(world.calls) == ["tor2"]


def test_rest_serves_the_rows_the_pass_keeps_and_computes_none(world, monkeypatch):
    """GET /v1/vteps and /v1/vteps/{name} read each VTEP's rows as the pass keeps them (no ``vtep_desired`` per
    request), and they are the rows computed from the View."""
    from controller.rest import vteps as rest_vteps

    a_pass(world, "vm1", "vm2", "vm3")
    world.calls.clear()
    real = rest_vteps.vtep_desired
    monkeypatch.setattr(rest_vteps, "vtep_desired", lambda *a, **k: (world.calls.append(a[2]), real(*a, **k))[1])
    handlers = {r.pattern: r.handler for r in rest_vteps.routes(world.state, world.glue.programmer)}
    listing = handlers["/v1/vteps"](None).body
    one = handlers["/v1/vteps/{name}"](None, "tor1").body
    assert world.calls == []
    view, policy = world.glue.programmer.view, world.state.policy
    for item in listing["items"] + [one]:
        rows = real(view, policy, item["name"])
        assert [(m["vni"], m["mac"], m["ip"], m["locator"]) for m in item["remote_macs"]] == list(rows.remote_macs)
        assert [(f["vni"], tuple(f["locators"])) for f in item["flood"]] == list(rows.flood)
    assert "02:00:00:00:01:02" in {m["mac"] for m in one["remote_macs"]}


def test_a_vtep_unbound_and_gone_is_handed_none_and_forgotten(world):
    """tor2 disconnects and its binding is deleted: it is handed None once (the OVSDB server forgets it too) and
    nothing is kept for it; bound again, it has rows again."""
    state, glue = world.state, world.glue
    state.vtep_gone("vtep:tor2")
    glue.programmer.refresh()
    app.CanopyApp._push_vteps(glue)
    assert "tor2" in glue.programmer.vteps.desired  # still bound: its rows are kept for when it connects
    world.ovsdb.handed.clear()
    handed = []
    world.ovsdb.set_vtep_desired = lambda name, desired: handed.append((name, desired))
    plan = policydoc.plan(state.policy, {**document(), "vtep_bindings": document()["vtep_bindings"][:1]}, "t",
                          pol.Allocator({}, 65000, (10000, 20000)), prune=True)
    state.policy_committed(plan.policy, plan.changes)
    glue.programmer.refresh()
    app.CanopyApp._push_vteps(glue)
    assert handed == [("tor2", None)]
    assert set(glue.programmer.vteps.desired) == {"tor1"}
    glue.programmer.refresh(full=True)
    assert set(glue.programmer.vteps.desired) == {"tor1"}


def served(state, programmer) -> dict:
    from controller.rest import vteps as rest_vteps

    return {r.pattern: r.handler for r in rest_vteps.routes(state, programmer)}["/v1/vteps"](None).body


def test_rest_serves_after_every_vtep_change_what_a_fresh_build_serves(world):
    """GET /v1/vteps serves the rows the passes keep: after each change of the hardware VTEPs (a tunnel IP moved, alone
    and in a subnet another VTEP floods to, local MACs learnt and forgotten, a binding added, a VTEP gone and back, a
    new one) and its pass, the listing is the one a controller built from scratch on the same State serves."""
    from controller.discovery import VtepMac

    state, glue = world.state, world.glue
    web_mac = VtepMac("02:aa:00:00:00:01", 5001, "10.0.1.99", "10.252.1.2")
    db_mac = VtepMac("02:aa:00:00:00:02", 5002, None, "10.252.1.2")

    def learnt(*macs, ip="10.252.1.2"):
        ports = (VtepPort("p1", ((100, 5002), (300, 5001))),)
        state.vtep_update(VtepSnapshot("vtep:tor2", "p", "tor2", tunnel_ips=(ip,), ports=ports,
                                       local_macs=tuple(sorted(macs, key=lambda m: (m.vni, m.mac))), changed=frozenset(macs) | {web_mac, db_mac}))

    def bind_tor2_to_web():
        doc = document()
        doc["vtep_bindings"].append({"switch": "tor2", "port": "p1", "vlan": 300, "subnet": "acme/web"})
        plan = policydoc.plan(state.policy, doc, "t", pol.Allocator({}, 65000, (10000, 20000)))
        state.policy_committed(plan.policy, plan.changes)

    steps = [lambda: state.vtep_update(tor("tor2", "10.252.1.2", 5002)), lambda: learnt(db_mac), bind_tor2_to_web,
             lambda: learnt(db_mac, web_mac), lambda: learnt(web_mac), lambda: learnt(web_mac, ip="10.252.1.7"),
             lambda: state.vtep_gone("vtep:tor1"),
             lambda: state.vtep_update(tor("tor1", "10.252.0.9", 5001)), lambda: learnt(),
             lambda: state.vtep_update(tor("tor3", "10.252.0.3", 5003))]
    shown = []
    for step in steps:
        step()
        glue.programmer.refresh()
        app.CanopyApp._push_vteps(glue)
        fresh = Programmer(state)
        fresh.refresh(full=True)
        listing = served(state, glue.programmer)
        assert listing == served(state, fresh)
        tor1 = next(item for item in listing["items"] if item["name"] == "tor1")
        shown.append(web_mac.mac in {m["mac"] for m in tor1["remote_macs"]})
    assert shown == [False, False, False, True, True, True, True, True, False, False]  # tor2's MAC in web, at tor1
