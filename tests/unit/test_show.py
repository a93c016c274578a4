"""``canopy show`` and ``canopy trace``: gathered through the REST API (Api.handle), formatted as text."""

import json
import urllib.parse

import pytest

from controller import show, yamldoc
from controller.programmer import Programmer
from controller.rest import bgp as rest_bgp
from controller.rest import dataplane as rest_dataplane
from controller.rest import inspection as rest_inspect
from controller.rest import vteps as rest_vteps
from controller.rest.api import Api
from controller.rest.wire import Request, Response, Route
from openflow.dhcp_service import DhcpService
from tests.unit.helpers import Controller
from tests.unit.pipeline_case import POLICY, snapshots


@pytest.fixture()
def get(tmp_path):
    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    web = ctl.state.policy.find("subnet", "acme/web")
    acl = ctl.service.create("acl", {"tenant_id": web["tenant_id"], "name": "web-in", "rules": [
        {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "80"}]})
    web1 = ctl.state.policy.find("vport", "acme/web/web1")
    ctl.service.update("vport", web1["id"], {"acls": [acl["id"]]})
    for snap in snapshots():
        ctl.state.vrs_update(snap)
    yield fetcher(ctl, served={web1["id"]: {"at": 0, "ip": "10.0.1.11",
                                            "request": "DHCPREQUEST from 02:00:00:00:01:01"}})
    ctl.close()


def fetcher(ctl, served=None):
    """GET through the whole API (with the dataplane, VTEP, BGP and inspection routes) as canopy show does."""
    prog = Programmer(ctl.state)
    prog.refresh(full=True)
    dhcp = DhcpService(ctl.state, prog, 1500)
    dhcp.served.update(served or {})
    routes = rest_dataplane.routes(ctl.state, prog, lambda: {}) + rest_vteps.routes(ctl.state, prog) + \
        rest_bgp.routes(None) + rest_inspect.routes(ctl.state, prog, dhcp) + \
        [Route("GET", "/v1/ha", lambda req: Response(200, {"role": "standalone"}), "HA")]
    api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=routes)

    def fetch(path):
        path, _, qs = path.partition("?")
        resp = api.handle(Request("GET", urllib.parse.unquote(path), dict(urllib.parse.parse_qsl(qs))))
        body = json.loads(resp.encoded() or b"null")
        if resp.status != 200:
            raise show.Failed(resp.status, body["error"]["message"])
        return body

    return fetch


def test_show_tree_lists_tenants_to_vports_with_where_each_is_bound(get):
    tree = show.gather_tree(get)
    text = show.format_tree(tree)
    lines = text.splitlines()
    assert lines[0].startswith("canopy ") and "role standalone" in lines[0]
    acme = next(i for i, line in enumerate(lines) if line.startswith("tenant acme "))
    assert lines[acme + 1].startswith("    domain prod  l3 vni ")
    assert lines[acme + 2].startswith("        subnet db  10.0.2.0/24  gateway 10.0.2.1  vni ")
    assert any(line.startswith("        subnet web  10.0.1.0/24  gateway 10.0.1.1  vni ") for line in lines)
    assert "            vport web1  02:00:00:00:01:01  10.0.1.11  kvm  on hv1 port web1 (ofport 1)" in lines
    assert "            vport esx2  02:00:00:00:01:05  10.0.1.15  esxi  on hv1 port trunk0 vlan 102 (ofport 4)" in lines
    assert "            vport web3  02:00:00:00:01:03  10.0.1.13  kvm  on hv2 port tapA (ofport 7)" in lines
    hv1 = next(line for line in lines if line.startswith("hypervisor hv1"))
    assert "dpid 0000000000000001  esxi  vtep 10.251.0.1  openflow down  ovsdb up" in hv1
    assert "    port trunk0 vlan 101 (ofport 4) -> acme/web/esx1" in lines
    # the case's snapshots say nothing of fail_mode: /v1/switches flags them, and so does show
    assert lines[lines.index(hv1) + 1].startswith("    NOT SET UP SAFELY: fail_mode is unset")
    assert lines[-1] == "bgp: no neighbors configured"
    assert json.loads(json.dumps(tree)) == tree  # --json prints exactly this


def tree_api(ctl):
    """The controller's API with the routes ``canopy show`` reads beyond the core's: VTEPs, BGP (none), HA."""
    routes = rest_vteps.routes(ctl.state, Programmer(ctl.state)) + rest_bgp.routes(None) + \
        [Route("GET", "/v1/ha", lambda req: Response(200, {"role": "standalone"}), "HA")]
    return Api(ctl.service, ctl.state, ctl.settings, extra_routes=routes)


