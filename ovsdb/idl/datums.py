"""A column's JSON parsed into an ``ovs.db.data.Datum`` without ovs's generic parser where the JSON is plainly valid.

ovs 4.0.0's ``Datum.from_json`` parses every atom through ``Atom.from_json`` (a tuple of number types built per call,
``float_to_int``, a chain of type comparisons, ``check_constraints``): ~120,000 atoms for one update of 10,000 new
ports. ``datum_parser`` makes, per column, a parser that takes the common shapes of the atom types Canopy's tables
hold (a string, an integer, a boolean, a uuid; a bare atom, a ``["set", [...]]``, a ``["map", [[k, v], ...]]``, their
array also a ``PacedArray``: ovsdb/longsets.py, a bridge's 10,000 new ports) directly and builds the same ``Datum``:
the same atoms, in the same order (docs/benchmarks.md, "Branch annchain": ~40 % less CPU for those rows' columns).
Anything else, and anything it would have to reject (a wrong type, a constraint broken, a value outside an ``enum``,
a real, a size out of bounds, a duplicate, a malformed pair or uuid), is handed to ``Datum.from_json`` unchanged, so
a bad value raises exactly the error it raises there: this module never rejects anything itself
(tests/unit/test_ovsdb_datums.py: every column of the real schema, valid and malformed values).
"""

from __future__ import annotations

import binascii
import collections
import itertools
import operator
import struct
import uuid

import ovs.db.data
import ovs.db.types
import ovs.ovsuuid

from ovsdb.longsets import ATOMS_PER_TICK

_FALLBACK = object()  # an atom the fast path leaves to ovs's parser
_VALUE_INT = operator.attrgetter("value.int")  # a uuid atom's number
_UUID_RE = ovs.ovsuuid.uuidRE  # HACK (ovs 4.0.0): the pattern its from_json checks a uuid string with
_HEX_DIGITS = b"0123456789abcdefABCDEF"  # what _UUID_RE takes but for its four "-" (at _HYPHENS)
_HYPHENS = (8, 13, 18, 23)


def datum_parser(type_: ovs.db.types.Type):
    """A function JSON -> Datum for columns of ``type_``: ``ovs.db.data.Datum.from_json(type_, json)`` (no symbol
    table), the same Datum, or the same error raised by ovs itself for whatever it does not take as plainly valid.
    Made once per column (the IDL keeps them): the checks of the type's constraints are set up here."""
    generic = ovs.db.data.Datum.from_json
    key = _atom_reader(type_.key)
    value = _atom_reader(type_.value) if type_.value is not None else None
    if key is None or (type_.value is not None and value is None):
        return lambda json: generic(type_, json)
    if type_.value is not None and _plain_string(type_.key) and _plain_string(type_.value):
        bounds = (type_.key.type, type_.key.min_length, type_.key.max_length, type_.value.type,
                  type_.value.min_length, type_.value.max_length)

        def parse_strings(json):
            datum = _string_map(type_, json, *bounds)
            return generic(type_, json) if datum is None else datum
        return parse_strings

    def parse(json):
        datum = _fast(type_, json, key, value)
        return generic(type_, json) if datum is None else datum
    return parse


def _fast(type_, json, key, value):
    """The Datum, or None when ovs's parser must decide."""
    if value is not None:
        return _map(type_, json, key, value)
    if type(json) is list and len(json) == 2 and json[0] == "set":
        return _set(type_, json, key)
    atom = key(json)
    return None if atom is _FALLBACK else ovs.db.data.Datum(type_, {atom: None})


def _is_map(json) -> bool:
    return type(json) is list and len(json) == 2 and json[0] == "map" and isinstance(json[1], list)


def _datum(type_, values: dict, given: list):
    """The Datum of ``values`` read from ``given``, or None (ovs must decide) when ``given`` held a duplicate (fewer
    values than elements) or their number is outside the type's bounds."""
    if len(values) != len(given):
        return None
    return ovs.db.data.Datum(type_, values) if type_.n_min <= len(values) <= type_.n_max else None


