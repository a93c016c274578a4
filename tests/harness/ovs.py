"""One Open vSwitch instance (ovsdb-server + ovs-vswitchd) living in one network namespace.

The userspace datapath creates a tap device ``ovs-netdev`` per namespace, so there is exactly one
ovs-vswitchd per namespace. All of an instance's files (database, sockets, pid and log files) live
in its own directory, which OVS_RUNDIR, OVS_DBDIR and OVS_LOGDIR point at; the database is reached
over a unix socket only. Both daemons run in the foreground as children of the harness.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Callable

from tests.harness import netns
from tests.harness.process import Child
from tests.harness.wait import wait_until

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
VSCTL_TIMEOUT = 10
_N_PACKETS = re.compile(r"\bn_packets=(\d+)")

#: Starts a child process and records it: (name, argv, log_path, ns, env) -> Child.
Spawner = Callable[[str, list[str], Path, str, dict], Child]


# as Debian's ovs-ctl starts ovsdb-server: its ssl: managers use the files `ovs-vsctl set-ssl` sets
SSL_OPTIONS = ("--private-key=db:Open_vSwitch,SSL,private_key", "--certificate=db:Open_vSwitch,SSL,certificate",
               "--ca-cert=db:Open_vSwitch,SSL,ca_cert")


def _accepts(path: Path) -> bool:
    """Whether a unix stream socket at ``path`` accepts a connection now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class OvsInstance:
    """ovsdb-server and ovs-vswitchd for namespace ``ns``, files under ``rundir``."""

    #: (database file name, schema, ovsdb-server remote column for its managers); a subclass may
    #: serve more databases (tests.harness.vtep adds hardware_vtep).
    DATABASES: tuple[tuple[str, Path, str], ...] = (
        ("conf.db", SCHEMA, "db:Open_vSwitch,Open_vSwitch,manager_options"),)

    def __init__(self, ns: str, rundir: Path):
        self.ns = ns
        self.rundir = rundir
        self.db_socket = rundir / "db.sock"
        self.env = {"OVS_RUNDIR": str(rundir), "OVS_DBDIR": str(rundir),
                    "OVS_LOGDIR": str(rundir)}
        self._tool_env = {**os.environ, **self.env}
        self.processes: list[Child] = []

    def start(self, spawn: Spawner) -> None:
        """Create the databases, start both daemons and wait until ovs-vswitchd has applied them."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        for file_name, schema, _ in self.DATABASES:
            netns.run(["ovsdb-tool", "create", str(self.rundir / file_name), str(schema)])
        self._start_daemon(spawn, "ovsdb-server", [
            *(str(self.rundir / file_name) for file_name, _, _ in self.DATABASES),
            f"--remote=punix:{self.db_socket}",
            *(f"--remote={remote}" for _, _, remote in self.DATABASES), *SSL_OPTIONS])
        server = self.processes[-1]
        # the socket file appears at bind(), before listen(): wait until a connection is accepted
        wait_until(lambda: _accepts(self.db_socket) or not server.alive(), timeout=10,
                   interval=0.02, what=f"{self.db_socket} to accept connections")
        self.vsctl("--no-wait", "init")
        self._start_daemon(spawn, "ovs-vswitchd", [f"unix:{self.db_socket}"])
        self.vsctl("init")  # without --no-wait: returns once ovs-vswitchd has caught up

    def _start_daemon(self, spawn: Spawner, program: str, args: list[str]) -> None:
        argv = [program, *args, "--pidfile", f"--unixctl={self.rundir / program}.ctl",
                "-vconsole:info", "-vsyslog:off"]
        child = spawn(f"{self.ns}/{program}", argv, self.rundir / f"{program}.log", self.ns,
                      self.env)
        self.processes.append(child)

    def vsctl(self, *args: str) -> str:
        """``ovs-vsctl`` against this instance; returns stdout without its final newline."""
        return self._tool(["ovs-vsctl", f"--db=unix:{self.db_socket}",
                           f"--timeout={VSCTL_TIMEOUT}", *args])

    def ofctl(self, *args: str) -> str:
        """``ovs-ofctl -O OpenFlow13`` against this instance's bridges; returns stdout."""
        return self._tool(["ovs-ofctl", "-O", "OpenFlow13", *args])

    def appctl(self, *args: str) -> str:
        """``ovs-appctl`` against this instance's ovs-vswitchd (coverage/show, upcall/show, ...); returns stdout."""
        return self._tool(["ovs-appctl", "-t", str(self.rundir / "ovs-vswitchd.ctl"), *args])

    def _tool(self, argv: list[str]) -> str:
        # Unix sockets are reached through the file system: no need to enter the namespace.
        done = netns.run(argv, timeout=VSCTL_TIMEOUT + 5, env=self._tool_env)
        return done.stdout.rstrip("\n")

    def add_bridge(self, bridge: str, *settings: str) -> None:
        """Add a netdev (userspace) bridge with extra Bridge ``settings`` ("fail_mode=secure")."""
        self.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev",
                   *settings)

    def flow_packets(self, bridge: str, match: str) -> int:
        """Sum of n_packets over the flows of ``bridge`` that ``match`` selects (dump-flows)."""
        dump = self.ofctl("dump-flows", bridge, match)
        return sum(int(n) for n in _N_PACKETS.findall(dump))

    def external_ids(self, table: str, record: str) -> dict[str, str]:
        """The external_ids column of one row (``table`` e.g. "Interface", ``record`` its name)."""
        listing = json.loads(self.vsctl("--format=json", "--columns=external_ids", "list", table,
                                        record))
        [[cell]] = listing["data"]  # one row, one column: ["map", [[key, value], ...]]
        return dict(cell[1])


def ovs_available() -> bool:
    """True if ovs-vswitchd is installed (looked up in the sbin directories too)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which("ovs-vswitchd", path=search) is not None