def test_show_tree_of_an_empty_controller(tmp_path):
    ctl = Controller(tmp_path)
    api = tree_api(ctl)

    def fetch(path):
        return json.loads(api.handle(Request("GET", path)).encoded())

    assert show.format_tree(show.gather_tree(fetch)).splitlines()[1:] == ["bgp: no neighbors configured"]
    ctl.close()


def test_show_vport_has_policy_binding_switch_flows_by_table_and_lease(get):
    for key in ("web1", "acme/web/web1"):
        data = show.gather_vport(get, key)
        assert data["vport"]["name"] == "web1"
    assert show.gather_vport(get, data["vport"]["id"])["vport"]["ref"] == "acme/web/web1"
    text = show.format_vport(data)
    lines = text.splitlines()
    assert lines[0] == f"vport acme/web/web1 ({data['vport']['id']})"
    assert "    mac 02:00:00:00:01:01  ips 10.0.1.11  port security on" in lines
    assert "    binding kvm" in lines
    assert "    acls acme/web-in (1 rules, default deny)" in lines
    assert "    policy groups -" in lines
    assert "    status bound  on hv1 port web1 (ofport 1)" in lines
    assert any(line.startswith("    switch hv1  chassis hv1  dpid 0000000000000001") for line in lines)
    assert any(line.startswith("    dhcp 10.0.1.11/24  router 10.0.1.1  server 10.0.1.1") for line in lines)
    assert "    dhcp last answered: DHCPREQUEST from 02:00:00:00:01:01 -> 10.0.1.11 at 1970-01-01 00:00:00 UTC" in lines
    tables = [line.strip() for line in lines if line.startswith("      table ")]
    assert tables == ["table 0 classify", "table 10 port_security", "table 20 ingress_acl", "table 21 ingress_acl_ct",
                      "table 23 ingress_acl_verdict", "table 25 services", "table 30 l2_lookup", "table 40 l3_routing",
                      "table 50 egress_acl", "table 51 egress_acl_ct", "table 53 egress_acl_verdict",
                      "table 60 egress"]  # its ACL is enforced: conntrack, its ACL chain and its drops
    assert any("in_port=1 actions=" in line or "in_port=1,actions=" in line for line in lines)
    assert all("[not installed yet]" in line for line in lines if line.startswith("        priority="))


def test_show_vport_names_are_resolved_or_refused_clearly(get):
    with pytest.raises(show.Failed) as err:
        show.gather_vport(get, "nope")
    assert err.value.status == 404 and "'nope'" in err.value.message
    with pytest.raises(show.Failed) as err:  # web1 exists, but not in globex
        show.gather_vport(get, "globex/web/web1")
    assert err.value.status == 404


def test_trace_text_shows_each_flow_and_where_the_packet_leaves():
    reply = {"switch": {"chassis": "hv1", "datapath_id": "0000000000000001"},
             "ofproto_trace": "ip,in_port=1,dl_dst=02:00:00:00:01:02",
             "steps": [{"depth": 0, "table": 0, "table_name": "classify", "priority": 100,
                        "owner": {"kind": "vport", "id": "v1"}, "owner_ref": "acme/web/web1",
                        "match": "in_port=1", "actions": "goto_table:10", "note": ""},
                       {"depth": 1, "table": None, "table_name": "group", "priority": None, "owner": None,
                        "match": "group 20000", "actions": "2 bucket(s)", "note": ""}],
             "exits": [{"summary": "output to port 2 (web2, vport acme/web/web2)", "step": 1},
                       {"summary": "drop: x", "step": 1}],
             "ambiguous": []}
    text = show.format_trace(reply).splitlines()
    assert text[0] == "trace on hv1 (dpid 0000000000000001): ip,in_port=1,dl_dst=02:00:00:00:01:02"
    assert " 0. classify  priority 100  vport acme/web/web1" in text
    assert "        in_port=1  ->  goto_table:10" not in text and "    in_port=1  ->  goto_table:10" in text
    assert "    group 20000: 2 bucket(s)" in text and "        -> drop: x" in text
    assert text[-3:] == ["=> output to port 2 (web2, vport acme/web/web2)", "=> drop: x",
                         "same packet on the switch: ovs-appctl ofproto/trace br-int "
                         "'ip,in_port=1,dl_dst=02:00:00:00:01:02'"]


