"""A flow two owners share through a 20-bit hint collision (openflow/installed.py ``OwnersByBits``: one key, one flow
on the switch) is listed once, naming both owners: ``owner`` and ``shared_with``, in ``FlowBook.listing`` and in
``GET /v1/switches/{dpid}/flows``, whose ``?owner=`` finds it under either."""

import json
from types import SimpleNamespace

import pytest

from controller.derive import SwitchInfo, View
from controller.rest import dataplane as rest_dataplane
from controller.rest.api import Api
from controller.rest.wire import Request
from openflow.compiler import Desired
from openflow.flows import Owner
from openflow.installed import FlowBook, shared_flows
from tests.unit.helpers import Controller
from tests.unit.test_installed import A, _reconciler, colliding_owners, flows_of

SHARED, OWN_A, OWN_B = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def twins():
    """Two colliding owners: a wants the shared flow and one of its own, b the shared flow and one of its own."""
    a, b = colliding_owners()
    return a, b, {a: flows_of(a, SHARED, OWN_A), b: flows_of(b, SHARED, OWN_B), A: flows_of(A, OWN_A + "0")}


def test_shared_flows_names_the_owners_of_each_flow_they_share():
    a, b, desired = twins()
    [shared] = {f.key for f in flows_of(a, SHARED)}
    assert shared_flows(desired) == {shared: tuple(sorted((a, b)))}
    assert shared_flows({a: desired[a], A: desired[A]}) == {}


def test_the_book_lists_a_shared_flow_once_with_the_owners_that_want_it_or_hold_it():
    a, b, desired = twins()
    [shared] = {f.key for f in flows_of(a, SHARED)}
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({})
    book.applied(book.plan())
    rows, sharers = book.listing()
    assert [key for key, _, _ in rows].count(shared) == 1 and sharers == {shared: tuple(sorted((a, b)))}
    book.set_desired({**desired, b: flows_of(b, OWN_B)}, changed={b})  # b no longer wants it: a alone
    assert book.listing()[1] == {}
    book.set_desired({A: desired[A]}, changed={a, b})  # neither wants it; both still hold it until the plan is sent
    assert book.listing()[1] == {shared: tuple(sorted((a, b)))}


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def listing(ctl, programmer, reconcilers, query=None) -> list[dict]:
    api = Api(ctl.service, ctl.state, ctl.settings,
              extra_routes=rest_dataplane.routes(ctl.state, programmer, lambda: reconcilers))
    resp = api.handle(Request("GET", "/v1/switches/000000000000000a/flows", query or {}, {}, b"", "127.0.0.1"))
    assert resp.status == 200, resp.encoded()
    return json.loads(resp.encoded())["flows"]


def one_switch() -> View:
    """A View holding switch s1 (datapath id 0xA), as derived from scratch."""
    return View(switches={"s1": SwitchInfo("s1", 0xA, "hv1", "10.0.0.1", 99)})


@pytest.mark.parametrize("connected", [True, False], ids=["reconciler", "over-ovsdb-only"])
def test_the_rest_listing_names_both_owners_of_a_shared_flow(ctl, connected):
    a, b, desired = twins()
    [shared] = flows_of(a, SHARED)
    programmer = SimpleNamespace(view=one_switch(),
                                 desired={"s1": Desired(flows=desired)})
    reconcilers = {}
    if connected:
        rec = reconcilers[0xA] = _reconciler(0xA)
        rec.set_desired_owners(desired, (), None)
        rec._book.read_back({})
        rec._book.applied(rec._book.plan())
    flows = listing(ctl, programmer, reconcilers)
    rows = [f for f in flows if int(f["cookie"], 16) == shared.cookie]
    assert len(rows) == 1 and len(flows) == 4  # one flow on the switch for both
    [row] = rows
    named = [row["owner"], *row["shared_with"]]
    assert sorted((o["kind"], o["id"]) for o in named) == sorted((a, b)) and all("ref" in o for o in named)
    assert all(f["shared_with"] == [] for f in flows if f is not row)
    for twin in (a, b):
        mine = listing(ctl, programmer, reconcilers, {"owner": twin.id})
        assert len(mine) == 2 and row in mine  # its own flow and the shared one, under either owner


def test_a_switch_known_over_ovsdb_only_lists_its_flows_as_a_connected_one(ctl):
    """The same fields, the same cookie text (16 hex digits: scripts compare it) and the same owner named for a flow
    two owners share (the first), whether the switch is connected or known over OVSDB only: they differ only in what
    is installed."""
    a, b, desired = twins()
    programmer = SimpleNamespace(view=one_switch(),
                                 desired={"s1": Desired(flows=desired)})
    rec = _reconciler(0xA)
    rec.set_desired_owners(desired, (), None)
    rec._book.read_back({})
    rec._book.applied(rec._book.plan())
    connected, known = listing(ctl, programmer, {0xA: rec}), listing(ctl, programmer, {})
    assert [{**row, "installed": False} for row in connected] == known
    assert all(len(row["cookie"]) == 18 for row in known)


def test_a_switch_known_over_ovsdb_only_is_listed_with_pauses(ctl, monkeypatch):
    """Its rows are collected, sorted and described with a pause every LIST_EVERY flows or so (CHUNK at a time), as
    a connected switch's: 3,000 flows were described in one stretch."""
    from openflow import flows as flows_module
    from openflow.installed import CHUNK

    owners = [Owner("vport", f"v{i}") for i in range(1000)]
    desired = {o: flows_of(o, *(f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}" for n in range(3 * i, 3 * i + 3)))
               for i, o in enumerate(owners)}
    programmer = SimpleNamespace(view=one_switch(),
                                 desired={"s1": Desired(flows=desired)})
    described, stretches = [0], []
    render = flows_module.render_flow

    def counted(flow):
        described[0] += 1
        return render(flow)

    def pause():
        stretches.append(described[0])
        described[0] = 0

    monkeypatch.setattr(flows_module, "render_flow", counted)
    api = Api(ctl.service, ctl.state, ctl.settings,
              extra_routes=rest_dataplane.routes(ctl.state, programmer, lambda: {}, pause=pause))
    resp = api.handle(Request("GET", "/v1/switches/000000000000000a/flows", {}, {}, b"", "127.0.0.1"))
    assert resp.status == 200 and json.loads(resp.encoded())["count"] == 3000
    assert sum(stretches) + described[0] == 3000 and max(stretches) <= rest_dataplane.LIST_EVERY + CHUNK, stretches
