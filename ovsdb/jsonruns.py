"""Long runs of a JSON text read a piece at a time, for the walk of a long OVSDB message (ovsdb/jsonstream.py
``_Paced``): one string (a value or a key) and the whitespace between two tokens. A peer may send either as long as
a message takes (32 MiB): read in one call, a 30 MB string held the event loop ~30-50 ms, 30 MB of whitespace ~37 ms.

Here no call reads more than ``size`` characters of the text (a piece decoded with a quote appended), and ``done(j)``
is called after each piece but the last (the walk ticks its pacer there). The result is what
``json.decoder.scanstring`` gives reading the whole string from the whole text, value or error (the same message
at the same position): a piece ends only where a character or an escape ends, never between the two escapes of a
surrogate pair (``\\ud83d\\ude00`` is one character, each half alone another): where the C decoder says the piece
cut an escape, it is decoded again up to that escape; an escape-dense string (30 MB) costs ~1.3x one call, a plain
one ~1.1x. The pieces of a string are joined at its end: a copy of the string in one call (30 MB of ASCII: ~5-15 ms
here, most of it the new memory's first touch).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

PIECE_MIN = 24  # characters of a piece at least: an escape cut at its end, a lone backslash and a pair's first half
_WS = re.compile(r"[ \t\n\r]*")
_ESCAPE = 6  # characters of a \\uXXXX escape
_HEX = frozenset("0123456789abcdefABCDEF")
_scanstring = json.decoder.scanstring


def string(text: str, i: int, size: int, done: Callable[[int], None]) -> tuple[str, int]:
    """(the string whose opening quote is ``text[i]``, the index after its closing quote), read ``size`` characters
    (at least ``PIECE_MIN``) at a time; ``done(j)``: the string read up to ``text[j]``."""
    size = max(size, PIECE_MIN)
    parts = []
    j = i + 1
    while True:
        stop = j + size
        if stop >= len(text) or _plain_end(text, j, stop):
            break  # the rest of the string is in the piece: read from the text itself
        part, stop, closed = _piece(text, j, stop)
        parts.append(part)
        if closed:  # its closing quote was in the piece
            return "".join(parts), stop
        j = stop
        done(j)
    try:
        last, end = _scanstring(text, j, True)
    except json.JSONDecodeError as exc:
        if exc.pos == j - 1:  # "Unterminated string starting at": the string's quote, not the last piece's start
            raise json.JSONDecodeError(exc.msg, text, i) from None
        raise
    if parts:
        parts.append(last)
        last = "".join(parts)
    return last, end


def _plain_end(text: str, j: int, stop: int) -> bool:
    """Whether the string read from ``j`` ends before ``stop`` with no escape on the way (keys, names: one search)."""
    quote = text.find('"', j, stop)
    return quote >= 0 and text.find("\\", j, quote) < 0


def _piece(text: str, j: int, stop: int) -> tuple[str, int, bool]:
    """(``text[j:stop]`` decoded, where it ends, whether the string's closing quote was in it): decoded by the C decoder
    with a quote appended, where a piece ends before an escape cut by ``stop`` or the first half of a surrogate pair
    (its second may follow); an error is the C decoder's on the whole text (the same message and position)."""
    escape = text.rfind("\\", stop - _ESCAPE + 1, stop)
    if escape > j:
        stop = escape  # most likely an escape the piece would cut: one decoding, not two
    while True:
        try:
            part, end = _scanstring(text[j:stop] + '"', 0, True)
        except json.JSONDecodeError as exc:
            cut = j + exc.pos - 1  # a \uXXXX escape's backslash ("Invalid \\uXXXX escape" is at its u)
            if exc.pos == -1:  # "Unterminated string": a backslash at the piece's end escaped the quote appended
                stop -= 1
            elif exc.msg.startswith("Invalid \\u") and cut > stop - _ESCAPE:  # cut by stop: read with what follows
                stop = cut
            else:
                raise json.JSONDecodeError(exc.msg, text, j + exc.pos) from None
            continue
        if end <= stop - j:  # the string's own quote
            return part, j + end, True
        if part and "\ud800" <= part[-1] <= "\udbff" and text[stop - 1] in _HEX:
            return part[:-1], stop - _ESCAPE, False  # the first half of a pair, from its escape: read with what follows
        return part, stop, False


def spaces(text: str, i: int, size: int, done: Callable[[int], None]) -> int:
    """The index past the whitespace at ``text[i]`` (``i`` may be the text's end), read ``size`` characters (at least
    ``PIECE_MIN``) at a time; ``done(j)``: whitespace up to ``text[j]``."""
    size = max(size, PIECE_MIN)
    end = _WS.match(text, i, i + size).end()
    while end == i + size:
        done(end)
        i = end
        end = _WS.match(text, i, i + size).end()
    return end
