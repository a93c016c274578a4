"""A big update of ports cut into slices, each a state of the database that smaller transactions could have produced.

Why: 10,000 ports added to a bridge in one transaction arrive as one update of 20,001 rows. Applied whole, nothing of
it is reported before every row is parsed and applied (~0.5 s of CPU in the IDL, then ~0.2 s in the reporter):
the first vport is bound, and its route announced, only after that (evpn_routes' announce phase, docs/benchmarks.md).
Applied in slices (``LEAD_PORTS`` ports first, then from ``SLICE_PORTS`` on: ``sizes``), the replica's reader
(``Replica``'s ``on_slice``) reports each slice as it lands.

Only a *pure* big insert or a *pure* big delete of ports is cut (``plan``): every Port and Interface row of the
update is inserted (or every one deleted), and a port goes into a slice only when

- one Bridge row of the update, a "modify" of its ``ports`` alone, adds it to its ``ports`` (a delete: removes it,
  and it is a member now), and no other Bridge row names it (a port moved between bridges stays in the last slice,
  moved there at once);
- it holds only interfaces the same update inserts (deletes), which no other port of the update holds (deleted: the
  replica's row says which it holds, and it must have one).

A slice holds its ports, their interfaces, and each bridge's ``ports`` difference for exactly those ports: after it,
every port reported has its interfaces and a bridge's ``ports`` is its old value plus the ports added so far (or
minus those removed so far); no reference dangles. (A row "inserted" again that exists is replaced, as the whole
update would replace it, in the slice holding its port and interfaces together.) Everything else of the update
(the other tables and rows, a bridge's other columns, the ports that do not qualify) is the last slice. An update
that changes ports in any other way (a port renamed or re-bound: a delete with an insert, an interface's iface-id
changed) is not cut: it is applied whole, as is an insert naming a row twice (its uuid's text in upper case too:
ovs applies the two in order), an old-protocol (``update``) update, the first copy, and anything of
a shape this module does not expect (ovs parses and refuses it as before). Applying the slices one after another
gives the same rows as applying the update whole: a set's difference toggles its elements, so the parts of one
bridge's difference may be applied in any order (tests/unit/test_ovsdb_slices.py).

What the reporter makes of a port depends on its bridge's other columns (its name, datapath, external_ids) and on the
root row's (the system-id): an update that also changes those may be several transactions merged (ovsdb-server
sends what changed since its last update to a slow reader), and which came first is unknown. Its slices would report
the ports under the bridge's or the root's old values, perhaps a state that never was (ports added to the
integration bridge after it was renamed, bound under its old name). Such an update is applied whole: its ports
stay in the last slice when their bridge's row changes more than its ``ports``, and nothing is cut when the root
row changes more than its ``bridges``. Nor is anything cut for a replica that reads another reference to ports or
interfaces than a bridge's ``ports`` and a port's ``interfaces`` (``_references_to_ports``).
"""

from __future__ import annotations

import collections
import itertools
import operator
import uuid
from collections.abc import Callable, Iterable, Iterator

from controller.pacer import NEVER, Pacer
from ovsdb.idl.datums import checked_numbers
from ovsdb.idl.lazy import LazyDatum
from ovsdb.longsets import deleted_only

SLICE_PORTS = 500  # ports (with their interfaces) in the slice after the lead; an update with fewer sliceable ports:
# whole
LEAD_PORTS = 100  # ports in the first slice (the lead; at most SLICE_PORTS): a big delete's first withdrawal waits for
# its slice alone (10,000 ports deleted: the first withdrawal ~10 ms of CPU sooner than after a first slice of 500)
GROWTH = 2  # each slice holds up to this many times the ports of the one before: each report's cost that grows with
# the bridge (the reporter's and State's sorted tuples of every port) is paid a few times, not once per 500 ports;
# and at most half of the ports left (but SLICE_PORTS): the slices shrink again towards the end (``sizes``)
ITEMS_PER_TICK = 5  # ports, interfaces or rows looked at count as one row of the replica's pacer (idl.PAUSE_ROWS)
INSERT, DELETE = "insert", "delete"
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)
_VALUE_INT = operator.attrgetter("value.int")  # an atom's uuid's number
_INT = operator.attrgetter("int")  # a uuid's number
_LAST = operator.itemgetter(-1)  # of a row's stack: the row
_DATA = operator.attrgetter("_data")  # HACK (ovs 4.0.0): a Row's columns (name -> Datum)
_INTERFACES = operator.itemgetter("interfaces")
_LAZY = LazyDatum


