"""Conntrack zones run out past 65,279 policed vports on one switch (ESXi trunks with thousands of VLANs each):
allocate_zones raised in the middle of the programming pass, which failed and was retried forever, every switch
waiting behind it. Now the vports left without a zone are a clean refusal: named once in the log, counted in
GET /v1/status and /metrics, their IP traffic dropped (never let through unpoliced); every other vport keeps its zone
and flows, and a vport arriving on a full switch is the one refused, not an established one (docs/limits.md)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from controller.security import PortPolicy, SecurityView
from controller.zones import LOGGED_UNZONED, ZONE_LIMIT, Local, allocate_zones, zones_status
from openflow import acl, pipeline as p
from openflow.flows import Owner

SESSION = "tcp:10.0.0.1:6640"
ZONES = ZONE_LIMIT - 1  # 65,279
POLICY = PortPolicy((("a1", 5),), False)


def trunk_key(i: int) -> int:
    """The i-th vport of trunks from ofport 100 up, 4,000 VLANs each (ofport << 12 | VLAN)."""
    return (100 + i // 4000) << 12 | (1 + i % 4000)


def full_switch(extra: int) -> Local:
    local = Local()
    for i in range(ZONES + extra):
        local.put(f"v{i:06d}", SESSION, trunk_key(i), POLICY)
    assert local.zones_changed() == {}
    return local


def test_a_switch_past_the_last_zone_refuses_the_vports_left_and_keeps_every_other_zone(caplog):
    caplog.set_level(logging.WARNING, logger="controller.security")
    local = full_switch(25)
    zones = local.zones[SESSION]
    assert len(zones) == ZONES and len(set(zones.values())) == ZONES and all(0 < z < ZONE_LIMIT for z in zones.values())
    refused = local.refused()[SESSION]
    assert len(refused) == 25 and refused == [f"v{i:06d}" for i in range(ZONES, ZONES + 25)]  # the highest keys
    assert all(local.zone(SESSION, trunk_key(i)) is None for i in range(ZONES, ZONES + 25))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"switch {SESSION}: 25 policed vports got no conntrack zone (over 65,279 on one switch), "
                           f"their IP traffic is dropped: v{ZONES:06d}, ") and line.endswith(" and 5 more"), line
    status = zones_status(SimpleNamespace(security=SimpleNamespace(local=local)))
    assert status["count"] == 25 and status["switches"][SESSION]["count"] == 25
    assert len(status["switches"][SESSION]["vports"]) == LOGGED_UNZONED

    # a pass that changes nothing there: the same zones, nothing logged again
    caplog.clear()
    local.drop("v000000")
    local.put("v000000", SESSION, trunk_key(0), POLICY)
    assert local.zones_changed() == {} and local.zones[SESSION] == zones and not caplog.records


def test_a_vport_arriving_on_a_full_switch_is_refused_and_one_leaving_gives_its_zone_to_a_refused_one(caplog):
    caplog.set_level(logging.WARNING, logger="controller.security")
    local = full_switch(0)
    before = dict(local.zones[SESSION])
    assert not local.refused() and not caplog.records
    low = (16 << 12) | 7  # lower than every key there: it would have taken a zone first, from scratch
    local.put("newcomer", SESSION, low, POLICY)
    assert local.zones_changed() == {}  # no established vport moved
    assert local.zones[SESSION] == before and local.refused() == {SESSION: ["newcomer"]}
    assert len(caplog.records) == 1 and "1 policed vports got no conntrack zone" in caplog.records[0].getMessage()
    local.drop("v000003")
    moved = local.zones_changed()
    assert not local.refused() and local.zone(SESSION, low) is not None
    # back under the limit: the zones are a function of the set again (what a restarted controller computes), and
    # the vports whose zone that changes are compiled again
    assert local.zones[SESSION] == allocate_zones(local.keys[SESSION])
    assert moved[SESSION] == {vid for vid, key in local.ports[SESSION].items()
                              if before.get(key) != local.zone(SESSION, key)}
    assert "newcomer" in moved[SESSION]
    assert caplog.records[-1].getMessage() == f"switch {SESSION}: every policed vport has a conntrack zone again"


def test_a_vport_without_a_zone_has_its_ip_traffic_dropped_and_dhcp_kept():
    local = full_switch(1)
    vid = f"v{ZONES:06d}"
    view = SimpleNamespace(endpoints={vid: SimpleNamespace(key=trunk_key(ZONES))},
                           security=SecurityView(ports={vid: POLICY}, local=local))
    flows, groups = acl.compile_port(view, SimpleNamespace(session=SESSION), Owner("acl_port", vid))
    assert not groups and len(flows) == 3
    dhcp, *drops = flows
    assert dhcp.actions == (("goto", p.SERVICES),)
    assert {(f.table, f.priority, f.actions) for f in drops} == {(p.INGRESS_ACL, 100, ()), (p.EGRESS_ACL, 100, ())}
    zoned = f"v{ZONES - 1:06d}"
    view.endpoints[zoned] = SimpleNamespace(key=trunk_key(ZONES - 1))
    view.security.ports[zoned] = POLICY
    flows, _ = acl.compile_port(view, SimpleNamespace(session=SESSION), Owner("acl_port", zoned))
    assert ("set", p.REG_ZONE, local.zone(SESSION, trunk_key(ZONES - 1))) in flows[1].actions


def test_metrics_count_the_vports_without_a_zone_per_switch(tmp_path):
    from tests.unit.helpers import Controller
    from tests.unit.test_operate import samples, scrape

    ctl = Controller(tmp_path)
    try:
        refused = {SESSION: ["v1", "v2", "v3"], "tcp:10.0.0.2:6640": []}
        ctl.api.metrics.attach(zones=lambda: refused)
        got = samples(scrape(ctl.api))
        name = "canopy_switch_vports_without_conntrack_zone"
        assert got[(name, frozenset({("session", SESSION)}))] == 3
        assert got[(name, frozenset({("session", "tcp:10.0.0.2:6640")}))] == 0
    finally:
        ctl.close()


def test_a_vport_without_a_zone_leaving_is_forgotten_and_the_switch_reported_whole_again(caplog):
    """The refused vport itself leaving changed no zone: its key stayed noted as refused, so /v1/status and /metrics
    kept the switch (count 0, and after the switch went, forever), and the line saying every vport has a zone again
    never came."""
    caplog.set_level(logging.WARNING, logger="controller.security")
    local = full_switch(1)
    assert local.refused() == {SESSION: [f"v{ZONES:06d}"]}
    local.drop(f"v{ZONES:06d}")
    assert local.zones_changed() == {}
    assert local.refused() == {} and local.unzoned == {}
    assert caplog.records[-1].getMessage() == f"switch {SESSION}: every policed vport has a conntrack zone again"
    status = zones_status(SimpleNamespace(security=SimpleNamespace(local=local)))
    assert status == {"count": 0, "switches": {}}


def _walked(local: Local) -> dict:
    """The refused vports as a walk of every switch's vports finds them (the oracle)."""
    return {session: sorted(vid for vid, key in local.ports.get(session, {}).items() if key in keys)
            for session, keys in local.unzoned.items()}


