"""Child processes of the harness: started with a known PID, identified safely, stopped by PID.

Every long-running program a test needs (ovsdb-server, ovs-vswitchd, a controller) is started
here in the foreground (never ``--detach``), so its PID is the PID of our ``Popen``: ``ip netns
exec`` execs the program in place rather than forking. A process is identified by (PID, start
time) so a recycled PID is never mistaken for one of ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(pid: int, started: int) -> bool:
    """True if ``pid`` is alive and is still the process that started at ``started``."""
    return start_time(pid) == started


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the harness dies, so a killed pytest leaks less.

    (The kernel ties this to the thread that forked: spawn from the main thread, as tests do.)
    """
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One started process: its name (for logs), Popen handle, identity and log file."""

    name: str
    popen: subprocess.Popen
    started: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        """Send ``sig`` if the process is still ours and running."""
        if self.alive():
            os.kill(self.pid, sig)


def netns_argv(ns: str | None, argv: list[str]) -> list[str]:
    """``argv`` prefixed to run inside network namespace ``ns`` (unchanged when ns is None)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def spawn(name: str, argv: list[str], log_path: Path, ns: str | None = None,
          env: dict[str, str] | None = None) -> Child:
    """Start ``argv`` (inside ``ns`` if given) with stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            netns_argv(ns, argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})}, start_new_session=True,
            preexec_fn=_die_with_parent)
    # Until we reap it, the child's /proc entry exists even if it has already exited.
    return Child(name, popen, start_time(popen.pid), log_path)


def stop(children: list[Child], grace: float = 3.0) -> None:
    """SIGTERM every live child, wait up to ``grace`` seconds, then SIGKILL and reap the rest."""
    live = [c for c in children if c.alive()]
    for child in live:
        child.send(signal.SIGTERM)
    _reap(live, grace)
    for child in live:
        child.send(signal.SIGKILL)
    _reap(live, grace)


def _reap(children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass


def kill_foreign(pid: int, started: int) -> bool:
    """SIGKILL a process left by another (dead) harness run, only if its identity still matches."""
    if not is_running(pid, started):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
        except OSError:
            continue
    return kids


def child_running(pid: int, marker: str) -> int | None:
    """The pid of a child of ``pid`` whose command line contains ``marker``, or None."""
    for kid in children_of(pid):
        try:
            if marker in Path(f"/proc/{kid}/cmdline").read_text():
                return kid
        except OSError:
            continue
    return None


def renice(pid: int, nice: int) -> None:
    """Every thread of process ``pid`` at ``nice`` (on Linux a nice value is per thread; threads it starts later
    inherit their starter's), and its session's scheduling group too (below). A benchmark's emulated hypervisors
    then yield the CPUs to the controller under test, as real hypervisors do by running on CPUs of their own
    (tests/benchmarks/vrs_scale.py ``--ovs-nice``).

    Where the kernel groups processes by session (``/proc/sys/kernel/sched_autogroup_enabled``), it first shares
    the CPUs equally between the groups and only then by nice within each: an OVS daemon (``--detach``: a session
    of its own) at nice 10 alone in its group kept its full share. ``/proc/<pid>/autogroup`` takes the group's nice,
    set only for a process that leads its session (as ``spawn`` starts them): the group of a process in another's
    session is that session's, with processes the caller did not start (its own, say)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task), nice)
    with contextlib.suppress(ProcessLookupError):
        if os.getsid(pid) == pid:
            set_autogroup_nice(pid, nice)


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """The nice of ``pid``'s session's scheduling group (see ``renice``); False where there is none to set."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except OSError:  # no autogroup in this kernel, or the process is gone
        return False
    return True


def autogroup_nice(pid: int) -> int | None:
    """The nice of ``pid``'s scheduling group (``/autogroup-N nice V``), None where there is none."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
