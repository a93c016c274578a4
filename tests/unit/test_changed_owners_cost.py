"""A switch's owners that changed between two desired states (controller/programmer.py ``_changed_owners``), counted
in Python bytecodes (tests/bytecodes.py: a count, not a time): a switch compiled whole (it connected) compared its
thousands of owners in Python, twice (those that came or went; those whose set is another object), one stretch of
the programming pass that grew with the world: 10-12 ms of CPU in vrs_scale's cold start and restart (the owners of
5,000 remote vports on each of 50 switches). Now C loops find them, and Python runs per owner found only."""

from __future__ import annotations

from controller.pacer import Pacer
from controller.programmer import _changed_owners
from openflow.compiler import Desired
from openflow.flows import Owner
from tests.bytecodes import opcodes


def _desired(count: int, changed: int = 0, like: Desired | None = None) -> Desired:
    """``count`` owners with a flow set each (those of ``like``, the same objects, but for its first ``changed``)."""
    flows = {}
    for n in range(count):
        owner = Owner("vport", f"v{n}")
        kept = like.flows.get(owner) if like is not None and n >= changed else None
        flows[owner] = kept if kept is not None else frozenset({("flow", n, changed)})
    return Desired(flows=flows, groups={})


def test_a_switch_compiled_whole_costs_the_same_at_1000_and_10000_owners():
    # a pacer of its own: the shared NEVER's count, left by other tests, may reach a pause's reset in one run only
    costs = {n: opcodes(lambda n=n: _changed_owners(None, _desired_now[n], {}, Pacer())) for n in (1_000, 10_000)}
    assert costs[1_000] == costs[10_000] < 400, costs  # main (017c55f6): 31,206 and 310,206


def test_owners_changed_among_10000_cost_what_they_are_not_what_the_switch_holds():
    before = _desired(10_000)
    after = _desired(10_000, changed=5, like=before)
    assert _changed_owners(before, after, {}) == {Owner("vport", f"v{n}") for n in range(5)}
    gone = Desired(flows={o: f for o, f in after.flows.items() if o != Owner("vport", "v9")}, groups={})
    assert _changed_owners(after, gone, {}) == {Owner("vport", "v9")}
    assert _changed_owners(gone, after, {}) == {Owner("vport", "v9")}
    cost = opcodes(lambda: _changed_owners(before, after, {}))
    assert cost < 1_000, cost  # main (017c55f6): 130,456


_desired_now = {n: _desired(n) for n in (1_000, 10_000)}


def test_the_count_is_the_same_whatever_ticked_the_shared_pacer_before():
    """``_changed_owners`` without a pacer ticks ``NEVER``, which every caller without one shares (other tests in the
    same xdist worker): a countdown kept there made the count depend on the ticks before it (234 or 241 bytecodes,
    stop 48). Ticked 0 to ``every`` times before, the count is one."""
    from controller.pacer import NEVER

    costs = set()
    for _ in range(NEVER.every + 1):
        costs.add(opcodes(lambda: _changed_owners(None, _desired_now[10_000], {})))
        NEVER.tick()
    assert len(costs) == 1, costs