def test_the_refused_vports_are_listed_in_as_many_steps_as_they_not_a_walk_of_the_switchs_vports():
    """GET /v1/status and /metrics ask for the vports without a zone: a walk of every vport of a switch with one
    (65,304 here: 522,575 bytecodes on main at stop 46; 29 now) became an index kept by ``put`` and ``drop``. Counted,
    not timed; the index gives the walk's answer after vports come and go with no pass between and after the pass."""
    from tests.bytecodes import opcodes

    local = full_switch(25)
    assert local.refused() == _walked(local) and len(local.refused()[SESSION]) == 25
    assert opcodes(local.refused) < 100
    status = SimpleNamespace(security=SimpleNamespace(local=local))
    assert opcodes(lambda: zones_status(status)) < 200
    local.drop(f"v{ZONES + 3:06d}")  # a refused vport leaving
    local.put("shares-a-refused-key", SESSION, trunk_key(ZONES + 4), POLICY)
    local.drop("v000007")  # one with a zone leaving
    local.put("v000007", SESSION, trunk_key(7), POLICY)
    assert local.refused() == _walked(local) and "shares-a-refused-key" in local.refused()[SESSION]
    local.zones_changed()
    assert local.refused() == _walked(local) and len(local.refused()[SESSION]) == 25
    local.drop("v000009")  # a zone freed: the lowest refused key takes it
    local.zones_changed()
    assert local.refused() == _walked(local) and len(local.refused()[SESSION]) == 24


