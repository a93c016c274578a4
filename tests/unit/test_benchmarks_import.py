"""Every benchmark module imports (they run apart from the test suite, so nothing else would notice one that a merge
left importing a name that moved: ``bursts`` did, once)."""

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


def test_the_in_process_receive_withdraw_benchmark_runs():
    """evpn_receive_withdraw drives the Federation through its own speaker stand-in: a merge that changes what the
    Federation asks of its speaker must keep it running (evpnmob's receive order left it raising AttributeError)."""
    import logging

    from tests.benchmarks.evpn_receive_withdraw import run

    canopy = logging.getLogger("canopy")
    level = canopy.level
    try:
        _cpu, counts = run(20, 2)
    finally:
        canopy.setLevel(level)  # run quiets it
    assert counts["flows held before"] > 0 and counts["flow deletes"] > 0
