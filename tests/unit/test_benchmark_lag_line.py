"""tests.benchmarks.health ``lag_line``: every benchmark's lag line says what the worst sample was made of (the
controller's ``event_loop_lag.worst``, controller/stallwatch.py) and where the loop was, and stays as it was for a
controller that does not report it (``--code`` of an older checkout)."""

from tests.benchmarks.health import lag_line

LAG = {"current_ms": 0.4, "max_1m_ms": 53.9, "max_ms": 262.0, "interval_ms": 100.0, "samples": 2316, "window_s": 60}


def test_the_worst_samples_split_and_the_loops_first_stack():
    worst = {"lag_ms": 262.0, "wall_ms": 362.0, "cpu_ms": 53.5, "collector_ms": 0.0, "run_delay_ms": 307.3,
             "off_cpu_ms": 1.2, "off_cpu_late_ms": 0.0, "at_s": 19.73,
             "stacks": [{"overdue_ms": 87.0, "stack": ["bgp/routes.py:182 with_host", "bgp/evpn.py:119 _mac_ip_route",
                                                        "bgp/evpn.py:99 <listcomp>", "bgp/evpn.py:99 mac_ip_routes",
                                                        "bgp/early.py:90 bound"]}]}
    line = lag_line({**LAG, "worst": worst})
    assert "262.0 ms since start" in line
    assert ("the worst, at 19.7 s from start: 53.5 ms of the loop's CPU (collector 0.0) + 307.3 waiting for a CPU + "
            "1.2 off CPU (0.0 past the probe's sleep); at 87 ms overdue the loop was in bgp/routes.py:182 with_host < "
            "bgp/evpn.py:119 _mac_ip_route < bgp/evpn.py:99 <listcomp> < bgp/evpn.py:99 mac_ip_routes") in line
    assert "bgp/early.py" not in line  # four frames at most


def test_a_controller_without_the_split_gets_the_old_line():
    assert lag_line(LAG) == ("max event-loop lag (controller): 262.0 ms since start, 53.9 ms in the last minute "
                             "(2,316 samples every 100 ms)")
