"""A type 3 route the Originator makes again equal to the one it holds is not told to the speaker again
(bgp/originator.py ``_multicast``): compared by value, not by identity, so a route built anew after the route cache
(``bgp.evpn._BUILT``) was cleared (it is at 262,144 routes) is no change."""

from __future__ import annotations

import bgp.evpn
from bgp.evpn import originate
from controller import loglimit
from tests.unit.test_mobility_oracle import local_macs, one_port_changed
from tests.unit.test_originator_oracle import publishing_by_delta


def test_an_equal_type_3_route_built_after_the_route_cache_was_cleared_is_not_told_again(monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    state, prog = local_macs(20)
    fed = publishing_by_delta(state, prog, "vm1")
    multicast = {key for key in fed.speaker.desired if key[0] == 3}
    told, speaker = [], fed.speaker
    for way in ("announce", "withdraw"):
        real = getattr(speaker, way)
        monkeypatch.setattr(speaker, way, lambda items, real=real: told.extend(items) or real(items))
    assert multicast
    bgp.evpn._BUILT.clear()  # full: every route is built anew from here
    one_port_changed(state, prog, "vm1")
    fed.publish(prog.view)
    assert fed.speaker.desired == originate(prog.view, state.policy, fed.mobility.seqs)
    assert told and not set(told) & multicast, told
