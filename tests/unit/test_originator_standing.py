"""``Originator.standing`` (bgp/originator.py), which ``Origins.unbound`` asks instead of ``keys_of``, ``behind`` and
``pinned`` per vport and key, against those three on the real Originator of the originator oracle's sequences
(tests/unit/test_originator_oracle.py): at every unbinding, for the vports unbound, the same keys per vport, the
type 2 keys set apart each with one vport behind it and no pin, and a type 3 key per vport standing behind one.
(test_origins_unbound.py checks ``unbound`` itself on a stand-in base that answers ``standing`` as this proves.)"""

from __future__ import annotations

from collections import Counter

import tests.unit.test_originator_oracle as oracle
from bgp.originator import Originator
from bgp.origins import Origins
from controller import loglimit

SEEDS = 6


def check_standing(base: Originator, vport_ids) -> int:
    """``standing`` against ``keys_of``, ``behind`` and ``pinned``; the vports it named keys for."""
    held, quick, grouped = base.standing(vport_ids)
    want = {vid: base.keys_of(vid) for vid in vport_ids if base.keys_of(vid)}
    assert held == want
    t2 = [key for keys in want.values() for key in keys if key in base._owner]
    assert Counter(quick) == Counter(t2)
    assert all(base.behind(key) == 1 and not base.pinned(key) for key in quick)
    assert Counter(grouped) == Counter(key for keys in want.values() for key in keys if key not in base._owner)
    return len(held)


def test_standing_says_what_keys_of_behind_and_pinned_say(monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    unbound, named = Origins.unbound, []

    def checked(origins, vport_ids):
        if isinstance(origins._base, Originator):
            ids = list(dict.fromkeys(vport_ids))
            named.append(check_standing(origins._base, [vid for vid in ids if vid not in origins._keys_of]))
        return unbound(origins, vport_ids)

    monkeypatch.setattr(Origins, "unbound", checked)
    for seed in range(SEEDS):
        oracle.run(500 + seed)
    assert sum(named) > 20, sum(named)  # (the sequences unbound vports the Originator held: 45 with these seeds)
