"""Big REST answers written without holding the event loop: JSON encoded a piece at a time, with pauses.

``Response.encoded`` writes ``json.dumps(body, indent=1, sort_keys=True)``; with an indent Python's json module
encodes in pure Python, and a switch's 100,000 flows took seconds in one stretch. ``paced_json`` writes the same
bytes, byte for byte, but walks the body itself: every list longer than ``SMALL`` is encoded up to ``GROUP`` elements
at a time, with ``tick(n)`` after each ``n`` (a controller/pacer.py ``Pacer.tick``), and every part that holds no
such list in one ``json.dumps``. A run's elements follow the characters the last run wrote, aiming at ``TEXT`` (the
first run is one element): 100 vports' views, ~59,000 characters, were one dumps of ~220,000 bytecodes (stop 46).

Other green threads run in the pauses, and a handler may have put references to live state in its body. So after a
pause the walk reads only its own copies and the big lists' elements: before a part of the body first pauses, it
copies (``_spine``) every dict it will walk and every list those dicts hold (a list in one C call, its elements not
copied), and each element of a big list is either encoded whole in one stretch (one ``json.dumps`` of its run) or,
holding a big list itself, copied so before it is walked. A change in a pause neither tears the body's own dicts and
lists nor raises (no "dictionary changed size during iteration": no 500); the copies cost what the copied dicts hold,
not the big lists' elements (tests/unit/test_rest_snapshots.py). The elements themselves the walk does not copy (that
would cost a deep copy of the answer, in one stretch): they must be the answer's own, built for it, or never changed
in place (a policy object, a frozen row). Every route's body is (tests/unit/test_rest_snapshots.py: each one encoded
again after a run of changes to State, the same bytes).
"""

from __future__ import annotations

import json

from openflow.installed import release  # noqa: F401  (an answer's rows are freed as a plan's deletes are)
from openflow.pacedsort import sorted_paced  # noqa: F401  (and sorted pausing as its adds)

SMALL = 32  # lists up to this long are encoded in one piece
GROUP = 100  # elements of a longer list (holding no such list) encoded by one json.dumps at most, then one tick each
TEXT = 4096  # characters a json.dumps of a run aims at (~16,000 bytecodes: ~3.8 a character with an indent)


def paced_json(body, tick, chunk: int = 4096) -> bytes:
    """``body`` as ``Response.encoded`` writes it (module docstring); the pieces are joined and encoded ``chunk``
    at a time (one join and encode of 60 MB of text was a stretch of ~0.15 s), only the bytes joined at the end."""
    chunks, pieces = [], []
    for piece in _pieces(body, tick, 0, owned=False):
        pieces.append(piece)
        if len(pieces) >= chunk:
            chunks.append("".join(pieces).encode())
            pieces.clear()
    pieces.append("\n")
    chunks.append("".join(pieces).encode())
    return b"".join(chunks)


def _pieces(value, tick, level: int, owned: bool):
    """The text of ``value`` at ``level``, a piece at a time; ``owned``: ``value`` is the walk's own copy already (a
    value of a dict it copied), else it is copied before its first pause (``_spine``)."""
    if not _holds_big_list(value):
        yield json.dumps(value, indent=1, sort_keys=True).replace("\n", "\n" + " " * level)  # strings hold no newline
        return
    value = value if owned else _spine(value)
    pad = "\n" + " " * (level + 1)
    if isinstance(value, dict):
        yield "{"
        for index, key in enumerate(sorted(value)):
            yield ("," if index else "") + pad + _key(key) + ": "
            yield from _pieces(value[key], tick, level + 1, owned=True)
        yield "\n" + " " * level + "}"
        return
    yield "["
    size = [1]  # elements of the next run (``_runs``)
    for index, (nested, items) in enumerate(_runs(value, size)):
        if nested:  # one element holding a big list: walked (copied first: it is not the walk's own)
            yield ("," if index else "") + pad
            yield from _pieces(items[0], tick, level + 1, owned=False)
        else:
            text = _run_text(items, level)
            size[0] = max(1, min(GROUP, TEXT * len(items) // max(len(text), 1)))
            yield ("," if index else "") + text
        if len(value) > SMALL:
            tick(len(items))
    yield "\n" + " " * level + "]"


def _spine(value):
    """``value``'s copy for the walk: a dict's (its dicts, and its lists and tuples as lists, copied alike), or a
    list's (a list of the same elements: one C call); anything else as it is. Made in one stretch, before the walk of
    ``value`` first pauses: what it walks is then as it was then."""
    if isinstance(value, dict):
        return {key: _spine(item) if isinstance(item, (dict, list, tuple)) else item for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def _key(key) -> str:
    """A dict key as json.dumps writes it (a number or a boolean key becomes a string)."""
    return json.dumps(key) if isinstance(key, str) else json.dumps({key: 0})[1:-4]


def _runs(items, size: list):
    """``items`` cut into (True, [an element holding a big list]) and (False, up to ``size[0]`` elements holding none:
    read as each run fills, the caller sets it between runs)."""
    run = []
    for item in items:
        if _holds_big_list(item):
            if run:
                yield False, run
                run = []
            yield True, [item]
            continue
        run.append(item)
        if len(run) >= size[0]:
            yield False, run
            run = []
    if run:
        yield False, run


def _run_text(run: list, level: int) -> str:
    """Elements of a list at ``level`` as ``_pieces`` writes them one by one (each after a newline and its indent,
    separated by commas), in one ``json.dumps``: ``[`` and the last newline and ``]`` of the run's own list taken
    off. One dumps per element costs ~2.5 x the time of one for the whole list."""
    return json.dumps(run, indent=1, sort_keys=True)[1:-2].replace("\n", "\n" + " " * level)


def _holds_big_list(value) -> bool:
    """Whether ``value`` is, or holds at any depth, a list longer than SMALL."""
    if isinstance(value, dict):
        return any(_holds_big_list(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return len(value) > SMALL or any(_holds_big_list(v) for v in value)
    return False