def plan(update, tables, slice_ports: int | None = None, pacer: Pacer = NEVER,
         between: Callable[[], None] | None = None,
         leaving: Callable[[list[int]], None] | None = None, known: dict | None = None) -> Iterator[dict] | None:
    """The slices of ``update`` (update2/update3's ``<table-updates>``), in order (each built when reached: ``_parts``),
    the rest last; None when it is not a pure big insert or delete of ports (then it is applied whole). ``tables``: the
    Idl's tables (the rows now); ``slice_ports``: the ports of the slice after the lead (default ``SLICE_PORTS``; the
    lead: ``LEAD_PORTS``, at most that); ``pacer``: ticked per ``ITEMS_PER_TICK`` ports, interfaces or rows looked at
    (10,000 ports deleted: ~20-40 ms of planning, with the event loop's turns). ``between``: called when the part after
    a slice is asked for, before it is built (the reader's report of the slice applied: the lead's withdrawals do not
    wait for the next slice, nor for the sliceable ports found after the lead); before the rest once it is made, and
    not when it is empty. ``leaving``: called with the numbers of the deleted Interface rows of a big pure delete of
    ports, once its shape is checked, before any slice is planned or applied (the reader's early word: the vports
    those interfaces stand for are about to go, controller/state_leaving.py); the update is then applied (in slices,
    or whole when its ports do not qualify), unless the peer breaks the protocol further on (its session is closed).
    ``known``: given, {uuid text: its number} of a big delete's ports and interfaces as the plan reads them (texts of 36
    characters; the numbers ``uuid.UUID`` gives them) is added to it: its rows deleted and its bridge's difference look
    them up (ovsdb/idl/datums.py ``known_numbers``), each read once, and checked against ovs's pattern once
    (``datums.checked_numbers``: a text it refuses, and the update is applied whole)."""
    walk = _Walk(pacer)
    try:
        return _plan(update, tables, slice_ports or SLICE_PORTS, walk, between or _nothing, leaving, known)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError):  # a shape not expected: ovs judges it whole
        return None


def _nothing() -> None:
    """``plan``'s ``between`` when none is given."""


