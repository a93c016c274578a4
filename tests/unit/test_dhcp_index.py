"""The DHCP service finds the vport of a packet-in from its cookie through an index, never by going
through the switch's flows (openflow/dhcp_service.py)."""

from openflow.flows import Owner
from tests.unit.test_bare_metal import HOSTS, VM_PORT, dhcp_service, setup
from tests.unit.test_dhcp import dhcp_payload, frame


class NoScan(dict):
    """A switch's desired flows by owner that may be looked up by owner but not gone through."""

    def _refuse(self, *args):
        raise AssertionError("the DHCP service went through the switch's flows")

    items = values = keys = __iter__ = _refuse


def vport_punt_cookie(prog, session, vport_id):
    return next(f.cookie for f in prog.desired[session].flows[Owner("vport", vport_id)]
                if ("output", "controller") in f.actions)


def test_a_vm_is_answered_through_the_index_without_going_through_the_flows():
    state, prog = setup()
    vm1 = state.policy.find("vport", "acme/web/vm1")
    cookie = vport_punt_cookie(prog, "hv1", vm1["id"])
    desired = prog.desired["hv1"]
    desired.flows = NoScan(desired.flows)
    service = dhcp_service(state, prog)
    dpid = int(HOSTS["hv1"][0][-1])
    for _ in range(2):  # first through the owner-hint index, then remembered
        answer = service.answer(dpid, cookie, frame(dhcp_payload(mac=vm1["mac"]), src_mac=vm1["mac"]))
        assert answer is not None and "10.0.1.11" in answer.summary
        assert answer.actions[-1] == ("output", VM_PORT)


def test_a_cookie_of_another_switch_or_a_removed_flow_is_not_answered():
    state, prog = setup()
    vm1 = state.policy.find("vport", "acme/web/vm1")
    cookie = vport_punt_cookie(prog, "hv1", vm1["id"])
    service = dhcp_service(state, prog)
    request = frame(dhcp_payload(mac=vm1["mac"]), src_mac=vm1["mac"])
    assert service.answer(int(HOSTS["hv2"][0][-1]), cookie, request) is None  # hv2 holds no such flow
    assert service.answer(int(HOSTS["hv1"][0][-1]), cookie, request) is not None
    del prog.desired["hv1"].flows[Owner("vport", vm1["id"])]  # the remembered owner no longer holds it
    assert service.answer(int(HOSTS["hv1"][0][-1]), cookie, request) is None
