"""Received EVPN routes withdrawn (evpn_routes' receive_withdraw): what a withdrawn MAC costs on the way from the
import to the View, counted (deterministic, no clock). That the results are right is the oracles' (test_importer's
import from scratch, test_incremental_oracle's full recompute; assert_matches_full here)."""

from __future__ import annotations

from unittest.mock import patch

import bgp.importer
from bgp.importer import RouteImport
from bgp.routes import MacIpRoute
from controller import derive as derive_module
from controller import remote as remote_module
from controller.remote import RemoteDelta, RemoteMac
from tests.unit.test_evpn import setup_view

from .test_compiler import assert_matches_full
from .test_incremental_reach import remote_macs_world, world


def test_a_withdrawn_macs_group_is_not_merged_again():
    """A (subnet, MAC) whose last route went has nothing to merge: the import drops its winner without calling the
    merge (10,000 withdrawals: 10,000 merges of nothing, then sorted nothing)."""
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")
    importer = RouteImport(state.policy)
    routes = [MacIpRoute(rd="10.251.0.9:1", mac=f"02:aa:00:00:00:{i:02x}", l2_vni=web["vni"], next_hop="10.251.0.9",
                         route_targets=tuple(web["import_rts"])) for i in range(50)]
    importer.apply({("p", route.key): route for route in routes})
    held = set(importer.table().macs)
    merged = []
    real = bgp.importer._merged
    with patch.object(bgp.importer, "_merged", lambda *a: merged.append(a[0]) or real(*a)):
        delta = importer.apply({("p", route.key): None for route in routes})
    assert merged == [] and delta.removed == held and not delta.added
    assert importer.table().macs == () and importer.imported == 0 and not importer.tally().used_at


def test_a_route_sent_again_keeps_the_winner_state_holds_so_its_withdrawal_is_that_object():
    """A peer sending its routes again (a route refresh, a session back): each MAC merged anew equals its winner, and
    the import keeps the winner it gave State, not an equal copy: the MAC's withdrawal later hands State the very
    object it holds (found by identity, not compared field by field)."""
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")
    importer = RouteImport(state.policy)
    routes = [MacIpRoute(rd="10.251.0.9:1", mac=f"02:aa:00:00:00:{i:02x}", ip=f"10.0.1.{100 + i}", l2_vni=web["vni"],
                         next_hop="10.251.0.9", route_targets=tuple(web["import_rts"])) for i in range(20)]
    given = importer.apply({("p", route.key): route for route in routes}).added
    again = importer.apply({("p", route.key): MacIpRoute(**vars(route)) for route in routes})  # equal, new objects
    assert not again and importer.imported == 20
    gone = importer.apply({("p", route.key): None for route in routes})
    assert gone.removed == given and {id(mac) for mac in gone.removed} == {id(mac) for mac in given}


def test_a_pass_withdrawing_remote_macs_hashes_no_endpoint_and_finds_each_mac_by_identity():
    """A pass withdrawing 200 remote MACs: the owners to recompile are gathered by endpoint identity (an Endpoint's
    hash is its eleven fields', in Python), and State's remote index finds each withdrawn MAC as the object it holds
    (the delta's), not by comparing every field of a frozen dataclass; the result is a full recompute's."""
    state, prog, web, _, many = remote_macs_world()
    hashed, compared = [], []
    real_hash, real_eq = derive_module.Endpoint.__hash__, remote_module.RemoteMac.__eq__
    with patch.object(derive_module.Endpoint, "__hash__", lambda ep: hashed.append(ep) or real_hash(ep)), \
            patch.object(remote_module.RemoteMac, "__eq__",
                         lambda a, b: compared.append(isinstance(b, RemoteMac)) or real_eq(a, b)):
        state.remote_changed(RemoteDelta(removed=frozenset(many)))
        prog.refresh()
    assert hashed == [] and not any(compared)
    assert not state.remote_index.subnet_macs(web["id"]) and web["id"] not in prog.live.ev
    assert_matches_full(prog)
