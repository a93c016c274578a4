"""A new row's columns kept as the JSON the peer sent, turned into ovs's atoms only when something reads them as a
Datum; Canopy's own readers (ovsdb/idl/rows.py, the delete's plan in ovsdb/idl/slices.py) take the value straight
from the JSON.

Why: a new port is two rows (Port, Interface) of five columns, and ovs's ``Datum`` of each is a dict of ``Atom``s
(an interface's external_ids: six Atoms for three pairs), each made in Python, hashed in Python into the Datum's dict,
compared with the column's default; the reporter then reads five of those columns once (name, external_ids,
interfaces, ofport, type) as plain values: the Atoms were made to be taken apart again. Kept as JSON: ~4,080 -> ~3,450
Python bytecodes a new port, ~943 -> ~785 for ovs-vswitchd's ofport on it (tests/unit/test_ovsdb_intake_work.py),
and fewer objects made (docs/benchmarks.md "ins41").

``LazyDatum`` is an ``ovs.db.data.Datum`` (``isinstance`` holds; ``==``, ``copy``, ``to_json``, ``to_python``, ``diff``
work) whose ``values`` are made on first use by the column's own parser (ovsdb/idl/datums.py ``datum_parser``) from the
JSON it keeps: ``values`` is the slot ovs reads, unset until then (the slot's AttributeError sends Python to
``__getattr__``, which fills it: from then on a plain slot read). Made only for JSON the parser is known to take on its
fast path, checked here first in a few C calls: a map of plain strings (no ``enum``), a plain string, one reference
(``["uuid", text]``, no ``enum``) (``lazy_maker``); an integer set by update2's difference on an optional integer column
at its default (``diff_maker``). So the deferred parse cannot fail and makes the Datum an eager parse makes. Anything
else is parsed at once as before (ovsdb/idl/paced.py ``_Idl__row_update``, ``_Idl__apply_diff``), so a malformed value
refuses the update exactly as it did. The JSON is dropped when the values are made (a set's ``diff`` changes ``values``
in place: the JSON would no longer say what the column holds).

Only a column the row does not hold yet is made so (a new row's: an insert, a session's first read; an optional
integer at its default); a column the row holds is parsed at once when it changes. Checked against ovs's own parse for
every column of the real schema (and bounded types) with valid, malformed, edge and random values
(tests/unit/test_ovsdb_lazy_columns.py, which also applies random changes to columns never read since their insert and
compares the replica with a plain ``ovs.db.idl.Idl``), and by the oracles of tests/unit/test_ovsdb_idl_parse.py and
sliced against whole updates.
"""

from __future__ import annotations

import sys

import ovs.db.data
import ovs.db.error
import ovs.db.types

from ovsdb.idl.datums import _UUID_RE

_DATUM = ovs.db.data.Datum
SAME = object()  # the JSON parses to the column's default Datum: an eager parse stores nothing (a new row)
_LIST_ONLY, _STR_ONLY = {list}, {str}


class LazyDatum(_DATUM):
    """A Datum whose ``values`` are parsed from ``json`` (by ``parse``, the column's parser) when first read."""

    __slots__ = ("json", "parse")

    def __getattr__(self, name):
        if name != "values":
            raise AttributeError(name)
        values = self.parse(self.json).values  # checked by lazy_maker: the parser's fast path, never an error
        self.values = values
        self.json = None  # from now on ``values`` says what the column holds (a set's diff changes them in place)
        return values


_LAZY = LazyDatum


def raw(datum):
    """The JSON a ``LazyDatum`` still keeps (its values not made yet), else None."""
    return datum.json if datum.__class__ is _LAZY else None


def lazy_maker(type_: ovs.db.types.Type, parse, default: ovs.db.data.Datum):
    """A function JSON -> ``LazyDatum`` (the column's value, its atoms made when read), ``SAME`` (the JSON parses to
    ``default``: a new row stores nothing), or None (parse it now: ``parse``, the column's ``datum_parser``, decides,
    raising for a bad value); None when no JSON of ``type_`` is taken so."""
    key, value = type_.key, type_.value
    made = (type_, parse)
    if value is not None:
        if not (_plain_string(key) and _plain_string(value)) or type_.n_min != 0:
            return None
        return _string_map(type_.n_max, (key.min_length, key.max_length, value.min_length, value.max_length), made)
    if type_.n_min == 1 and type_.n_max == 1 and _plain_string(key):
        return _string_scalar(key.min_length, key.max_length, _same_as(parse, default, ""), made)
    if key.type == ovs.db.types.UuidType and key.enum is None and type_.n_min <= 1 <= type_.n_max:  # (an enum: the
        # parser checks each uuid against it, which the checks here do not)
        zero = "00000000-0000-0000-0000-000000000000"
        same = ["uuid", zero] if type_.n_min == 1 and _same_as(parse, default, ["uuid", zero]) is not None else None
        return _one_uuid(same, made)
    return None


