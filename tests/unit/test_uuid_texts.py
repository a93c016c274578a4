"""ovsdb/idl/datums.py ``uuid_texts_match`` (a list of texts checked by one match of them joined) against the pattern
ovs checks a uuid's text with, text by text; ``uuids_of`` (each UUID's slots set by their own setters) against
``uuid.UUID``."""

import random
import uuid

import ovs.ovsuuid

from ovsdb.idl.datums import uuid_texts_match, uuids_of

_ALPHABET = "0123456789abcdefABCDEF-,\n xyz{}_+é"


def _mutant(rng: random.Random) -> str:
    """A uuid's text, or one with a character changed, added or taken out (a comma, a newline among them)."""
    text = str(uuid.UUID(int=rng.getrandbits(128)))
    if rng.random() < 0.2:
        return text.upper()
    i = rng.randrange(len(text))
    kind = rng.randrange(4)
    if kind == 0:
        return text[:i] + rng.choice(_ALPHABET) + text[i + 1:]
    if kind == 1:
        return text[:i] + rng.choice(_ALPHABET) + text[i:]
    if kind == 2:
        return text[:i] + text[i + 1:]
    return text + "\n"


def test_the_joined_match_says_what_the_pattern_says_of_each_text():
    rng = random.Random(7)
    match = ovs.ovsuuid.uuidRE.match
    for _ in range(3000):
        texts = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.randrange(0, 6))]
        if texts and rng.random() < 0.7:  # one of them changed (or not: a mutant may be a uuid's text still)
            texts[rng.randrange(len(texts))] = _mutant(rng)
        if rng.random() < 0.3:  # a text whose commas line up where the joined texts' separators fall
            texts.append(texts[0][:20] + "," + texts[0][21:] if texts else "")
        assert uuid_texts_match(texts) == all(map(match, texts)), texts


def test_texts_split_so_that_their_join_is_a_list_of_uuids_do_not_match():
    """Two texts that are not uuids, but whose join by "," reads as uuids, are refused as the pattern refuses each."""
    a, b = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    joined = a + "," + b
    assert not uuid_texts_match([joined[:30], joined[30:]])
    assert uuid_texts_match([a, b]) and uuid_texts_match([])


def test_not_text_raises_as_the_pattern_raises():
    for texts in ([1], [str(uuid.UUID(int=1)), None]):
        try:
            all(map(ovs.ovsuuid.uuidRE.match, texts))
        except TypeError:
            pass
        else:
            raise AssertionError(texts)
        try:
            uuid_texts_match(texts)
        except TypeError:
            continue
        raise AssertionError(texts)


def test_uuids_of_makes_what_uuid_makes():
    rng = random.Random(3)
    texts = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(100)] + ["0" * 8 + "-0000" * 3 + "-" + "F" * 12]
    made = uuids_of(texts)
    assert made == [uuid.UUID(text) for text in texts]
    assert [u.is_safe for u in made] == [uuid.SafeUUID.unknown] * len(texts)
    assert list(map(hash, made)) == [hash(uuid.UUID(text)) for text in texts]


def test_numbers_are_looked_up_when_every_one_is_known_else_each_read():
    from ovsdb.idl.datums import numbers_of

    texts = [str(uuid.UUID(int=k)) for k in range(1, 5)]
    assert numbers_of(texts) == [1, 2, 3, 4]
    assert numbers_of(texts, dict.fromkeys(texts, 7)) == [7, 7, 7, 7]  # (known: looked up, not read)
    assert numbers_of(texts, dict.fromkeys(texts[:3], 7)) == [1, 2, 3, 4]  # one unknown: each read
    assert uuids_of(texts, {texts[0]: 1}) == [uuid.UUID(text) for text in texts]


