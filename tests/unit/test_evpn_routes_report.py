"""evpn_routes' report (tests/benchmarks/evpn_routes_report.py) on a recorded result: tests/unit/data/
evpn_routes_result.json is a real ``evpn_routes --routes 300 --json`` run (stretch lists cut to their first entry).
Loaded back from JSON, the share stamps' float keys are strings, and print_table crashed on them (KeyError: 0.0)."""

import json
from pathlib import Path

from tests.benchmarks import evpn_routes_report as report

RECORDED = Path(__file__).parent / "data" / "evpn_routes_result.json"
SHARES = {"0.0": 0.0, "0.25": 0.25, "0.5": 0.5, "0.75": 0.75}


def live(result):
    """The result as evpn_routes holds it before --json: the share stamps (``filling``, ``packed``) keyed by floats."""
    if isinstance(result, dict):
        return {SHARES.get(k, k): live(v) for k, v in result.items()}
    return [live(v) for v in result] if isinstance(result, list) else result


def table(result, capsys):
    report.print_table(result)
    return capsys.readouterr().out


def test_a_recorded_result_prints_as_the_live_one_does(capsys):
    recorded = json.loads(RECORDED.read_text())
    live_result = live(recorded)
    assert live_result["rows"][0]["marks"]["filling"][0.0] is not None  # the live form's keys really are floats
    out = table(recorded, capsys)
    assert out == table(live_result, capsys)
    assert "announce: A first held some of the routes, a quarter, half, three quarters at 0.44, 0.44, 0.44, 0.44 s" \
        in out
    assert "three quarters, all at 0.03, 0.03, 0.03, 0.03, 0.03 s" in out  # the packed intake's stamps
    assert "withdraw: A held none 0.00 s after it first held fewer" in out
    assert out.rstrip().splitlines()[-1].startswith("  setup: lab, controller, policy")


def test_the_module_prints_a_recorded_file(capsys):
    assert report.main([str(RECORDED)]) == 0
    assert capsys.readouterr().out.startswith("EVPN type-2 routes, N = 300")
    assert report.main([]) == 2
