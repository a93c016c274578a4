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