def diff_maker(type_: ovs.db.types.Type, parse):
    """For update2's difference of a column the row holds at its default: a function JSON -> ``LazyDatum`` (the
    column's value once the difference is applied) or None (parse and apply it now), for an optional integer (no
    ``enum``: ovs-vswitchd's ``ofport`` on 10,000 new interfaces); None for other types. An empty optional column and
    a difference of one integer make the column that one integer (ovs 4.0.0's ``Datum.diff``: the element added),
    never its default."""
    key = type_.key
    if type_.value is not None or type_.n_min != 0 or type_.n_max != 1 or key.enum is not None or \
            key.type != ovs.db.types.IntegerType:
        return None
    low = key.min if key.min is not None else float("-inf")
    high = key.max if key.max is not None else float("inf")
    return _optional_integer(low, high, (type_, parse))


def _optional_integer(low, high, made, _new=object.__new__, _lazy=_LAZY):
    """An integer within the type's range (a bare one: not a boolean, which is an int to Python)."""
    type_, parse = made

    def take(json):
        if type(json) is not int or not low <= json <= high:
            return None
        datum = _new(_lazy)
        datum.type, datum.json, datum.parse = type_, json, parse
        return datum
    return take


def _plain_string(base) -> bool:
    return base.type == ovs.db.types.StringType and base.enum is None


def _same_as(parse, default, json):
    """``json`` if it parses to ``default`` (then a new row stores nothing), else None. ovs 4.0.0's default of a string
    is an Atom holding an Atom: "" parses to something else, which ovs stores."""
    try:
        return json if parse(json).values == default.values else None
    except ovs.db.error.Error:
        return None


def _string_map(n_max, lengths, made, _new=object.__new__, _lazy=_LAZY):
    """A map of plain strings: ``["map", [[k, v], ...]]`` (an array, not a subclass: a long one is paced), every pair
    an array of two strings within their lengths, no key twice, at most ``n_max`` pairs (the checks of datums'
    ``_string_map``), looked at in C loops (the pairs taken by ``dict``: an array of other than two elements, or an
    unhashable key, raises there); none: SAME (n_min is 0: the default is empty)."""
    type_, parse = made
    key_low, key_high, value_low, value_high = lengths
    any_length = key_low == 0 and value_low == 0 and key_high == value_high == sys.maxsize  # (ovs's unbounded)

    def take(json):
        if type(json) is not list or len(json) != 2 or json[0] != "map":
            return None
        pairs = json[1]
        if type(pairs) is not list:
            return None
        if not pairs:
            return SAME
        if len(pairs) > n_max or set(map(type, pairs)) != _LIST_ONLY:
            return None
        try:
            mapped = dict(pairs)
        except (TypeError, ValueError):
            return None
        if len(mapped) != len(pairs) or {*map(type, mapped), *map(type, mapped.values())} != _STR_ONLY:
            return None  # a key twice, or other than strings
        if not any_length and not (key_low <= min(map(len, mapped)) and max(map(len, mapped)) <= key_high and
                                   value_low <= min(map(len, mapped.values())) and
                                   max(map(len, mapped.values())) <= value_high):
            return None
        datum = _new(_lazy)
        datum.type, datum.json, datum.parse = type_, json, parse
        return datum
    return take


def _string_scalar(low, high, same, made, _new=object.__new__, _lazy=_LAZY):
    """A plain string (a bare string within its lengths); ``same``: the string that parses to the default (none)."""
    type_, parse = made

    def take(json):
        if type(json) is not str or not low <= len(json) <= high:
            return None
        if json == same:
            return SAME
        datum = _new(_lazy)
        datum.type, datum.json, datum.parse = type_, json, parse
        return datum
    return take


def _one_uuid(same, made, _match=_UUID_RE.match, _new=object.__new__, _lazy=_LAZY):
    """One reference, ``["uuid", text]`` (36 characters matching ovs's pattern); ``same``: the JSON that parses to the
    default (a reference that must be there: the zero uuid), else none."""
    type_, parse = made

    def take(json):
        if type(json) is not list or len(json) != 2 or json[0] != "uuid":
            return None
        text = json[1]
        if type(text) is not str or len(text) != 36 or _match(text) is None:
            return None
        if same is not None and json == same:
            return SAME
        datum = _new(_lazy)
        datum.type, datum.json, datum.parse = type_, json, parse
        return datum
    return take
