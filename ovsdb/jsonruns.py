"""Long runs of a JSON text read a piece at a time, for the walk of a long OVSDB message (ovsdb/jsonstream.py
``_Paced``): one string (a value or a key) and the whitespace between two tokens. A peer may send either as long as
a message takes (32 MiB): read in one call, a 30 MB string held the event loop ~30-50 ms, 30 MB of whitespace ~37 ms.

Here no call reads more than ``size`` characters of the text (and a closing quote), and
``done(j)`` is called after each piece but the last (the walk ticks its pacer there). The result is what
``json.decoder.scanstring`` gives reading the whole string from the whole text, value or error (the same message
at the same position): a piece ends only where a character or an escape ends, never between the two escapes of a
surrogate pair (``\\ud83d\\ude00`` is one character, each half alone another), and every piece is decoded by the C
decoder itself. The pieces of a string are joined at its end: a copy of the string in one call (30 MB of ASCII:
~5-15 ms here, most of it the new memory's first touch).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

PIECE_MIN = 12  # characters of a piece at least: a surrogate pair's two escapes (a piece never ends between them)
# The characters and complete escapes of a string from where it is read (group 1: the last escape), up to its
# closing quote, a backslash that starts no escape the decoder takes, or where the piece ends.
_BODY = re.compile(r'[^"\\]*(?:(\\(?:u[0-9a-fA-F]{4}|["\\/bfnrt]))[^"\\]*)*')
_HIGH = re.compile(r"\\u[dD][89abAB]")  # the escape of a surrogate pair's first half
_LONGEST_ESCAPE = 6  # \uXXXX: a backslash further than this from a piece's end was not cut by it
_WS = re.compile(r"[ \t\n\r]*")
_scanstring = json.decoder.scanstring


def string(text: str, i: int, size: int, done: Callable[[int], None]) -> tuple[str, int]:
    """(the string whose opening quote is ``text[i]``, the index after its closing quote), read ``size`` characters
    (at least ``PIECE_MIN``) at a time; ``done(j)``: the string read up to ``text[j]``."""
    size = max(size, PIECE_MIN)
    parts = []
    j = i + 1
    while j + size < len(text):
        stop = j + size
        found = _BODY.match(text, j, stop)
        end = found.end()
        if end <= stop - _LONGEST_ESCAPE:  # the closing quote, or an escape the decoder refuses: the last piece
            break
        if found.end(1) == end and _HIGH.match(text, found.start(1)):
            end = found.start(1)  # the first half of a pair: its second may follow beyond stop
        try:
            part, _ = _scanstring(text[j:end] + '"', 0, True)
        except json.JSONDecodeError as exc:  # a control character
            raise json.JSONDecodeError(exc.msg, text, j + exc.pos) from None
        parts.append(part)
        j = end
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