def _set(type_, json, key):
    if not isinstance(json[1], list):  # a list, or a list's subclass: ovsdb/longsets.py's PacedArray (a long set)
        return None
    if len(json[1]) >= MANY_UUIDS and hasattr(key, "uuid_kind"):
        return _uuid_set(type_, json[1], key.uuid_kind)
    values = {}
    for element in json[1]:
        atom = key(element)
        if atom is _FALLBACK:
            return None
        values[atom] = None
    return _datum(type_, values, json[1])  # a duplicate: one lookup per atom (each an Atom and a uuid hash in Python)


MANY_UUIDS = 16  # a set of this many elements or more, of uuids, read in C loops (``_uuid_set``)
UUID_RUN = 1000  # elements of a long set read by one run of C loops: its pacer ticked between runs (ovsdb/longsets.py)
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
SET_PER_ELEMENT = 32  # drop_uuids: a set walked in C for a difference removing at least 1/32 of it


def _uuid_set(type_, elements: list, kind):
    """``_set`` of a set of uuids (``["uuid", text]`` elements), read in C loops a run of ``UUID_RUN`` elements at a
    time (a ``PacedArray``'s pacer ticked per run as its iteration ticks it): the same atoms, in the same order, as the
    element by element reader (~140 bytecodes an element: its reader, ``Atom.__init__`` and ``uuid_of`` Python calls;
    a big delete's or insert's bridge ``ports`` difference, 10,000 elements). None (ovs decides, as for the reader)
    when an element is anything else (not a pair, not "uuid", not a text ``_UUID_RE`` matches in 36 characters)."""
    every = list.copy(elements)  # (the plain list: no PacedArray iteration, one Python resumption per element)
    pacer, values = getattr(elements, "pacer", None), {}
    for start in range(0, len(every), UUID_RUN):
        texts = _uuid_texts(every[start:start + UUID_RUN])
        if texts is None:
            return None
        atoms = list(map(_new_atom, itertools.repeat(ovs.db.data.Atom, len(texts))))
        collections.deque(map(_set_attr, atoms, itertools.repeat("type"), itertools.repeat(kind)), maxlen=0)
        collections.deque(map(_set_attr, atoms, itertools.repeat("value"), uuids_of(texts)), maxlen=0)
        values.update(dict.fromkeys(atoms))  # (each Atom's __hash__ a Python call, as in the element by element read)
        if pacer is not None:
            pacer.tick(len(texts) // ATOMS_PER_TICK)
    return _datum(type_, values, every)


def _uuid_texts(elements: list, known: dict | None = None) -> list[str] | None:
    """The texts of ``elements`` when each is a uuid as a peer sends one (``["uuid", text]``, a text of 36 characters
    ``_UUID_RE`` matches), checked in C loops; else None (ovs's parser decides). ``known``: {text: number} of texts
    checked so before (``checked_numbers``): when it holds every one, they are not checked again."""
    if not set(map(type, elements)) <= {list} or not set(map(len, elements)) <= {2} or \
            list(map(_FIRST, elements)).count("uuid") != len(elements):  # (==, not a set: a tag may be an array)
        return None
    texts = list(map(_SECOND, elements))
    if not set(map(type, texts)) <= {str}:
        return None
    if known and all(map(known.__contains__, texts)):
        return texts
    if not set(map(len, texts)) <= {36} or not uuid_texts_match(texts):
        return None
    return texts


def checked_numbers(texts: list) -> list[int] | None:
    """The numbers of ``texts`` (what ``uuid.UUID(text).int`` is for each) when each is a str of 36 characters
    ``_UUID_RE`` matches; else None. Checked and read together in C over their join: a "-" at each of a text's four
    ``_HYPHENS`` (a slice of the join each) and no other, the 32 characters left of each hexadecimal digits
    (``binascii.unhexlify`` refuses anything else, whitespace too), read 16 bytes to a number (``int.from_bytes``,
    big-endian): ~1,800 instructions a text, where ``int`` of its digits without the "-" was ~3,000 and checked
    nothing (a big delete's plan reads 20,000: ovsdb/idl/slices.py)."""
    n = len(texts)
    if not n or not set(map(type, texts)) <= {str} or not set(map(len, texts)) <= {36}:
        return None
    joined = "".join(texts)
    if not joined.isascii():
        return None
    data = joined.encode()
    if not all(data[at::36].count(b"-") == n for at in _HYPHENS):
        return None
    digits = data.replace(b"-", b"")
    if len(digits) != 32 * n:
        return None
    try:
        raw = binascii.unhexlify(digits)
    except binascii.Error:
        return None
    return list(map(int.from_bytes, map(_FIRST, struct.iter_unpack("16s", raw))))  # (3.11: big-endian by default)


def uuid_texts_match(texts: list) -> bool:
    """Whether ``_UUID_RE`` matches each of ``texts`` (``all(map(_UUID_RE.match, texts))``). When each is a str of 36
    ASCII characters: their join by "," (each text at 37 times its index) holds a "-" at each of a text's four
    ``_HYPHENS`` (one slice of the join each) and, its hexadecimal digits deleted, only those and the n - 1 commas
    between the texts (so every other character is a digit): a tenth of the CPU of a match and its match object
    per text (a big delete's 20,000 row uuids and its bridge's 10,000 references: ovsdb/idl/rowloop.py,
    ``drop_uuids``). Else, or when that check fails, text by text, as ever."""
    if texts and set(map(type, texts)) <= {str} and set(map(len, texts)) <= {36}:
        joined, n = ",".join(texts), len(texts)
        if joined.isascii():
            data = joined.encode()
            if all(data[at::37].count(b"-") == n for at in _HYPHENS) and \
                    len(data.translate(None, _HEX_DIGITS)) == 5 * n - 1:
                return True
    return all(map(_UUID_RE.match, texts))


_new_atom, _set_attr = object.__new__, object.__setattr__  # HACK (ovs 4.0.0): an Atom's state is its __dict__'s
# ``type`` and ``value``, as ``Atom.__init__`` sets them (with a value not None)


def _map(type_, json, key, value):
    if not _is_map(json):
        return None
    values = {}
    for pair in json[1]:
        if type(pair) is not list or len(pair) != 2:
            return None
        k, v = key(pair[0]), value(pair[1])
        if k is _FALLBACK or v is _FALLBACK:
            return None
        values[k] = v
    return _datum(type_, values, json[1])


def _plain_string(base: ovs.db.types.BaseType) -> bool:
    return base.type == ovs.db.types.StringType and base.enum is None


def _string_map(type_, json, key_kind, key_low, key_high, value_kind, value_low, value_high, _atom=ovs.db.data.Atom):
    """``_map`` of a map of strings to strings without an ``enum`` (external_ids, options: three pairs per new
    interface), each pair's strings checked here rather than by a reader call per atom; None when ovs must decide."""
    if not _is_map(json):
        return None
    values = {}
    for pair in json[1]:
        if type(pair) is not list or len(pair) != 2:
            return None
        k, v = pair
        if type(k) is not str or type(v) is not str or not key_low <= len(k) <= key_high or \
                not value_low <= len(v) <= value_high:
            return None
        values[_atom(key_kind, k)] = _atom(value_kind, v)
    return _datum(type_, values, json[1])


def _atom_reader(base: ovs.db.types.BaseType):
    """A function JSON -> Atom of ``base`` (or _FALLBACK), or None when no atom of this base is taken here."""
    kind = base.type
    if kind == ovs.db.types.StringType:
        reader = _string_reader(base)
    elif kind == ovs.db.types.IntegerType:
        reader = _integer_reader(base)
    elif kind == ovs.db.types.BooleanType:
        reader = _boolean_reader(base)
    elif kind == ovs.db.types.UuidType:
        reader = _uuid_reader(base)
    else:
        return None  # reals: float_to_int's conversions are ovs's to make
    return reader if base.enum is None else _enum_reader(reader, base.enum.values)


def _enum_reader(reader, allowed):
    """Atoms of an enumerated column: one of ``allowed`` (an atom outside it is ovs's to reject)."""
    def read(json):
        atom = reader(json)
        return atom if atom is not _FALLBACK and atom in allowed else _FALLBACK
    return read


def _string_reader(base):
    atom, kind, low, high = ovs.db.data.Atom, base.type, base.min_length, base.max_length

    def read(json):
        return atom(kind, json) if type(json) is str and low <= len(json) <= high else _FALLBACK
    return read


def _integer_reader(base):
    atom, kind = ovs.db.data.Atom, base.type
    low = base.min if base.min is not None else float("-inf")
    high = base.max if base.max is not None else float("inf")

    def read(json):
        return atom(kind, json) if type(json) is int and low <= json <= high else _FALLBACK  # bool is not int here
    return read


def _boolean_reader(base):
    atom, kind = ovs.db.data.Atom, base.type

    def read(json):
        return atom(kind, json) if type(json) is bool else _FALLBACK
    return read


def uuid_of(text: str, _new=object.__new__, _set=object.__setattr__, _unknown=uuid.SafeUUID.unknown) -> uuid.UUID:
    """``uuid.UUID(text)`` of a uuid's text that matched ovs's pattern (``_UUID_RE``: 8-4-4-4-12 hexadecimal digits),
    without ``UUID.__init__``'s generic parsing (prefixes, braces, five other forms, each argument checked): the same
    object (its number, ``is_safe`` unknown) in two thirds of the time. An update of 10,000 ports deleted or added
    makes 30,000-60,000 of them (each row's uuid, each reference). HACK (CPython 3.11): a UUID's state is its two
    slots, ``int`` and ``is_safe``, set as ``UUID.__init__`` sets them."""
    if len(text) != 36:  # the pattern's "$" takes a final newline too: UUID refuses that text (ValueError)
        return uuid.UUID(text)
    made = _new(uuid.UUID)
    _set(made, "int", int(text.replace("-", ""), 16))
    _set(made, "is_safe", _unknown)
    return made


# HACK (CPython 3.11): the setters of a UUID's two slots (``object.__setattr__`` finds the same, by name, per call)
_SET_INT, _SET_SAFE = uuid.UUID.__dict__["int"].__set__, uuid.UUID.__dict__["is_safe"].__set__


def uuids_of(texts: list[str], known: dict | None = None) -> list[uuid.UUID]:
    """``uuid_of`` of each of ``texts`` (each matched ``_UUID_RE``), in C loops (``map``): no Python call per uuid where
    ``uuid_of`` is one (~40 bytecodes); each slot set by its own setter, not looked up by name per uuid (~40 % of
    the CPU). A big delete names 20,000 rows (ovsdb/idl/rowloop.py). ``known``: {text: its number} made before (a
    big delete's plan, ovsdb/idl/slices.py: each text's number read once), looked up rather than read again."""
    if not set(map(len, texts)) <= {36}:  # (a final newline: UUID's ValueError, as uuid_of raises it)
        return list(map(uuid_of, texts))
    return uuids_numbered(numbers_of(texts, known))


def uuids_numbered(numbers: list[int], _new=object.__new__, _unknown=uuid.SafeUUID.unknown,
                   _repeat=itertools.repeat) -> list[uuid.UUID]:
    """``uuid.UUID(int=number)`` of each of ``numbers`` (each a uuid's: 0 to 2**128 - 1), made as ``uuids_of`` makes
    them."""
    made = list(map(_new, _repeat(uuid.UUID, len(numbers))))
    collections.deque(map(_SET_INT, made, numbers), maxlen=0)
    collections.deque(map(_SET_SAFE, made, _repeat(_unknown)), maxlen=0)
    return made


def known_numbers(texts: list[str], known: dict) -> list[int] | None:
    """The numbers ``known`` ({text: number}, of texts ``checked_numbers`` checked) holds for every one of ``texts``, in
    C loops; None when it lacks one."""
    if not known:
        return None
    found = list(map(known.get, texts))
    return None if None in found else found


def numbers_of(texts: list[str], known: dict | None = None) -> list[int]:
    """The numbers of uuids' ``texts`` (each 36 characters ``_UUID_RE`` matched: what ``uuid.UUID(text).int`` is), from
    ``known`` ({text: number}) when it holds every one, else each read (``int`` of its digits, in C loops)."""
    found = known_numbers(texts, known) if known else None
    if found is not None:
        return found
    return list(map(int, map(str.replace, texts, itertools.repeat("-"), itertools.repeat("")), itertools.repeat(16)))


def drop_uuids(datum: ovs.db.data.Datum, json, pacer, known: dict | None = None,
               found: dict | None = None) -> ovs.db.data.Datum | None:
    """Update2's difference ``json`` of a set of uuids applied to ``datum`` in place when it only removes, and removes
    many (``SET_PER_ELEMENT``: a big delete's slice of a bridge's ``ports``, 500 to 3,200 of 10,000): the
    copy of ``datum`` before (the old value ``__apply_diff`` hands back); None, nothing done, otherwise (parsed and
    toggled as ever: a difference that adds, names an element twice or is not plainly uuids). The elements are found by
    their numbers in C loops (``map``) over the set and popped by the set's own atoms: ovs's parse, then a lookup per
    element, made six Python calls each (the atom's and its uuid's hash and equality: ~70 bytecodes a port), these
    two. The walk of the set is in C, at most ``SET_PER_ELEMENT`` elements per one removed (about what the Python calls
    saved cost). ``pacer`` ticks as the difference's ``PacedArray`` (ovsdb/longsets.py) would, after the work.
    ``known``: {text: number} of uuids read and checked before (``checked_numbers``). ``found``: kept by the caller
    for one update (a big delete's slices each drop some of the same bridge's ``ports``): the set's atoms by number
    made at the first difference, and the next ones look theirs up (``_atoms_by_number``) instead of walking the set
    again (10 slices of 10,000 ports)."""
    if type(json) is not list or len(json) != 2 or json[0] != "set" or not isinstance(json[1], list):
        return None
    atoms, values = json[1][:], datum.values  # (a slice: a plain list, not a PacedArray's paced iteration)
    texts = _uuid_texts(atoms, known) if atoms and len(atoms) * SET_PER_ELEMENT >= len(values) else None
    if texts is None:
        return None
    gone = set(numbers_of(texts, known))
    by_number = _atoms_by_number(values, found)
    present = list(filter(None, map(by_number.get, gone)))
    if len(present) != len(gone) or len(gone) != len(texts):  # (one added, or named twice)
        return None
    old = datum.copy()
    collections.deque(map(values.pop, present), maxlen=0)
    collections.deque(map(by_number.pop, gone), maxlen=0)
    if found is not None:
        found[id(values)] = (values, by_number, len(values))
    pacer.tick(len(texts) // ATOMS_PER_TICK)
    return old


def _atoms_by_number(values: dict, found: dict | None) -> dict:
    """{number: atom} of a set of uuids' atoms (``values``): the one ``found`` keeps for it when it is that dict still
    at the size ``drop_uuids`` left it (nothing else changed it since; kept with it: its id is not reused), else made
    (a walk of the set in C loops)."""
    kept = found.get(id(values)) if found is not None else None
    if kept is not None and kept[0] is values and kept[2] == len(values):
        return kept[1]
    keys = list(values)
    return dict(zip(map(_VALUE_INT, keys), keys))


def _uuid_reader(base):
    atom, kind, match, make = ovs.db.data.Atom, base.type, _UUID_RE.match, uuid_of

    def read(json):
        # 36 characters: the pattern takes a final newline too (its "$"), a text UUID refuses; left to ovs, which
        # refuses it in its own order (a duplicate before it: "set contains duplicate", not UUID's ValueError)
        if type(json) is list and len(json) == 2 and json[0] == "uuid" and type(json[1]) is str \
                and len(json[1]) == 36 and match(json[1]) is not None:
            return atom(kind, make(json[1]))
        return _FALLBACK
    read.uuid_kind = kind  # (its atoms' type: a long set of them is read by ``_uuid_set``)
    return read
