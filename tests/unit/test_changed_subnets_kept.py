"""``LiveView.changed_subnets`` kept as the batched swaps go (controller/viewbatch.py ``_subnets_changed``) and worked
out again after a ``_swap``: on the random worlds of tests/unit/test_view_batch_world.py (ports gone and bound in bulk,
moves, subnet changes, events in a pass's pauses) and of the EVPN MACs withdrawn in bulk (test_view_evpn_gone.py),
every answer is the subnets of the endpoints in ``changed`` as they were and are, worked out from scratch; and the
kept set is read (not worked out again) in some of those passes."""

from __future__ import annotations

from itertools import chain

import pytest

from controller.viewdelta import LiveView
from tests.unit import test_view_batch_world as batch_world
from tests.unit import test_view_evpn_gone


def from_scratch(live) -> set:
    return {ep.subnet_id for ep in chain.from_iterable(live.changed.values()) if ep is not None}


@pytest.fixture
def checked(monkeypatch) -> dict:
    """Every ``changed_subnets`` answer compared with ``from_scratch``; counts those read from the kept set."""
    kept_answers = {"kept": 0}
    real = LiveView.changed_subnets

    def compared(self):
        kept_answers["kept"] += self.changed_sids is not None
        answer = real(self)
        assert answer == from_scratch(self)
        return answer
    monkeypatch.setattr(LiveView, "changed_subnets", compared)
    return kept_answers


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("inside", [False, True], ids=["quiet", "events in pauses"])
def test_changed_subnets_kept_equal_those_worked_out_from_scratch(seed, inside, monkeypatch, checked):
    batch_world.run(seed, 30, monkeypatch, inside)
    assert checked["kept"]


@pytest.mark.parametrize("seed", range(3))
def test_changed_subnets_kept_through_evpn_macs_withdrawn_in_bulk(seed, monkeypatch, checked):
    test_view_evpn_gone.passes(seed, True, monkeypatch)
    assert checked["kept"]
