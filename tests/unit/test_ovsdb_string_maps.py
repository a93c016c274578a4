"""ovsdb/idl/datums.py's parser of a map of strings to strings (``_string_map``: external_ids, options, other_config,
...) against ovs's ``Datum.from_json`` on hostile input, generated and mutated at random: keys and values of other
JSON kinds, duplicate keys, odd and huge UTF-8 (lone surrogates, NUL, astral characters, a megabyte), pairs and
wrappers of the wrong shape, sizes and lengths at and past the type's bounds. Each value gives the same Datum (atoms,
their types and order) or the same refusal (error type, message and JSON) as ovs's own parser."""

from __future__ import annotations

import copy
import json
import random
import sys
from pathlib import Path

import ovs.db.data
import ovs.db.error
import ovs.db.schema
import ovs.db.types
import pytest

from ovsdb.idl import datums
from ovsdb.longsets import PacedArray

_STRING = ovs.db.types.StringType


def _map_type(key_low=0, key_high=sys.maxsize, value_low=0, value_high=sys.maxsize, n_min=0, n_max=sys.maxsize):
    return ovs.db.types.Type(ovs.db.types.BaseType(_STRING, min_length=key_low, max_length=key_high),
                             ovs.db.types.BaseType(_STRING, min_length=value_low, max_length=value_high), n_min, n_max)


def _schema_string_maps() -> list:
    schema = ovs.db.schema.DbSchema.from_json(json.loads(Path("/usr/share/openvswitch/vswitch.ovsschema").read_text()))
    def plain(base) -> bool:
        return base is not None and base.type == _STRING and base.enum is None
    return [column.type for table in schema.tables.values() for column in table.columns.values()
            if plain(column.type.key) and plain(column.type.value)]


TYPES = [_schema_string_maps()[0], _map_type(), _map_type(1, 4, 0, 3, 1, 3), _map_type(2, 2, 5, 8, 0, 2)]
STRINGS = ["", "a", "ab", "abc", "abcd", "abcde", "é", "\u00e9\u00e9\u00e9", "\U0001f600", "\U0001f600" * 4, "\x00",
           "a\x00b", "\ud800", "\udfff\ud800", "\ufeff", "\u202e" * 5, "x" * 300, "k" * 8, "\n", "\\u0000"]
OTHERS = [None, 0, 1, -1, 2 ** 70, 1.5, -0.0, True, False, [], {}, ["a"], {"a": "b"}, ["uuid", "a"], ["set", []]]


class _Pacer:
    def tick(self):
        pass


def _string(rng) -> str:
    return rng.choice(STRINGS) if rng.random() < 0.9 else "".join(chr(rng.randrange(0x110000)) for _ in range(3))


def _generated(rng) -> list:
    return ["map", [[_string(rng), _string(rng)] for _ in range(rng.choice([0, 1, 2, 3, 4, 7]))]]


def _mutated(rng, value: list) -> object:
    """``value`` with one to three random mutations."""
    value = copy.deepcopy(value)
    for _ in range(rng.randint(1, 3)):
        pairs = value[1] if isinstance(value, list) and len(value) == 2 and isinstance(value[1], list) else None
        kind = rng.randrange(12)
        if pairs and kind < 4:  # a key or a value of another kind
            pair = rng.choice(pairs)
            if isinstance(pair, list) and pair:
                pair[rng.randrange(len(pair))] = rng.choice(OTHERS)
        elif pairs and kind == 4:  # a duplicate key
            pair = rng.choice(pairs)
            if isinstance(pair, list) and pair:
                pairs.insert(rng.randrange(len(pairs) + 1), [pair[0], _string(rng)])
        elif pairs and kind == 5:  # a pair of the wrong shape
            pairs[rng.randrange(len(pairs))] = rng.choice([[], ["a"], ["a", "b", "c"], "ab", {"a": "b"}, None,
                                                           [["a", "b"]], ("a", "b")])
        elif kind == 6:  # the wrapper's tag or shape
            value = rng.choice([["Map", pairs or []], ["set", pairs or []], ["map"], ["map", pairs or [], 1],
                                ["map", {"a": "b"}], ["map", "ab"], ["map", None], ("map", pairs or []),
                                pairs or [], "map", {"map": pairs}])
        elif pairs is not None and kind == 7:  # the pairs in a list's subclass (ovsdb/longsets.py) or a tuple
            value = ["map", rng.choice([PacedArray(pairs, _Pacer()), tuple(pairs)])]
        elif pairs is not None and kind == 8:  # many pairs: past a small type's size
            value[1] = pairs + [["k%d" % i, "v"] for i in range(rng.choice([1, 3, 50]))]
        elif pairs and kind == 9:  # a huge string
            pair = rng.choice(pairs)
            if isinstance(pair, list) and pair:
                pair[rng.randrange(len(pair))] = rng.choice(["é" * 1_000_000, "\U0001f600" * 300_000])
        elif pairs and kind == 10:  # a str subclass (no JSON decoder makes one: ovs's parser decides)
            pair = rng.choice(pairs)
            if isinstance(pair, list) and pair and isinstance(pair[0], str):
                pair[0] = type("Text", (str,), {})(pair[0])
        else:  # a pair dropped
            if pairs:
                del pairs[rng.randrange(len(pairs))]
    return value


