"""Values that used to pass validation and break later (or answer 500): each is now a 4xx naming the field,
or a file:line error, and changes nothing."""

import json

import pytest

from controller import cli, discovery, yamldoc
from controller import settings as settings_mod
from controller.rest import dataplane
from controller.rest.wire import ApiError
from ovsdb.vtep import canopy_vni

from .helpers import Controller, demo_net
from .test_rest import snapshot


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def _acl(ctl, tenant):
    return ctl.create("acls", {"tenant_id": tenant["id"], "name": "web-in"})


# ------------------------------------------------------------------ null inside lists

@pytest.mark.parametrize("target, body, field", [
    ("domain", {"static_routes": [None]}, "static_routes[0]"),
    ("domain", {"import_rts": ["65000:1", None]}, "import_rts[1]"),
    ("subnet", {"dhcp": {"routes": [None]}}, "dhcp.routes[0]"),
    ("subnet", {"dhcp": {"dns_servers": [None]}}, "dhcp.dns_servers[0]"),
    ("subnet", {"dhcp": {"ntp_servers": [None]}}, "dhcp.ntp_servers[0]"),
    ("acl", {"rules": [None]}, "rules[0]"),
])
def test_null_inside_a_list_is_refused_naming_the_item(ctl, target, body, field):
    tenant, domain, subnet = demo_net(ctl)
    obj = {"domain": domain, "subnet": subnet, "acl": None}[target] or _acl(ctl, tenant)
    before = snapshot(ctl)
    status, reply = ctl.call("PATCH", f"/v1/{target}s/{obj['id']}", body)
    assert status == 422, reply
    assert reply["error"]["field"] == field and reply["error"]["reason"] == "must not be null"
    assert snapshot(ctl) == before


def test_null_in_a_vport_ip_list_is_refused(ctl):
    _, _, subnet = demo_net(ctl)
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/vports", {"subnet_id": subnet["id"], "name": "vm1", "ips": [None],
                                                    "mac": "02:00:00:00:00:01", "binding": {"flavour": "kvm"}})
    assert (status, reply["error"]["field"]) == (422, "ips[0]")
    assert snapshot(ctl) == before


def test_null_in_a_settings_list_names_file_line_and_field(tmp_path):
    path = tmp_path / "canopy.yaml"
    path.write_text("vrs:\n  hosts:\n    - null\n")
    with pytest.raises(settings_mod.SettingsError, match=r"canopy.yaml:3: vrs.hosts\[0\]: must not be null"):
        settings_mod.load(str(path))


# ------------------------------------------------------------------ oversized and over-nested JSON

