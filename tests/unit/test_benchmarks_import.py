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
