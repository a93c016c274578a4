"""Hardware VTEPs in the lab: the real ``ovs-vtep`` emulator, and bare-metal servers behind its ports.

A ``HardwareVtep`` (made by ``Lab.add_hardware_vtep``) lives in a namespace of its own::

    <name> ns:  ovsdb-server (Open_vSwitch + hardware_vtep databases, one socket), ovs-vswitchd,
                bridge <name> (netdev: the physical switch) holding ports p1.. (veths),
                br-phy (netdev) holding ul0 with the tunnel IP, mgmt0 on the management network,
                and ovs-vtep <name> (its child, OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR at these files)
    <name>-acc: the access switch: a second OVS instance, one bridge a-<port> per VTEP port, whose
                trunk t-<port> is the veth peer of <port>; bare-metal servers are access ports
                (tag=VLAN) on it, exactly like an ESXi port group (this kernel has no VLAN devices)
    <name>-<bm>: a bare-metal server, eth0 plugged into a-<port> as an access port

ovs-vtep mirrors the hardware_vtep database into OVS: per bound logical switch a netdev bridge
``<name>_vtep_ls<N>`` with patch ports ``<VLAN>-<port>-l`` and one VXLAN port per remote locator
(``vx<N>``, options key=<tunnel_key>, remote_ip=<locator>); MACs learned there become Ucast_Macs_Local
rows about a second later (idle timeout 15 s). That bridge's tap device limits the VTEP name to 6
characters.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.harness import netns
from tests.harness.hosts import NetnsHost
from tests.harness.ovs import SCHEMA, OvsInstance
from tests.harness.process import Child, log_tail
from tests.harness.wait import wait_until

VTEP_SCHEMA = Path("/usr/share/openvswitch/vtep.ovsschema")
OVS_VTEP = Path("/usr/share/openvswitch/scripts/ovs-vtep")
PYTHON = "/usr/bin/python3"  # ovs-vtep needs Debian's python3-openvswitch, not the venv's ovs
MAX_NAME = 6  # <name>_vtep_ls<N> is a tap device name (at most 15 characters)
READY_TIMEOUT = 15.0
EMULATOR_DESCRIPTION = "OVS VTEP Emulator"  # what ovs-vtep writes once its set-up is done
CANOPY_COMMENT = '"canopy: vtep '  # how Canopy's transactions show in ovsdb-tool show-log
_REMOTE = re.compile(r"^\s+(\S+) -> (\S+)/(\S+)$")


def vtep_unavailable() -> str | None:
    """Why the ovs-vtep emulator cannot run here (None if it can)."""
    if shutil.which("vtep-ctl") is None or not OVS_VTEP.exists() or not VTEP_SCHEMA.exists():
        return "ovs-vtep needs the openvswitch-vtep package (vtep-ctl, ovs-vtep, vtep.ovsschema)"
    done = subprocess.run([PYTHON, "-c", "import ovs.vlog, ovs.unixctl.server"], capture_output=True,
                          timeout=10)
    if done.returncode != 0:
        return "ovs-vtep needs python3-openvswitch (apt-get install python3-openvswitch)"
    return None


class VtepOvs(OvsInstance):
    """An OVS instance whose ovsdb-server also serves hardware_vtep (managers from Global)."""

    DATABASES = (("conf.db", SCHEMA, "db:Open_vSwitch,Open_vSwitch,manager_options"),
                 ("vtep.db", VTEP_SCHEMA, "db:hardware_vtep,Global,managers"))

    def vtepctl(self, *args: str) -> str:
        """``vtep-ctl`` against this instance; returns stdout without its final newline."""
        return self._tool(["vtep-ctl", f"--db=unix:{self.db_socket}", "--timeout=10", *args])


class AccessSwitch:
    """The switch the bare-metal servers hang off: bridge ``a-<port>`` per VTEP port, trunk ``t-<port>``."""

    def __init__(self, ns: str, ovs: OvsInstance):
        self.ns = ns
        self.ovs = ovs

    @staticmethod
    def bridge(port: str) -> str:
        return netns.check_ifname(f"a-{port}")

    @staticmethod
    def trunk(port: str) -> str:
        return netns.check_ifname(f"t-{port}")


class HardwareVtep(NetnsHost):
    """A hardware VTEP: physical switch ``name`` emulated by ovs-vtep (see the module docstring).

    ``mgmt_ip``: its management address (where its ovsdb-server dials the manager from);
    ``tunnel_ip``: its VXLAN tunnel IP (Physical_Switch tunnel_ips, on br-phy); ``ports``: its
    physical ports; ``emulator``: the ovs-vtep process.
    """

    def __init__(self, name: str, ns: str, mgmt_ip: str, tunnel_ip: str, ovs: VtepOvs,
                 ports: tuple[str, ...], access: AccessSwitch):
        super().__init__(name, ns)
        self.mgmt_ip = mgmt_ip
        self.tunnel_ip = tunnel_ip
        self.ovs = ovs
        self.ports = ports
        self.access = access
        self.emulator: Child | None = None

    @staticmethod
    def check_names(name: str, ports) -> tuple[str, ...]:
        """Validate the switch and port names (see MAX_NAME) and return the ports as a tuple."""
        if not 1 <= len(name) <= MAX_NAME:
            raise ValueError(f"hardware VTEP name {name!r}: 1 to {MAX_NAME} characters (ovs-vtep makes "
                             f"a {name}_vtep_lsN device of each logical switch)")
        ports = tuple(ports)
        if not ports or len(set(ports)) != len(ports):
            raise ValueError(f"hardware VTEP {name}: give distinct port names, not {ports!r}")
        for port in ports:
            AccessSwitch.trunk(port)  # raises if t-<port> is no interface name
        return ports

    def build(self, spawn) -> None:
        """Bridge, ports and Physical_Switch rows, then ovs-vtep, waiting until it has set up."""
        self.ovs.add_bridge(self.name)
        for port in self.ports:
            netns.add_veth(self.ns, port, self.access.ns, self.access.trunk(port))
            self.vsctl("add-port", self.name, port)
            self.access.ovs.add_bridge(self.access.bridge(port), "fail_mode=standalone")
            self.access.ovs.vsctl("add-port", self.access.bridge(port), self.access.trunk(port))
        self.vtepctl("add-ps", self.name)
        self.vtepctl("set", "Physical_Switch", self.name, f"tunnel_ips={self.tunnel_ip}",
                     f"management_ips={self.mgmt_ip}")
        for port in self.ports:
            self.vtepctl("add-port", self.name, port)
        self.emulator = spawn(f"{self.ns}/ovs-vtep",
                              [PYTHON, str(OVS_VTEP), "-vconsole:info", "-vsyslog:off", self.name],
                              self.ovs.rundir / "ovs-vtep.log", self.ns, self.ovs.env)
        wait_until(self._ready, timeout=READY_TIMEOUT, interval=0.1, what=f"ovs-vtep {self.name} set up")

    def _ready(self) -> bool:
        if not self.emulator.alive():
            raise RuntimeError(f"ovs-vtep {self.name} exited:\n{log_tail(self.emulator.log_path)}")
        return (self.vtepctl("get", "Physical_Switch", self.name, "description").strip('"')
                == EMULATOR_DESCRIPTION and "vtep_bfd" in self.vsctl("list-br").split())

    # -- tools ----------------------------------------------------------------------------------

    def vtepctl(self, *args: str) -> str:
        return self.ovs.vtepctl(*args)

    def vsctl(self, *args: str) -> str:
        return self.ovs.vsctl(*args)

    def ofctl(self, *args: str) -> str:
        return self.ovs.ofctl(*args)

    def connect(self, controllers, ovsdb_port: int = 6640, inactivity_probe_ms: int | None = None,
                scheme: str = "tcp") -> None:
        """``vtep-ctl set-manager`` towards one controller host (anything with ``.ip``) or a list (``scheme``
        "ssl": over TLS, with the files given to ``set_ssl`` first)."""
        hosts = controllers if isinstance(controllers, (list, tuple)) else [controllers]
        probe = [f"--inactivity-probe={inactivity_probe_ms}"] if inactivity_probe_ms else []
        self.vtepctl(*probe, "set-manager", *(f"{scheme}:{c.ip}:{ovsdb_port}" for c in hosts))

    def set_ssl(self, key, cert, ca_cert) -> None:
        """The key, certificate and CA certificate its ovsdb-server uses for ``ssl:`` managers (the hardware_vtep
        schema has no SSL table: this ovsdb-server reads them from its Open_vSwitch database's, as started)."""
        self.ovs.vsctl("set-ssl", str(key), str(cert), str(ca_cert))

    def disconnect(self) -> None:
        """``vtep-ctl del-manager``: the VTEP drops its manager connections."""
        self.vtepctl("del-manager")

    # -- reading the VTEP back ------------------------------------------------------------------

    @property
    def vtep_db(self) -> Path:
        return self.ovs.rundir / "vtep.db"

    def canopy_transactions(self) -> int:
        """Transactions Canopy committed to this VTEP's hardware_vtep database (from its log)."""
        return netns.run(["ovsdb-tool", "show-log", str(self.vtep_db)]).stdout.count(CANOPY_COMMENT)

    def logical_switches(self) -> list[str]:
        return self.vtepctl("list-ls").split()

    def bindings(self, port: str) -> dict[int, str]:
        """{VLAN: logical switch name} of one port (``vtep-ctl list-bindings``)."""
        lines = self.vtepctl("list-bindings", self.name, port).splitlines()
        return {int(vlan): ls for vlan, ls in (line.split() for line in lines if line.strip())}

    def remote_macs(self, ls: str) -> tuple[dict[str, str], dict[str, list[str]]]:
        """``vtep-ctl list-remote-macs``: ({MAC: locator IP}, {MAC: [locator IPs]} for multicast); empty while the
        logical switch does not exist."""
        return self._macs("list-remote-macs", ls)

    def local_macs(self, ls: str) -> tuple[dict[str, str], dict[str, list[str]]]:
        """``vtep-ctl list-local-macs``: as ``remote_macs``."""
        return self._macs("list-local-macs", ls)

    def _macs(self, command: str, ls: str):
        """A logical switch the controller has not made yet has no MACs (waits poll before it exists)."""
        ucast, mcast, section = {}, {}, None
        if ls not in self.logical_switches():
            return ucast, mcast
        for line in self.vtepctl(command, ls).splitlines():
            match = _REMOTE.match(line)
            if match is None:
                section = line.strip() or section
            elif section.startswith("ucast"):
                ucast[match[1]] = match[3]
            else:
                mcast.setdefault(match[1], []).append(match[3])
        return ucast, {mac: sorted(ips) for mac, ips in mcast.items()}

    def rows(self, table: str) -> list[dict]:
        """Every row of a hardware_vtep table, as {column: JSON value} (``vtep-ctl --format=json``)."""
        listing = json.loads(self.vtepctl("--format=json", "list", table))
        return [dict(zip(listing["headings"], row)) for row in listing["data"]]

    def locator_ips(self) -> list[str]:
        """dst_ip of every Physical_Locator, sorted (a duplicate shows twice)."""
        return sorted(row["dst_ip"] for row in self.rows("Physical_Locator"))

    def ls_bridge(self, ls: str) -> str | None:
        """The bridge ovs-vtep built for logical switch ``ls`` (None while there is none)."""
        found = self.vsctl("--bare", "--columns=name", "find", "Bridge",
                           f"external_ids:logical_switch_name={ls}").split()
        return found[0] if found else None

    def vxlan_ports(self, ls: str) -> list[tuple[str, str]]:
        """(key, remote_ip) of every VXLAN port on ``ls``'s bridge, sorted."""
        bridge = self.ls_bridge(ls)
        if bridge is None:
            return []
        ports = []
        for port in self.vsctl("list-ports", bridge).split():
            if self.vsctl("get", "Interface", port, "type") == "vxlan":
                options = self.vsctl("get", "Interface", port, "options")
                pairs = dict(re.findall(r'(\w+)="?([^",}]*)"?', options))
                ports.append((pairs.get("key", ""), pairs.get("remote_ip", "")))
        return sorted(ports)


class BareMetal(NetnsHost):
    """A bare-metal server: namespace ``ns`` whose eth0 (``mac``, optional ``ip`` CIDR) reaches
    ``vtep``'s ``port`` tagged with ``vlan`` (an access port ``access_port`` on the access switch)."""

    IFNAME = "eth0"

    def __init__(self, name: str, vtep: HardwareVtep, port: str, vlan: int, mac: str, ip: str | None):
        super().__init__(name, ns="")  # the lab gives it a namespace once it is validated
        if port not in vtep.ports:
            raise ValueError(f"{vtep.name} has no port {port!r} (it has {', '.join(vtep.ports)})")
        if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
            raise ValueError(f"bare-metal {name}: vlan must be 1..4094, not {vlan!r}")
        self.vtep = vtep
        self.port = port
        self.vlan = vlan
        self.mac = mac
        self.ip = ip
        self.access_port = "b" + uuid.uuid4().hex[:11]

    @property
    def address(self) -> str | None:
        """The server's IP address without prefix length (None if it has none)."""
        return self.ip.split("/")[0] if self.ip else None

    def plug(self) -> None:
        """Create eth0 and its access port (tag=vlan) on the access switch."""
        access = self.vtep.access
        netns.add_veth(access.ns, self.access_port, self.ns, self.IFNAME, mac_b=self.mac)
        netns.disable_tx_checksum(self.ns, self.IFNAME)
        if self.ip:
            netns.add_address(self.ns, self.IFNAME, self.ip)
        access.ovs.vsctl("add-port", access.bridge(self.port), self.access_port, f"tag={self.vlan}")
