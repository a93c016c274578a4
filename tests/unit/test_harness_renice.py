"""tests.harness.process.renice: every thread of a process at the nice value, not only its first (a nice value is
per thread on Linux; vrs_scale's ``--ovs-nice`` lowers 100 OVS daemons, whose threads run the datapath)."""

import os
import subprocess
import sys

from tests.harness.process import autogroup_nice, renice

THREADED = """
import sys, threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def test_every_thread_of_the_process_is_reniced():
    child = subprocess.Popen([sys.executable, "-c", THREADED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)  # as the lab's daemons: a session, so a scheduling group, of its own
    try:
        assert child.stdout.readline().strip() == "ready"
        tasks = [int(t) for t in os.listdir(f"/proc/{child.pid}/task")]
        assert len(tasks) == 4
        renice(child.pid, 7)
        assert [os.getpriority(os.PRIO_PROCESS, t) for t in tasks] == [7] * 4  # setpriority(pid) alone: only one
        assert autogroup_nice(child.pid) in (7, None)  # None: a kernel without autogroups
        assert autogroup_nice(os.getpid()) != 7  # this session's group is not the child's
    finally:
        child.kill()
        child.wait(timeout=10)


SHARED_SESSION = """
import os, subprocess, sys, time
from tests.harness.process import autogroup_nice, renice
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # in this session: its group
try:
    before = autogroup_nice(os.getpid())
    renice(child.pid, 7)
    print(os.getpriority(os.PRIO_PROCESS, child.pid), before, autogroup_nice(os.getpid()), flush=True)
finally:
    child.kill()
    child.wait(timeout=10)
"""


def test_a_process_in_another_ones_session_is_reniced_alone_not_its_sessions_group():
    """A process that does not lead its session shares the session's scheduling group with processes the caller did
    not start (here: the script that started it, in a session of its own so that nothing else is touched): only the
    process is reniced, the group keeps its nice."""
    script = subprocess.run([sys.executable, "-c", SHARED_SESSION], capture_output=True, text=True, timeout=60,
                            start_new_session=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert script.returncode == 0, script.stderr
    child_nice, before, after = script.stdout.split()
    assert child_nice == "7" and after == before
