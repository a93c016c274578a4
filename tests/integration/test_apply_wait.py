"""``canopy apply --wait`` returns only once the switches hold the apply's flows (controller/cli_wait.py), with a real
controller and a real OVS hypervisor: right after it returns 0, ``ovs-ofctl dump-flows`` shows every change it made.

Before stop 50 the wait ended after two polls half a second apart that found every switch in sync with nothing
pending: a switch in sync with its old state, the programming pass not having handed it the change yet (a pass still
compiling the apply's vports: long on a controller short of CPU), counted as programmed. The controller runs here
under a CPU limit (a container's, or systemd's CPUQuota=) for the applies, so that the pass lasts past those polls."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.harness.cpugroup import DEFAULT_WEIGHT, CpuGroup, group_name
from tests.harness.hosts import BR_INT
from tests.harness.wait import wait_until
from tests.integration.test_operate import apply_wait, kvm1_with_vm1, switch_sync

pytestmark = pytest.mark.integration

ROUNDS = 10
CPU_PERCENT = 5  # of one CPU, the controller's limit while it applies and programs
VPORTS = 300  # on kvm1, bound to ports it holds already; each apply gives every one a new address (flows to change)
BATCH = 50  # ports per ovs-vsctl call (tests/benchmarks/port_to_ping.py)


def ports(count: int) -> list[dict]:
    return [{"name": f"w{k}", "mac": "02:00:00:03:%02x:%02x" % divmod(k, 256)} for k in range(count)]


def address(round_: int, k: int) -> str:
    return f"10.9.{round_ * 4 + k // 250}.{k % 250 + 2}"


def add_ports(hv, wanted: list[dict]) -> None:
    """Internal ports on br-int with the vports' iface-ids (as libvirt leaves a KVM tap)."""
    for start in range(0, len(wanted), BATCH):
        args = []
        for p in wanted[start:start + BATCH]:
            args += ["--", "add-port", BR_INT, p["name"], "--", "set", "Interface", p["name"], "type=internal",
                     f"external_ids:iface-id={p['name']}", f"external_ids:attached-mac={p['mac']}"]
        hv.vsctl(*args[1:])


def document(vports: list[dict], round_: int) -> str:
    lines = ["tenants:", "  - name: ops", "    subnets:", "      - name: lan", "        cidr: 10.9.0.0/16",
             "        gateway: 10.9.0.1", "        vports:"]
    lines += [f"          - {{name: {p['name']}, mac: '{p['mac']}', ips: ['{address(round_, k)}'], "
              f"binding: {{flavour: kvm, iface_id: {p['name']}}}}}" for k, p in enumerate(vports)]
    return "\n".join(lines) + "\n"


def test_apply_wait_returns_only_once_the_switch_holds_the_flows_of_the_change(lab):
    """Each round readdresses every vport bound on kvm1: as the wait returns, kvm1's flows name every new address."""
    ctl, canopy, hv = kvm1_with_vm1(lab)
    api = canopy.api
    wanted = ports(VPORTS)
    add_ports(hv, wanted)
    wait_until(lambda: (s := switch_sync(api, "kvm1")) and s["state"] == "in_sync" and s["desired"] > 0
               and s["pending"] == 0, timeout=60, what="kvm1 programmed with vm1")
    with CpuGroup(group_name("apply-wait"), DEFAULT_WEIGHT) as limited:
        limited.cap(CPU_PERCENT)
        limited.move(canopy.pid)
        try:
            for r in range(ROUNDS):
                check_round(ctl, hv, wanted, r)
        finally:
            limited.release(canopy.pid)


def test_apply_wait_goes_on_through_a_controller_restart(lab):
    """The controller restarted while the wait polls (its answer given, the change still being programmed): the wait
    asks again while it is down, follows the start-up hold, and returns 0 once kvm1 holds the seq again, with the
    change's flows; the seq is the store's, and survives the restart."""
    ctl, canopy, hv = kvm1_with_vm1(lab)
    api = canopy.api
    hv.set_max_backoff(1000)
    wanted = ports(VPORTS)
    add_ports(hv, wanted)
    wait_until(lambda: (s := switch_sync(api, "kvm1")) and s["state"] == "in_sync" and s["pending"] == 0,
               timeout=60, what="kvm1 programmed with vm1")
    with CpuGroup(group_name("apply-wait"), DEFAULT_WEIGHT) as limited:
        limited.cap(CPU_PERCENT)
        limited.move(canopy.pid)
        applying = subprocess.Popen(apply_wait(ctl, 180), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        try:
            applying.stdin.write(document(wanted, 0))
            applying.stdin.close()
            answered = next((line for line in applying.stdout if ", seq " in line), "")  # the apply's answer
            canopy.stop()  # (the controller in the CPU group is gone with it)
            canopy.start()
            stderr = applying.stderr.read()
            assert applying.wait(timeout=240) == 0, (answered, stderr)
        finally:
            if applying.poll() is None:
                applying.kill()
                applying.wait(timeout=10)
    flows = hv.ofctl("dump-flows", BR_INT)
    missing = [address(0, k) for k in range(VPORTS) if not re.search(rf"={re.escape(address(0, k))}\b(?!\.)", flows)]
    assert not missing, (f"{len(missing)} of the {VPORTS} addresses not in kvm1's flows, e.g. {missing[:3]}", stderr)
    assert "the controller cannot be reached (restarting?)" in stderr, stderr
    assert stderr.splitlines()[-1].endswith(": 1/1 switch(es) hold it"), stderr


def check_round(ctl, hv, wanted, r):
    done = subprocess.run(apply_wait(ctl, 180), input=document(wanted, r), text=True, capture_output=True, timeout=240)
    flows = hv.ofctl("dump-flows", BR_INT)  # at once: what the switch holds as the wait returned
    assert done.returncode == 0, (r, done.stdout, done.stderr)
    missing = [address(r, k) for k in range(VPORTS) if not re.search(rf"={re.escape(address(r, k))}\b(?!\.)", flows)]
    assert not missing, (f"round {r}: apply --wait returned 0 before {len(missing)} of the {VPORTS} new addresses "
                         f"were in kvm1's flows, e.g. {missing[:3]}", done.stderr)
    assert "switch(es) hold it" in done.stderr.splitlines()[-1], done.stderr


def test_apply_wait_waits_for_the_hardware_vteps_rows_too(lab):
    """A VLAN bound on a hardware VTEP (the ovs-vtep emulator): as the wait returns, its database holds the binding,
    and the VTEP was counted with the VRS."""
    ctl, canopy, hv = kvm1_with_vm1(lab)
    tor = lab.add_hardware_vtep("tor1", ports=("p1",))
    tor.connect(ctl)
    wait_until(lambda: canopy.api.get("/v1/vteps/tor1").json.get("connected"), timeout=30, what="tor1 connected")
    binding = "vtep_bindings:\n  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}\n"
    done = subprocess.run(apply_wait(ctl, 120), input=binding, text=True, capture_output=True, timeout=180)
    bound = tor.bindings("p1")  # at once
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert 100 in bound, (bound, done.stderr)
    assert done.stderr.splitlines()[-1].endswith(": 2/2 switch(es) hold it"), done.stderr
    seq = canopy.api.get("/v1/status").json["seq"]
    assert canopy.api.get("/v1/vteps/tor1").json["programmed_seq"] == seq