class _Walk:
    """``walk(items)``: ``items`` as they are, ticking ``pacer`` per ``ITEMS_PER_TICK`` of them, a chunk at a time (a
    generator's turn per item cost a fifth of the planning); ``walk.blocks(items)``: those chunks themselves (lists),
    for C loops over each."""

    def __init__(self, pacer: Pacer, chunk: int = 100 * ITEMS_PER_TICK):
        self.pacer, self.chunk = pacer, chunk

    def __call__(self, items) -> Iterator:
        return itertools.chain.from_iterable(self.blocks(items))

    def blocks(self, items) -> Iterator[list]:
        iterator, chunk, pacer = iter(items), self.chunk, self.pacer
        while True:
            block = list(itertools.islice(iterator, chunk))
            if not block:
                return
            yield block
            pacer.tick(len(block) // ITEMS_PER_TICK)


def _plan(update, tables, slice_ports: int, walk, between: Callable[[], None],
          leaving: Callable[[list[int]], None] | None = None, known: dict | None = None) -> Iterator[dict] | None:
    if not isinstance(update, dict) or not {"Port", "Interface", "Bridge"} <= tables.keys():
        return None
    ports, ifaces = update.get("Port"), update.get("Interface", {})
    if not isinstance(ports, dict) or len(ports) <= slice_ports or not isinstance(ifaces, dict):
        return None
    operation = _operation(ports, ifaces)
    if operation is None or not _root_keeps_its_values(update.get("Open_vSwitch", {})) or \
            _references_to_ports(tables) != _SLICED_REFERENCES:
        return None
    if operation == INSERT and (_named_twice(ports) or _named_twice(ifaces)):
        return None
    numbers: dict[str, int] = {}  # a port's uuid text -> its number, for the bridge and the interfaces alike
    deleted = None  # a delete's interfaces: (their uuid texts, their numbers), made once
    if operation == DELETE:
        listed = list(walk(ifaces))
        deleted = (listed, _numbers(listed))
        if leaving is not None:
            leaving(deleted[1])
    owner = _bridge_of(update.get("Bridge", {}), tables["Bridge"].rows, operation, walk, numbers)
    held = _interfaces_held(ports, ifaces, tables["Port"].rows, operation, walk, numbers, deleted)
    if known is not None and deleted is not None:  # (a delete's)
        known.update(numbers)
        known.update(zip(*deleted))
    sliceable = _sliceable(ports, ifaces, held, owner, walk)
    ahead = list(itertools.islice(sliceable, slice_ports + 1))  # enough to cut: the others are found after the lead
    if len(ahead) <= slice_ports:
        return None
    _check_rest(update)  # what ``_rest`` reads, checked here (inside plan's try): the rest is made when reached
    return _parts(ahead, sliceable, (min(LEAD_PORTS, slice_ports), slice_ports), update, held, owner, walk, between)


def _parts(ahead: list[str], more: Iterator[str], sizing: tuple[int, int], update: dict, held: dict, owner: dict,
           walk, between: Callable[[], None]):
    """The slices of the sliceable ports (``ahead``: the first of them, found by the plan; ``more``: the others, found
    once the lead is reported), ``sizing`` (the lead's ports, the first slice's after it: ``sizes``), each built when
    the reader reaches it (after ``between``), then the rest (when not empty, also made when reached): the first
    withdrawal of a big delete waits for its own slice only (building all the slices of 10,000 ports was ~7 ms of CPU
    before it; the rest, which walks every row of the update, ~6 ms; finding every sliceable port, ~5 ms). A slice and
    the rest read only what the plan checked (each port's rows, interfaces and bridge; the update's tables and
    bridges), so building them later raises nothing; nothing they read is changed by applying the slices before
    them."""
    lead, slice_ports = sizing
    yield _slice(walk(ahead[:lead]), update, held, owner)
    between()
    chosen = ahead + list(more)
    start = lead
    for k, count in enumerate(sizes(len(chosen) - lead, slice_ports)):
        if k:
            between()
        yield _slice(walk(chosen[start:start + count]), update, held, owner)
        start += count
    rest = _rest(update, chosen, held, owner, walk)
    if rest:  # (else the last slice is the update's last part: its reader reports it after the update, as a whole one)
        between()
        yield rest


def sizes(count: int, first: int) -> list[int]:
    """The ports of each slice of ``count``: ``first``, then GROWTH times the one before, but never more than half
    of the ports left (nor fewer than ``first``, but for the last). Why they shrink again: what the reader makes
    of a slice goes on while the next is parsed (a big delete's EVPN withdrawals leave at each slice, bgp/origins.py,
    and the peer takes them in meanwhile), but while the peers take in what it makes of the last one, no slice is
    left to parse: a big last slice (2,500 of 10,000 ports deleted, doubling alone) left its 2,500 withdrawals to the
    peers after every other was taken in (evpn_routes' withdraw phase, docs/benchmarks.md)."""
    out, size, left = [], first, count
    while left > 0:
        take = min(size, max(first, (left + 1) // 2), left)
        out.append(take)
        left, size = left - take, size * GROWTH
    return out


_SLICED_REFERENCES = {("Bridge", "ports"), ("Port", "interfaces")}  # the references a slice keeps whole


def _references_to_ports(tables) -> set[tuple[str, str]]:
    """The (table, column)s of the replica that refer to Port or Interface rows. A slice keeps only
    ``_SLICED_REFERENCES`` whole: a replica that also reads another (Mirror's ``select_src_port``, a weak reference
    ovsdb-server removes in the transaction that deletes the port) would see it dangle between slices, so then
    nothing is cut."""
    return {(table.name, column.name) for table in tables.values() for column in table.columns.values()
            for base in (column.type.key, column.type.value)
            if base is not None and base.ref_table_name in ("Port", "Interface")}


def _operation(ports: dict, ifaces: dict) -> str | None:
    """INSERT or DELETE when every Port and Interface row of the update is that, else None. Each row's update looked at
    by C loops (``map``): 20,000 rows of a big delete, ~30 bytecodes each in a Python loop."""
    if deleted_only(ports) and deleted_only(ifaces):  # (a big delete's: compared in C, no iterator made per row)
        return DELETE
    found = set()
    for rows in (ports, ifaces):
        updates = rows.values()
        if not all(map(isinstance, updates, itertools.repeat(dict))) or not set(map(len, updates)) <= {1}:
            return None
        found.update(map(next, map(iter, updates)))  # each one's only key
        if len(found) > 1:
            return None
    (operation,) = found
    return operation if operation in (INSERT, DELETE) else None


def _named_twice(rows: dict) -> bool:
    """Whether two member names of ``rows`` (a table's, in an insert) are texts of one uuid (one in upper case: a
    hostile peer's), or one is no uuid: ovs inserts such rows in order, the later replacing the earlier, an order
    slices would change (the one a port holds in its slice, the other in the rest). ovsdb-server's lower-case texts
    are told in one C pass over their join (a big insert's 20,000)."""
    joined = "".join(rows)
    if joined == joined.lower():
        return False
    numbers = checked_numbers(list(rows))
    return numbers is None or len(set(numbers)) < len(numbers)


def _root_keeps_its_values(roots: dict) -> bool:
    """True when the update changes no root (Open_vSwitch) row but for its ``bridges`` (the system-id the ports
    are reported under stays as it is: see the module docstring)."""
    return all(isinstance(row_update, dict) and isinstance(row_update.get("modify"), dict) and
               row_update.keys() == {"modify"} and row_update["modify"].keys() <= {"bridges"}
               for row_update in roots.values())


def _uuids(value) -> list[str]:
    """The uuids of a reference set's JSON (``["uuid", u]`` or ``["set", [["uuid", u], ...]]``); ValueError else
    (a uuid not text: ``_rest`` hashes each, after the slices, outside plan's try)."""
    if value[0] == "uuid":
        if not isinstance(value[1], str):
            raise ValueError(value)
        return [value[1]]
    if value[0] != "set":
        raise ValueError(value)
    atoms = value[1]  # each looked at by C loops (``map``): a big delete's bridge difference, 10,000 atoms, read twice
    out = list(map(_SECOND, atoms))
    if not set(map(_FIRST, atoms)) <= {"uuid"} or not all(map(isinstance, out, itertools.repeat(str))):
        raise ValueError(next(atom for atom in atoms if atom[0] != "uuid" or not isinstance(atom[1], str)))
    return out


def _named_count(value) -> int:
    """How many uuids a reference set's JSON names (a shape ``_uuids`` took), each counted as often as named."""
    return 1 if value[0] == "uuid" else len(value[1])


def _bridge_of(bridges: dict, rows, operation: str, walk, numbers: dict[str, int]) -> dict[str, str]:
    """{port uuid: the bridge whose ``ports`` difference alone names it}; for a delete only the current members (the
    ports' numbers kept in ``numbers``). A deleted port another bridge's difference names too, before or after its own
    (a hostile peer's: that adds it there), has none: it stays in the rest, with both differences."""
    owner, twice = {}, set()
    named = numbers if operation == DELETE else owner  # every port the differences named so far
    for bridge, row_update in bridges.items():
        if not isinstance(row_update, dict):
            raise ValueError(row_update)  # for ovs to refuse, whole
        diff = row_update.get("modify")
        if not isinstance(diff, dict) or diff.keys() != {"ports"}:  # its other columns too: order unknown, whole
            continue
        members = _members(rows, bridge) if operation == DELETE else frozenset()
        listed = list(walk(_uuids(diff["ports"])))
        if len(set(listed)) == len(listed) and named.keys().isdisjoint(listed):  # each named once (the usual): C loops
            _own(owner, numbers, bridge, listed, members, operation)
            continue
        for port, number in zip(listed, _numbers(listed) if operation == DELETE else itertools.repeat(None)):
            if port in named:
                twice.add(port)
            elif operation == INSERT:
                owner[port] = bridge
            else:
                numbers[port] = number
                if number in members:
                    owner[port] = bridge
    for port in twice:
        owner.pop(port, None)
    return owner


def _own(owner: dict, numbers: dict, bridge: str, listed: list[str], members: frozenset, operation: str) -> None:
    """What ``_bridge_of``'s loop does with ``listed`` (ports no difference named before, each once), in C loops
    (``map``): an insert's are ``bridge``'s; a delete's numbered (``numbers``), its current ``members`` ``bridge``'s."""
    if operation == INSERT:
        owner.update(zip(listed, itertools.repeat(bridge)))
        return
    got = _numbers(listed)
    numbers.update(zip(listed, got))
    owner.update(zip(itertools.compress(listed, map(members.__contains__, got)), itertools.repeat(bridge)))


def _members(rows, bridge: str) -> frozenset[int]:
    """The ports ``bridge`` holds now (``_number``s; none when the replica lacks it)."""
    row = rows.get(uuid.UUID(bridge))
    return frozenset(map(_VALUE_INT, row._data["ports"].values)) if row is not None else frozenset()  # (C loops)


def _number(text: str) -> int:
    """A uuid's text as its number (what ``uuid.UUID(text).int`` is); ValueError for a text ovs's pattern does not take
    in 36 characters (the update is then applied whole: ovs refuses it)."""
    return _numbers([text])[0]


def _numbers(texts: list[str]) -> list[int]:
    """``_number`` of each of ``texts`` (``datums.checked_numbers``: 10,000 ports and 10,000 interfaces of a big
    delete, checked and read in C). Every text the plan reads so is checked: its numbers are handed out (``known``)
    as such."""
    numbers = checked_numbers(texts) if texts else []
    if numbers is None:
        raise ValueError("not uuids")
    return numbers


def _interfaces_held(ports: dict, ifaces: dict, rows, operation: str, walk, numbers: dict[str, int],
                     deleted: tuple | None = None) -> dict:
    """{port uuid: its interfaces' uuids (a list or tuple)}: inserted, from the update; deleted, from the replica's row
    (an interface the update does not delete as None; a port the replica lacks is left out), in the table's order.
    ``numbers``: the ports' numbers ``_bridge_of`` made (each made once: 10,000 ports deleted). A delete's ports are
    found in one walk of the table's rows, each row read where it is reached: looked up by number in a map of every
    row made first, each was reached twice, its objects out of the CPU's caches the second time (10,000 ports deleted:
    the plan ~30 % dearer; docs/benchmarks.md "wdfirst39"). ``deleted``: the deleted interfaces' (uuid texts,
    numbers), if made already."""
    if operation == INSERT:
        return {port: _uuids(row_update[INSERT]["interfaces"]) for port, row_update in walk(ports.items())}
    if deleted is None:
        listed = list(walk(ifaces))
        deleted = (listed, _numbers(listed))
    get = _text_of(deleted)
    names = list(walk(ports))
    got = list(map(numbers.get, names))
    if None in got:  # (a port no bridge's difference named: its number made here)
        got = [_number(port) if number is None else number for port, number in zip(names, got)]
    wanted, held = dict(zip(got, names)), {}
    for block in walk.blocks(_table_rows(rows)):
        found = list(map(wanted.get, map(_INT, map(_FIRST, block))))  # the port each row is, if deleted
        if found.count(None) == len(found):
            continue
        going = list(itertools.compress(found, found))
        stacks = list(map(_SECOND, itertools.compress(block, found)))
        if not all(stacks):  # (a row no longer in its table: none held)
            going, stacks = list(itertools.compress(going, stacks)), list(filter(None, stacks))
        datums = list(map(_INTERFACES, map(_DATA, map(_LAST, stacks))))
        jsons = list(map(getattr, datums, itertools.repeat("json"), itertools.repeat(None)))
        if None in jsons:  # (a port whose interfaces were read as a Datum, or changed since its insert)
            held.update(zip(going, map(_held_by, datums, itertools.repeat(get))))
        else:  # new ports' one reference each as sent, never read (ovsdb/idl/lazy.py): no atoms made, C loops
            held.update(zip(going, zip(_deleted_texts(list(map(_SECOND, jsons)), ifaces, get))))
    return held


def _text_of(deleted: tuple) -> Callable[[int], str | None]:
    """number -> the text of the deleted interface of that number (``deleted``: (texts, numbers)), None for another;
    their map made at the first call (none when every port's references are the update's texts: ``_deleted_texts``)."""
    made: dict[int, str] = {}

    def get(number: int) -> str | None:
        if not made:
            made.update(zip(deleted[1], deleted[0]))
        return made.get(number)
    return get


def _deleted_texts(texts: list[str], ifaces: dict, get) -> list:
    """The uuid texts of the update's Interface rows (``ifaces``) that ``texts`` (a port's references as sent) name,
    None for one it does not delete: ``texts`` themselves when each is one of them (the usual: ovsdb-server writes a
    uuid one way), else each by its number (``get``: number -> text)."""
    if all(map(ifaces.__contains__, texts)):
        return texts
    return list(map(get, _numbers(texts)))


def _held_by(datum, get) -> tuple:
    """The interfaces a deleted port's ``interfaces`` column holds, by their uuid texts (``get``: number -> text)."""
    if datum.__class__ is _LAZY and datum.json is not None:  # one reference as sent (ovsdb/idl/lazy.py)
        return (get(_number(datum.json[1])),)
    return tuple(map(get, map(_VALUE_INT, datum.values)))


def _table_rows(rows) -> Iterable[tuple]:
    """(uuid, [..., row]) of a table's rows (an empty list: none). HACK (ovs 4.0.0): read from ``IndexedRows.data``
    (uuid -> [row, ...], the last one the row, as ovsdb/idl/rowloop.py reads it): the mapping's ``values()`` fetch
    each row through ``IndexedRows.__getitem__``, a Python call and a uuid hash per row (10,000 ports deleted: a fifth
    of the plan)."""
    stacks = getattr(rows, "data", None)
    if not isinstance(stacks, dict):
        return ((row.uuid, [row]) for row in rows.values())
    return stacks.items()


def _sliceable(ports: dict, ifaces: dict, held: dict, owner: dict, walk) -> Iterator[str]:
    """The ports of the update that may go into a slice (see the module docstring), in the update's order, found as
    they are taken: each held interface in the update and held by that port alone (``barred``: those that are not,
    found once, in C loops when no interface is held twice: the usual)."""
    claimed = list(itertools.chain.from_iterable(held.values()))
    barred = set(claimed)
    if len(barred) == len(claimed):
        barred.difference_update(ifaces)
    else:
        claims = collections.Counter(claimed)
        barred = {iface for iface, count in claims.items() if count > 1 or iface not in ifaces}
    found = filter(held.get, filter(owner.__contains__, walk(ports)))  # (C loops: 10,000 ports deleted)
    return (port for port in found if barred.isdisjoint(held[port])) if barred else found


def _slice(ports, update: dict, held: dict, owner: dict) -> dict:
    """One slice: ``ports``, their interfaces and each bridge's ``ports`` difference for them."""
    port_rows, iface_rows = update["Port"], update["Interface"]
    ports = list(ports)  # each port's rows, interfaces and bridge read in C loops (``map``: up to 3,200 ports a slice)
    ifaces = list(itertools.chain.from_iterable(map(held.__getitem__, ports)))
    bridges = list(map(owner.__getitem__, ports))
    if len(set(bridges)) == 1:  # (the usual: one bridge)
        out_bridges = {bridges[0]: list(map(list, zip(itertools.repeat("uuid"), ports)))}
    else:
        out_bridges = {}
        for port, bridge in zip(ports, bridges):
            out_bridges.setdefault(bridge, []).append(["uuid", port])
    return {"Interface": dict(zip(ifaces, map(iface_rows.__getitem__, ifaces))),
            "Port": dict(zip(ports, map(port_rows.__getitem__, ports))),
            "Bridge": {bridge: {"modify": {"ports": ["set", added]}} for bridge, added in out_bridges.items()}}


def _check_rest(update: dict) -> None:
    """Raise what ``_rest`` would raise on ``update`` (a table's rows not an object, a bridge's ``ports`` difference
    of a shape not expected): it runs after the slices, outside plan's try. The bridges' differences of ``ports``
    alone were read by ``_bridge_of``; a bridge's row is an object (``_bridge_of``)."""
    for rows in update.values():
        if not isinstance(rows, dict):
            raise ValueError(rows)
    for row_update in update.get("Bridge", {}).values():
        diff = row_update.get("modify")
        if isinstance(diff, dict) and "ports" in diff and diff.keys() != {"ports"}:
            _uuids(diff["ports"])


def _rest(update: dict, chosen: list[str], held: dict, owner: dict, walk) -> dict:
    """What the slices leave of ``update``: its other rows, and each bridge's difference without the ports sliced
    with it (``owner``)."""
    # each port and interface sliced once (``_sliceable``): how many, without their sets when every row of the table
    # was sliced (a big delete's 10,000 ports and 10,000 interfaces)
    counts = {"Port": len(chosen), "Interface": sum(map(len, map(held.__getitem__, chosen)))}
    gone_ports, gone_ifaces = set(chosen), None
    owned = collections.Counter(map(owner.__getitem__, chosen))  # bridge -> its ports sliced
    rest = {}
    for table, rows in update.items():
        if counts.get(table) == len(rows):  # every row sliced (those sliced are of ``rows``: ``_sliceable``)
            continue
        if table == "Interface" and gone_ifaces is None:
            gone_ifaces = set(itertools.chain.from_iterable(map(held.__getitem__, chosen)))
        gone = gone_ports if table == "Port" else gone_ifaces if table == "Interface" else ()
        # the rows kept picked in C loops (``map``): made after the last slice, before its report (a big delete's
        # last withdrawals), walking 10,000 ports and 10,000 interfaces deleted
        kept = dict(itertools.compress(rows.items(), map(operator.not_, map(gone.__contains__, rows)))) if gone \
            else dict(walk(rows.items()))
        if table == "Bridge":
            kept = {key: row_update for key, row_update in _without(kept, gone_ports, owner, owned).items()
                    if row_update}
        if kept:
            rest[table] = kept
    return rest


def _without(bridges: dict, ports: set, owner: dict, owned: dict) -> dict:
    """The Bridge rows' updates with the sliced ports taken out of their ``ports`` difference, each out of its own
    bridge's only (``owner``: another bridge's difference that names it, one whose other columns change too, keeps it;
    a slice took it out of every one, and that bridge lost the port's addition or removal); empty when nothing is
    left of one. ``owned``: {bridge: how many of its ports were sliced}: a difference of ``ports`` alone naming that
    many is left empty, not walked (it names each once: ``_bridge_of``; a big delete's 10,000 ports)."""
    out = {}
    for bridge, row_update in bridges.items():  # each a dict (_bridge_of)
        diff = row_update.get("modify")
        if not isinstance(diff, dict) or "ports" not in diff:
            out[bridge] = row_update
            continue
        if owned.get(bridge) and diff.keys() == {"ports"} and owned[bridge] == _named_count(diff["ports"]):
            out[bridge] = {}
            continue
        named = _uuids(diff["ports"])
        kept = map(operator.or_, map(operator.not_, map(ports.__contains__, named)),  # (C loops: 10,000 ports deleted)
                   map(operator.ne, map(owner.get, named), itertools.repeat(bridge)))
        left = list(map(list, zip(itertools.repeat("uuid"), itertools.compress(named, kept))))
        if len(left) == len(named):  # none sliced: as it came (an empty difference too: of a row that may not exist)
            out[bridge] = row_update
            continue
        diff = {column: value for column, value in diff.items() if column != "ports"}
        if left:
            diff["ports"] = ["set", left]
        out[bridge] = {"modify": diff} if diff else {}
    return out
