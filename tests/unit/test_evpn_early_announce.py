"""Type 2 routes announced as soon as State binds their vports (bgp/early.py, Federation), not after the programming
pass: the route the pass will publish, kept by a publish whose View does not have the vport yet, and only in the
plain case (nothing else new, allowed by the app, Canopy originating)."""

from bgp.evpn import originate
from bgp.mobility import Mobility
from bgp.federation import Federation
from bgp.routes import ANNOUNCE, WITHDRAW, MacIpRoute
from controller.programmer import Programmer
from controller.remote import RemoteMac, RemoteTable
from tests.unit.test_compiler import snapshot
from tests.unit.test_evpn import HV1, HV2, setup_view
from tests.unit.test_evpn_early_withdraw import BookedSpeaker, publish_while_hv1_reports

VM1 = "02:00:00:00:00:01"
WITHOUT_VM1 = {"hv1": [("vm2", 11)], "hv2": [("vm3", 10), ("vm4", 11)]}
WITH_VM1 = [("vm2", 11), ("vm1", 10)]  # hv1's ports once vm1 is plugged in


def published(early=True):
    """vm1 not bound yet; the routes of everything else published; announcing at bind allowed (or not)."""
    state, view = setup_view(WITHOUT_VM1)
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    fed.early = early
    fed.speaker.commands.clear()
    return state, fed


def vm1_type2(routes):
    return {k: r for k, r in routes.items() if isinstance(r, MacIpRoute) and r.mac == VM1}


def the_pass(state, fed):
    view = Programmer(state).derive()
    return view, originate(view, state.policy, Mobility().update(view, state.remote_index))


def test_binding_a_vport_announces_its_route_at_once_as_the_pass_will():
    state, fed = published()
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))  # vm1 plugged in; no programming pass runs
    early = vm1_type2(fed.speaker.desired)
    assert len(early) == 1 and len(fed.speaker.commands) == 1 and fed.speaker.commands[0].startswith(ANNOUNCE)
    view, expected = the_pass(state, fed)
    assert early == vm1_type2(expected)  # the same route the pass makes
    fed.speaker.commands.clear()
    fed.publish(view)
    assert fed.speaker.desired == expected
    assert not any(VM1.upper() in c.upper() for c in fed.speaker.commands)  # not sent again, never withdrawn


def test_unbinding_a_vport_announced_at_bind_withdraws_it():
    state, fed = published()
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    state.vrs_update(snapshot("hv1", HV1, WITHOUT_VM1["hv1"]))
    assert not vm1_type2(fed.speaker.desired) and fed.speaker.commands[-1].startswith(WITHDRAW)


def test_a_publish_whose_view_lacks_the_vport_keeps_its_route_the_next_one_decides():
    """Bound while the pass ran (its View was derived before): that publish keeps the route; a second publish
    without it (its View had the binding and does not announce it) withdraws it."""
    state, fed = published()
    stale = Programmer(state).derive()
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    early = vm1_type2(fed.speaker.desired)
    fed.publish(stale)
    assert vm1_type2(fed.speaker.desired) == early and not any(c.startswith(WITHDRAW) for c in fed.speaker.commands)
    fed.publish(stale)
    assert not vm1_type2(fed.speaker.desired) and fed.speaker.commands[-1].startswith(WITHDRAW)


def test_the_same_view_published_again_keeps_the_route_until_it_takes_the_binding():
    """A LiveView (its ``local_feeds`` tell what it changed) published twice before its pass takes the binding (a
    pass's publish repeated, one stopped after the hand-over): the second keeps the route too, as the View took no
    change since the first (counting publishes, it withdrew the route of a vport still bound, until the next pass:
    tests/unit/test_originator_interleave.py seed 1 with VMs stopping). Once the View has the vport it decides."""
    state, _view = setup_view(WITHOUT_VM1)
    prog = Programmer(state)
    prog.refresh(full=True)
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(prog.view)
    fed.early = True
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))  # bound; the pass that takes it not run yet
    early = vm1_type2(fed.speaker.desired)
    assert len(early) == 1
    fed.speaker.commands.clear()
    for _ in range(3):
        fed.publish(prog.view)
        assert vm1_type2(fed.speaker.desired) == early
    assert not any(c.startswith(WITHDRAW) for c in fed.speaker.commands)
    prog.refresh()  # the pass that takes the binding
    fed.publish(prog.view)
    fed.publish(prog.view)
    assert fed.speaker.desired == originate(prog.view, state.policy, fed.mobility.seqs)
    assert vm1_type2(fed.speaker.desired) == early and not any(c.startswith(WITHDRAW) for c in fed.speaker.commands)


