"""Security policies proven by packets on real OVS (userspace datapath, conntrack): a database VM on ESXi
admits TCP, UDP and ICMP only from the members of a policy group (on KVM and Hyper-V), across hypervisors
and subnets; its replies pass because the rules are stateful while it may open nothing itself; a VM that
joins the group gains access, a removed rule cuts an open connection; another tenant with the same
addresses follows its own domain's default (deny, then allow); the ACL's REST view and counters; and a
bare-metal server behind a hardware VTEP meets the destination VM's ingress rules."""

from __future__ import annotations

import os
import sys

import pytest

from tests.harness.external import ECHO, probe, serve_echo

pytestmark = pytest.mark.integration

DB_RULES = [
    {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432", "remote_group": "web"},
    {"direction": "ingress", "action": "allow", "protocol": "udp", "ports": "5353", "remote_group": "web"},
    {"direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8, "remote_group": "web"},
]
POLICY = {
    "tenants": [
        {"name": "acme",
         "policy_groups": [{"name": "web"}, {"name": "db"}],
         "acls": [{"name": "db-in", "policy_groups": ["db"], "default_action": "deny", "rules": DB_RULES}],
         "domains": [{"name": "prod", "subnets": [
             {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                 {"name": "web1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"},
                  "policy_groups": ["web"]},
                 {"name": "web2", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"],
                  "binding": {"flavour": "hyperv"}, "policy_groups": ["web"]},
                 {"name": "app1", "mac": "02:00:00:00:01:03", "ips": ["10.0.1.13"], "binding": {"flavour": "kvm"}},
             ]},
             {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vports": [
                 {"name": "db1", "mac": "02:00:00:00:02:01", "ips": ["10.0.2.11"], "binding": {"flavour": "esxi"},
                  "policy_groups": ["db"]},
             ]},
         ]}]},
        {"name": "globex", "domains": [{"name": "main", "default_acl_action": "deny", "subnets": [
            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                {"name": "g1", "mac": "02:00:00:00:09:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
                {"name": "g2", "mac": "02:00:00:00:09:02", "ips": ["10.0.1.12"], "binding": {"flavour": "hyperv"}},
            ]}]}]},
    ]}


def tcp(vm, ip, port=5432):
    return probe(vm, "tcp", ip, port)


def udp(vm, ip, port=5353):
    return probe(vm, "udp", ip, port)


def find(api, collection, name):
    items = api.get(f"/v1/{collection}?name={name}").json["items"]
    assert len(items) == 1, items
    return items[0]


@pytest.fixture(scope="module")
def net(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "secpol"})
        assert reply.status == 200, reply.text
        hosts = {"kvm1": lab.add_hypervisor("kvm1", "kvm"), "hyv1": lab.add_hypervisor("hyv1", "hyperv"),
                 "esx1": lab.add_hypervisor("esx1", "esxi")}
        for hv in hosts.values():
            hv.connect(ctl)
        vms = {
            "web1": lab.add_vm(hosts["kvm1"], "web1", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="web1"),
            "web2": lab.add_vm(hosts["hyv1"], "web2", mac="02:00:00:00:01:02", ip="10.0.1.12/24"),
            "app1": lab.add_vm(hosts["kvm1"], "app1", mac="02:00:00:00:01:03", ip="10.0.1.13/24", vnic_id="app1"),
            "db1": lab.add_vm(hosts["esx1"], "db1", mac="02:00:00:00:02:01", ip="10.0.2.11/24", vnic_id="db1",
                              vlan=101),
            "g1": lab.add_vm(hosts["kvm1"], "g1", mac="02:00:00:00:09:01", ip="10.0.1.11/24", vnic_id="g1"),
            "g2": lab.add_vm(hosts["hyv1"], "g2", mac="02:00:00:00:09:02", ip="10.0.1.12/24"),
        }
        for name, vm in vms.items():
            vm.exec("ip", "route", "add", "default", "via", "10.0.2.1" if name == "db1" else "10.0.1.1", check=True)
        for vm in (vms["db1"], vms["web1"], vms["g2"]):
            serve_echo(lab, vm, 22, 5353, 5432, 8080)
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 6, timeout=15,
                       what="all six vports bound")
        # traffic that no ACL touches works first (ARP resolved, tunnels up)
        lab.wait_until(lambda: vms["web1"].ping("10.0.1.12", timeout=1), timeout=20, what="web1 reaches web2")
        yield lab, canopy, vms


