"""Every benchmark module imports (they run apart from the test suite, so nothing else would notice one that a merge
left importing a name that moved: ``bursts`` did, once); evpn_receive_withdraw, which drives the Federation
in-process, runs small."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eventlet import patcher

ROOT = Path(__file__).resolve().parents[2]
PATCHES_AT_IMPORT = re.compile(r"^(hub\.patch|eventlet\.monkey_patch)\(", re.M)  # at a module's top level
BENCHMARKS = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py") if p.stem != "__init__")


def test_there_are_benchmarks():
    assert "bursts" in BENCHMARKS and "evpn_routes" in BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_module_imports(name):
    """A module that patches eventlet in at import (ovsdb_announce: os, select, socket, time green, as ryu-manager's
    are) is imported in a child: in this process the patches would stay for every later test of the worker (on two
    workers an integration file may come after: test_ovsdb_manager's driver then read its pipe through green I/O and
    its manager's session was dropped). Checked: this process is left as patched as it was."""
    before = _patched()
    source = (ROOT / "tests" / "benchmarks" / f"{name}.py").read_text()
    if PATCHES_AT_IMPORT.search(source):
        done = subprocess.run([sys.executable, "-c", f"import tests.benchmarks.{name} as m; assert m.__doc__"],
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"tests/benchmarks/{name}.py: {done.stderr[-2000:]}"
    else:
        module = importlib.import_module(f"tests.benchmarks.{name}")
        assert module.__doc__, f"tests/benchmarks/{name}.py says what it measures"
    assert _patched() == before, f"importing tests/benchmarks/{name}.py patched this process"


def _patched() -> list[str]:
    return [kind for kind in ("os", "select", "socket", "time", "thread") if patcher.is_monkey_patched(kind)]


def test_the_in_process_receive_withdraw_runs():
    """evpn_receive_withdraw drives the Federation through a stand-in speaker of its own: a merge that made the
    Federation read a new speaker method (evpnmob: ``take_received_in_order``) left it failing, unnoticed. Run small:
    every received route withdrawn, and every flow of theirs deleted (it checks both, and stops otherwise)."""
    import logging

    from tests.benchmarks.evpn_receive_withdraw import run

    level = logging.getLogger("canopy").level
    try:
        cpu, counts = run(50, 2)
    finally:
        logging.getLogger("canopy").setLevel(level)  # the benchmark quiets Canopy's log: not for the tests after this
    assert counts["flow deletes"] >= 50 and "publish: MAC mobility, originate" in cpu


@pytest.mark.parametrize("enabled", [True, False], ids=["collector-on", "collector-off"])
@pytest.mark.parametrize("fails", [False, True], ids=["runs", "a-step-raises"])
def test_the_announce_benchmark_leaves_the_cyclic_collector_as_it_found_it(enabled, fails, monkeypatch):
    """evpn_announce pauses the collector (and freezes what exists) around the steps it measures: afterwards, or when
    a step raised, the collector is on or off as before and nothing is left frozen (the process runs on: tests)."""
    import gc

    from controller.state import State
    from tests.benchmarks import evpn_announce

    calls, real = [], State.vrs_update

    def vrs_update(state, snap):  # the second report is the measured one
        calls.append(snap)
        if fails and len(calls) == 2:
            raise RuntimeError("a step failed")
        return real(state, snap)

    monkeypatch.setattr(State, "vrs_update", vrs_update)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        if fails:
            with pytest.raises(RuntimeError, match="a step failed"):
                evpn_announce.run(3)
        else:
            assert evpn_announce.run(3)["compile"] >= 0
        assert (gc.isenabled(), gc.get_freeze_count(), len(calls)) == (enabled, 0, 2)
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
