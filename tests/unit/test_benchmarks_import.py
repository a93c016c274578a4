"""Every benchmark module imports (they run apart from the test suite, so nothing else would notice one that a merge
left importing a name that moved: ``bursts`` did, once); evpn_receive_withdraw, which drives the Federation
in-process, runs small."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("*.py") if p.stem != "__init__")


def test_there_are_benchmarks():
    assert "bursts" in BENCHMARKS and "evpn_routes" in BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_a_benchmark_module_imports(name):
    module = importlib.import_module(f"tests.benchmarks.{name}")
    assert module.__doc__, f"tests/benchmarks/{name}.py says what it measures"


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