def test_group_members_reach_the_database_by_tcp_udp_and_icmp_across_flavours(net):
    lab, _, vms = net
    checks = {"web1 (kvm) -> db1 (esxi) tcp 5432": lambda: tcp(vms["web1"], "10.0.2.11"),
              "web2 (hyper-v) -> db1 udp 5353": lambda: udp(vms["web2"], "10.0.2.11"),
              "web1 -> db1 ping": lambda: vms["web1"].ping("10.0.2.11", timeout=1),
              "web2 -> db1 ping": lambda: vms["web2"].ping("10.0.2.11", timeout=1),
              "web2 -> db1 tcp 5432": lambda: tcp(vms["web2"], "10.0.2.11"),
              "web1 -> db1 udp 5353": lambda: udp(vms["web1"], "10.0.2.11")}
    for what, check in checks.items():  # the first packets of a path may wait for ARP: poll
        lab.wait_until(check, timeout=20, what=what)


def test_what_no_rule_allows_is_denied(net):
    lab, _, vms = net
    lab.wait_until(lambda: tcp(vms["web1"], "10.0.2.11"), timeout=20, what="the policy is in place")
    assert not tcp(vms["web1"], "10.0.2.11", 22), "tcp 22 has no rule"
    assert not udp(vms["web1"], "10.0.2.11", 5432), "udp 5432 has no rule"
    assert not tcp(vms["app1"], "10.0.2.11"), "app1 is not in group web"
    assert not vms["app1"].ping("10.0.2.11", timeout=1)


def test_replies_pass_but_the_database_opens_nothing(net):
    """db1's ACL has no egress rule and denies by default: its answers above were return traffic of
    stateful rules; a connection it opens itself does not get out."""
    lab, _, vms = net
    lab.wait_until(lambda: tcp(vms["web1"], "10.0.2.11"), timeout=20, what="web1 -> db1 tcp")
    assert not tcp(vms["db1"], "10.0.1.11", 8080), "db1 -> web1: nothing allows db1 to open a connection"
    assert not vms["db1"].ping("10.0.1.11", timeout=1)
    assert not udp(vms["db1"], "10.0.1.11", 8080)


def test_a_vm_joining_the_group_gains_access(net):
    lab, canopy, vms = net
    app1 = find(canopy.api, "vports", "app1")
    web = find(canopy.api, "policy-groups", "web")
    assert not tcp(vms["app1"], "10.0.2.11")
    reply = canopy.api.patch(f"/v1/vports/{app1['id']}", {"policy_groups": [web["id"]]})
    assert reply.status == 200, reply.text
    try:
        lab.wait_until(lambda: tcp(vms["app1"], "10.0.2.11"), timeout=10, interval=0.05,
                       what="app1 reaches db1 once in group web")
    finally:
        assert canopy.api.patch(f"/v1/vports/{app1['id']}", {"policy_groups": []}).status == 200
    lab.wait_until(lambda: not tcp(vms["app1"], "10.0.2.11"), timeout=10, what="app1 denied again after leaving")


def test_removing_the_rule_cuts_the_open_connection(net):
    lab, canopy, vms = net
    acl = find(canopy.api, "acls", "db-in")
    lab.wait_until(lambda: tcp(vms["web1"], "10.0.2.11"), timeout=20, what="web1 -> db1 tcp")
    log = lab.workdir / "stream.log"
    lab.spawn("stream", [sys.executable, ECHO, "stream", "10.0.2.11", "5432", "60"], log, ns=vms["web1"].ns)
    lab.wait_until(lambda: log.exists() and "ok 5" in log.read_text(), timeout=15, what="the stream flows")
    rules = acl["rules"]  # as stored: remote groups by id
    widened = [dict(rules[0], ports="5400-5500")] + rules[1:]  # changed, still matching: the stream goes on
    assert canopy.api.patch(f"/v1/acls/{acl['id']}", {"rules": widened}).status == 200
    esx1 = vms["db1"].hv
    lab.wait_until(lambda: "tp_dst=5432" not in esx1.ofctl("-O", "OpenFlow13", "dump-flows", "br-int", "table=52"),
                   timeout=15, what="the changed rule installed on esx1")
    seen = len(log.read_text().splitlines())
    lab.wait_until(lambda: len(log.read_text().splitlines()) >= seen + 20, timeout=15,
                   what="20 more lines echoed after the rule changed")
    assert "cut" not in log.read_text()
    reply = canopy.api.patch(f"/v1/acls/{acl['id']}", {"rules": rules[1:]})
    assert reply.status == 200, reply.text
    try:
        lab.wait_until(lambda: "cut" in log.read_text(), timeout=15, what="the open connection is cut")
        assert not tcp(vms["web1"], "10.0.2.11"), "no new connection either"
        assert udp(vms["web1"], "10.0.2.11"), "the other rules still stand"
    finally:
        assert canopy.api.patch(f"/v1/acls/{acl['id']}", {"rules": rules}).status == 200
    lab.wait_until(lambda: tcp(vms["web1"], "10.0.2.11"), timeout=10, what="the rule is back")


