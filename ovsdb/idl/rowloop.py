"""An update2/update3 update's rows applied as ovs 4.0.0's ``Idl.__do_parse_update`` applies them, with a row that is
only deleted taken on a fast path, and a new row or a modified one put in its table directly (``apply``:
``_PacedIdl``'s, ovsdb/idl/paced.py).

Why: a big delete (evpn_routes' withdraw: 10,000 ports and their interfaces in one transaction) is 20,000 rows of
``{"delete": null}``. ovs parses each one's uuid twice (``ovsuuid.from_string`` matches the pattern again after
``is_valid_string``), finds the row through ``Mapping.get`` (which calls ``IndexedRows.__getitem__``, which raises
KeyError for a missing row), removes it through ``IndexedRows.__delitem__`` (three lookups of the uuid, then the
table's indexes) and makes a ``Notice`` per row. Here: the pattern matched once, the row's stack looked up once and
popped. Everything else is ovs's own: the other rows go to its ``__process_update2``, the same checks refuse a
malformed update, the notifications are made in the same order once every row is applied (ovs: a list of
notices notified at the end), and ``change_seqno`` counts the same (tests/unit/test_ovsdb_idl_parse.py compares
rows, notifications and the replica's changes with a plain ``ovs.db.idl.Idl`` fed the same updates).

What ovs does with a deleted row, and so does this: the row leaves ``table.rows`` (``IndexedRows.data``, uuid ->
[row, ...]: the last one is the row; ``IndexedRows.__setitem__`` of a uuid the table holds stacks the new one on
top, which only ovs's transaction code does, a row a transaction deleted put back over a copy an update brought
meanwhile: an update's insert of a row that exists replaces it) and is notified as ROW_DELETE with the row as it was;
nothing else is touched (the references to it from other rows are their own columns, which the same update changes:
a bridge's ``ports``). A copy left below a deleted row is the row then: it is noted in ``idl.uncovered``, which the
tracking IDL's notify reads (its name index and changes follow the table: ovsdb/idl/paced.py). A delete of a row the
table lacks is ovs's warning and nothing else. A table with a custom index (``Idl.index_create``: Canopy makes none)
goes through ovs's own path.

Inserts and modifies (evpn_routes' announce: 20,000 rows inserted, then ovs-vswitchd's ``ofport`` on the 10,000 new
interfaces; a session's first read: every row "initial") are ovs's own too (the Idl's ``__create_row``,
``__add_default``, ``__row_update``, ``__apply_diff``), but the row is found and put back in ``IndexedRows.data``
directly, not through ``Mapping.get``, ``IndexedRows.__getitem__``, ``__setitem__`` and ``__delitem__``: ~4 Python
calls a row (docs/benchmarks.md "announce OVSDB side, stop 37"). An insert of a row the table holds (ovs replaces
it, with a warning) and an unknown operation (ovs's error) go to ovs's ``__process_update2``.
"""

from __future__ import annotations

import itertools
import operator

import ovs.db.error
import ovs.db.idl
import ovs.ovsuuid

from ovsdb.idl.datums import checked_numbers, known_numbers, uuid_of, uuid_texts_match, uuids_numbered, uuids_of

# HACK (ovs 4.0.0): the pattern is_valid_string and from_string match (ovs.ovsuuid.uuidRE); from_string's uuid is
# uuid.UUID of the same text.
_UUID_TEXT = ovs.ovsuuid.uuidRE
_ROW_DELETE, _ROW_CREATE, _ROW_UPDATE, _ROW = (ovs.db.idl.ROW_DELETE, ovs.db.idl.ROW_CREATE, ovs.db.idl.ROW_UPDATE,
                                             ovs.db.idl.Row)
_OVS_LOG = ovs.db.idl.vlog
_NUMBER = operator.attrgetter("int")
DELETED_ROWS = "deleted rows"  # a notice of ``apply``: (DELETED_ROWS, table name, [row, ...]), told by notify_deleted


