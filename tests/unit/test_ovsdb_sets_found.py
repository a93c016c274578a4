"""``_PacedIdl.sets_found`` (ovsdb/idl/paced.py, ovsdb/idl/datums.py ``drop_uuids``): a set of uuids' atoms by number,
kept from one part of an update to the next, against a plain ``ovs.db.idl.Idl`` fed the same parts as updates of their
own: the same rows, notifications and old values whatever the parts do to the set in between (many removed, a few,
one removed and one added: the same size, changed in place), whatever case the uuids' texts are in, across updates,
a refused part and a fresh read of the database (``__clear``)."""

import random
import uuid

import ovs.db.idl

from tests.unit.test_ovsdb_idl_parse import UPDATES, U, Recorded

BRIDGE = U[1]
POOL = [str(uuid.UUID(int=5000 + k)) for k in range(300)]  # what the bridge's ``ports`` may hold


def _fed_in_parts(plain, paced, parts, monkeypatch) -> None:
    """``parts`` applied by ``paced`` as the slices of one update (what ``_slices`` hands ``__parse_update``), each
    by ``plain`` as an update of its own (but for a part that does not parse, last: paced refuses it, changing
    nothing, where ovs notifies an update of nothing)."""
    monkeypatch.setattr(paced.idl, "_slices", lambda update, version, tables: parts)
    paced.feed({})
    monkeypatch.undo()
    for part in parts:
        if "not-a-uuid" not in str(part):
            plain.feed(part)


def _toggle(texts) -> dict:
    return {"Bridge": {BRIDGE: {"modify": {"ports": ["set", [["uuid", text] for text in texts]]}}}}


def _ports(recorded) -> set[str]:
    return {str(atom.value) for atom in recorded.idl.tables["Bridge"].rows[uuid.UUID(BRIDGE)]._data["ports"].values}


def _both(count: int):
    from ovsdb import idl

    plain, paced = Recorded(ovs.db.idl.Idl), Recorded(idl._TrackingIdl)
    for recorded in (plain, paced):
        recorded.feed(UPDATES[0])
        recorded.feed(_toggle([*POOL[:count], *_ports(recorded)]))  # the bridge holds POOL[:count] alone
    assert _ports(paced) == set(POOL[:count])
    return plain, paced


def test_a_set_changed_in_place_at_the_same_size_between_two_parts_is_not_read_from_the_kept_atoms(monkeypatch):
    """Part 1 drops 40 of 200 (``drop_uuids``: the atoms by number kept); part 2 removes one and adds another (the same
    size, ovs's difference in place); part 3 removes 29 and adds back the one part 2 removed: the kept atoms, if read
    again, would name it present and pop it from a set without it (a KeyError: the update refused)."""
    plain, paced = _both(200)
    parts = [_toggle(POOL[:40]), _toggle([POOL[40], POOL[250]]), _toggle([*POOL[41:70], POOL[40]])]
    _fed_in_parts(plain, paced, parts, monkeypatch)
    assert paced.idl.refused is None
    assert paced.data() == plain.data() and paced.notices == plain.notices
    assert _ports(paced) == {*POOL[70:200], POOL[40], POOL[250]}


def _random_parts(rng: random.Random, held: set[str]) -> list[dict]:
    """1-5 parts of one update, each a difference of the bridge's ``ports``: many removed (a slice of a big delete), a
    few, or some removed and some added (of the same number, or not), a uuid's text in upper case at times; none named
    twice in a part."""
    parts, now = [], set(held)
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice(("many", "many", "few", "swap", "mixed"))
        members, others = sorted(now), sorted(set(POOL) - now)
        if kind == "many" and members:
            out, into = rng.sample(members, rng.randint(1, max(1, len(members) // 3))), []
        elif kind == "few" and members:
            out, into = rng.sample(members, min(len(members), rng.randint(1, 3))), []
        else:
            count = rng.randint(1, 3)
            out = rng.sample(members, min(len(members), count if kind == "swap" else rng.randint(0, 40)))
            into = rng.sample(others, min(len(others), count if kind == "swap" else rng.randint(0, 3)))
        if not out and not into:
            continue
        now.symmetric_difference_update(out + into)
        named = [text.upper() if rng.random() < 0.1 else text for text in out + into]
        rng.shuffle(named)
        parts.append(_toggle(named))
    return parts


def test_any_parts_of_updates_give_the_rows_ovs_gives(monkeypatch):
    """Random updates in parts (``_random_parts``), now and then a fresh read of the database (``__clear``, then its
    first copy again: a reconnect) or a part that does not parse (the update refused there: its parts before it stay
    applied, as ovs applies them; the next update starts from the rows as they are): after each, paced and plain
    agree."""
    for seed in range(30):
        rng = random.Random(seed)
        plain, paced = _both(rng.randint(50, 250))
        for _ in range(12):
            if rng.random() < 0.1:  # a fresh read
                copy = {"Open_vSwitch": {U[0]: {"initial": {"bridges": ["uuid", BRIDGE]}}},
                        "Bridge": {BRIDGE: {"initial": {"name": "br-int", "ports": ["set", [
                            ["uuid", text] for text in sorted(_ports(plain))]]}}}}
                for recorded in (plain, paced):
                    recorded.idl._Idl__clear()  # (the tracking IDL's tells its rows deleted: ovs's does not)
                    recorded.notices.clear()
                    recorded.feed(copy)
            parts = _random_parts(rng, _ports(plain))
            if parts and rng.random() < 0.15:  # a part that does not parse: refused there
                cut = rng.randrange(len(parts))
                parts = [*parts[:cut], _toggle(["not-a-uuid"])]
            if not parts:
                continue
            _fed_in_parts(plain, paced, parts, monkeypatch)
            if paced.idl.refused is not None:
                assert "not-a-uuid" in str(parts[-1])
                paced.idl.refused = None
            assert paced.data() == plain.data(), seed
            assert paced.notices == plain.notices, seed
