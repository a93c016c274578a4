"""The OpenStack metadata service proven on real OVS: a Canopy metadata agent on each hypervisor (KVM, Hyper-V,
ESXi) behind its own internal port on br-int, and a fake Nova metadata API (its own namespace on the management
network) that checks the signature and the headers as Nova does. VMs ask http://169.254.169.254/ through their
gateway or by ARPing for it directly; two VMs of different tenants with the same address on one hypervisor each
get their own instance; the VMs' security policies apply both ways; a VM without an instance gets 404; a VM
posing as another (its MAC and address) gets nothing, with port security or without; when the agent stops, its
port is no longer steered to."""

from __future__ import annotations

import json
import sys

import pytest

pytestmark = pytest.mark.integration

NOVA_IP, NOVA_PORT = "10.250.0.200", 8775
SECRET = "metadata-s3cret"
READ_TOKEN = "metadata-read-token"  # the controller's rest.read_token, which the agents hold (docs/metadata.md)
PROJECTS = {"acme": "0a0a0a0a0a0a4a0a8a0a0a0a0a0a0a0a", "globex": "0b0b0b0b0b0b4b0b8b0b0b0b0b0b0b0b"}
VMS = {  # name: (hypervisor, tenant, mac, ip, instance id or None, port security)
    "vm1": ("kvm1", "acme", "02:00:00:00:01:01", "10.0.1.11", "11111111-0000-4000-8000-000000000001", True),
    "vm2": ("kvm1", "globex", "02:00:00:00:02:01", "10.0.1.11", "22222222-0000-4000-8000-000000000002", True),
    "vm3": ("hyv1", "acme", "02:00:00:00:01:03", "10.0.1.13", "33333333-0000-4000-8000-000000000003", True),
    "vm4": ("esx1", "acme", "02:00:00:00:01:04", "10.0.1.14", "44444444-0000-4000-8000-000000000004", True),
    "vm5": ("kvm1", "acme", "02:00:00:00:01:05", "10.0.1.15", None, True),
    "vm6": ("kvm1", "acme", "02:00:00:00:01:06", "10.0.1.16", "66666666-0000-4000-8000-000000000006", False),
    "vm7": ("hyv1", "acme", "02:00:00:00:01:07", "10.0.1.17", "77777777-0000-4000-8000-000000000007", True),
    "vm8": ("esx1", "acme", "02:00:00:00:01:08", "10.0.1.18", "88888888-0000-4000-8000-000000000008", True),
    "vm9": ("kvm1", "acme", "02:00:00:00:01:09", "10.0.1.19", "99999999-0000-4000-8000-000000000009", True),
}
# only egress to 169.254.169.254:80 (stateful); everything but that; only that egress, stateless (no replies in)
ACLS = {"vm7": "only-metadata", "vm8": "no-metadata", "vm9": "stateless-metadata"}
METADATA_RULE = {"direction": "egress", "protocol": "tcp", "ports": "80", "remote": "169.254.169.254/32"}
FLAVOURS = {"kvm1": "kvm", "hyv1": "hyperv", "esx1": "esxi"}
# A VM's HTTP GET: prints the status and the body (or "error: ..." when nothing answers)
GET = """import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://169.254.169.254" + sys.argv[1], timeout=4) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError as e:
    print("error: %s" % e)
"""


