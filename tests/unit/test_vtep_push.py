"""The hardware VTEPs' desired rows follow the programming pass's delta (controller/viewvteps.py): a pass computes
the rows of the VTEPs its change reaches, not of every VTEP, and the app hands OVSDB only the rows that changed
(controller/app.py ``_push_vteps``). Counted: the calls of ``derive.vtep_desired`` and the rows handed out."""

from types import SimpleNamespace

import pytest

from controller import app
from controller import derive
from controller.discovery import VtepPort, VtepSnapshot
from controller.programmer import Programmer
from tests.unit.helpers import state_from, vrs_snapshot

DOC = """
tenants:
  - name: acme
    domains:
      - name: prod
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vni: 5001
            vports:
              - {name: vm1, mac: "02:00:00:00:01:01", ips: [10.0.1.11], binding: {flavour: kvm}}
              - {name: vm2, mac: "02:00:00:00:01:02", ips: [10.0.1.12], binding: {flavour: kvm}}
          - name: db
            cidr: 10.0.2.0/24
            gateway: 10.0.2.1
            vni: 5002
          - name: free
            cidr: 10.0.3.0/24
            gateway: 10.0.3.1
            vni: 5003
            vports:
              - {name: vm3, mac: "02:00:00:00:03:01", ips: [10.0.3.11], binding: {flavour: kvm}}
              - {name: vm4, mac: "02:00:00:00:03:02", ips: [10.0.3.12], binding: {flavour: kvm}}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}
  - {switch: tor2, port: p1, vlan: 200, subnet: acme/db}
"""


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
    """tor1 carries web, tor2 db, no VTEP carries free; hv1 holds vm1 (web) and vm3 (free). Returns the State, the
    app as far as the VTEP push needs it, its OVSDB, and the names ``vtep_desired`` was called for."""
    state = state_from(DOC)
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
