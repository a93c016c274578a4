"""controller/keyed.py's two-level removal (``discard_under``): what it removes, what it keeps, what it never adds."""

from collections import defaultdict

from controller.keyed import discard_under


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