def test_the_refused_vports_stay_the_walks_answer_as_vports_move_between_switches_and_zones_free(monkeypatch):
    """review46n: ``refused_vports`` against the walk (``_walked``) after every step of seeded sequences of vports
    put (moved to the other switch or to another key: dropped and put, as viewowners does), dropped (a zone freed, a
    switch left with none) and passes, on switches of 11 zones (ZONE_LIMIT patched) so that trunk keys run out. A
    twin paced at every unit (controller/zones.py's C loops in runs of one item, ``_c_runs``; branch perf47) ends each
    pass with the same zones, refused vports and moved vports as one paced never."""
    import random

    from controller import zones
    from controller.pacer import Pacer

    monkeypatch.setattr(zones, "ZONE_LIMIT", 12)
    monkeypatch.setattr(zones, "C_PER_UNIT", 1)  # (the twin's C loops in runs of one item: their seams everywhere)
    refused_seen = 0
    for seed in range(200):
        rnd, local, paced = random.Random(seed), Local(), Local()
        for _ in range(60):
            vid, roll = f"v{rnd.randrange(40)}", rnd.random()
            if roll < 0.85:
                local.drop(vid), paced.drop(vid)
            if roll < 0.7:
                trunk = (100 + rnd.randrange(3)) << 12 | rnd.randrange(1, 9)
                key = rnd.randrange(1, 12) if rnd.random() < 0.2 else trunk
                session = rnd.choice(("s1", "s2"))
                local.put(vid, session, key, POLICY), paced.put(vid, session, key, POLICY)
            elif roll >= 0.85:
                assert paced.zones_changed(Pacer(None, 1)) == local.zones_changed(), seed
            assert local.refused() == _walked(local), seed
            assert (paced.zones, paced.refused()) == (local.zones, local.refused()), seed
            refused_seen += sum(map(len, local.refused().values()))
    assert refused_seen > 1000  # the sequences do run switches out of zones


def test_a_change_on_a_switch_past_the_zone_limit_pauses_within_the_budget_and_shows_no_half_change():
    """A switch with trunk keys is allocated again whole at each change of its keys, and past the zone limit its
    vports were walked again for those whose zone moved and those refused: one vport leaving a switch of 65,304 was
    one stretch of the programming pass (13,377,167 bytecodes on main at stop 46). Now paced with the pass's pacer
    (controller/app.py: ``loop_pacer``), counted with a clock of bytecodes at a quarter of a CPU
    (tests/unit/test_paced_wiring.py ``Stretches``): each stretch within the budget and one check's units. During
    the pauses the switch's zones and refused vports are still those before the change; after it, the walk's."""
    from controller.pacer import EVERY, NEVER, loop_pacer
    from tests.bytecodes import opcodes
    from tests.unit.test_paced_wiring import LOADED_BUDGET, Stretches

    local = full_switch(25)
    local.drop("v000009")  # a zone freed: the lowest refused key takes it
    unpaced = copy_of(local)
    whole = opcodes(lambda: unpaced.zones_changed(NEVER))
    zones, refused = local.zones[SESSION], local.refused()
    stretches, seen = Stretches(), []
    pause = stretches.pause

    def checked_pause():
        seen.append(local.zones[SESSION] is zones and local.refused_vports[SESSION] == set(refused[SESSION]))
        pause()

    stretches.pause = checked_pause
    pacer = stretches.bind(loop_pacer(stretches.pause, EVERY))
    moved = {}
    longest = stretches.run(lambda: moved.update(local.zones_changed(pacer)))
    assert whole > 50 * LOADED_BUDGET, whole
    assert longest < LOADED_BUDGET + 10_000 and stretches.pauses > 100, (longest, stretches.pauses)
    assert seen and all(seen)
    assert local.zones[SESSION] == allocate_zones(local.keys[SESSION], zones) and local.refused() == _walked(local)
    assert len(local.refused()[SESSION]) == 24 and f"v{ZONES:06d}" in moved[SESSION]


def copy_of(local: Local) -> Local:
    """A ``Local`` holding what ``local`` holds (its own dicts, sets and counters): the same change counted twice."""
    import copy

    return copy.deepcopy(local)
