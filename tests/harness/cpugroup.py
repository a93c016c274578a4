"""A CPU cgroup of its own for processes a benchmark starts, with a CPU weight: what systemd's ``CPUWeight=``
(deploy/systemd/canopy.service) or a container's CPU shares give a service, in the lab (``--controller-cpu-weight``
of tests.benchmarks.vrs_scale, bursts and evpn_routes: ``add_option``, ``check_option``, ``weigh_controllers``).

The weight is systemd's: 1-10,000, 100 the default of every other group. On the cgroup v2 hierarchy it is written to
``cpu.weight``; on v1's ``cpu`` controller it becomes ``cpu.shares`` as systemd converts it (weight x 1024 / 100,
1,024 the default). Either way the kernel first shares contended CPUs between the groups at one level by their
weights (processes outside any group of their own are grouped by session where ``sched_autogroup_enabled``: each
such group weighs as a nice-0 process), then between the processes inside each."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 10_000


class CpuGroupError(RuntimeError):
    pass


def shares_of(weight: int) -> int:
    """cgroup v1 ``cpu.shares`` for a systemd ``CPUWeight=`` (systemd's conversion: 100 -> 1,024)."""
    return weight * 1024 // DEFAULT_WEIGHT


class CpuGroup:
    """``/sys/fs/cgroup/[cpu/]<name>`` made with ``weight``; ``wrap(argv)`` runs a command in it; ``close`` removes it
    once its processes are gone. Needs root and a writable cgroup file system."""

    def __init__(self, name: str, weight: int, root: Path = ROOT):
        if not 1 <= weight <= MAX_WEIGHT:
            raise CpuGroupError(f"CPU weight {weight}: must be 1 to {MAX_WEIGHT:,} (systemd's CPUWeight=)")
        self.weight = weight
        if (root / "cgroup.controllers").exists():  # the v2 (unified) hierarchy
            self.path, self.knob, value = root / name, "cpu.weight", weight
            if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                raise CpuGroupError(f"the cpu controller is not enabled in {root}/cgroup.subtree_control")
        elif (root / "cpu" / "cpu.shares").exists():
            self.path, self.knob, value = root / "cpu" / name, "cpu.shares", shares_of(weight)
        else:
            raise CpuGroupError(f"no cgroup cpu controller under {root} (neither v2 nor v1's cpu hierarchy)")
        try:
            self.path.mkdir()
        except OSError as exc:  # one that exists is another's: left alone
            raise CpuGroupError(f"cannot make {self.path}: {exc}") from exc
        try:
            (self.path / self.knob).write_text(f"{value}\n")
        except OSError as exc:
            self.close()
            raise CpuGroupError(f"cannot set {self.knob} {value} in {self.path}: {exc}") from exc
        self.value = value

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run in this group: a shell moves itself in, then runs the command in its place. The group is
        named through this process's root (``/proc/<pid>/root``): ``ip netns exec``, which runs the lab's
        controllers, mounts a /sys of the namespace's own, without the cgroup file system."""
        procs = f"/proc/{os.getpid()}/root{self.path}/cgroup.procs"
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "in-cpu-group", *argv]

    def move(self, pid: int) -> bool:
        """Move running process ``pid`` (every thread of it) into this group; False when it is gone. For daemons
        that detach (ovs-vswitchd and ovsdb-server ``--detach``), which ``wrap`` cannot follow."""
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except ProcessLookupError:
            return False
        return True

    def cap(self, percent: int, period_us: int = 100_000) -> None:
        """At most ``percent`` of one CPU for the group's processes together (the CFS bandwidth limit: a container's CPU
        limit, systemd's ``CPUQuota=``): v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``."""
        quota = period_us * percent // 100
        if self.knob == "cpu.weight":
            (self.path / "cpu.max").write_text(f"{quota} {period_us}\n")
        else:
            (self.path / "cpu.cfs_period_us").write_text(f"{period_us}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")

    def release(self, pid: int) -> None:
        """Move ``pid`` back to the root group (so that this one can be removed while it runs on)."""
        with contextlib.suppress(ProcessLookupError):
            (self.path.parent / "cgroup.procs").write_text(f"{pid}\n")

    def describe(self) -> str:
        return f"CPU weight {self.weight} ({self.knob} {self.value}, {self.path})"

    def close(self) -> None:
        """Remove the group (it must hold no process by then: the lab has stopped what it started)."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a process left in it: say so, the run's figures stand
            print(f"cpu group {self.path} left in place: {exc}", file=sys.stderr)

    def __enter__(self) -> CpuGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cpu_group_of(pid: int, root: Path = ROOT) -> str | None:
    """The weight of process ``pid``'s CPU cgroup as ``"<path>: cpu.weight W"`` (v2) or ``"<path>: cpu.shares S"``
    (v1); None when it cannot be read (the process gone, no cpu controller)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / "cgroup.controllers").exists():
            knob, base = "cpu.weight", root
        elif "cpu" in controllers.split(","):
            knob, base = "cpu.shares", root / "cpu"
        else:
            continue
        try:
            value = (base / path.lstrip("/") / knob).read_text().strip()
        except OSError:
            value = "default" if path == "/" else "?"  # the root group has no cpu.weight of its own
        return f"{path}: {knob} {value}"
    return None


def weigh_processes(groups: contextlib.ExitStack, what: str, pids, weight: int) -> str:
    """Running processes ``pids`` moved into one CPU group named after ``what`` with ``weight``, removed when
    ``groups`` closes (the processes must be gone by then); the group described (vrs_scale's ``--ovs-cpu-weight``:
    the lab's OVS daemons, each a session and so, where ``sched_autogroup_enabled``, a scheduling group of its own,
    weigh as one service does under systemd)."""
    group = groups.enter_context(CpuGroup(group_name(what), weight))
    moved = sum(group.move(pid) for pid in pids)
    return f"{group.describe()}: {moved} processes"


def group_name(what: str) -> str:
    """A name of this process's own, so that concurrent benchmarks never share a group."""
    return f"canopy-{what}-{os.getpid()}"


def add_option(parser: argparse.ArgumentParser) -> None:
    """A benchmark's ``--controller-cpu-weight W`` (0: none, the default)."""
    parser.add_argument("--controller-cpu-weight", type=int, default=0, metavar="W", help="run the controllers (and "
                        "what they start: ExaBGP) in a CPU cgroup of their own with weight W (1-10000, systemd's "
                        "CPUWeight=; every other group weighs 100; deploy/systemd/canopy.service ships 1000; needs "
                        "root; default: none)")


def check_option(parser: argparse.ArgumentParser, args) -> None:
    if args.controller_cpu_weight and not 1 <= args.controller_cpu_weight <= MAX_WEIGHT:
        parser.error(f"--controller-cpu-weight must be 1 to {MAX_WEIGHT}")


def weigh_controllers(groups: contextlib.ExitStack, lab, weight: int) -> str | None:
    """With ``weight`` (else nothing: None), every controller ``lab`` starts from now on runs in a CPU group of that
    weight, removed when ``groups`` closes (enter it before the lab, so that the lab's processes are gone by then);
    the group described."""
    if not weight:
        return None
    group = groups.enter_context(CpuGroup(group_name("controllers"), weight))
    argv = lab.controller_argv
    lab.controller_argv = lambda path: group.wrap(argv(path))
    return group.describe()
