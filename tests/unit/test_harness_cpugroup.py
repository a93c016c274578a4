"""tests.harness.cpugroup: a command wrapped by a CpuGroup runs in a CPU cgroup of its own with systemd's CPUWeight=
converted as systemd does (vrs_scale's ``--controller-cpu-weight``); a bad weight makes nothing; the group goes at
close."""

import subprocess
from pathlib import Path

import pytest

from tests.harness.cpugroup import ROOT, CpuGroup, CpuGroupError, cpu_group_of, group_name, shares_of


# as ``ip netns exec`` runs the lab's controllers: a mount namespace of their own where /sys/fs/cgroup holds no group
OWN_SYS = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /sys/fs/cgroup && exec "$@"', "own-sys"]


@pytest.mark.parametrize("inside", [[], OWN_SYS], ids=["here", "own-sys"])
def test_a_wrapped_command_runs_in_the_group_with_the_weight(inside):
    with CpuGroup(group_name("unit-test"), 1000) as group:
        child = subprocess.Popen(inside + group.wrap(["sleep", "60"]))
        try:
            path = f"/{group.path.name}"
            want = "cpu.weight 1000" if group.knob == "cpu.weight" else f"cpu.shares {shares_of(1000)}"
            # the shell moved itself in, then became sleep: the same process (waited for both: between the two the
            # shell is in the group and not sleep yet, a window a loaded machine widens)
            def seen():
                return cpu_group_of(child.pid), open(f"/proc/{child.pid}/comm").read().strip()

            for _ in range(200):
                if seen() == (f"{path}: {want}", "sleep"):
                    break
                subprocess.run(["sleep", "0.05"], check=True)
            assert seen() == (f"{path}: {want}", "sleep")
            assert str(child.pid) in (group.path / "cgroup.procs").read_text().split()
        finally:
            child.kill()
            child.wait(timeout=10)
        assert group.path.is_dir()
    assert not group.path.exists()


def test_systemd_conversion_to_v1_shares():
    assert shares_of(100) == 1024  # every other group's default
    assert shares_of(1000) == 10240  # deploy/systemd/canopy.service's CPUWeight=1000
    assert shares_of(1) == 10


@pytest.mark.parametrize("weight", [0, -5, 10_001])
def test_a_weight_out_of_range_is_refused_and_makes_nothing(weight):
    name = group_name("unit-test-bad")
    with pytest.raises(CpuGroupError, match=f"CPU weight {weight}: must be 1 to 10,000"):
        CpuGroup(name, weight)
    assert not (ROOT / name).exists() and not (ROOT / "cpu" / name).exists()


def test_a_group_that_exists_is_refused_and_left_alone():
    name = group_name("unit-test-theirs")
    theirs = (ROOT / name) if (ROOT / "cgroup.controllers").exists() else (ROOT / "cpu" / name)
    theirs.mkdir()  # another's group of the same name (a run before whose pid this one reuses)
    try:
        with pytest.raises(CpuGroupError, match="File exists"):
            CpuGroup(name, 1000)
        assert theirs.is_dir()
    finally:
        if theirs.exists():
            theirs.rmdir()


def test_the_three_benchmarks_share_the_option_and_the_group_wraps_the_labs_controllers():
    """bursts, evpn_routes and vrs_scale take ``--controller-cpu-weight`` from one place; ``weigh_controllers`` wraps
    the lab's controller command in the group until the stack closes (then the group is gone); 0 changes nothing."""
    import argparse
    import contextlib

    from tests.harness import cpugroup

    for module in ("bursts", "evpn_routes", "vrs_scale"):
        source = open(f"tests/benchmarks/{module}.py").read()
        assert "cpugroup.add_option(parser)" in source and "cpugroup.check_option(parser, args)" in source
        assert "cpugroup.weigh_controllers(" in source
    parser = argparse.ArgumentParser()
    cpugroup.add_option(parser)
    with pytest.raises(SystemExit):
        cpugroup.check_option(parser, parser.parse_args(["--controller-cpu-weight", "10001"]))

    class Lab:
        def controller_argv(self, path):
            return ["canopy", "run", path]

    lab = Lab()
    with contextlib.ExitStack() as groups:
        assert cpugroup.weigh_controllers(groups, lab, 0) is None
        assert lab.controller_argv("c.yaml") == ["canopy", "run", "c.yaml"]
        described = cpugroup.weigh_controllers(groups, lab, 1000)
        assert "CPU weight 1000" in described
        argv = lab.controller_argv("c.yaml")
        assert argv[:2] == ["sh", "-c"] and argv[-3:] == ["canopy", "run", "c.yaml"]
        group_dir = argv[2].split("> ")[1].split("/cgroup.procs")[0].split("/root", 1)[1]  # echo $$ > .../cgroup.procs
        assert Path(group_dir).is_dir()
    assert not Path(group_dir).exists()


def test_detached_processes_are_moved_into_one_group_and_a_gone_one_is_skipped():
    """vrs_scale's ``--ovs-cpu-weight``: daemons already running (ovs-vswitchd and ovsdb-server detach into sessions
    of their own, so ``wrap`` cannot follow them) are moved into one group of the weight, every thread of each; a
    process gone meanwhile is counted out, not an error; the group goes when the stack closes."""
    import contextlib

    from tests.harness import cpugroup

    children = [subprocess.Popen(["setsid", "sleep", "60"]) for _ in range(2)]  # sessions of their own, as --detach
    gone = subprocess.Popen(["true"])
    gone.wait(timeout=10)
    try:
        with contextlib.ExitStack() as groups:
            described = cpugroup.weigh_processes(groups, "unit-test-ovs", [c.pid for c in children] + [gone.pid], 100)
            assert "CPU weight 100" in described and described.endswith(": 2 processes")
            path = f"/{group_name('unit-test-ovs')}"
            want = "cpu.weight 100" if "cpu.weight" in described else f"cpu.shares {shares_of(100)}"
            for child in children:
                assert cpu_group_of(child.pid) == f"{path}: {want}"
            for child in children:
                child.kill()
                child.wait(timeout=10)
        assert not (ROOT / path[1:]).exists() and not (ROOT / "cpu" / path[1:]).exists()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)