def _outcome(parse, value):
    try:
        datum = parse(value)
    except ovs.db.error.Error as exc:
        return "error", type(exc), str(exc), repr(exc.json)
    except Exception as exc:  # noqa: BLE001 (anything ovs raises must be raised the same)
        return "exception", type(exc), str(exc)
    return "datum", [(type(k), k.type, k.value, type(k.value), type(v), v.type, v.value, type(v.value))
                     for k, v in datum.values.items()]


@pytest.mark.parametrize("seed", range(6))
def test_hostile_string_maps_parse_or_are_refused_as_ovs_does(seed):
    rng = random.Random(seed)
    taken = refused = 0
    for type_ in TYPES:
        parse = datums.datum_parser(type_)
        for _ in range(300):
            value = _generated(rng)
            if rng.random() < 0.7:
                value = _mutated(rng, value)
            ours = _outcome(parse, copy.deepcopy(value))
            theirs = _outcome(lambda json_: ovs.db.data.Datum.from_json(type_, json_), copy.deepcopy(value))
            assert ours == theirs, (type_.to_json(), value if len(repr(value)) < 2000 else repr(value)[:2000])
            taken += ours[0] == "datum"
            refused += ours[0] != "datum"
    assert taken > 100 and refused > 100  # both outcomes exercised


def test_a_string_map_the_fast_path_takes_is_ovs_datum_and_what_it_declines_reaches_ovs(monkeypatch):
    """Values the loop takes (no call of ovs's parser) and values it must hand to ovs (a non-string key, a duplicate
    key, a length or size past the type's bounds, a str subclass): the latter reach ``Datum.from_json``."""
    type_ = _map_type(1, 4, 0, 3, 1, 3)
    handed = []
    real = ovs.db.data.Datum.from_json
    monkeypatch.setattr(ovs.db.data.Datum, "from_json",
                        staticmethod(lambda *args: handed.append(args[1]) or real(*args)))
    parse = datums.datum_parser(type_)  # (it keeps ovs's parser it hands values to)
    for value in (["map", [["a", ""]]], ["map", [["abcd", "\U0001f600" * 3], ["\x00", "\ud800"]]]):
        assert _outcome(parse, value) == _outcome(lambda v: real(type_, v), value)
    assert handed == []
    declined = [["map", [[1, "a"]]], ["map", [["a", None]]], ["map", [["a", "b"], ["a", "c"]]], ["map", [["", "b"]]],
                ["map", [["abcde", "b"]]], ["map", [["a", "abcd"]]], ["map", []],
                ["map", [["a", "b"], ["b", "b"], ["c", "b"], ["d", "b"]]]]
    for value in declined:
        with pytest.raises(ovs.db.error.Error):
            parse(value)
    subclass = ["map", [[type("Text", (str,), {})("a"), "b"]]]  # ovs takes it (isinstance): so does its parser here
    assert _outcome(parse, subclass) == _outcome(lambda v: real(type_, v), subclass)
    assert handed == declined + [subclass]
