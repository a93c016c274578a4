"""A subnet whose broadcast passes one of Open vSwitch's limits on a switch is reported (openflow/floodlimits.py,
docs/limits.md): what its flood groups reach is read from the groups whatever their form (plain, split into parts on
either side), the limits are Open vSwitch's (4,096 resubmits: 4 + 2 x local ports + VTEPs on the userspace datapath;
~780 VTEPs of 64 kB datapath actions), a crossing is logged once as a warning and once back under, and the
programmer keeps the report current incrementally as a full recompute finds it (GET /v1/status, the subnet's and the
switch's REST views, /metrics)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from controller.programmer import Programmer
from openflow import floodlimits, floods
from openflow.flows import Owner
from tests.unit import pipeline_case as case
from tests.unit.test_oversized_group import local, remote

EVERYONE, LOCAL_ONLY = floods.group_ids(10_000)
OWNER = Owner("subnet", "s")


@pytest.mark.parametrize("locals_, remotes", [
    (0, 0), (1, 0), (0, 1), (3, 2), (1000, 0), (999, 1), (1001, 0), (1000, 1), (500, 501), (2047, 0), (2001, 3),
    (1999, 2), (0, 781), (0, 1001), (5000, 999), (5000, 1000), (16_000, 0)])
@pytest.mark.parametrize("size", [floods.PART_BUCKETS, 7])
def test_what_a_subnets_flood_groups_reach_is_read_from_them_in_every_form(locals_, remotes, size):
    groups = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(locals_))),
                                 tuple(map(remote, range(remotes))), OWNER, size)
    if (locals_ + remotes) // size <= floods.MAX_PARTS:  # (past 15 parts the last holds the rest: the same sums)
        assert floodlimits.reach(groups) == (locals_, remotes)
    assert floodlimits.reach(()) == (0, 0)


@pytest.mark.parametrize("locals_, remotes, limits", [
    (2046, 0, ()), (2047, 0, ("resubmits",)), (2000, 92, ()), (2000, 93, ("resubmits",)),
    (0, 780, ()), (0, 781, ("datapath_actions",)), (1800, 781, ("resubmits", "datapath_actions"))])
def test_the_limits_are_open_vswitchs_as_measured_on_the_userspace_datapath(locals_, remotes, limits):
    """docs/limits.md: at 2,046 local ports a broadcast is flooded, at 2,047 dropped whole; 2,000 local ports and 92
    VTEPs flooded to all, the 93rd VTEP none; 780 VTEPs each get a copy (the 64 kB cap, measured at ~780)."""
    assert floodlimits.passed(locals_, remotes) == limits


def test_a_crossing_is_logged_once_as_a_warning_and_once_back_under(caplog):
    watch = floodlimits.FloodWatch()
    small = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(10))), (), OWNER)
    big = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(2047))), (), OWNER)
    wide = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(2047))),
                               tuple(map(remote, range(800))), OWNER)
    with caplog.at_level(logging.INFO, logger="canopy.floods"):
        watch.check("s1", "s", small)
        assert watch.over == {} and caplog.records == []
        for _ in range(3):
            watch.check("s1", "s", big)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "4 + 2 x 2,047 local ports + 0 VTEPs is over Open vSwitch's 4,096 resubmits: a broadcast is dropped " \
               "whole" in caplog.records[0].getMessage()
        watch.check("s1", "s", wide)  # a second limit passed: said once more
        assert [r.levelname for r in caplog.records] == ["WARNING"] * 2 and watch.crossings == 2
        assert "800 VTEPs are over the ~780" in caplog.records[1].getMessage()
        assert watch.status() == {"count": 1, "crossings": 2, "over": [
            {"chassis": "s1", "subnet": "s", "local_ports": 2047, "vteps": 800,
             "passed": ["resubmits", "datapath_actions"]}], "more": 0}
        watch.check("s1", "s", big)  # one limit left: nothing new to say
        watch.check("s1", "s", small)
        assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"] and watch.over == {}
        watch.check("s1", "s", big)
        watch.forget("s1")
        assert watch.over == {} and watch.crossings == 3


def _crowded(state, n):
    """hv1 (s1) with ``n`` more ports of acme/web (kvm vports w0..), and a Programmer refreshed."""
    from controller.store import Change
    policy = state.policy.copy()
    web = state.policy.find("subnet", "acme/main/web") or next(iter(state.policy.all("subnet")))
    changes = []
    for i in range(n):
        vport = dict(next(iter(v for v in state.policy.all("vport") if v["subnet_id"] == web["id"])))
        vport.update(id=f"w{i}", name=f"w{i}", mac=f"02:00:00:0a:{i >> 8:02x}:{i & 255:02x}", ips=[],
                     binding={"flavour": "kvm", "iface_id": f"w{i}"})
        policy.put("vport", vport)
        changes.append(Change("vport", vport["id"], "put", vport, seq=state.last_seq + 1 + i))
    state.policy_committed(policy, changes)
    return web


def test_the_programmer_reports_a_subnet_past_a_limit_incrementally_as_a_full_recompute_does(monkeypatch, caplog):
    """The limit lowered (14 resubmits: acme/web's 4 local ports and 1 VTEP on hv1 take 13) so that a small case
    passes it; each step's report equals a fresh Programmer's full compile."""
    monkeypatch.setattr(floodlimits, "RESUBMITS", 14)
    state = case.build_state()
    prog = Programmer(state)
    prog.refresh()
    web = _crowded(state, 0)
    before = {key for key in prog.floods.over}

    def reference():
        fresh = Programmer(state)
        fresh.refresh(full=True)
        return fresh.floods.over

    assert prog.floods.over == reference()
    snap = state.vrs["s1"]
    added = tuple(case.port(f"tapw{i}", 200 + i, **{"iface-id": f"w{i}"}) for i in range(3))
    assert before == set()
    _crowded(state, 3)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="canopy.floods"):
        state.vrs_update(replace(snap, ports=snap.ports + added))
        prog.refresh()
    warned = [r.getMessage() for r in caplog.records if r.name == "canopy.floods"]
    assert warned == ["subnet acme/web on hv1: its broadcast passes Open vSwitch's limits (docs/limits.md): 4 + 2 x 7 "
                      "local ports + 1 VTEPs is over Open vSwitch's 14 resubmits: a broadcast is dropped whole"]
    assert set(prog.floods.over) == {("s1", web["id"])}
    assert prog.floods.over == reference()
    assert prog.floods.of_subnet(web["id"])[0]["chassis"] == "hv1"
    assert [row["subnet"] for row in prog.floods.of_chassis("hv1")] == [state.policy.ref("subnet", web)]
    state.vrs_update(snap)  # the ports go
    prog.refresh()
    assert ("s1", web["id"]) not in prog.floods.over and prog.floods.over == reference()
    state.vrs_gone("s1")
    prog.refresh()
    assert not any(key[0] == "s1" for key in prog.floods.over)


def test_the_report_shows_in_the_subnets_view_the_status_and_the_metrics(tmp_path):
    """What the app wires (controller/app.py): ``Api.floods`` and the /v1/status part, and the metrics source."""
    from tests.unit.helpers import Controller, demo_net

    ctl = Controller(tmp_path)
    try:
        _, _, subnet = demo_net(ctl)
        watch = floodlimits.FloodWatch(subnet_ref=lambda sid: ctl.state.policy.ref(
            "subnet", ctl.state.policy.get("subnet", sid)))
        ctl.api.floods = watch
        ctl.api.status_parts["flood_limits"] = watch.status
        ctl.api.metrics.attach(floods=watch)
        assert ctl.call("GET", f"/v1/subnets/{subnet['id']}")[1]["flood_limits"] == []
        watch.check("s9", subnet["id"], floods.flood_groups(EVERYONE, LOCAL_ONLY, (), tuple(map(remote, range(781))),
                                                            OWNER))
        row = {"local_ports": 0, "vteps": 781, "passed": ["datapath_actions"]}
        assert ctl.call("GET", f"/v1/subnets/{subnet['id']}")[1]["flood_limits"] == [{"chassis": "s9", **row}]
        assert ctl.call("GET", "/v1/status")[1]["flood_limits"] == {
            "count": 1, "crossings": 1, "over": [{"chassis": "s9", "subnet": "acme/web", **row}], "more": 0}
        assert watch.of_chassis("s9") == [{"subnet": "acme/web", **row}] and watch.of_chassis("s1") == []
        body = ctl.api.metrics.exposition()[0].decode()
        assert 'canopy_subnet_flood_over_limit{chassis="s9",limit="datapath_actions",subnet="acme/web"} 1.0' \
            in body and "canopy_flood_limit_crossings_total 1.0" in body
    finally:
        ctl.close()


def test_a_subnets_and_every_switchs_flood_limits_are_read_in_work_that_grows_with_their_own_pairs():
    """One subnet past ~780 VTEPs is over on every switch of it (800 pairs): a view of another subnet (GET /v1/subnets
    lists 10,000) costs what it costs with none over, and GET /v1/switches asks each session's chassis once, not once a
    switch and pair (review42c: 0.11 s for 1,000 subnet views and 0.17 s for 800 switches in one stretch, before)."""
    from tests.bytecodes import opcodes

    asked = []
    watch = floodlimits.FloodWatch(chassis_of=lambda session: asked.append(session) or f"hv-{session}")
    wide = floods.flood_groups(EVERYONE, LOCAL_ONLY, (), tuple(map(remote, range(781))), OWNER)
    costs = {}
    for n in (1, 800):
        for i in range(len(watch.over), n):
            watch.check(f"s{i}", "big", wide)
        costs[n] = opcodes(lambda: watch.of_subnet("other"))
    assert costs[800] == costs[1], costs
    assert len(watch.of_subnet("big")) == 800 and watch.of_subnet("other") == []
    asked.clear()
    rows = watch.by_chassis()
    assert [watch.of_chassis(f"hv-s{i}", rows) for i in range(800)] == [
        [{"subnet": "big", "local_ports": 0, "vteps": 781, "passed": ["datapath_actions"]}]] * 800
    assert len(asked) == 800  # (before: 640,000)
    watch.forget("s7")
    watch.retake({})
    assert watch.over == {} and watch.sessions_of == {} and watch.subnets_on == {}


def test_the_status_lists_the_first_pairs_over_and_counts_the_rest():
    """One subnet past ~780 VTEPs on 800 switches: GET /v1/status lists STATUS_OVER pairs (the first by switch session
    and subnet id) and ``more`` for the rest (review42c: all 800, uncapped); the subnet's own view lists them all."""
    watch = floodlimits.FloodWatch(chassis_of=lambda session: f"hv-{session}")
    wide = floods.flood_groups(EVERYONE, LOCAL_ONLY, (), tuple(map(remote, range(781))), OWNER)
    for i in range(800):
        watch.check(f"s{i:03d}", "big", wide)
    status = watch.status()
    assert status["count"] == 800 and status["more"] == 800 - floodlimits.STATUS_OVER
    assert [row["chassis"] for row in status["over"]] == [f"hv-s{i:03d}" for i in range(floodlimits.STATUS_OVER)]
    assert len(watch.of_subnet("big")) == 800
    assert len(watch.rows()) == 800 and watch.rows()[:floodlimits.STATUS_OVER] == status["over"]
    from controller.metrics import _floods  # /metrics: a series for every pair, not only those the status lists
    gauge, _crossings = _floods(watch)
    assert len(gauge.samples) == 800


def test_a_subnet_removed_from_a_switch_is_logged_as_removed_not_as_within_the_limits(caplog):
    """A subnet over a limit whose flood groups went from the switch (the subnet deleted, or its last port there gone)
    is said to be removed (review42c: "within Open vSwitch's limits again (0 local ports, 0 VTEPs)"); one whose
    groups shrank under the limit is still said to be within the limits again."""
    watch = floodlimits.FloodWatch()
    big = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(2047))), (), OWNER)
    small = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(10))), (), OWNER)
    with caplog.at_level(logging.INFO, logger="canopy.floods"):
        watch.check("s1", "s", big)
        watch.check("s1", "s", ())
        watch.check("s1", "t", big)
        watch.check("s1", "t", small)
    said = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert said == ["subnet s on s1: removed from the switch (the subnet deleted, or its last port there gone): off "
                    "the flood-limit report",
                    "subnet t on s1: its broadcast is within Open vSwitch's limits again (10 local ports, 0 VTEPs)"]
    assert watch.over == {}


def test_a_pair_still_over_after_a_restart_is_warned_of_once_more(caplog):
    """The report is kept in memory only (docs/limits.md): a restarted controller's first compile warns once of each
    pair still over (its log says what passes a limit now), then nothing more while nothing changes."""
    big = floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(2047))), (), OWNER)
    with caplog.at_level(logging.WARNING, logger="canopy.floods"):
        for _process in range(2):
            watch = floodlimits.FloodWatch()
            for _ in range(3):
                watch.check("s1", "s", big)
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 2
