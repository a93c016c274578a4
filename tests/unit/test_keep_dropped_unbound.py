"""``Originator._keep_dropped`` passes over the vports the watcher (the last publish's ``Origins``) unbound and their
type 2 keys (bgp/originator.py): what that Origins answers after the Originator's update (``keys_of``, the count behind
each key, whether it is pinned) is what it answers when each is kept as before. On tests/unit/test_originator_
interleave.py's random sequences (ports unbound between passes, vports moving and turning bare metal, interleavings),
a twin of the watcher is told as before (no vport unbound to pass over) and both are compared after every update."""

from __future__ import annotations

from bgp.originator import Originator
from bgp.origins import Origins
from tests.unit import test_originator_interleave as interleave


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
            {key: (origins._left(key), origins._pinned(key)) for key in keys})


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