def test_other_tenant_with_the_same_addresses_follows_its_own_default(net):
    lab, canopy, vms = net
    assert vms["web1"].ping("10.0.1.12", timeout=2), "acme: default allow between vports without ACLs"
    assert not vms["g1"].ping("10.0.1.12", timeout=1), "globex: its domain denies by default"
    assert not tcp(vms["g1"], "10.0.1.12", 8080)
    main = find(canopy.api, "domains", "main")
    assert canopy.api.patch(f"/v1/domains/{main['id']}", {"default_acl_action": "allow"}).status == 200
    try:
        lab.wait_until(lambda: vms["g1"].ping("10.0.1.12", timeout=1), timeout=10, what="globex allows now")
        assert tcp(vms["g1"], "10.0.1.12", 8080)
        assert not tcp(vms["web1"], "10.0.2.11", 22), "acme's database policy is unchanged"
    finally:
        assert canopy.api.patch(f"/v1/domains/{main['id']}", {"default_acl_action": "deny"}).status == 200


def test_the_acl_shows_where_it_applies_and_counts_per_rule_and_per_vport(net):
    lab, canopy, vms = net
    acl = find(canopy.api, "acls", "db-in")
    db1 = find(canopy.api, "vports", "db1")
    applied = acl["applied"]
    assert applied["policy_groups"] == ["acme/db"]
    assert [(v["ref"], v["direct"], v["via_groups"]) for v in applied["vports"]] == [("acme/db/db1", False,
                                                                                       ["acme/db"])]
    assert applied["vports"][0]["switch"]
    lab.wait_until(lambda: tcp(vms["web1"], "10.0.2.11"), timeout=20, what="web1 -> db1 tcp")
    assert not tcp(vms["web1"], "10.0.2.11", 22)
    assert not vms["db1"].ping("10.0.1.11", timeout=1)

    def counted():  # OVS updates flow statistics about once a second: poll
        rules = canopy.api.get(f"/v1/acls/{acl['id']}/stats").json["rules"]
        drops = canopy.api.get(f"/v1/vports/{db1['id']}/acl-stats").json
        return rules[0]["packets"] and rules[0]["return_packets"] and drops["entering"]["default_denied"] and \
            drops["leaving"]["default_denied"] and (rules, drops)

    rules, drops = lab.wait_until(counted, timeout=15, what="rule hits and drops counted")
    assert [r["protocol"] for r in rules] == ["tcp", "udp", "icmp"]
    assert drops["policed"] and drops["unanswered"] == []
    other = find(canopy.api, "vports", "web2")
    assert canopy.api.get(f"/v1/vports/{other['id']}/acl-stats").json["policed"] is False


BM_POLICY = {
    "tenants": [{"name": "acme",
                 "acls": [{"name": "web-in", "rules": [
                     {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432",
                      "remote": "10.0.1.50/32"},
                     {"direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8,
                      "remote": "10.0.1.50/32"}]}],
                 "domains": [{"name": "prod", "subnets": [
                     {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                         {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"],
                          "binding": {"flavour": "kvm"}, "acls": ["web-in"]},
                         {"name": "bm1", "mac": "02:00:00:00:0b:01", "ips": ["10.0.1.50"],
                          "binding": {"flavour": "baremetal"}}]}]}]}],
    "vtep_bindings": [{"switch": "tor1", "port": "p1", "vlan": 100, "subnet": "acme/web"}],
}


def test_traffic_from_bare_metal_meets_the_vports_ingress_policy(lab):
    """A server behind a hardware VTEP (the real ovs-vtep) reaches a VM over VXLAN; the VM's ACL admits its
    TCP 5432 and ping (and their replies) and nothing else."""
    from tests.harness.vtep import vtep_unavailable

    reason = vtep_unavailable()
    if reason:  # a missing package must be found where CI runs, not hidden
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    assert canopy.api.post("/v1/apply", {"document": BM_POLICY, "source": "bm"}).status == 200
    hv = lab.add_hypervisor("hv1", "kvm")
    hv.connect(ctl)
    vm = lab.add_vm(hv, "webk", mac="02:00:00:00:01:01", ip="10.0.1.11/24")
    tor = lab.add_hardware_vtep("tor1", ports=("p1",))
    tor.connect(ctl)
    bm = lab.add_baremetal(tor, "bm1", port="p1", vlan=100, mac="02:00:00:00:0b:01", ip="10.0.1.50/24")
    serve_echo(lab, vm, 22, 5432, name="echo-webk")
    lab.wait_until(lambda: bm.ping("10.0.1.11", timeout=1), timeout=40, what="bm1 pings webk through tor1")
    lab.wait_until(lambda: tcp(bm, "10.0.1.11"), timeout=10, what="bm1 -> webk tcp 5432")
    assert not tcp(bm, "10.0.1.11", 22), "tcp 22 from bare metal has no rule"
    assert not udp(bm, "10.0.1.11", 5432)
    assert not vm.ping("10.0.1.50", timeout=1), "webk opens nothing (its ACL has no egress rule)"
