"""``restart.hold_time: 0`` (docs/operations.md "After a restart: the start-up hold"): no start-up hold. A controller
restarted while one of its two hypervisors cannot reach it writes at once: /v1/status says the hold is over because
hold_time is 0 as soon as it answers, and the first pass removes from kvm1 the flows towards VM b, whose kvm2 is not
back (what the hold exists to avoid); once kvm2 reports they are written again and a reaches b. The switches
connected are still remembered with hold_time 0 (the reason would be "no switch was connected before" otherwise),
so a later start with a hold waits for them."""

from __future__ import annotations

import pytest

from tests.integration.test_hold_interrupted import hold
from tests.integration.test_ovsdb_reconnect import in_sync, sent, two_hypervisors
from tests.integration.test_store_guard import tenant_flows

pytestmark = pytest.mark.integration


def test_hold_time_zero_writes_at_once_without_the_switches_not_back(lab):
    ctl, canopy, kvm1, kvm2, vm_a = two_hypervisors(lab, {"restart": {"hold_time": 0}})
    assert hold(canopy)["state"] == "synced" and hold(canopy)["hold_time"] == 0
    flows = tenant_flows(kvm1)
    canopy.stop()
    away = ("OUTPUT", "-p", "tcp", "-d", ctl.ip, "-j", "DROP")  # kvm2 cannot reach the controller
    assert kvm2.exec("iptables", "-A", *away).returncode == 0
    try:
        canopy.start()
        status = hold(canopy)  # its first answer: no hold; the reason says it remembers switches (with none
        assert (status["state"], status["message"]) == ("synced", "hold_time is 0"), status  # "no switch was ...")
        lab.wait_until(lambda: in_sync(canopy, (kvm1,)) and sent(canopy, (kvm1,))["kvm1"]["flow_delete"] > 0,
                       timeout=30, what="kvm1 written without kvm2's VM")
        assert "02:00:00:00:01:02" not in "\n".join(tenant_flows(kvm1)), "b's flows stayed on kvm1"
    finally:
        kvm2.exec("iptables", "-D", *away)
    lab.wait_until(lambda: in_sync(canopy, (kvm1, kvm2)) and tenant_flows(kvm1) == flows, timeout=60,
                   what="b's flows back on kvm1 once kvm2 reported")
    lab.wait_until(lambda: vm_a.ping("10.0.1.12", count=1, timeout=2), timeout=15, what="a reaches b")
    assert "writing to switches: hold_time is 0" in canopy.log_path.read_text()