def test_cli_show_usage_and_unreachable(capsys):
    from controller import cli

    assert cli.main(["show", "tenant", "x"]) == cli.EXIT_USAGE
    assert cli.main(["show", "--url", "http://127.0.0.1:9"]) == cli.EXIT_UNREACHABLE
    assert cli.main(["trace", "ip", "--vport", "a", "--url", "http://127.0.0.1:9"]) == cli.EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


def test_show_marks_a_vport_whose_hypervisor_reports_another_mac(tmp_path):
    import dataclasses

    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    for snap in snapshots():
        ports = tuple(dataclasses.replace(p, external_ids=p.external_ids + (("attached-mac", "02:00:00:00:01:99"),))
                      if p.name == "web1" else p for p in snap.ports)
        ctl.state.vrs_update(dataclasses.replace(snap, ports=ports))
    lines = show.format_tree(show.gather_tree(fetcher(ctl))).splitlines()
    assert ("            vport web1  02:00:00:00:01:01  10.0.1.11  kvm  on hv1 port web1 (ofport 1)  MAC MISMATCH: "
            "the hypervisor reports 02:00:00:00:01:99, not programmed") in lines
    ctl.close()


def test_show_names_the_pending_port_of_a_vport_whose_live_migration_is_in_flight(tmp_path):
    """The tree's vport line and ``show vport``'s status line (before review41a only the tree said it; no test read
    either)."""
    import dataclasses

    from tests.unit.pipeline_case import port

    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    for snap in snapshots():
        extra = (port("web1-in", 9, **{"iface-id": "web1"}),) if snap.chassis == "hv2" else ()
        ctl.state.vrs_update(dataclasses.replace(snap, ports=snap.ports + extra))
    fetch = fetcher(ctl)
    moving = "  MIGRATING: hv2:web1-in waits for the VM's first packet"
    assert [line for line in show.format_tree(show.gather_tree(fetch)).splitlines() if "vport web1 " in line] == [
        "            vport web1  02:00:00:00:01:01  10.0.1.11  kvm  on hv1 port web1 (ofport 1)" + moving]
    assert "    status bound  on hv1 port web1 (ofport 1)" + moving in \
        show.format_vport(show.gather_vport(fetch, "web1")).splitlines()
    ctl.close()


def test_show_puts_a_bare_metal_server_behind_the_hardware_vteps_bound_to_its_subnet_not_unbound(tmp_path):
    """A bare-metal vport is never on a VRS port: its REST status stays unbound, and show said just that, so a
    newcomer whose server answered pings read it as broken; show then said "behind a hardware VTEP" even with no
    VTEP bound to its subnet. It now names the VTEPs bound to the subnet, or says there is none."""
    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    web = ctl.state.policy.find("subnet", "acme/web")
    ctl.service.create("vport", {"subnet_id": web["id"], "name": "db7", "mac": "02:00:00:00:0b:07",
                                 "ips": ["10.0.1.50"], "binding": {"flavour": "baremetal"}})

    def where():
        fetch = fetcher(ctl)
        tree = [line for line in show.format_tree(show.gather_tree(fetch)).splitlines() if "vport db7" in line]
        status = [line for line in show.format_vport(show.gather_vport(fetch, "db7")).splitlines() if "status" in line]
        return tree + status

    assert where() == ["            vport db7  02:00:00:00:0b:07  10.0.1.50  baremetal  bare metal: no hardware VTEP "
                       "bound to its subnet", "    status unbound  bare metal: no hardware VTEP bound to its subnet"]
    ctl.service.create("vtep_binding", {"switch": "tor2", "port": "p1", "vlan": 100, "subnet_id": web["id"]})
    assert where() == ["            vport db7  02:00:00:00:0b:07  10.0.1.50  baremetal  bare metal behind hardware "
                       "VTEP tor2", "    status unbound  bare metal behind hardware VTEP tor2"]
    ctl.service.create("vtep_binding", {"switch": "tor1", "port": "p9", "vlan": 0, "subnet_id": web["id"]})
    assert where()[1] == "    status unbound  bare metal behind hardware VTEPs tor1, tor2"
    ctl.close()


