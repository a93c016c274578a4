"""``Lab``: one self-contained test network of controllers, hypervisors (VRS) and VMs.

Layout (every box is a network namespace named ``cnp<run id>-...``)::

    ctl1 (mgmt0) ---\\                         /--- (mgmt0) hv1 [br-int, br-phy <- ul0]
                     fabric [mgmt bridge, ul bridge]
    ctl2 (mgmt0) ---/                         \\--- (ul0)   hv2 ...

- management network 10.250.0.0/16 (controllers and hypervisors' mgmt0), underlay 10.251.0.0/16
  (each hypervisor's VTEP IP sits on its br-phy internal port, br-phy holding the ul0 veth: the
  arrangement userspace VXLAN needs);
- VMs are namespaces whose eth0 is a veth to their hypervisor (or, on ESXi, to its port group);
- hardware VTEPs (``add_hardware_vtep``) are the ovs-vtep emulator in a host namespace like a
  hypervisor's (mgmt0, br-phy with the tunnel IP), and bare-metal servers (``add_baremetal``) reach
  its ports through an access switch with VLAN tags (tests.harness.vtep).

Teardown (``close``) stops controllers and other helper processes, deletes VMs, stops OVS, deletes
the remaining namespaces and the workdir, and never raises: a failed step is logged and skipped.
With ``CANOPY_KEEP_LOGS=DIR`` in the environment it first copies the workdir's logs and configs (every ``*.log`` and
``*.yaml``: the controllers', OVS's, gobgpd's...) to ``DIR/<prefix>-<time>/``, keeping their relative paths, to read
after a run that failed (or passed: nothing else changes).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

from tests.harness import neighbour_table, netns, process
from tests.harness.controller import ControllerProcess, deep_merge, default_settings
from tests.harness.hosts import BR_INT, BR_PHY, ControllerHost, Hypervisor, PortGroup, Vm
from tests.harness.http import RestClient
from tests.harness.ovs import OvsInstance
from tests.harness.process import Child
from tests.harness.runrecord import RunRecord, live_run_ids, sweep_stale
from tests.harness.vports import FLAVOURS
from tests.harness.vtep import AccessSwitch, BareMetal, HardwareVtep, VtepOvs, vtep_unavailable
from tests.harness.wait import wait_until

MGMT_NET = ipaddress.ip_network("10.250.0.0/16")
UNDERLAY_NET = ipaddress.ip_network("10.251.0.0/16")
KEEP_LOGS = "CANOPY_KEEP_LOGS"  # environment variable: a directory the logs are copied to at teardown
HELPER_GRACE = 5.0  # seconds a controller or helper process gets to exit on SIGTERM
OVS_GRACE = 3.0
log = logging.getLogger(__name__)


def this_checkout_first() -> None:
    """The controllers a lab starts (``canopy run``: the venv's entry point) and their children import the code of
    this checkout, not the one the venv's editable install names (/work/main's, for a test or benchmark run from
    another worktree): its root goes first on their PYTHONPATH (a benchmark's ``--code`` sets its own)."""
    root = str(Path(__file__).resolve().parents[2])
    if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != root:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


class Lab:
    """A test network; use as ``with Lab() as lab:``. See the module docstring for its layout."""

    def __init__(self) -> None:
        this_checkout_first()
        self.record: RunRecord | None = None
        self.workdir: Path | None = None
        self.fabric_ns = ""
        self._host_names: set[str] = set()
        self._host_numbers = itertools.count(1)
        self._mac_numbers = itertools.count(1)
        self._children: list[Child] = []
        self._ovs: list[OvsInstance] = []
        self._vms: list[Vm] = []
        self._controllers: dict[str, ControllerProcess] = {}

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> "Lab":
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _open(self) -> None:
        for thing in sweep_stale():
            log.warning("removed %s left by a dead harness run", thing)
        self.record = RunRecord.claim()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.record.set_workdir(self.workdir)
        self.fabric_ns = self._new_namespace("fabric")
        for bridge in ("mgmt", "ul"):
            netns.add_bridge(self.fabric_ns, bridge)

    def close(self) -> None:
        """Tear everything down in order; never raises."""
        ovs_pids = {child.pid for ovs in self._ovs for child in ovs.processes}
        self._step("stop controllers and helpers", process.stop,
                   [c for c in self._children if c.pid not in ovs_pids], HELPER_GRACE)
        for vm in self._vms:
            self._step(f"delete VM {vm.name}", netns.delete, vm.ns)
        self._step("stop Open vSwitch", process.stop,
                   [c for c in self._children if c.pid in ovs_pids], OVS_GRACE)
        if self.workdir is not None and os.environ.get(KEEP_LOGS):
            self._step("keep the logs", self._keep_logs, Path(os.environ[KEEP_LOGS]))
        for ns in reversed(self.namespaces):
            self._step(f"delete namespace {ns}", netns.delete, ns)
        if self.workdir is not None:
            self._step("remove workdir", shutil.rmtree, self.workdir)
        if self.record is not None:
            self._step("remove run record", self.record.remove)
        # after the record: this lab is not one of the live runs that keep the neighbour table raised
        self._step("give the neighbour table back", neighbour_table.give_back, live_run_ids)

    def _keep_logs(self, target: Path) -> None:
        """Copy the workdir's ``*.log`` and ``*.yaml`` files under ``target`` (module docstring)."""
        into = target / f"{self.prefix}-{time.strftime('%Y%m%dT%H%M%S')}"
        for path in sorted(self.workdir.rglob("*")):
            if path.suffix in (".log", ".yaml") and path.is_file():
                copy = into / path.relative_to(self.workdir)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
        log.warning("logs kept in %s", into)

    @staticmethod
    def _step(what: str, action: Callable, *args) -> None:
        try:
            action(*args)
        except Exception:
            log.exception("lab teardown: %s failed; continuing", what)

    # -- what the lab holds ---------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def prefix(self) -> str:
        """Prefix of this run's namespace names, e.g. 'cnp1a2b'."""
        return self.record.prefix

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab has created (including ones already deleted)."""
        return list(self.record.data["namespaces"]) if self.record else []

    @property
    def pids(self) -> list[int]:
        """Every process this lab has started (including ones already stopped)."""
        return [child.pid for child in self._children]

    def log_paths(self) -> list[Path]:
        return list(dict.fromkeys(child.log_path for child in self._children))

    def log_tails(self, lines: int = 20) -> str:
        """The last lines of every process log, for a failure report."""
        return "\n".join(f"==> {path} <==\n{process.log_tail(path, lines)}"
                         for path in self.log_paths())

    # -- building blocks ------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], log_path: Path, ns: str | None = None,
              env: dict[str, str] | None = None) -> Child:
        """Start a process (in ``ns`` if given) that the lab records and stops at teardown."""
        child = process.spawn(name, argv, log_path, ns=ns, env=env)
        self._children.append(child)
        self.record.add_process(child.pid, child.started)
        return child

    def add_namespace(self, suffix: str) -> str:
        """A bare namespace of this lab (``<prefix>-<suffix>``), removed with it: an outside host, a segment."""
        return self._new_namespace(suffix)

    def _new_namespace(self, suffix: str) -> str:
        ns = f"{self.prefix}-{suffix}"
        self.record.add_namespace(ns)  # recorded first, so a half-made namespace is cleaned too
        netns.create(ns)
        return ns

    def _new_host(self, name: str) -> tuple[str, int]:
        """Reserve a host name (controller or hypervisor) and its number; make its namespace."""
        netns.check_ifname(f"m-{name}")  # its fabric-side veths are called m-<name>, u-<name>
        if name in self._host_names:
            raise ValueError(f"host name {name!r} already used in this lab")
        self._host_names.add(name)
        # room in the neighbour table the kernel shares between namespaces (tests.harness.neighbour_table): a
        # hypervisor's kernel keeps an entry for every other host that asks for its VTEP address, and hosts on the
        # management network one for each other they talk to: at most one per pair of hosts on each network
        neighbour_table.room(2 * len(self._host_names) ** 2)
        return self._new_namespace(name), next(self._host_numbers)

    def _join_fabric(self, ns: str, name: str, bridge: str, ifname: str) -> None:
        """Connect ``ns`` to the fabric bridge ``bridge`` with a veth called ``ifname`` in ``ns``."""
        fabric_side = f"{bridge[0]}-{name}"
        netns.add_veth(self.fabric_ns, fabric_side, ns, ifname)
        netns.enslave(self.fabric_ns, fabric_side, bridge)

    def _join_mgmt(self, ns: str, name: str, number: int) -> str:
        """Put host ``name`` on the management network as mgmt0; return its address."""
        address = str(MGMT_NET[number])
        self._join_fabric(ns, name, "mgmt", "mgmt0")
        netns.add_address(ns, "mgmt0", f"{address}/{MGMT_NET.prefixlen}")
        return address

    def _start_ovs(self, ns: str, rundir: Path, kind: type[OvsInstance] = OvsInstance) -> OvsInstance:
        # Open vSwitch's userspace datapath reloads its route table on each route, address or link change in its
        # namespace and forgets its tunnel endpoint meanwhile (docs/vrs.md, "Route and link changes on a
        # hypervisor"): without IPv6, no address or route appears in the seconds after a link is made (IPv6
        # duplicate address detection), and a namespace running OVS changes only when the lab changes it
        netns.disable_ipv6(ns)
        ovs = kind(ns, rundir)
        self._ovs.append(ovs)
        ovs.start(self.spawn)
        return ovs

    def _join_underlay(self, ns: str, name: str, number: int, ovs: OvsInstance) -> str:
        """Give host ``name`` its tunnel IP on br-phy, which holds the ul0 veth; return the IP."""
        tunnel_ip = str(UNDERLAY_NET[number])
        self._join_fabric(ns, name, "ul", "ul0")
        ovs.add_bridge(BR_PHY, "fail_mode=standalone")
        ovs.vsctl("add-port", BR_PHY, "ul0")
        # ul0 is the hypervisor's uplink: only Open vSwitch answers ARP through it (for br-phy's address), as on a
        # hypervisor whose NIC is OVS's (DPDK) and not also a kernel interface (docs/vrs.md, "two answers")
        netns.sysctl(ns, "net.ipv4.conf.ul0.arp_ignore", "8")
        netns.add_address(ns, BR_PHY, f"{tunnel_ip}/{UNDERLAY_NET.prefixlen}")
        return tunnel_ip

    # -- hosts ----------------------------------------------------------------------------------

    def add_controller_host(self, name: str) -> ControllerHost:
        """A namespace on the management network (mgmt0 = 10.250.0.X/16) for a controller."""
        ns, number = self._new_host(name)
        return ControllerHost(name, ns, self._join_mgmt(ns, name, number))

    def add_hypervisor(self, name: str, flavour: str = "kvm", ovs_defaults: bool = False) -> Hypervisor:
        """A VRS of ``flavour`` (kvm, hyperv, esxi) with br-int, br-phy and its VTEP IP.

        br-int is made ``fail_mode=secure`` with ``protocols=OpenFlow13,OpenFlow14`` as docs/vrs.md asks
        operators to, unless ``ovs_defaults``: then both are left unset (standalone, OVS's default
        protocols), as on a hypervisor set up with ``set-controller``/``set-manager`` only."""
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {flavour!r}; expected one of {sorted(FLAVOURS)}")
        ns, number = self._new_host(name)
        mgmt_ip, ovs = self._join_mgmt(ns, name, number), self._start_ovs(ns, self.workdir / name)
        vtep_ip = self._join_underlay(ns, name, number, ovs)
        hv = Hypervisor(name, ns, flavour, mgmt_ip, vtep_ip, ovs)
        safety = () if ovs_defaults else ("fail_mode=secure", "protocols=OpenFlow13,OpenFlow14")
        hv.ovs.add_bridge(BR_INT, *safety, "other_config:disable-in-band=true")
        ids = {"system-id": name, "hostname": name, "canopy-vtep-ip": vtep_ip,
               "canopy-flavour": flavour}
        hv.vsctl("set", "Open_vSwitch", ".", *(f"external_ids:{k}={v}" for k, v in ids.items()))
        return hv

    def _port_group(self, hv: Hypervisor) -> PortGroup:
        """The ESXi hypervisor's port group, made on first use: pg0 trunked to br-int's trunk0."""
        if hv.port_group is None:
            ns = self._new_namespace(f"{hv.name}-pg")
            group = PortGroup(ns, self._start_ovs(ns, self.workdir / f"{hv.name}-pg"))
            group.ovs.add_bridge(group.bridge, "fail_mode=standalone")
            netns.add_veth(ns, group.trunk, hv.ns, Hypervisor.TRUNK_PORT)
            group.ovs.vsctl("add-port", group.bridge, group.trunk)
            hv.vsctl("add-port", BR_INT, Hypervisor.TRUNK_PORT)
            hv.port_group = group
        return hv.port_group

    def add_hardware_vtep(self, name: str = "tor1", ports=("p1",)) -> HardwareVtep:
        """A hardware VTEP: physical switch ``name`` (at most 6 characters) with ``ports``, emulated
        by ovs-vtep in its own namespace, on the management network and the underlay (its tunnel IP
        on br-phy), not yet connected to any manager (``vtep.connect(ctl)``). Raises RuntimeError
        when openvswitch-vtep or python3-openvswitch is missing (see tests.harness.vtep)."""
        reason = vtep_unavailable()
        if reason:
            raise RuntimeError(reason)
        ports = HardwareVtep.check_names(name, ports)
        ns, number = self._new_host(name)
        mgmt_ip = self._join_mgmt(ns, name, number)
        ovs = self._start_ovs(ns, self.workdir / name, VtepOvs)
        tunnel_ip = self._join_underlay(ns, name, number, ovs)
        access_ns = self._new_namespace(f"{name}-acc")
        access = AccessSwitch(access_ns, self._start_ovs(access_ns, self.workdir / f"{name}-acc"))
        vtep = HardwareVtep(name, ns, mgmt_ip, tunnel_ip, ovs, ports, access)
        vtep.build(self.spawn)
        return vtep

    def add_baremetal(self, vtep: HardwareVtep, name: str, port: str = "p1", vlan: int = 100,
                      mac: str | None = None, ip: str | None = None) -> BareMetal:
        """A bare-metal server whose eth0 (``mac``, default unique; ``ip`` a CIDR or None) reaches
        ``vtep``'s ``port`` tagged with ``vlan`` (an access port on the VTEP's access switch)."""
        server = BareMetal(name, vtep, port, vlan, mac or self._next_mac(), ip)
        server.ns = self._new_namespace(f"{vtep.name}-{name}")
        server.plug()
        return server

    # -- VMs ------------------------------------------------------------------------------------

    def add_vm(self, hv: Hypervisor, name: str, mac: str | None = None, ip: str | None = None,
               vnic_id: str | None = None, vlan: int | None = None, plug_as: str | None = None,
               paused: bool = False) -> Vm:
        """A VM on ``hv`` plugged the way ``hv.flavour`` does it (see tests.harness.vports), or the way
        ``plug_as`` does (a KVM-style tap port on an ESXi VRS's br-int, say).

        ``mac`` defaults to a unique locally administered address; ``ip`` is a CIDR or None;
        ``vlan`` is required (1..4094) on esxi and refused elsewhere; ``paused``: the VM sends nothing of its own
        (no IPv6: a live migration's destination, whose VM runs only once it resumes, controller/state_activation.py).
        """
        vports = FLAVOURS[plug_as or hv.flavour]
        vm = Vm(name, hv, mac or self._next_mac(), ip, vnic_id, vlan)
        vports.validate(vm)
        if vports is FLAVOURS["esxi"]:
            self._port_group(hv)
        vm.ns = self._new_namespace(f"{hv.name}-{name}")
        if paused:
            netns.disable_ipv6(vm.ns)
        self._vms.append(vm)
        host_ns, vm.port = vports.host_side(vm)
        started = time.time()  # a link appearing on the hypervisor can lose a packet (docs/vrs.md)
        netns.add_veth(host_ns, vm.port, vm.ns, Vm.IFNAME, mac_b=vm.mac)
        netns.disable_tx_checksum(vm.ns, Vm.IFNAME)
        if ip:
            netns.add_address(vm.ns, Vm.IFNAME, ip)
        vports.plug(vm)  # ovs-vsctl returns once ovs-vswitchd has added the port
        vm.plugged = (started, time.time())
        return vm

    def remove_vm(self, vm: Vm) -> None:
        """Unplug ``vm`` from its VRS (as the hypervisor would) and delete its namespace."""
        FLAVOURS[vm.hv.flavour].unplug(vm)
        netns.delete(vm.ns)
        self._vms.remove(vm)

    def _next_mac(self) -> str:
        number = next(self._mac_numbers)
        return f"02:00:00:00:{number >> 8:02x}:{number & 0xff:02x}"

    # -- controllers ----------------------------------------------------------------------------

    def start_controller(self, ctl: ControllerHost, settings: dict | None = None,
                         name: str = "canopy") -> ControllerProcess:
        """Run ``canopy run --config <file>`` in ``ctl``'s namespace and wait until it is ready.

        ``settings`` are deep-merged over ``controller.default_settings``; the YAML config and
        the log (``<name>.yaml``, ``<name>.log``) are in the workdir.
        """
        if name in self._controllers:
            raise ValueError(f"controller {name!r} already started in this lab")
        config = deep_merge(default_settings(self.workdir, name), settings or {})
        Path(config["data_dir"]).mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        rest = config["rest"]
        host = "127.0.0.1" if rest["listen"] in ("0.0.0.0", "127.0.0.1") else rest["listen"]
        controller = ControllerProcess(
            name, ctl.ns, self.controller_argv(config_path), config_path,
            self.workdir / f"{name}.log", RestClient(ctl.ns, host, rest["port"], rest.get("token"),
                                                     tls=_rest_tls(config)),
            self.spawn)
        controller.start()  # raises ControllerStartError (with the log tail) if not ready
        self._controllers[name] = controller
        return controller

    def controller_argv(self, config_path: Path) -> list[str]:
        """The command that runs a controller (the ``canopy`` entry point of this venv)."""
        return [str(Path(sys.executable).parent / "canopy"), "run", "--config", str(config_path)]

    #: Bounded polling, see tests.harness.wait.wait_until.
    wait_until = staticmethod(wait_until)


def _rest_tls(config: dict):
    """A client context trusting the settings' CA when the controller serves REST over HTTPS, else None."""
    if not config.get("tls") or config["rest"].get("tls") is False:
        return None
    return ssl.create_default_context(cafile=config["tls"]["ca_cert"])
