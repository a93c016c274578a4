"""The exit statuses README and docs promise for ways the process ends that no operator asked for
(docs/limits.md, docs/operations.md "Signals and lifecycle"). Each case runs in a Python process of its own,
since each ends the process."""

from __future__ import annotations

import subprocess
import sys

PRELUDE = """
import os, signal, sys

import eventlet
eventlet.monkey_patch()
import greenlet
from ryu.lib import hub

from controller import guard, lifecycle, runtime
"""

ESSENTIAL_ENDS = PRELUDE + """
runtime.MAIN_GREENLET = greenlet.getcurrent()
guard.essential(hub.spawn(lambda: None), "the OpenFlow listener")  # a listener that returns at once
try:
    for _ in range(200):  # 10 s at most
        hub.sleep(0.05)
except SystemExit as stop:
    sys.exit(stop.code)
sys.exit(0)
"""

SECOND_SIGTERM = PRELUDE + """
lifecycle.install_signals(None)
os.kill(os.getpid(), signal.SIGTERM)  # the first one starts the orderly stop (scheduled on the hub)
os.kill(os.getpid(), signal.SIGTERM)  # the second, while stopping: ends the process at once
sys.exit(0)
"""

SIGTERM_WHILE_LOADING = PRELUDE + """
lifecycle.exit_on_stop_signals()  # what canopy run sets before Ryu and the app are loaded
os.kill(os.getpid(), signal.SIGTERM)
sys.exit(0)
"""


def run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_an_essential_thread_that_ends_ends_the_process_with_status_70():
    """README and docs/limits.md: a listener that dies ends the process with status 70, never 0 (so a supervisor
    restarting on failure restarts it), after one line naming what stopped."""
    done = run(ESSENTIAL_ENDS)
    assert done.returncode == 70, done.stderr[-2000:]
    assert "fatal: the OpenFlow listener stopped; the controller exits with status 70" in done.stderr


def test_a_second_sigterm_while_stopping_exits_at_once_with_128_plus_the_signal():
    done = run(SECOND_SIGTERM)
    assert done.returncode == 128 + 15, done.stderr[-2000:]
    assert "canopy: second SIGTERM while stopping: exiting now" in done.stderr


def test_a_sigterm_while_the_modules_load_exits_with_128_plus_the_signal():
    done = run(SIGTERM_WHILE_LOADING)
    assert done.returncode == 128 + 15, done.stderr[-2000:]
