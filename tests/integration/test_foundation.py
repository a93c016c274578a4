"""The foundation against real parts: a Canopy process in its own namespace, hypervisors running real
Open vSwitch that connect to it, VMs attached the KVM, Hyper-V and ESXi ways, the REST API, and restarts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.policy import acme_web, create

pytestmark = pytest.mark.integration

TOKEN = "test-token"
REPO = Path(__file__).resolve().parents[2]


def demo_policy(api):
    """acme/prod/web with one vport per flavour; returns {flavour: vport}."""
    tenant, domain, subnet = acme_web(api)
    vports = {}
    for flavour, binding, mac in (("kvm", {"flavour": "kvm", "iface_id": "kvm-vm1"}, "02:00:00:00:01:01"),
                                  ("hyperv", {"flavour": "hyperv", "port_name": "hvvm1"}, "02:00:00:00:01:02"),
                                  ("esxi", {"flavour": "esxi", "vnic_id": "esx-vm1"}, "02:00:00:00:01:03")):
        vports[flavour] = create(api, "vports", {"subnet_id": subnet["id"], "name": f"{flavour}-vm1", "mac": mac,
                                                 "binding": binding})
    return vports


def switch_of(api, chassis):
    for item in api.get("/v1/switches").json["items"]:
        if item["chassis"] == chassis:
            return item
    return None


def vport_location(api, vport_id):
    return api.get(f"/v1/vports/{vport_id}").json["location"]


@pytest.fixture
def controller(lab):
    ctl_host = lab.add_controller_host("ctl1")
    return ctl_host, lab.start_controller(ctl_host)


def test_hypervisor_registers_with_ports_and_vports_follow_vms(lab, controller):
    ctl_host, canopy = controller
    api = canopy.api
    vports = demo_policy(api)
    hosts = {flavour: lab.add_hypervisor(f"{flavour[:3]}1", flavour=flavour) for flavour in ("kvm", "hyperv", "esxi")}
    for hv in hosts.values():
        hv.connect(ctl_host)

    for flavour, hv in hosts.items():
        sw = lab.wait_until(lambda: (s := switch_of(api, hv.name)) and s["openflow"]["connected"] and s,
                            timeout=15, what=f"{hv.name} connected over OpenFlow and OVSDB")
        assert sw["datapath_id"] == f"{hv.datapath_id():016x}"
        assert (sw["flavour"], sw["vtep_ip"], sw["ovsdb"]["connected"]) == (flavour, hv.vtep_ip, True)
        assert api.get(f"/v1/switches/{sw['datapath_id']}").json["chassis"] == hv.name

    vms = {"kvm": lab.add_vm(hosts["kvm"], "vm1", mac="02:00:00:00:01:01", vnic_id="kvm-vm1"),
           "hyperv": lab.add_vm(hosts["hyperv"], "hvvm1", mac="02:00:00:00:01:02"),
           "esxi": lab.add_vm(hosts["esxi"], "esxvm1", mac="02:00:00:00:01:03", vnic_id="esx-vm1", vlan=101)}
    for flavour, vm in vms.items():
        loc = lab.wait_until(lambda: vport_location(api, vports[flavour]["id"]), timeout=15,
                             what=f"{flavour} vport bound")  # ~1 s; a loaded machine's OVSDB and REST take longer
        assert loc["chassis"] == hosts[flavour].name
        assert loc["datapath_id"] == f"{hosts[flavour].datapath_id():016x}"
        assert loc["vlan"] == (101 if flavour == "esxi" else None)
        assert loc["ofport"] and loc["ofport"] > 0
    ports = {p["name"]: p for p in switch_of(api, hosts["hyperv"].name)["ports"]}
    assert ports["hvvm1"]["vport"]["id"] == vports["hyperv"]["id"]
    assert api.get("/v1/status").json["vports_bound"] == 3

    for flavour, vm in vms.items():
        lab.remove_vm(vm)
        lab.wait_until(lambda: vport_location(api, vports[flavour]["id"]) is None, timeout=15,
                       what=f"{flavour} vport unbound after its VM left")
    names = {p["name"] for p in switch_of(api, hosts["kvm"].name)["ports"]}
    assert vms["kvm"].port not in names


def test_unknown_vm_port_is_listed_but_binds_nothing(lab, controller):
    ctl_host, canopy = controller
    hv = lab.add_hypervisor("kvm1")
    hv.connect(ctl_host)
    vm = lab.add_vm(hv, "stranger", vnic_id="nobody-knows-me")
    sw = lab.wait_until(lambda: (s := switch_of(canopy.api, "kvm1")) and
                        any(p["name"] == vm.port for p in s["ports"]) and s, what="port listed")
    port = next(p for p in sw["ports"] if p["name"] == vm.port)
    assert port["iface_id"] == "nobody-knows-me" and port["vport"] is None


def test_ovs_version_is_null_until_open_vswitch_names_it(lab, controller):
    """The harness starts OVS by hand, without ovs-ctl, which is what writes Open_vSwitch.ovs_version: /v1/switches
    says null then (docs/rest.md), not an empty version; once the row names it (as ovs-ctl does), it shows."""
    ctl_host, canopy = controller
    hv = lab.add_hypervisor("kvm1")
    hv.connect(ctl_host)
    sw = lab.wait_until(lambda: (s := switch_of(canopy.api, "kvm1")) and s["ovsdb"] and s, what="kvm1 over OVSDB")
    assert sw["ovsdb"]["ovs_version"] is None, sw["ovsdb"]
    version = hv.ovs.vsctl("--version").splitlines()[0].rsplit(" ", 1)[1]  # "ovs-vsctl (Open vSwitch) 3.1.0"
    hv.ovs.vsctl("set", "Open_vSwitch", ".", f"ovs_version={version}")
    lab.wait_until(lambda: switch_of(canopy.api, "kvm1")["ovsdb"]["ovs_version"] == version, timeout=10,
                   what="the version the row names")


def test_rest_errors_are_documented_4xx_and_change_nothing(lab, controller):
    _, canopy = controller
    api = canopy.api
    demo_policy(api)
    tenant_id = api.get("/v1/tenants").json["items"][0]["id"]
    before = (api.get("/v1/status").json["seq"], api.get("/v1/subnets").json)
    cases = [
        (api.post("/v1/tenants", "{not json", headers={"Content-Type": "application/json"}), 400, "bad_json", None),
        (api.post("/v1/tenants", {"name": "x", "colour": "red"}), 422, "invalid", "colour"),
        (api.post("/v1/subnets", {"tenant_id": tenant_id, "name": "x", "cidr": "10.0.0.0/99"}), 422, "invalid",
         "cidr"),
        (api.post("/v1/tenants", {"name": "x"}, token=None), 401, "unauthorized", None),
        (api.delete(f"/v1/tenants/{tenant_id}"), 409, "has_dependents", None),
        (api.get("/v1/subnets/nope"), 404, "not_found", None),
    ]
    for resp, status, code, field in cases:
        assert resp.status == status, resp.text
        assert resp.headers.get("Content-Type", "").startswith("application/json")
        assert (resp.json["error"]["code"], resp.json["error"]["field"]) == (code, field)
        assert "Traceback" not in resp.text
    assert (api.get("/v1/status").json["seq"], api.get("/v1/subnets").json) == before
    doc = api.get("/v1/openapi.json").json
    assert doc["openapi"].startswith("3.") and "/v1/switches/{dpid}" in doc["paths"]


def test_policy_survives_restart_and_kill_9(lab, controller):
    _, canopy = controller
    api = canopy.api
    demo_policy(api)
    before = {c: api.get(f"/v1/{c}").json for c in ("tenants", "domains", "subnets", "vports")}
    canopy.restart()
    after = {c: canopy.api.get(f"/v1/{c}").json for c in before}
    assert strip_location(after) == strip_location(before)
    acked = canopy.api.post("/v1/tenants", {"name": "last-word"})
    assert acked.status == 201
    canopy.kill()
    canopy.restart()
    names = [t["name"] for t in canopy.api.get("/v1/tenants").json["items"]]
    assert "last-word" in names and "acme" in names
    # allocations never change across restarts
    assert canopy.api.get("/v1/subnets").json["items"][0]["vni"] == before["subnets"]["items"][0]["vni"]


def strip_location(listing):
    return json.loads(json.dumps(listing).replace('"status": "bound"', '"status": "unbound"'))


def canopy_cli(lab, ctl_host, *args):
    """Run the canopy command inside the controller's namespace."""
    cmd = ["ip", "netns", "exec", ctl_host.ns, str(Path(sys.executable).parent / "canopy"), *args,
           "--url", "http://127.0.0.1:8080", "--token", TOKEN]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_canopy_apply_is_declarative_idempotent_and_prunes(lab, controller, tmp_path):
    ctl_host, canopy = controller
    first = canopy_cli(lab, ctl_host, "apply", str(REPO / "config/examples/demo.yaml"))
    assert first.returncode == 0, first.stderr
    assert "14 change(s)" in first.stdout
    again = canopy_cli(lab, ctl_host, "apply", str(REPO / "config/examples/demo.yaml"))
    assert again.returncode == 0 and "0 change(s)" in again.stdout
    tenants = {t["name"] for t in canopy.api.get("/v1/tenants").json["items"]}
    assert tenants == {"acme", "globex"}

    smaller = (REPO / "config/examples/demo.yaml").read_text().replace(
        '              - {name: vm1, mac: "02:00:00:00:09:01", ips: [10.0.1.11], binding: {flavour: kvm, '
        'iface_id: globex-vm1}}\n', "")
    path = tmp_path / "demo.yaml"
    path.write_text(smaller)
    kept = canopy_cli(lab, ctl_host, "apply", str(path))
    assert kept.returncode == 0 and "0 change(s)" in kept.stdout
    pruned = canopy_cli(lab, ctl_host, "apply", str(path), "--prune")
    assert pruned.returncode == 0 and "delete vport globex/web/vm1" in pruned.stdout
    assert canopy.api.get("/v1/vports", ).json["count"] == 4

    bad = tmp_path / "bad.yaml"
    bad.write_text(smaller.replace("cidr: 10.0.2.0/24", "cidr: 10.0.1.128/25").replace("gateway: 10.0.2.1",
                                                                                     "gateway: 10.0.1.129"))
    refused = canopy_cli(lab, ctl_host, "apply", str(bad))
    assert refused.returncode == 1
    line = next(i for i, text in enumerate(smaller.splitlines(), 1) if "cidr: 10.0.2.0/24" in text)
    assert f"{bad}:{line}: subnet 'acme/db': cidr: 10.0.1.128/25 overlaps subnet 'web'" in refused.stderr
    assert canopy.api.get("/v1/vports").json["count"] == 4
