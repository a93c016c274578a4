"""The things a lab is made of, each living in a network namespace of its own.

- ``ControllerHost``: where a controller runs, joined to the management network.
- ``Hypervisor``: a VRS, i.e. an OVS instance with br-int (VMs) and br-phy (underlay VTEP).
- ``Vm``: a namespace with one interface, eth0, plugged into a hypervisor per its flavour.

They are built by ``Lab``; these classes only describe them and act on them.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field

from tests.harness import netns
from tests.harness.ovs import OvsInstance

BR_INT = "br-int"
BR_PHY = "br-phy"


class NetnsHost:
    """Anything with a name and a namespace of its own in which commands can run."""

    def __init__(self, name: str, ns: str):
        self.name = name
        self.ns = ns

    def exec(self, *cmd: str, timeout: float = 10, check: bool = False) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside this host's namespace (``ip netns exec``); text output captured."""
        return netns.run(list(cmd), ns=self.ns, timeout=timeout, check=check)

    def ping(self, ip: str, count: int = 1, timeout: float = 5) -> bool:
        """True if all ``count`` echo requests to ``ip`` are answered within ``timeout`` seconds."""
        done = self.exec("ping", "-n", "-q", "-c", str(count), "-w", str(max(1, round(timeout))),
                         ip, timeout=timeout + 5)
        return done.returncode == 0

    def icmp_counters(self) -> dict[str, int]:
        """This namespace's kernel ICMP counters (the ``Icmp:`` rows of /proc/net/snmp: InEchos, OutErrors...)."""
        names, values = [line.split()[1:] for line in self.exec("cat", "/proc/net/snmp", check=True).stdout.splitlines()
                         if line.startswith("Icmp:")]
        return dict(zip(names, map(int, values)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, ns={self.ns!r})"


class ControllerHost(NetnsHost):
    """A controller's namespace; ``ip`` is its management address (no prefix length)."""

    def __init__(self, name: str, ns: str, ip: str):
        super().__init__(name, ns)
        self.ip = ip


@dataclass
class PortGroup:
    """An emulated ESXi trunk port group: bridge ``pg0`` in its own OVS instance and namespace.

    Its port ``trunk`` is a veth to the hypervisor's br-int port ``trunk0``; VMs are access ports.
    """

    ns: str
    ovs: OvsInstance
    bridge: str = "pg0"
    trunk: str = "trunk"
    vlans: dict[int, "Vm"] = field(default_factory=dict)


class Hypervisor(NetnsHost):
    """A VRS of one flavour (kvm, hyperv, esxi) with its own ovsdb-server and ovs-vswitchd."""

    TRUNK_PORT = "trunk0"

    def __init__(self, name: str, ns: str, flavour: str, mgmt_ip: str, vtep_ip: str,
                 ovs: OvsInstance):
        super().__init__(name, ns)
        self.flavour = flavour
        self.mgmt_ip = mgmt_ip
        self.vtep_ip = vtep_ip
        self.ovs = ovs
        self.port_group: PortGroup | None = None  # ESXi only, made on the first VM

    def vsctl(self, *args: str) -> str:
        return self.ovs.vsctl(*args)

    def ofctl(self, *args: str) -> str:
        return self.ovs.ofctl(*args)

    def datapath_id(self) -> int:
        """br-int's datapath id, as the controller sees it in FEATURES_REPLY."""
        return int(self.vsctl("get", "Bridge", BR_INT, "datapath_id").strip('"'), 16)

    def connect(self, controllers, of_port: int = 6653, ovsdb_port: int = 6640, scheme: str = "tcp") -> None:
        """Point br-int's OpenFlow and the OVSDB manager at one controller host or a list of them
        (``scheme`` "ssl": over TLS, with the files given to ``set_ssl`` first)."""
        hosts = controllers if isinstance(controllers, (list, tuple)) else [controllers]
        self.vsctl("set-controller", BR_INT, *(f"{scheme}:{c.ip}:{of_port}" for c in hosts))
        self.vsctl("set-manager", *(f"{scheme}:{c.ip}:{ovsdb_port}" for c in hosts))

    def set_max_backoff(self, ms: int) -> None:
        """``max_backoff`` on every Controller and Manager row (docs/vrs.md): OVS retries a controller that is down
        at least every ``ms`` instead of every 8 s. Rows made by a later ``connect`` do not have it."""
        for table in ("Controller", "Manager"):
            for uuid in self.vsctl("--bare", "--columns=_uuid", "list", table).split():
                self.vsctl("set", table, uuid, f"max_backoff={ms}")

    def set_ssl(self, key, cert, ca_cert) -> None:
        """``ovs-vsctl set-ssl``: this hypervisor's key and certificate, and the CA the controller's must be of."""
        self.vsctl("set-ssl", str(key), str(cert), str(ca_cert))


class Vm(NetnsHost):
    """A VM: namespace ``ns`` whose eth0 (``mac``, optional ``ip`` CIDR) is plugged into ``hv``.

    ``port`` is the hypervisor-side interface name: the tap (kvm), the VM name (hyperv) or the
    access port on the port group (esxi, whose VM reaches br-int as VLAN ``vlan`` on trunk0).
    ``vnic_id`` is the vport identity the VRS reports (defaults to the VM name).
    """

    IFNAME = "eth0"

    def __init__(self, name: str, hv: Hypervisor, mac: str, ip: str | None,
                 vnic_id: str | None, vlan: int | None):
        super().__init__(name, ns="")  # the lab gives it a namespace once it is validated
        self.hv = hv
        self.mac = mac
        self.ip = ip
        self.vnic_id = vnic_id or name
        self.vlan = vlan
        self.uuid = uuid.uuid4()
        self.port = ""  # set by the flavour when plugged
        self.plugged: tuple[float, float] | None = None  # wall-clock times its link was made, its port added

    @property
    def address(self) -> str | None:
        """The VM's IP address without prefix length (None if it has none)."""
        return self.ip.split("/")[0] if self.ip else None

