"""The model's OpenStack identities for the metadata service (vport instance_id, tenant project_id), and the
Neutron driver setting them: a compute port's device_id, the network's project."""

import sys
from pathlib import Path

import pytest

from controller.model import PolicyError, normalise

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy import mapping  # noqa: E402 (the driver package lives in its own folder)

INSTANCE = "6f1c8e3a-0a8b-4c55-9e2f-1d2c3b4a5f60"
VPORT = {"subnet_id": "s", "name": "vm1", "mac": "02:00:00:00:00:01", "binding": {"flavour": "kvm"}}


def problems(kind, body):
    with pytest.raises(PolicyError) as info:
        normalise(kind, body)
    return {(p.field, p.reason) for p in info.value.problems}


def test_instance_and_project_ids_are_optional_and_normalised():
    assert normalise("vport", VPORT)["instance_id"] is None
    assert normalise("vport", dict(VPORT, instance_id=INSTANCE.upper()))["instance_id"] == INSTANCE
    assert normalise("tenant", {"name": "acme"})["project_id"] is None
    assert normalise("tenant", {"name": "acme", "project_id": "0123abcd_EF-9"})["project_id"] == "0123abcd_EF-9"


@pytest.mark.parametrize("value, part", [("vm1", "not a UUID"), (42, "must be a UUID string"),
                                         (INSTANCE + "\r\nX-Evil: 1", "not a UUID")])
def test_a_bad_instance_id_names_the_field_and_the_reason(value, part):
    found = problems("vport", dict(VPORT, instance_id=value))
    assert any(f == "instance_id" and part in r for f, r in found), found


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "p\r\nX-Evil: 1", 7])
def test_a_bad_project_id_names_the_field(value):
    assert "project_id" in {f for f, _ in problems("tenant", {"name": "acme", "project_id": value})}


def port(**extra):
    return {"id": "55555555-5555-5555-5555-555555555555", "network_id": "n", "name": "vm1",
            "device_owner": "compute:nova", "device_id": INSTANCE, "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [], "binding:vif_details": {"canopy_flavour": "kvm"}, **extra}


def test_the_driver_maps_a_compute_ports_device_to_the_instance_and_the_project_to_the_tenant():
    assert mapping.vport_item(port(), "kvm").body["instance_id"] == INSTANCE
    for other in (port(device_owner="network:dhcp"), port(device_owner=""), port(device_id=""),
                  port(device_id="not-a-uuid")):
        assert mapping.vport_item(other, "kvm").body["instance_id"] is None
    assert mapping.tenant_item("0123456789abcdef0123456789abcdef").body["project_id"] == \
        "0123456789abcdef0123456789abcdef"