def test_a_sets_atoms_by_number_are_kept_for_its_next_difference_and_made_again_when_it_changed():
    """``drop_uuids`` with ``found`` (kept by the replica for one update): the set's atoms by number made at the first
    difference serve the next (a big delete's slices), and are made again when its size changed otherwise meanwhile;
    the same values and old values as without it."""
    import ovs.db.data
    import ovs.db.types

    from controller.pacer import NEVER
    from ovsdb.idl.datums import drop_uuids

    kind = ovs.db.types.Type(ovs.db.types.BaseType(ovs.db.types.UuidType), None, 0, 1 << 30)
    ids = [uuid.UUID(int=k) for k in range(1, 101)]

    def datum():
        return ovs.db.data.Datum(kind, {ovs.db.data.Atom(ovs.db.types.UuidType, u): None for u in ids})

    def diff(numbers):
        return ["set", [["uuid", str(uuid.UUID(int=k))] for k in numbers]]

    plain, kept, found = datum(), datum(), {}
    for numbers in (range(1, 11), range(11, 31)):
        assert drop_uuids(kept, diff(numbers), NEVER, None, found) == drop_uuids(plain, diff(numbers), NEVER)
        assert kept == plain
    assert len(found) == 1
    by_number = next(iter(found.values()))[1]
    assert sorted(by_number) == list(range(31, 101))
    for value in (plain, kept):  # changed otherwise (ovsdb/idl/paced.py forgets it then; its size changed too)
        del value.values[ovs.db.data.Atom(ovs.db.types.UuidType, uuid.UUID(int=40))]
    assert drop_uuids(kept, diff(range(41, 60)), NEVER, None, found) == drop_uuids(plain, diff(range(41, 60)), NEVER)
    assert kept == plain and sorted(next(iter(found.values()))[1]) == [*range(31, 40), *range(60, 101)]


def _reads(text: str) -> int | None:
    """What ``checked_numbers`` gives one text, by the pattern and ``uuid.UUID``: its number when the pattern matches
    it in 36 characters, else None."""
    return uuid.UUID(text).int if len(text) == 36 and ovs.ovsuuid.uuidRE.match(text) else None


def test_checked_numbers_read_what_uuid_reads_of_texts_the_pattern_takes_and_nothing_else():
    """``checked_numbers`` (one C pass over the texts' join: hyphens, hexadecimal digits, 16 bytes each) against the
    pattern and ``uuid.UUID`` text by text: random uuids, upper case, and mutants (a character changed, added or taken
    out: a space, an underscore or a "+" that ``int(text, 16)`` would take, a newline the pattern takes)."""
    from ovsdb.idl.datums import checked_numbers
    rng = random.Random(11)
    for _ in range(3000):
        texts = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(rng.randrange(1, 6))]
        if rng.random() < 0.7:
            texts[rng.randrange(len(texts))] = _mutant(rng)
        read = list(map(_reads, texts))
        assert checked_numbers(texts) == (None if None in read else read), texts
    edge = [str(uuid.UUID(int=0)), str(uuid.UUID(int=(1 << 128) - 1)), str(uuid.UUID(int=1)).upper()]
    assert checked_numbers(edge) == [0, (1 << 128) - 1, 1]
    for bad in ([], [1], [None], ["0000000_-0000-0000-0000-000000000001"], [" 0000000-0000-0000-0000-000000000001"],
                ["00000000-0000-0000-0000-00000000000\u0661"], ["00000000-0000-0000-0000-0000000000-1"]):
        assert checked_numbers(bad) is None, bad


def test_only_rows_deleted_and_nothing_else_are_deleted_only():
    """``longsets.deleted_only``: every row update exactly ``{"delete": null}`` (what the checks may skip)."""
    from ovsdb.longsets import deleted_only
    assert deleted_only({}) and deleted_only({"a": {"delete": None}, "b": {"delete": None}})
    for other in ({"delete": None, "insert": {}}, {"delete": 0}, {"insert": {}}, None, [], {"modify": {}}):
        assert not deleted_only({"a": {"delete": None}, "b": other}), other