def test_show_vport_says_a_bare_metal_servers_port_security_and_acls_are_not_enforced(tmp_path):
    """`port security on` for a bare-metal vport read as a promise: its traffic enters at the hardware VTEP, where
    Canopy enforces neither (docs/vtep.md, Limits); show says so, and says nothing of the kind for a VM."""
    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    web = ctl.state.policy.find("subnet", "acme/web")
    acl = ctl.service.create("acl", {"tenant_id": web["tenant_id"], "name": "web-in", "rules": [
        {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "80"}]})
    ctl.service.create("vport", {"subnet_id": web["id"], "name": "db7", "mac": "02:00:00:00:0b:07",
                                 "ips": ["10.0.1.50"], "binding": {"flavour": "baremetal"}, "acls": [acl["id"]]})
    fetch = fetcher(ctl)
    lines = show.format_vport(show.gather_vport(fetch, "db7")).splitlines()
    assert lines[1] == "    mac 02:00:00:00:0b:07  ips 10.0.1.50  port security on  (not enforced: bare metal, docs/vtep.md)"
    assert lines[5] == "    acls acme/web-in (1 rules, default deny)  (not enforced: bare metal, docs/vtep.md)"
    vm = show.format_vport(show.gather_vport(fetch, "web1")).splitlines()
    assert "not enforced" not in "\n".join(vm)
    ctl.close()


def test_show_says_a_peer_is_up_not_failing_when_its_last_error_is_past(tmp_path):
    """An up peer was printed "up ... last error: connection refused", as if failing now: its last error (from before
    it came up; /v1/bgp/peers keeps it) is said to be past, with the time it came up; a peer not up shows it as why."""
    from tests.unit.test_routebook import book, state

    ctl = Controller(tmp_path)
    api = tree_api(ctl)
    peers = book()

    def fetch(path):
        if path == "/v1/bgp/peers":
            return {"items": peers.peer_rows(), "enabled": True}
        return json.loads(api.handle(Request("GET", path)).encoded())

    peers.handle_line(state("down", "connection refused"))
    [line] = show.format_tree(show.gather_tree(fetch)).splitlines()[1:]
    assert line == "bgp peer 127.0.0.1  as 65001  down  routes in 0 out 0  last error: connection refused"
    peers.handle_line(state("up"))
    [row] = peers.peer_rows()
    [line] = show.format_tree(show.gather_tree(fetch)).splitlines()[1:]
    assert line == (f"bgp peer 127.0.0.1  as 65001  up  routes in 0 out 0  up since {show._when(row['since'])}, "
                    "down before: connection refused")
    ctl.close()


def test_show_names_a_switch_known_over_openflow_only_and_says_what_it_lacks(tmp_path):
    """A bridge whose ovsdb-server never connects (its manager not set, or an ovsdb-server started without
    --remote=db:Open_vSwitch,Open_vSwitch,manager_options: docs/vrs.md) was printed "hypervisor None  chassis None ...
    None": it is named by its datapath id, and a line says that no OVSDB session names it and where to look."""
    ctl = Controller(tmp_path)
    api = tree_api(ctl)
    switch = {"datapath_id": "000002039f1e3348", "name": None, "chassis": None, "flavour": None, "vtep_ip": None,
              "openflow": {"connected": True}, "ovsdb": None, "ports": [], "sync": {"installed": 0, "desired": 0,
                                                                                  "state": "waiting"}}

    def fetch(path):
        if path == "/v1/switches":
            return {"items": [switch]}
        return json.loads(api.handle(Request("GET", path)).encoded())

    lines = show.format_tree(show.gather_tree(fetch)).splitlines()[1:3]
    assert lines == [
        "hypervisor 000002039f1e3348  chassis -  dpid 000002039f1e3348  -  vtep -  openflow up  ovsdb down  "
        "flows 0/0 waiting",
        "    over OpenFlow only: no OVSDB session names this bridge (not back yet after a restart, or: ovs-vsctl "
        "set-manager tcp:CANOPY:6640 on the hypervisor, and an ovsdb-server that reads it: docs/vrs.md)"]
    ctl.close()


def test_show_says_which_policy_seq_a_switch_holds(tmp_path):
    """GET /v1/switches ``sync.programmed_seq`` (controller/programmed.py), on the hypervisor's line."""
    ctl = Controller(tmp_path)
    api = tree_api(ctl)
    switch = {"datapath_id": "0000000000000001", "name": "hv1", "chassis": "hv1", "flavour": "kvm", "vtep_ip": None,
              "openflow": {"connected": True}, "ovsdb": {"connected": True}, "ports": [],
              "sync": {"installed": 12, "desired": 12, "state": "in_sync", "programmed_seq": 41}}

    def fetch(path):
        if path == "/v1/switches":
            return {"items": [switch]}
        return json.loads(api.handle(Request("GET", path)).encoded())

    assert show.format_tree(show.gather_tree(fetch)).splitlines()[1].endswith("flows 12/12 in_sync (holds seq 41)")
    ctl.close()
