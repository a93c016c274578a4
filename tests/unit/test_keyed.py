"""controller/keyed.py's two-level removal (``discard_under``): what it removes, what it keeps, what it never adds."""

import random
from collections import defaultdict

import pytest

from controller.keyed import discard_from, discard_under, remove_all


def test_an_item_leaves_each_named_entry_and_empty_entries_and_scopes_go():
    index = {"d1": {"10.0.0.1": {"v1": 1, "v2": 2}, "10.0.0.2": {"v1": 1}, "10.0.0.3": {"v3": 3}},
             "d2": {"x": {"v1": 1}}}
    discard_under(index, "d1", ("10.0.0.1", "10.0.0.2", "10.0.0.9"), "v1")
    assert index == {"d1": {"10.0.0.1": {"v2": 2}, "10.0.0.3": {"v3": 3}}, "d2": {"x": {"v1": 1}}}
    discard_under(index, "d1", ("10.0.0.1", "10.0.0.3"), "v2")
    assert index == {"d1": {"10.0.0.3": {"v3": 3}}, "d2": {"x": {"v1": 1}}}  # v3 is not v2: kept
    discard_under(index, "d1", ("10.0.0.3",), "v3")
    assert index == {"d2": {"x": {"v1": 1}}}  # the scope went with its last entry


def test_an_absent_scope_key_or_item_adds_nothing_even_to_a_defaultdict():
    index = defaultdict(lambda: defaultdict(dict))
    index["d1"]["ip"]["v1"] = 1
    discard_under(index, "d9", ("ip",), "v1")
    discard_under(index, "d1", ("other",), "v1")
    discard_under(index, "d1", ("ip",), "v9")
    plain = {scope: {k: dict(v) for k, v in inner.items()} for scope, inner in index.items()}
    assert plain == {"d1": {"ip": {"v1": 1}}}


def test_items_leave_their_scopes_whole_or_in_part_and_emptied_scopes_go():
    index = {"a": {1, 2}, "b": {3, 4, 5}, "c": {6}, "d": {7}}
    remove_all(index, ["a", "b", "a", "c", "b"], [1, 3, 2, 6, 5])
    assert index == {"b": {4}, "d": {7}}
    remove_all(index, [], [])
    assert index == {"b": {4}, "d": {7}}


@pytest.mark.parametrize("scopes", [6, 40, 2000])  # (40: past ``_FEW_SCOPES`` scopes losing some items, often;
def test_removing_at_random_leaves_what_one_by_one_removal_leaves(scopes):  # 2000: most hold one item, a MAC's)
    rng = random.Random(7)
    for _ in range(200):
        index, where = {}, {}
        for item in range(rng.randrange(1, 120 if scopes < 2000 else 30)):
            where[item] = scope = rng.randrange(scopes)
            index.setdefault(scope, set()).add(item)
        gone = rng.sample(sorted(where), rng.randrange(len(where) + 1))
        expected = {scope: set(items) for scope, items in index.items()}
        for item in gone:
            discard_from(expected, where[item], item)
        remove_all(index, [where[item] for item in gone], gone)
        assert index == expected


def test_an_absent_scope_is_passed_over():
    index = {"a": {1}}
    remove_all(index, ["b", "a"], [2, 1])
    assert index == {}


class _Costed(set):
    """A set that adds up what ``remove_all`` makes it walk: a set operation the smaller of the two sets, a discard 1."""

    cost = 0

    def intersection(self, other):
        _Costed.cost += min(len(self), len(other))
        return set.intersection(self, other)

    def difference_update(self, other):
        _Costed.cost += min(len(self), len(other))
        set.difference_update(self, other)

    def discard(self, item):
        _Costed.cost += 1
        set.discard(self, item)


def test_many_scopes_each_losing_a_few_cost_the_items_not_the_items_times_the_scopes(monkeypatch):
    """200 endpoints gone, one from each of 200 sessions keeping 1,000 each (a tenant's VMs spread over the
    hypervisors): a set difference per scope with every item gone walked the 200 items 200 times (40,000 probes, ~2.7
    ms of one unpaused run, load 6), where a discard per item costs 200."""
    monkeypatch.setattr(_Costed, "cost", 0)
    index = {s: _Costed(f"{s}-{i}" for i in range(1_000)) for s in range(200)}
    scopes, items = list(range(200)), [f"{s}-0" for s in range(200)]
    remove_all(index, scopes, items)
    assert all(len(index[s]) == 999 and f"{s}-0" not in index[s] for s in range(200))
    assert _Costed.cost <= 4 * len(items), _Costed.cost


def test_scopes_of_one_item_each_go_without_counting_and_the_others_are_counted(monkeypatch):
    """Every scope named holding just its item: each entry goes (``_only_theirs``); one scope holding another item too,
    or an absent scope named: counted as before, and the same index left."""
    index = {("s", n): {n} for n in range(5)}
    remove_all(index, [("s", 1), ("s", 3)], [1, 3])
    assert index == {("s", 0): {0}, ("s", 2): {2}, ("s", 4): {4}}
    index[("s", 2)].add(9)
    remove_all(index, [("s", 0), ("s", 2)], [0, 2])
    assert index == {("s", 2): {9}, ("s", 4): {4}}
    remove_all(index, [("s", 4), ("s", 7)], [4, 7])
    assert index == {("s", 2): {9}}