def apply(idl, table_updates, tables) -> None:
    """Apply ``table_updates`` (an update2/update3 ``<table-updates>``) to ``idl``'s ``tables`` and notify ``idl``
    of the rows changed, as ovs 4.0.0's ``__do_parse_update`` does; raises what it raises for a malformed update
    (``ovs.db.error.Error``; the caller refuses the update)."""
    if not isinstance(table_updates, dict):
        raise ovs.db.error.Error("<table-updates> is not an object", table_updates)
    notices = []
    batched = False  # a notice of DELETED_ROWS among them
    tracked = tables is not idl.server_tables  # ovs notifies no change of the _Server database
    process = idl._Idl__process_update2  # HACK (ovs 4.0.0): the private method applying one row's update
    uncovered = idl.uncovered
    tick = idl.cooperative_yield
    for table_name, table_update in table_updates.items():
        table = tables.get(table_name)
        if not table:
            raise ovs.db.error.Error('<table-updates> includes unknown table "%s"' % table_name)
        if not isinstance(table_update, dict):
            raise ovs.db.error.Error('<table-update> for table "%s" is not an object' % table_name, table_update)
        rows = table.rows
        stacks = None if rows.indexes else rows.data  # HACK (ovs 4.0.0): IndexedRows keeps uuid -> [row, ...]
        if stacks is not None and tracked and _only_deletes(table_update):
            gone = _delete_all(idl, table_name, table_update, stacks, uncovered)
            if gone is not None:
                if gone:
                    notices.append((DELETED_ROWS, table_name, gone))
                    idl.change_seqno += len(gone)
                    batched = True
                continue
        for text, row_update in table_update.items():
            if not _UUID_TEXT.match(text):
                raise ovs.db.error.Error('<table-update> for table "%s" contains bad UUID "%s" as member name'
                                         % (table_name, text), table_update)
            key = uuid_of(text)
            if not isinstance(row_update, dict):
                raise ovs.db.error.Error('<table-update> for table "%s" contains <row-update> for %s that is not '
                                         'an object' % (table_name, text))
            tick()
            # ovs's order: a row update naming "delete" is one, else one naming "insert" or "initial", else "modify"
            if stacks is None:
                notice = process(table, key, row_update)
                if notice and notice.event == _ROW_DELETE and key in rows:  # ovs's own delete
                    uncovered[table_name, key.int] = rows[key]
            elif "delete" in row_update:
                notice = _delete(stacks, key, table_name, uncovered)
            elif "insert" in row_update or "initial" in row_update:  # of a row that exists: ovs's (it replaces it)
                notice = _insert(idl, table, stacks, key, row_update) if key not in stacks else \
                    process(table, key, row_update)
            elif "modify" in row_update:
                notice = _modify(idl, table, stacks, key, row_update["modify"])
            else:
                notice = process(table, key, row_update)  # ovs's error
            if notice and tracked:
                notices.append(notice)
                idl.change_seqno += 1
    if not batched:
        for notice in notices:
            idl.notify(*notice)
        return
    for notice in notices:
        if notice[0] is DELETED_ROWS:
            idl.notify_deleted(notice[1], notice[2])  # each row as ROW_DELETE, in order
        else:
            idl.notify(*notice)


def _only_deletes(table_update: dict) -> bool:
    """Whether every row update of ``table_update`` is an object naming "delete" (ovs deletes such a row, whatever
    else it names), looked at in C loops (``map``)."""
    updates = table_update.values()
    return all(map(isinstance, updates, itertools.repeat(dict))) and \
        all(map(operator.contains, updates, itertools.repeat("delete")))


def _delete_all(idl, table_name: str, table_update: dict, stacks: dict, uncovered: dict) -> list | None:
    """The rows of ``table_update`` (each one only deleted: ``_only_deletes``) taken out of their table (``stacks``)
    as ``_delete`` takes each, in order, a run of rows at a time between the pacer's pauses (``idl.pacer`` ticked
    per row, pausing after the same number of rows): their keys (the table's own where ``idl.row_keys`` finds them,
    else uuids made from their numbers: a big delete's plan read and checked the texts, ``idl.numbers``), the rows
    popped and the rows handed back in C loops (``map``). Returns the rows deleted, in order (a row the table lacks:
    ovs's warning, and no row); None when a member name is not a uuid (nothing done: ``apply``'s row loop refuses
    it, as ovs, at that row). A big delete (10,000 ports: 20,000 rows) made four Python calls a row here, and
    ``notify`` four more (``notify_deleted``: none)."""
    texts = list(table_update)
    numbers = known_numbers(texts, idl.numbers)  # (every one read and checked by a big delete's plan: slices.py)
    if numbers is None:
        if not uuid_texts_match(texts):
            return None
        numbers = checked_numbers(texts)
        if numbers is None:  # (a text the pattern takes with a final newline: uuid.UUID's ValueError, as ovs raises)
            numbers = list(map(_NUMBER, uuids_of(texts)))
    pacer, gone, start = idl.pacer, [], 0
    while start < len(texts):
        run = numbers[start:start + pacer.due()]
        start += len(run)
        keys = idl.row_keys(table_name, run) or uuids_numbered(run)
        if len(set(run)) < len(keys):  # a row named twice (its uuid's text in two cases): row by row
            gone += [notice[1] for notice in (_delete(stacks, key, table_name, uncovered) for key in keys) if notice]
            pacer.tick(len(run))
            continue
        found = list(map(stacks.pop, keys, itertools.repeat(None)))
        if all(found):  # each row in its table (the usual)
            gone += map(list.pop, found)
            if any(found):  # a row stacked over a copy (see the module docstring): the copy is the row now
                for key, stack in zip(keys, found):
                    if stack:
                        stacks[key] = stack
                        uncovered[table_name, key.int] = stack[-1]
        else:
            for key, stack in zip(keys, found):
                if not stack:
                    _OVS_LOG.warn("cannot delete missing row %s from table%s" % (key, table_name))
                    continue
                gone.append(stack.pop())
                if stack:
                    stacks[key] = stack
                    uncovered[table_name, key.int] = stack[-1]
        pacer.tick(len(run))
    return gone