def test_a_vport_bound_while_a_publish_pauses_is_announced_and_kept():
    state, view = setup_view(WITHOUT_VM1)
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    fed.early = True
    assert publish_while_hv1_reports(fed, state, view, WITH_VM1)  # the View lacks vm1: derived before
    assert len(vm1_type2(fed.speaker.desired)) == 1
    assert not any(c.startswith(WITHDRAW) for c in fed.speaker.commands)


def test_nothing_is_announced_at_bind_unless_it_is_the_plain_case():
    state, fed = published(early=False)  # before the first pass hands out, or during the start-up hold
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert not vm1_type2(fed.speaker.desired) and not fed.speaker.commands

    state, fed = published()
    fed.originating = False  # an HA standby
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert not vm1_type2(fed.speaker.desired)

    state, fed = published()
    state.policy_committed(state.policy.copy(), [])  # a commit since the last publish
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert not vm1_type2(fed.speaker.desired)

    state, fed = published()
    web = state.policy.find("subnet", "acme/web")
    state.remote = RemoteTable(macs=(RemoteMac(web["id"], VM1, (), "10.251.0.9", seq=2),))  # a peer has the MAC
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert not vm1_type2(fed.speaker.desired)

    state, fed = published()
    web = state.policy.find("subnet", "acme/web")
    duplicates = fed.mobility.duplicates  # vm1 flagged duplicate (RFC 7432 15.1) while it was here, then unbound
    assert [duplicates.moved((web["id"], VM1), "within") for _ in range(duplicates.max_moves)][-1]
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert not vm1_type2(fed.speaker.desired)  # not announced until the operator clears it

    state, fed = published()
    state.vrs_update(snapshot("hv2", HV2, [("vm3", 10), ("vm4", 11), ("vm1", 12)]))  # bound: a route stands for it
    fed.speaker.commands.clear()
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))  # and on hv1 too: a second location, left to the pass
    assert not fed.speaker.commands


def test_a_node_that_stopped_originating_forgets_what_it_announced_at_bind():
    """Announced at bind, then a standby's publish (not originating), then active again: the first publish must not
    carry the route made from the old context back in; the pass decides from its own View."""
    state, fed = published()
    stale = Programmer(state).derive()  # lacks vm1, as a View derived before the binding would
    state.vrs_update(snapshot("hv1", HV1, WITH_VM1))
    assert vm1_type2(fed.speaker.desired)
    fed.originating = False
    fed.publish(stale)
    fed.originating = True
    fed.publish(stale)
    assert not vm1_type2(fed.speaker.desired)


def test_vports_of_one_subnet_bound_together_share_their_routes_fields_worked_out_once():
    """20 vports of subnet web bound by one report on hv1: each announced at bind as the pass will make it, and what
    their routes share (RD, VNIs, next hop, route targets, Router's MAC) worked out once for the 20 (was: once per
    vport, 10,000 times for 10,000 ports bound)."""
    from unittest.mock import patch

    from bgp import evpn
    from tests.unit.test_compiler import add_vport
    from tests.unit.test_evpn import place

    state, _ = setup_view(WITHOUT_VM1)
    extra = [(f"vm{n}", 100 + n) for n in range(10, 30)]
    for name, _ofport in extra:
        add_vport(state, "acme/web", name, f"02:00:00:00:01:{int(name[2:]):02x}", f"10.0.1.{int(name[2:])}")
    view = place(state, WITHOUT_VM1)
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    fed.early = True
    with patch.object(evpn, "_shared_fields", wraps=evpn._shared_fields) as shared:
        state.vrs_update(snapshot("hv1", HV1, WITHOUT_VM1["hv1"] + extra))
    assert shared.call_count == 1
    _, expected = the_pass(state, fed)
    macs = {f"02:00:00:00:01:{n:02x}" for n in range(10, 30)}
    early = {k: r for k, r in fed.speaker.desired.items() if isinstance(r, MacIpRoute) and r.mac in macs}
    assert len(early) == 20 and early == {k: r for k, r in expected.items() if k in early}