@pytest.mark.parametrize("raw", [
    b'{"name": "acme", "description": ' + b"9" * 5000 + b"}",
    b'{"name": "acme", "description": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    b'{"name": "acme", "description": ' + b"[" * 40 + b"]" * 40 + b"}",
])
def test_huge_integers_and_deep_nesting_are_400(ctl, raw):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/tenants", raw=raw)
    assert (status, reply["error"]["code"]) == (400, "bad_json")
    assert snapshot(ctl) == before


# ------------------------------------------------------------------ digits are ASCII digits

@pytest.mark.parametrize("query", [{"since": "²"}, {"limit": "٣"}, {"since": "9" * 30}, {"since": "-1"}])
def test_change_log_query_takes_ascii_integers_in_range(ctl, query):
    status, reply = ctl.call("GET", "/v1/changes", query=query)
    assert (status, reply["error"]["field"]) == (400, next(iter(query)))


def test_largest_since_is_answered(ctl):
    status, reply = ctl.call("GET", "/v1/changes", query={"since": str(2**63 - 1)})
    assert status == 200 and reply["items"] == []


@pytest.mark.parametrize("rule, field", [
    ({"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "8²"}, "rules[0].ports"),
    ({"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "1-²"}, "rules[0].ports"),
])
def test_superscript_digits_are_not_port_numbers(ctl, rule, field):
    tenant, _, _ = demo_net(ctl)
    acl = _acl(ctl, tenant)
    status, reply = ctl.call("PATCH", f"/v1/acls/{acl['id']}", {"rules": [rule]})
    assert (status, reply["error"]["field"]) == (422, field)


@pytest.mark.parametrize("body, field", [
    ({"rd": "65000:²"}, "rd"), ({"rd": "²:1"}, "rd"), ({"import_rts": ["65000:¹²"]}, "import_rts[0]"),
])
def test_superscript_digits_are_not_route_distinguishers_or_targets(ctl, body, field):
    _, domain, _ = demo_net(ctl)
    status, reply = ctl.call("PATCH", f"/v1/domains/{domain['id']}", body)
    assert (status, reply["error"]["field"]) == (422, field)


@pytest.mark.parametrize("dpid", ["５", "0x1", "1_0", " 1"])
def test_datapath_ids_are_ascii_hex(dpid):
    with pytest.raises(ApiError) as info:
        dataplane._dpid(dpid)
    assert (info.value.status, info.value.field) == (400, "dpid")


def test_ovsdb_keys_with_non_ascii_digits_are_ignored():
    assert canopy_vni("canopy-²") is None and canopy_vni("canopy-12") == 12
    trunk = discovery.PortInfo("trunk0", external_ids=(("canopy-vnic-²", "vm1"), ("canopy-vnic-12", "vm2")))
    assert trunk.vnic_vlans() == {12: "vm2"}


@pytest.mark.parametrize("name", ["web\n", "web\r", " web", "wéb"])
def test_a_name_with_a_trailing_newline_is_refused(ctl, name):
    status, reply = ctl.call("POST", "/v1/tenants", {"name": name})
    assert (status, reply["error"]["field"]) == (422, "name")


# ------------------------------------------------------------------ YAML: bombs, depth, non-JSON values

# a: 9 strings; each next level: 9 aliases of the one before; f expands to 9**6 = 531,441 values (small enough
# for the old loader to build in a test; a real bomb has more levels and takes all memory)
LEVELS = "abcdef"
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]\n" for prev, name in zip(LEVELS, LEVELS[1:]))


@pytest.mark.parametrize("text, line, reason", [
    (BOMB, None, "YAML aliases expand to more than"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nests too deep"),
    ("a: &x [1, *x]\n", 1, "nests too deep"),
    ("tenants:\n  - name: acme\n    description: 2024-01-01\n", 3, "tenants[0].description: a date is not"),
    ("tenants:\n  - name: acme\n    description: 2024-01-01 10:00:00\n", 3, "a timestamp is not"),
    ("tenants:\n  - name: acme\n    description: !!binary aGVsbG8=\n", 3, "binary data (!!binary) is not"),
    ("tenants:\n  - name: acme\n    description: .nan\n", 3, "is not a finite number"),
    ("tenants:\n  - name: acme\n    description: " + "9" * 5000 + "\n", 3, "unreadable value"),
])
def test_yaml_safety_limits_are_file_line_errors(text, line, reason):
    with pytest.raises(yamldoc.DocError) as info:
        yamldoc.load(text, "doc.yaml")
    assert reason in str(info.value)
    if line is not None:
        assert info.value.line == line


def test_a_large_document_without_aliases_is_not_limited():
    """More values written out than aliases may add (each scalar one value: half the time of as many values in
    40,000 mappings of two keys, which this was)."""
    n = yamldoc.MAX_ALIAS_VALUES + 1_000
    text = "tenants: [" + "x, " * n + "]\n"
    assert len(yamldoc.load(text, "big.yaml").data["tenants"]) == n


def test_a_few_aliases_are_still_fine():
    doc = yamldoc.load("dns: &dns [10.0.0.53]\na: {dns_servers: *dns}\nb: {dns_servers: *dns}\n")
    assert doc.data["b"]["dns_servers"] == ["10.0.0.53"]


@pytest.mark.parametrize("command", ["check", "apply", "run"])
def test_commands_report_a_bomb_as_file_line_without_a_traceback(tmp_path, capsys, command):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    argv = {"check": ["check", str(path)], "apply": ["apply", str(path), "--url", "http://127.0.0.1:9"],
            "run": ["run", "--config", str(path)]}[command]
    assert cli.main(argv) in (cli.EXIT_INVALID, cli.EXIT_USAGE)
    err = capsys.readouterr().err
    assert "bomb.yaml:" in err and "YAML aliases expand" in err and "Traceback" not in err


def test_apply_of_a_date_is_a_file_line_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "doc.yaml"
    path.write_text("tenants:\n  - name: acme\n    description: 2024-01-01\n")
    assert cli.main(["apply", str(path), "--url", "http://127.0.0.1:9"]) == cli.EXIT_INVALID
    assert "doc.yaml:3: tenants[0].description: a date" in capsys.readouterr().err


def test_json_body_of_an_apply_is_limited_too(ctl):
    doc = {"tenants": [{"name": "acme", "description": json.loads("[" * 50 + "]" * 50)}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert (status, reply["error"]["code"]) == (400, "bad_json")
