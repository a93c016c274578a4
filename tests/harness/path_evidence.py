"""What changed on the hypervisors of a traffic path while a test watched it, for the report of a lost packet.

``PathEvidence(hypervisors)`` notes, when made and when stopped, each hypervisor's counters of the places where Open
vSwitch's userspace datapath is known to lose a tunnelled packet, and records meanwhile the kernel's route, address
and link changes in its namespace (``ip monitor``), which make Open vSwitch reload its route table and forget its
tunnel endpoint for that moment (docs/vrs.md, "Route and link changes on a hypervisor"):

- ``Udp:NoPorts`` of the hypervisor's kernel: a VXLAN packet handed to the kernel through br-phy instead of being
  decapsulated by Open vSwitch (the kernel has no VXLAN socket and drops it);
- Open vSwitch's ``drop_action_*`` and ``datapath_drop_*`` coverage counters (a datapath flow that drops: a tunnel
  with no route, a neighbour cache miss, an OpenFlow drop) and ``rev_reconfigure`` (full revalidations).

Cheap and bounded: two reads of each counter set, one idle ``ip monitor`` per hypervisor writing to a temporary
file, of which ``report()`` quotes the last ``EVENTS`` lines. ``stop()`` ends the monitors (SIGTERM; after STOP_WAIT
seconds SIGKILL to each one's process group); one never stopped (its owner failed before it could) ends by itself
after WATCH_LIMIT seconds (``timeout``); a failure to start one ends those already started. The Lab does not know
them: the owner (a ``Pinger``) stops them in ``finally``. What it may miss: a change in the few milliseconds before a
monitor listens, and counts of OVS's other threads, which reach ``coverage/show`` within about a second (a count
read just after the loss may lack it).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import tempfile

from tests.harness.process import netns_argv

EVENTS = 12  # netlink event lines quoted per hypervisor
WATCH_LIMIT = 660  # seconds a monitor runs at most if never stopped (a Pinger's ping stops after 600)
STOP_WAIT = 10  # seconds a monitor has to end once asked before it is killed
_TOTAL = re.compile(r"^(\S+)\s.*\btotal:\s*(\d+)\s*$")


def event_log():
    """A temporary file for a monitor's lines, written only at its end (O_APPEND): the monitor inherits its file
    description, offset included, so otherwise a line would land where ``events()`` last sought, over older lines.
    (``TemporaryFile(mode="a+")`` does not set O_APPEND.)"""
    log = tempfile.TemporaryFile(mode="w+")
    fcntl.fcntl(log.fileno(), fcntl.F_SETFL, fcntl.fcntl(log.fileno(), fcntl.F_GETFL) | os.O_APPEND)
    return log


def coverage_totals(text: str) -> dict[str, int]:
    """{counter: total} of ``ovs-appctl coverage/show`` output (the counters that were hit)."""
    return {m.group(1): int(m.group(2)) for m in map(_TOTAL.match, text.splitlines()) if m}


def snmp_counters(text: str, group: str) -> dict[str, int]:
    """{name: value} of one group ("Udp", "Icmp", ...) of /proc/net/snmp."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith(f"{group}:")]
    if len(rows) != 2:
        return {}
    return dict(zip(rows[0], map(int, rows[1])))


def counters(coverage: str, snmp: str) -> dict[str, int]:
    """The counters PathEvidence compares, from one ``coverage/show`` and one /proc/net/snmp."""
    kept = {name: value for name, value in coverage_totals(coverage).items()
            if name.startswith(("drop_action_", "datapath_drop_")) or name == "rev_reconfigure"}
    udp = snmp_counters(snmp, "Udp")
    if "NoPorts" in udp:
        kept["Udp:NoPorts"] = udp["NoPorts"]
    return kept


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The counters whose value changed, with how much."""
    return {name: value - before.get(name, 0) for name, value in sorted(after.items()) if value != before.get(name, 0)}


class PathEvidence:
    """See the module docstring. ``hypervisors``: tests.harness.hosts.Hypervisor objects (repeats are ignored)."""

    def __init__(self, hypervisors):
        self.hypervisors = list({hv.name: hv for hv in hypervisors}.values())
        self.before = {hv.name: self._read(hv) for hv in self.hypervisors}
        self.after: dict[str, dict[str, int]] = {}
        self._logs = {hv.name: event_log() for hv in self.hypervisors}
        watch = ["timeout", str(WATCH_LIMIT), "ip", "-ts", "monitor", "link", "address", "route"]
        self._monitors: dict[str, subprocess.Popen] = {}
        try:
            for hv in self.hypervisors:
                # a session of its own: ``timeout`` and the ``ip monitor`` it runs are one process group to kill
                self._monitors[hv.name] = subprocess.Popen(netns_argv(hv.ns, watch), stdout=self._logs[hv.name],
                                                           stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:  # the monitors already started end with it: none left behind
            self._end_monitors()
            raise

    @staticmethod
    def _read(hv) -> dict[str, int]:
        try:
            return counters(hv.ovs.appctl("coverage/show"), hv.exec("cat", "/proc/net/snmp").stdout)
        except Exception as exc:  # evidence only: a hypervisor gone (its lab closing) must not fail the test
            return {f"unreadable ({exc.__class__.__name__})": 0}

    def stop(self) -> None:
        """Stop watching (idempotent): the monitors end, the counters are read again."""
        self._end_monitors()
        if not self.after:
            self.after = {hv.name: self._read(hv) for hv in self.hypervisors}

    def _end_monitors(self) -> None:
        """Every monitor still running asked to end (SIGTERM: ``timeout`` passes it on), killed with its child if it
        has not within STOP_WAIT seconds (SIGKILL to its process group: ``timeout`` killed alone would leave its
        ``ip monitor`` running with no time limit)."""
        running = [monitor for monitor in self._monitors.values() if monitor.poll() is None]
        for monitor in running:
            monitor.terminate()
        for monitor in running:
            try:
                monitor.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                os.killpg(monitor.pid, signal.SIGKILL)
                monitor.wait()

    def events(self, name: str) -> list[str]:
        """The last EVENTS netlink event lines seen in hypervisor ``name``'s namespace."""
        log = self._logs[name]
        log.seek(0)
        return [line.rstrip() for line in log if line.startswith("[")][-EVENTS:]

    def moved(self) -> dict[str, dict[str, int]]:
        """{hypervisor name: the counters that moved on it} (stops watching first)."""
        self.stop()
        return {hv.name: moved(self.before[hv.name], self.after[hv.name]) for hv in self.hypervisors}

    def report(self) -> str:
        """One paragraph per hypervisor: the counters that moved, the namespace's changes (empty if none moved)."""
        counts = self.moved()
        parts = []
        for hv in self.hypervisors:
            changed, events = counts[hv.name], self.events(hv.name)
            if changed or events:
                parts.append(f"{hv.name}: counters moved {changed or 'none'}; route/address/link changes in its "
                             f"namespace: {events or 'none'}")
        return "; ".join(parts)
