"""The lab of the migration and punt tests (tests/integration/test_migration_activation.py, test_punt_meters.py,
test_migration_in_flight.py): a controller, acme's web subnet with KVM vports vm0 and vm1, hypervisors connected to
it and VMs on them; and where the controller places a vport."""

from __future__ import annotations

from dataclasses import dataclass

from tests.harness.policy import acme_web, create

MACS = ("02:00:00:00:01:01", "02:00:00:00:01:02")  # vm0's and vm1's


def kvm_vports(api, subnet: dict, macs=MACS) -> None:
    """A KVM vport ``vm<i>`` (iface-id the same, address 10.0.1.<10 + i>) in ``subnet`` for each of ``macs``."""
    for i, mac in enumerate(macs):
        create(api, "vports", {"subnet_id": subnet["id"], "name": f"vm{i}", "mac": mac, "ips": [f"10.0.1.{10 + i}"],
                               "binding": {"flavour": "kvm", "iface_id": f"vm{i}"}})


@dataclass
class TwoHypervisors:
    canopy: object  # tests.harness.controller.ControllerProcess
    hv1: object  # tests.harness.hosts.Hypervisor
    hv2: object
    vm0: object  # tests.harness.hosts.Vm, both on hv1
    vm1: object

    @property
    def api(self):
        return self.canopy.api


def two_hypervisors(lab, vm1_ip: str | None = "10.0.1.11/24", settings: dict | None = None, vm1_on: int = 1,
                    **subnet) -> TwoHypervisors:
    """A controller (ctl1, with ``settings`` over the defaults); acme's web subnet (``subnet``: fields of its own,
    such as ``dhcp``) with ``kvm_vports`` vm0 and vm1; hv1 and hv2 told to connect to it; vm0 (10.0.1.10) on hv1 and
    vm1 (``vm1_ip``; None: no address) on hv``vm1_on``."""
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, settings)
    _, _, web = acme_web(canopy.api, **subnet)
    kvm_vports(canopy.api, web)
    hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
    for hv in (hv1, hv2):
        hv.connect(ctl)
    vm0 = lab.add_vm(hv1, "vm0", mac=MACS[0], ip="10.0.1.10/24", vnic_id="vm0")
    vm1 = lab.add_vm((hv1, hv2)[vm1_on - 1], "vm1", mac=MACS[1], ip=vm1_ip, vnic_id="vm1")
    return TwoHypervisors(canopy, hv1, hv2, vm0, vm1)


def vport_of(api, name: str) -> dict:
    """The vport ``name`` as GET /v1/vports shows it."""
    return next(item for item in api.get("/v1/vports").json["items"] if item["name"] == name)


def where(api, name: str) -> str | None:
    """The chassis the controller places vport ``name`` at (None: nowhere)."""
    return (vport_of(api, name)["location"] or {}).get("chassis")
