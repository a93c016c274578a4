"""bgp/federation.py ``_settle`` (the hand-over's plan completed for the keys the speaker was told) against the rule
its docstring states, key by key: a key told is kept out of the plan where the speaker holds what the publish hands
over (the same object or an equal one), else told it; a key left out or carried that was not told is told what is
handed over. Random plans, told keys and hand-overs, every key of the plan told and held included (``_settle`` then
takes the kept keys from ``told`` itself)."""

from __future__ import annotations

import random
from itertools import chain

from bgp.federation import _Handed, _settle, _tell


class Route:
    def __init__(self, n: int):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Route) and other.n == self.n

    def __hash__(self):
        return self.n


def one_by_one(announce: dict, withdraw: set, told: dict, desired: _Handed) -> None:
    for key, held in told.items():
        got = desired.get(key)
        if held is got or held == got:
            announce.pop(key, None)
            withdraw.discard(key)
        else:
            _tell(announce, withdraw, key, got)
    for key in chain(desired.left_out, desired.carried):
        if key not in told:
            _tell(announce, withdraw, key, desired.get(key))


def world(rng: random.Random):
    keys = [("2", "rd", f"mac{n}", "ip", 0) for n in range(rng.randint(1, 30))]
    pick = lambda: rng.sample(keys, rng.randint(0, len(keys)))  # noqa: E731
    value = lambda: rng.choice([None, Route(rng.randint(0, 3))])  # noqa: E731
    routes = {key: Route(rng.randint(0, 3)) for key in pick()}
    desired = _Handed(routes, set(pick()))
    desired.carried.update((key, Route(rng.randint(0, 3))) for key in pick())
    if rng.random() < 0.3:  # every key told held as handed over (the same object, or None where nothing is)
        told = {key: desired.get(key) for key in pick()}
    else:
        told = {key: value() if rng.random() < 0.5 else desired.get(key) for key in pick()}
    announce = {key: Route(rng.randint(0, 3)) for key in pick()}
    withdraw = set(pick()) - announce.keys()
    return announce, withdraw, told, desired


def test_settle_is_the_rule_key_by_key_on_random_hand_overs():
    rng = random.Random(50)
    for _ in range(3000):
        announce, withdraw, told, desired = world(rng)
        want_announce, want_withdraw = dict(announce), set(withdraw)
        one_by_one(want_announce, want_withdraw, told, desired)
        _settle(announce, withdraw, told, desired)
        assert (announce, withdraw) == (want_announce, want_withdraw)


class Key(tuple):
    """A route key that counts its hashes (a 5-tuple's is not kept: each dict or set operation hashes it again)."""

    hashes = 0

    def __hash__(self):
        Key.hashes += 1
        return tuple.__hash__(self)


def test_keys_told_and_withdrawn_already_are_hashed_once_each():
    """The publish after 10,000 ports withdrawn at unbind: each key told (held None), gone from the routes, in the
    plan's withdrawals. Each is looked up once in the routes; the plan's withdrawals lose them by ``told``'s own
    hashes (a list of them was each hashed again)."""
    keys = [Key(("2", "rd", f"mac{n}", "ip", 0)) for n in range(1000)]
    told, withdraw = dict.fromkeys(keys), set(keys)
    Key.hashes = 0
    _settle({}, withdraw, told, _Handed({}, set()))
    assert withdraw == set() and Key.hashes <= len(keys)
