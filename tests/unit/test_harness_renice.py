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