def policy():
    tenants = []
    for tenant in ("acme", "globex"):
        vports = [{"name": n, "mac": mac, "ips": [ip], "binding": {"flavour": FLAVOURS[hv]}, "port_security": ps,
                   **({"instance_id": iid} if iid else {}), **({"acls": [ACLS[n]]} if n in ACLS else {})}
                  for n, (hv, t, mac, ip, iid, ps) in VMS.items() if t == tenant]
        tenants.append({"name": tenant, "project_id": PROJECTS[tenant], "domains": [{"name": "prod", "subnets": [
            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": vports}]}]})
    tenants[0]["acls"] = [
        {"name": "only-metadata", "default_action": "deny", "rules": [{**METADATA_RULE, "action": "allow"}]},
        {"name": "no-metadata", "default_action": "allow", "rules": [{**METADATA_RULE, "action": "deny"}]},
        {"name": "stateless-metadata", "default_action": "deny", "rules": [
            {**METADATA_RULE, "action": "allow", "stateful": False}]}]
    return {"tenants": tenants}


def get(vm, path="/latest/meta-data/instance-id"):
    done = vm.exec(sys.executable, "-c", GET, path, timeout=15)
    status, _, body = done.stdout.partition("\n")
    return status.strip(), body.strip()


def start_agent(lab, hv, ctl):
    files = lab.workdir / f"agent-{hv.name}"
    files.mkdir(exist_ok=True)
    for name, text in (("secret", SECRET), ("token", READ_TOKEN)):  # the agent only reads: the read-only token
        (files / name).write_text(text + "\n")
        (files / name).chmod(0o600)  # the agent refuses secret files other users can read
    config = files / "agent.yaml"
    config.write_text(json.dumps({
        "nova_metadata_url": f"http://{NOVA_IP}:{NOVA_PORT}", "shared_secret_file": str(files / "secret"),
        "canopy_url": f"http://{ctl.ip}:8080", "token_file": str(files / "token"),
        "ovsdb": f"unix:{hv.ovs.db_socket}", "timeout": 5}))
    canopy = str(lab.controller_argv(config)[0])
    return lab.spawn(f"metadata-agent-{hv.name}", [canopy, "metadata-agent", "--config", str(config)],
                     lab.workdir / f"metadata-agent-{hv.name}.log", ns=hv.ns)


def start_nova(lab):
    from tests.harness import netns

    ns = lab.add_namespace("nova")
    netns.add_veth(lab.fabric_ns, "m-nova", ns, "mgmt0")
    netns.enslave(lab.fabric_ns, "m-nova", "mgmt")
    netns.add_address(ns, "mgmt0", f"{NOVA_IP}/16")
    (lab.workdir / "nova-secret").write_text(SECRET)
    instances = {iid: {"project_id": PROJECTS[t], "name": n} for n, (_, t, _, _, iid, _) in VMS.items() if iid}
    (lab.workdir / "nova-instances.json").write_text(json.dumps(instances))
    lab.spawn("fake-nova-metadata", [sys.executable, "-m", "tests.harness.fake_nova_metadata", NOVA_IP,
                                     str(NOVA_PORT), str(lab.workdir / "nova-secret"),
                                     str(lab.workdir / "nova-instances.json")],
              lab.workdir / "fake-nova-metadata.log", ns=ns)


@pytest.fixture(scope="module")
def net(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl, {"rest": {"listen": "0.0.0.0", "read_token": READ_TOKEN}})
        reply = canopy.api.post("/v1/apply", {"document": policy(), "source": "metadata"})
        assert reply.status == 200, reply.text
        start_nova(lab)
        hosts = {name: lab.add_hypervisor(name, flavour) for name, flavour in FLAVOURS.items()}
        for hv in hosts.values():
            hv.connect(ctl)
        vms = {}
        for name, (hv_name, _, mac, ip, _, _) in VMS.items():
            hv = hosts[hv_name]
            vms[name] = vm = lab.add_vm(hv, name, mac=mac, ip=f"{ip}/24",
                                        vlan=100 + int(name[2:]) if hv.flavour == "esxi" else None)
            if name == "vm3":  # asks for 169.254.169.254 on the link itself (ARP), not through its gateway
                vm.exec("ip", "route", "add", "169.254.169.254/32", "dev", "eth0", check=True)
            else:
                vm.exec("ip", "route", "add", "default", "via", "10.0.1.1", check=True)
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == len(VMS), timeout=20,
                       what="every vport bound")
        agents = {name: start_agent(lab, hv, ctl) for name, hv in hosts.items()}
        for name, (hv_name, _, _, _, iid, _) in VMS.items():
            if iid and name not in ("vm8", "vm9"):
                lab.wait_until(lambda: get(vms[name])[0] == "200", timeout=40, interval=0.5,
                               what=f"{name}'s first metadata answer")
        yield lab, canopy, hosts, vms, agents


def instance(name):
    return VMS[name][4]


@pytest.mark.parametrize("name", ["vm1", "vm2", "vm3", "vm4"])
def test_each_vm_gets_its_own_instance_on_every_flavour(net, name):
    _, _, _, vms, _ = net
    assert get(vms[name]) == ("200", instance(name))


def test_same_address_in_two_tenants_on_one_hypervisor_are_two_instances(net):
    _, _, _, vms, _ = net
    assert VMS["vm1"][3] == VMS["vm2"][3] and VMS["vm1"][0] == VMS["vm2"][0]
    for name in ("vm1", "vm2"):
        status, body = get(vms[name], "/openstack/latest/meta_data.json")
        assert status == "200", body
        doc = json.loads(body)
        assert doc == {"uuid": instance(name), "name": name, "project_id": PROJECTS[VMS[name][1]],
                       "forwarded_for": VMS[name][3]}


def test_security_policies_apply_to_metadata_both_ways(net):
    _, _, _, vms, _ = net
    # vm7 may only open TCP to 169.254.169.254:80 and takes nothing in: the answers come in as its replies
    assert get(vms["vm7"]) == ("200", instance("vm7"))
    assert not vms["vm7"].ping("10.0.1.1")
    # vm8 may do anything but that
    assert vms["vm8"].ping("10.0.1.1")
    assert get(vms["vm8"])[0].startswith("error")
    # vm9's requests leave and the agent answers, but its policy lets nothing in, the agent's answers included
    from openflow.metadata import source_address

    vm9 = vms["vm9"]
    source = source_address(int(vm9.hv.vsctl("get", "Interface", vm9.port, "ofport")), None)
    assert get(vm9)[0].startswith("error")
    assert vm9.hv.ovs.flow_packets("br-int", "table=26,tcp,nw_src=10.0.1.19") > 0  # to the agent
    assert vm9.hv.ovs.flow_packets("br-int", f"table=26,tcp,nw_dst={source}") > 0  # its answers, dropped later


def test_a_vm_without_an_instance_gets_404(net):
    _, _, _, vms, _ = net
    status, body = get(vms["vm5"])
    assert status == "404" and "has no instance_id" in body


def readdress(vm, mac, ip):
    vm.exec("ip", "addr", "flush", "dev", "eth0", check=True)
    vm.exec("ip", "link", "set", "eth0", "address", mac, check=True)
    vm.exec("ip", "addr", "add", f"{ip}/24", "dev", "eth0", check=True)
    vm.exec("ip", "route", "replace", "default", "via", "10.0.1.1", check=True)


def test_a_vm_posing_as_another_never_gets_its_identity(net):
    _, _, _, vms, _ = net
    vm1 = VMS["vm1"]
    assert get(vms["vm6"]) == ("200", instance("vm6"))
    for name in ("vm5", "vm6"):  # with port security (dropped at the port) and without (not steered as vm1)
        vm = vms[name]
        readdress(vm, vm1[2], vm1[3])
        try:
            status, body = get(vm)
            assert status.startswith("error") and instance("vm1") not in body, (name, status, body)
        finally:
            readdress(vm, VMS[name][2], VMS[name][3])
        assert get(vm)[0] == ("200" if instance(name) else "404")  # itself again
    assert get(vms["vm1"]) == ("200", instance("vm1"))


def test_a_stopped_agent_unmarks_its_port_and_the_steering_goes(net):
    from tests.harness import process

    lab, canopy, hosts, vms, agents = net
    hv = hosts["hyv1"]
    process.stop([agents["hyv1"]], 10)
    lab.wait_until(lambda: "canopy-metadata-agent" not in hv.ovs.external_ids("Interface", "canopy-md"),
                   timeout=10, what="the agent's mark removed")
    lab.wait_until(lambda: "table=26" not in hv.ofctl("dump-flows", "br-int", "table=26"), timeout=20,
                   what="the metadata flows removed")
    assert get(vms["vm3"])[0].startswith("error")
    assert get(vms["vm1"]) == ("200", instance("vm1"))  # the other hypervisors' agents are unaffected
