"""How a VM's interface is recognised on each VRS flavour, emulated with the platform's conventions.

Each flavour says where the hypervisor-side end of the VM's veth lives and what it is called,
and how the VRS learns of it (plug) and forgets it (unplug):

- kvm: a tap-named port on br-int with libvirt/Nova's external_ids (iface-id, attached-mac,
  vm-uuid, iface-status).
- hyperv: a port on br-int named after the VM, with no external_ids at all.
- esxi: an access port (tag=VLAN) on the hypervisor's port group; the emulated vCenter agent
  then writes ``canopy-vnic-<VLAN>=<vnic id>`` in br-int's trunk0 Interface external_ids.
"""

from __future__ import annotations

from tests.harness.hosts import BR_INT, Hypervisor, Vm
from tests.harness.netns import check_ifname

VNIC_KEY = "canopy-vnic-{vlan}"


class _BrIntVports:
    """A VM port directly on br-int (kvm, hyperv): no VLAN, unplugged by deleting the port."""

    def validate(self, vm: Vm) -> None:
        if vm.vlan is not None:
            raise ValueError(f"{vm.hv.flavour} VM {vm.name}: vlan is for esxi VMs only")
        self.port_name(vm)  # raises if the name cannot be an interface name

    def host_side(self, vm: Vm) -> tuple[str, str]:
        return vm.hv.ns, self.port_name(vm)

    def port_name(self, vm: Vm) -> str:
        raise NotImplementedError

    def plug(self, vm: Vm) -> None:
        raise NotImplementedError

    def unplug(self, vm: Vm) -> None:
        vm.hv.vsctl("--if-exists", "del-port", BR_INT, vm.port)


class KvmVports(_BrIntVports):
    """libvirt/Nova: a tap port with iface-id, attached-mac, vm-uuid and iface-status."""

    def port_name(self, vm: Vm) -> str:
        return "tap" + vm.uuid.hex[:11]

    def plug(self, vm: Vm) -> None:
        ids = {"iface-id": vm.vnic_id, "attached-mac": vm.mac, "vm-uuid": str(vm.uuid),
               "iface-status": "active"}
        vm.hv.vsctl("add-port", BR_INT, vm.port, "--", "set", "Interface", vm.port,
                    *(f"external_ids:{key}={value}" for key, value in ids.items()))


class HypervVports(_BrIntVports):
    """Open vSwitch for Hyper-V: the OVS port is named after the VM and carries no external_ids."""

    def port_name(self, vm: Vm) -> str:
        return check_ifname(vm.name)

    def plug(self, vm: Vm) -> None:
        vm.hv.vsctl("add-port", BR_INT, vm.port)


class EsxiVports:
    """ESXi: an access port on the port group; the vNIC is (trunk0, VLAN) on br-int."""

    def validate(self, vm: Vm) -> None:
        if not isinstance(vm.vlan, int) or not 1 <= vm.vlan <= 4094:
            raise ValueError(f"esxi VM {vm.name} needs vlan in 1..4094, got {vm.vlan!r}")
        group = vm.hv.port_group
        if group is not None and vm.vlan in group.vlans:
            raise ValueError(f"VLAN {vm.vlan} on {vm.hv.name} is already {group.vlans[vm.vlan].name}")

    def host_side(self, vm: Vm) -> tuple[str, str]:
        return vm.hv.port_group.ns, "vp" + vm.uuid.hex[:11]

    def plug(self, vm: Vm) -> None:
        group = vm.hv.port_group
        group.ovs.vsctl("add-port", group.bridge, vm.port, f"tag={vm.vlan}")
        group.vlans[vm.vlan] = vm
        vm.hv.vsctl("set", "Interface", Hypervisor.TRUNK_PORT,
                    f"external_ids:{VNIC_KEY.format(vlan=vm.vlan)}={vm.vnic_id}")

    def unplug(self, vm: Vm) -> None:
        group = vm.hv.port_group
        vm.hv.vsctl("remove", "Interface", Hypervisor.TRUNK_PORT, "external_ids",
                    VNIC_KEY.format(vlan=vm.vlan))
        group.ovs.vsctl("--if-exists", "del-port", group.bridge, vm.port)
        group.vlans.pop(vm.vlan, None)


FLAVOURS = {"kvm": KvmVports(), "hyperv": HypervVports(), "esxi": EsxiVports()}
