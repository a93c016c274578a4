"""Big REST answers written without holding the event loop: JSON encoded a piece at a time, with pauses.

``Response.encoded`` writes ``json.dumps(body, indent=1, sort_keys=True)``; with an indent Python's json module
encodes in pure Python, and a switch's 100,000 flows took seconds in one stretch. ``paced_json`` writes the same
bytes, byte for byte, but walks the body itself: every list longer than ``SMALL`` is encoded up to ``GROUP`` elements
at a time, with ``tick(n)`` after each ``n`` (a controller/pacer.py ``Pacer.tick``), and every part that holds no
such list in one ``json.dumps``. A run's elements follow the characters the last run wrote, aiming at ``TEXT`` (the
first run is one element): 100 vports' views, ~59,000 characters, were one dumps of ~220,000 bytecodes (stop 46). The body must not change while it is encoded (build it first; the pauses only let
other green threads run).
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
    for piece in _pieces(body, tick, 0):
        pieces.append(piece)
        if len(pieces) >= chunk:
            chunks.append("".join(pieces).encode())
            pieces.clear()
    pieces.append("\n")
    chunks.append("".join(pieces).encode())
    return b"".join(chunks)


def _pieces(value, tick, level: int):
    if not _holds_big_list(value):
        yield json.dumps(value, indent=1, sort_keys=True).replace("\n", "\n" + " " * level)  # strings hold no newline
        return
    pad = "\n" + " " * (level + 1)
    if isinstance(value, dict):
        yield "{"
        for index, key in enumerate(sorted(value)):
            yield ("," if index else "") + pad + _key(key) + ": "
            yield from _pieces(value[key], tick, level + 1)
        yield "\n" + " " * level + "}"
        return
    yield "["
    size = [1]  # elements of the next run (``_runs``)
    for index, (nested, items) in enumerate(_runs(value, size)):
        if nested:  # one element holding a big list: walked
            yield ("," if index else "") + pad
            yield from _pieces(items[0], tick, level + 1)
        else:
            text = _run_text(items, level)
            size[0] = max(1, min(GROUP, TEXT * len(items) // max(len(text), 1)))
            yield ("," if index else "") + text
        if len(value) > SMALL:
            tick(len(items))
    yield "\n" + " " * level + "]"


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
