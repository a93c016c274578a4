"""tests.benchmarks.vrs_scale_report: a phase says how the controller was run (nice, its scheduling group's, its CPU
cgroup's weight), and the takeover says when the survivor's lag since its start happened (its late samples before
the kill), and each phase the machine's speed before and after it (a fixed piece of Python work's CPU)."""

from tests.benchmarks.vrs_scale_report import phase_lines, report

SAMPLE = {"lag_ms": 104.9, "wall_ms": 204.9, "cpu_ms": 150.0, "run_delay_ms": 50.0, "off_cpu_ms": 4.0,
          "others_cpu_ms": 0.9, "turns": 240, "longest_ms": 6.1, "at_s": 12.3, "threads": [], "green_threads": []}


def takeover(**more) -> dict:
    return {"milestones": {"EVERY SWITCH IN SYNC": 6.4}, "flow_mods": 0, "group_mods": 0, "peak_rss_mb": 700,
            "lag_max_ms": 104.9, "lag_max_1m_ms": 30.6, "disconnects": {},
            "cpu_s": {"wall": 6.4, "controller": 5.6, "ovs": 2.2, "machine": 7.8, "loop_cpu": 5.4, "loop_wait": 0.4},
            "nice": [0, -10], "cpu_group": "/canopy-controllers-1: cpu.shares 10240",
            "pair_setup_s": 29.1, "pair_disconnects_before_kill": {}, "pair_role_changes_before_kill": [],
            "controller_tables": "canopyb master everywhere", "lag_before_kill_1m_ms": 39.4, "killed": "canopya",
            "survivor": "canopyb", **more}


def test_a_phase_says_how_the_controller_was_run():
    text = "\n".join(phase_lines("takeover", takeover(), {"vrs": 50}))
    assert ("the controller at nice 0, its scheduling group at nice -10, its CPU cgroup "
            "/canopy-controllers-1: cpu.shares 10240") in text


def test_the_takeover_gives_the_survivors_late_samples_before_the_kill():
    text = "\n".join(phase_lines("takeover", takeover(standby_before_kill={"late_samples": [SAMPLE]}), {"vrs": 50}))
    assert "canopyb from its start to the kill" in text
    assert "   104.9   204.9     150.0      50.0      4.0     0.9    240      6.1    12.3" in text
    assert "from its start to the kill" not in "\n".join(phase_lines("takeover", takeover(), {"vrs": 50}))


def test_the_run_line_names_the_cpu_group():
    result = {"settings": {"vrs": 50, "vports": 5000, "max_backoff_ms": 1000, "controller_nice": 0},
              "subnets": 8, "setup": {}, "cpu_group": "CPU weight 1000 (cpu.shares 10240, /sys/fs/cgroup/cpu/x)",
              "machine": {"cpus": 2, "cpu": "?", "kernel": "?", "python": "?", "load_average": [0, 0, 0]}}
    first = report(result)[0]
    assert "8 /22 subnets" in first
    assert "the controllers in a CPU cgroup of their own, CPU weight 1000 (cpu.shares 10240" in first


def test_a_cold_start_that_left_entries_unresolved_says_which_and_where_the_arp_got():
    resolved = {"s": None, "entries": 2417, "of": 2450,
                "unresolved": {"pairs": 33, "askers": 9, "fars": 20, "far_kernel_knows": 31}}
    cold = takeover(resolved_s=resolved, cpu_s_resolved={"wall": 141.3, "controller": 13.6, "ovs": 41.4,
                                                         "machine": 264.4})
    text = "\n".join(phase_lines("cold_start", cold, {"vrs": 50}))
    assert "None s (2,417 of 2,450 entries)" in text
    assert ("unresolved then: 33 pairs, 9 askers, 20 far sides; the far side's kernel held the asker (its ARP "
            "request got there) in 31") in text
    done = takeover(resolved_s={**resolved, "s": 20.7, "unresolved": None}, cpu_s_resolved=cold["cpu_s_resolved"])
    assert "unresolved then" not in "\n".join(phase_lines("cold_start", done, {"vrs": 50}))


def test_a_phase_gives_the_machines_speed_before_and_after_it():
    text = "\n".join(phase_lines("restart", takeover(fixed_work_ms=[118.2, 131.7]), {"vrs": 50}))
    assert "a fixed piece of Python work took 118.2 ms of CPU before the phase, 131.7 ms after it" in text
    assert "the machine's speed" not in "\n".join(phase_lines("restart", takeover(), {"vrs": 50}))


def test_the_fixed_work_is_measured_in_cpu_milliseconds():
    from tests.benchmarks.vrs_scale_probes import fixed_work_ms
    assert 0 < fixed_work_ms(rounds=20_000) < fixed_work_ms(rounds=400_000)


def test_meter_mods_are_counted_and_printed_apart_from_group_mods():
    """vrs_scale read every kind not a flow's as a group-mod (stop 45's figures: "group-mods + meter-mods")."""
    from types import SimpleNamespace

    from tests.benchmarks.vrs_scale_probes import sent, switches

    labels = 'datapath="0000000000000001",chassis="hv1"'
    text = "\n".join(f'canopy_switch_messages_sent_total{{{labels},kind="{kind}"}} {value}.0' for kind, value in
                     (("flow_add", 12), ("flow_delete", 1), ("group_add", 2), ("group_modify", 1), ("meter_add", 996),
                      ("meter_delete", 3)))
    node = SimpleNamespace(proc=SimpleNamespace(api=SimpleNamespace(
        get=lambda path: SimpleNamespace(status=200, text=text))))
    counts = sent(switches(node))
    assert counts == {"flow_mods": 13, "group_mods": 3, "meter_mods": 999}
    assert "flow-mods 13, group-mods 3, meter-mods 999; peak RSS" in "\n".join(
        phase_lines("takeover", takeover(**counts), {"vrs": 50}))