def _insert(idl, table, stacks: dict, key, row_update: dict):
    """A new row ``key`` (the table lacks it) made from ``row_update``'s "insert" (else its "initial"), as ovs's
    ``__process_update2`` makes it (its ``__create_row``, ``__add_default`` and ``__row_update``, the Idl's own), put
    in the table directly (``IndexedRows.data``: a new stack of one row); (ROW_CREATE, row) if a column changed, else
    False. Without ovs's lookup of the row through ``Mapping.get`` and ``IndexedRows.__getitem__``, nor its
    ``__setitem__``: 20,000 rows for 10,000 new ports, a session's first read of them as many."""
    row = idl._Idl__create_row(table, key)
    body = row_update["insert"] if "insert" in row_update else row_update["initial"]
    idl._Idl__add_default(table, body)
    changed = idl._Idl__row_update(table, row, body)
    stacks[key] = [row]
    return (_ROW_CREATE, row) if changed else False


def _modify(idl, table, stacks: dict, key, row_diff):
    """update2's "modify" of the row ``key`` applied as ovs's ``__process_update2`` applies it: the row taken out of
    its table, its difference applied (the Idl's ``__apply_diff``), the row put back (a row alone in its stack moves to
    the table's end, as there); (ROW_UPDATE, row, the old values as a Row). ``ovs.db.error.Error`` for a row the table
    lacks, as ovs raises. Without ovs's ``Mapping.get``, ``IndexedRows.__getitem__``, ``__delitem__`` and
    ``__setitem__`` per row: ovs-vswitchd's ``ofport`` on 10,000 new interfaces."""
    stack = stacks.get(key)
    if not stack:
        raise ovs.db.error.Error('Modify non-existing row')
    row = stack.pop()
    key = row.uuid  # the table's own key object (equal to ``key``): the lookups below compare it by identity, not
    # through UUID.__eq__, a Python call each (ovs-vswitchd's ofport on 10,000 interfaces)
    if not stack:
        del stacks[key]
    try:
        old = idl._Idl__apply_diff(table, row, row_diff)
    finally:  # put back when the difference raises too: the refusal's reason (ovsdb/idl/refusals.py ``describe``)
        stack.append(row)  # looks the row up, and would call any malformed modify one of a row that does not exist
        if len(stack) == 1:
            stacks[key] = stack
    return _ROW_UPDATE, row, _ROW(idl, table, key, old)


def _delete(stacks: dict, key, table_name: str, uncovered: dict):
    """The row ``key`` taken out of its table (``stacks``: its ``IndexedRows.data``), as (ROW_DELETE, row); False
    (ovs's warning logged) when the table lacks it. One lookup of ``key`` (a uuid.UUID equal to the table's key, not
    the same object: a Python ``__hash__`` and ``__eq__`` per lookup) when the row is not stacked, the usual case; a
    stacked row (see the module docstring) moves to the table's end, the one below it the row now (the rows' order is
    the table's dict's, which no reader of the replica depends on; ovs's own modify moves a row to the end too), and
    in ``uncovered`` by (table, row key) for the tracking IDL's notify (``_PacedIdl.uncovered``). Checked against
    ovs's delete by tests/unit/test_ovsdb_idl_parse.py."""
    stack = stacks.pop(key, None)
    if not stack:
        _OVS_LOG.warn("cannot delete missing row %s from table%s" % (key, table_name))  # ovs's words, its typo too
        return False
    row = stack.pop()
    if stack:
        stacks[key] = stack
        uncovered[table_name, key.int] = stack[-1]
    return _ROW_DELETE, row
