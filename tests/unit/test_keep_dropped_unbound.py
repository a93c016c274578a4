"""``Originator._keep_dropped`` passes over the vports the watcher (the last publish's ``Origins``) unbound and their
type 2 keys (bgp/originator.py): what that Origins answers after the Originator's update (``keys_of``, the count behind
each key, whether it is pinned) is what it answers when each is kept as before. On tests/unit/test_originator_
interleave.py's random sequences (ports unbound between passes, vports moving and turning bare metal, interleavings),
a twin of the watcher is told as before (no vport unbound to pass over) and both are compared after every update."""

from __future__ import annotations

import random

from bgp import federation
from bgp.originator import Originator
from bgp.origins import Origins
from controller import loglimit
from tests.unit import test_originator_interleave as interleave
from tests.unit import test_originator_oracle as oracle


class _KeptAsBefore(Origins):
    """An Origins whose vports unbound are not passed over: kept as before."""

    @property
    def unbound_ids(self) -> set:
        return set()


def _twin(origins: Origins) -> _KeptAsBefore:
    twin = _KeptAsBefore(origins._base)
    twin._keys_of = {vid: list(keys) for vid, keys in origins._keys_of.items()}
    twin._count, twin._pins, twin._unbound = dict(origins._count), dict(origins._pins), set(origins._unbound)
    return twin


def _answers(origins: Origins, vids, keys) -> tuple:
    return ({vid: sorted(map(repr, origins._keys(vid))) for vid in vids},
            {key: (origins.behind(key), origins.pinned(key)) for key in keys})


def test_vports_unbound_passed_over_leave_the_watcher_answering_as_when_kept(monkeypatch):
    real_keep, real_update, twins, passed = Originator._keep_dropped, Originator.update, {}, [0]

    def keep_dropped(self, held, pacer):
        watcher = self.watcher
        twin = twins.get(id(watcher), (None, None))[1]
        if twin is not None:
            passed[0] += len(watcher.unbound_ids.intersection(held))
            self.watcher = twin
            try:
                real_keep(self, held, pacer)
            finally:
                self.watcher = watcher
        real_keep(self, held, pacer)

    def update(self, *args):
        if self.watcher is not None and self.watcher.unbound_ids:
            twins[id(self.watcher)] = (self.watcher, _twin(self.watcher))
        try:
            return real_update(self, *args)
        finally:
            for origins, twin in twins.values():
                vids = set(origins._keys_of) | set(twin._keys_of)
                keys = set(origins._count) | set(twin._count) | set(origins._pins) | set(twin._pins)
                assert _answers(origins, vids, keys) == _answers(twin, vids, keys)
            twins.clear()

    def told_too(name):  # what the Originator tells the watcher elsewhere in the update, its twin is told too
        real = getattr(Origins, name)

        def tell(self, *args, **kwargs):
            real(self, *args, **kwargs)
            held = twins.get(id(self))
            if held is not None and held[0] is self:
                real(held[1], *args, **kwargs)
        return tell

    for name in ("keep", "keep_absent"):
        monkeypatch.setattr(Origins, name, told_too(name))
    monkeypatch.setattr(Originator, "_keep_dropped", keep_dropped)
    monkeypatch.setattr(Originator, "update", update)
    for seed in range(4):
        interleave.run(seed, monkeypatch)
    assert passed[0]


def test_a_server_endpoint_under_the_id_of_a_vport_unbound_keeps_its_keys_when_dropped(monkeypatch):
    """A bare-metal server's endpoint (kind "vtep_mac") is known under its vport's id; the watcher may hold that id
    unbound: announced at bind as a hypervisor vport in another subnet (a commit between a View and its publish
    turning it back to KVM and moving it), then its port gone. The random sequences do not reach this, so it is built:
    a world run until the Originator holds a server endpoint with routes (seed 11: b2, behind a hardware VTEP), a key
    of another subnet added for its id and that id unbound, then the server deleted. Its endpoint is not a vport's:
    its type 2 keys (pinned: a server stands behind them) are kept, and the watcher answers after the Originator's
    update what it answered before it."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(federation, "originate", oracle._not_full)
    world = oracle.Publishing(random.Random(11))
    world.commit()
    world.prog.refresh(full=True)
    fed, vid = world.fed, None
    for step in range(70):  # (b2's server endpoint is held after step 69)
        world.step()
        world.prog.refresh()
        world.publish(f"step {step}")
        vid = next((v["id"] for v in world.state.policy.all("vport") if v["name"] == "b2"), None)
        held = fed.originator._eps.get(vid)
        if held is not None and held[0].kind == "vtep_mac" and held[1]:
            break
    else:
        raise AssertionError("no server endpoint with routes held: the world's sequence changed")
    origins = fed._origins
    server_keys = list(held[1])
    moved = (server_keys[0][0], "65000:10099", *server_keys[0][2:])  # (its route as a KVM vport in another subnet)
    origins.add_vport(moved, vid)
    origins.unbound([vid])
    assert vid in origins.unbound_ids
    del world.vports["b2"]
    world.commit()
    world.prog.refresh()
    keys = set(fed.speaker.desired) | set(origins._count) | set(origins._pins) | set(server_keys)
    vports = set(origins._keys_of) | set(fed.originator._eps)
    before = oracle.said(origins, keys, vports)
    assert all(before[1][key][1] for key in server_keys)  # (pinned: a server behind each)
    fed.mobility.update(world.prog.view, world.state.remote_index)
    assert fed.originator.update(world.prog.view, world.state.policy, fed.mobility) is not None  # (by delta)
    assert vid not in fed.originator._eps
    assert oracle.said(origins, keys, vports) == before
