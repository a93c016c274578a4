"""The Originator forgetting everything (bgp/originator.py ``forget``: a View built again from scratch, or a publish
that raised) tells the last publish's Origins what it reads a pacer's ``every`` at a time, pausing between
(``_keep_all`` was one unpaused walk of every local endpoint and route); what that Origins says (what unbinding
withdraws meanwhile) stays what it said before, in every pause. A node that no longer originates (an HA standby)
tells it nothing: its hand-over replaces that Origins under the lock."""

from __future__ import annotations

import pytest

from bgp.evpn import originate
from controller import loglimit
from controller.pacer import Pacer
from tests.bytecodes import Bytecodes, opcodes
from tests.unit.test_originator_oracle import _bulk, said

EVERY = 50


class Stretches:
    """A pacer's pause that records the Python bytecodes run since the one before (all frames, traced) and checks
    that the last publish's Origins says what it said before, in every pause."""

    def __init__(self, fed, check=True):
        self.fed, self.origins, self.bytecodes, self.most, self.pauses = fed, fed._origins, Bytecodes(), 0, 0
        self.keys = set(fed.speaker.desired) | set(self.origins._count) | set(self.origins._pins) | \
            set(fed.originator.routes)
        self.vports = set(self.origins._keys_of) | set(fed.originator._eps)
        self.before = said(self.origins, self.keys, self.vports) if check else None

    def pause(self) -> None:
        self.most, self.pauses = max(self.most, self.bytecodes.count), self.pauses + 1
        if self.before is not None and self.origins is self.fed._origins:  # (until the hand-over)
            with self.bytecodes.untraced():  # (the check is not the work: untraced, it costs 1/50 of the time)
                assert said(self.origins, self.keys, self.vports) == self.before
        self.bytecodes.count = 0  # (the check's own bytecodes are the pause's, not the work's)

    def run(self, function) -> int:
        """``function()`` traced; the most bytecodes between two pauses (or before the first, after the last)."""
        self.bytecodes.run(function)
        return max(self.most, self.bytecodes.count)


def forgetting(n: int) -> tuple[int, int]:
    """(the most bytecodes between two pauses, the pauses) of ``forget`` with ``n`` vports bound, each with routes."""
    _state, _prog, fed = _bulk(n, n)
    assert fed.originator.watcher is fed._origins and len(fed.originator.routes) > n
    stretches = Stretches(fed)
    most = stretches.run(lambda: fed.originator.forget(Pacer(stretches.pause, EVERY)))
    assert not fed.originator.routes and said(stretches.origins, stretches.keys, stretches.vports) == stretches.before
    return most, stretches.pauses


def test_forgetting_pauses_every_so_many_whatever_the_endpoints(monkeypatch):
    """3,000 local endpoints: the most bytecodes between two pauses are those of 300 (the walk of everything was
    one stretch: 10 times as long), and the Origins says what it said in every pause."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    small, small_pauses = forgetting(300)
    big, big_pauses = forgetting(3_000)
    assert small_pauses >= 300 // EVERY and big_pauses >= 3_000 // EVERY
    assert big <= small * 1.1, (small, big)


def test_a_publish_that_forgets_everything_tells_the_last_origins_between_pauses(monkeypatch):
    """A View built again from scratch: the publish's forgetting tells the last publish's Origins a pacer's ``every``
    at a time (as dropping and taking do), and the publish ends where the full ``originate`` does."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    n = 1_000
    state, prog, fed = _bulk(n, n)
    origins, told, most = fed._origins, [0], [0]
    real = origins.keep

    def keep(vport_ids=(), keys=()):
        told[0] += len(vport_ids) + len(keys)
        return real(vport_ids, keys)

    def pause():
        most[0], told[0] = max(most[0], told[0]), 0

    origins.keep, fed.pacer = keep, Pacer(pause, EVERY)
    prog.refresh(full=True)  # a new View: the Originator starts from scratch
    fed.publish(prog.view)
    assert fed.speaker.desired == originate(prog.view, state.policy, fed.mobility.seqs)
    assert 0 < max(most[0], told[0]) <= 2 * EVERY, (most, told)


def test_a_demotions_publish_tells_the_last_origins_nothing_and_withdraws_everything(monkeypatch):
    """A node that stops originating (an HA standby): the hand-over replaces the last publish's Origins under the lock,
    so nothing reads it again and the Originator forgets without telling it anything (walking every endpoint into it
    was 167,793 of the publish's 219,433 bytecodes at 1,000, before the speaker withdrew a route)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    n = 1_000
    _state, prog, fed = _bulk(n, n)
    origins, told = fed._origins, []
    origins.keep = lambda vport_ids=(), keys=(): told.append(1)
    fed.originating = False
    cost = opcodes(lambda: fed.publish(prog.view))
    assert fed.speaker.desired == {} and not fed.originator.routes and fed._origins is not origins
    assert len(told) == 0
    assert cost <= 70 * n, cost  # 51,459 at 1,000


@pytest.mark.parametrize("where", ["the Originator's update", "the encoding"])
def test_a_publish_that_raises_forgets_between_pauses_too(where, monkeypatch):
    """A publish that raises partway (a bug; the Originator's ``Clash`` does the same in ``update``) forgets everything
    (the next one starts from scratch): the last publish's Origins is told a pacer's ``every`` at a time there too,
    not in one walk of every local endpoint, and says what it said before in every pause."""
    from bgp.originator import Originator
    from tests.unit.test_evpn import HV1, snapshot

    monkeypatch.setattr(loglimit, "_last_logged", {})
    n = 1_000
    state, prog, fed = _bulk(n, n)
    state.vrs_update(snapshot("hv1", HV1, [(f"vm{i}", 10 + i + (i == 0)) for i in range(n)]))  # one port changes
    prog.refresh()

    def fail(*_args):
        raise RuntimeError("a bug")
    if where == "the encoding":
        monkeypatch.setattr(fed, "_encode", fail)
    else:
        monkeypatch.setattr(Originator, "_prefixes", fail)  # the update's last step
    origins, told, most, total = fed._origins, [0], [0], [0]
    stretches = Stretches(fed)
    real = origins.keep

    def keep(vport_ids=(), keys=()):
        told[0] += len(vport_ids) + len(keys)
        total[0] += len(vport_ids) + len(keys)
        return real(vport_ids, keys)

    def pause():
        most[0], told[0] = max(most[0], told[0]), 0
        stretches.pause()

    origins.keep, fed.pacer = keep, Pacer(pause, EVERY)
    with pytest.raises(RuntimeError):
        fed.publish(prog.view)
    assert not fed.originator.routes and fed._origins is origins
    assert said(origins, stretches.keys, stretches.vports) == stretches.before
    assert total[0] >= 2 * n and max(most[0], told[0]) <= 2 * EVERY + 10, (total, most, told)  # (+ the port's own)


class Stopped(Exception):
    """A pause that raises (as a shutdown's GreenletExit does; tests/unit/test_originator_interleave.py)."""


def test_forgetting_stopped_in_a_pause_keeps_the_rest_at_once_and_drops_everything(monkeypatch):
    """The cleanup of a publish that raised forgets paced as well: when one of its pauses raises too, the rest is kept
    at once and everything dropped all the same (left in place, the next update went on by delta from half of it)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    _state, _prog, fed = _bulk(300, 300)
    stretches = Stretches(fed)

    def pause():
        raise Stopped()
    with pytest.raises(Stopped):
        fed.originator.forget(Pacer(pause, EVERY))
    assert not fed.originator.routes and not fed.originator._eps and fed.originator._view() is None
    assert said(stretches.origins, stretches.keys, stretches.vports) == stretches.before
