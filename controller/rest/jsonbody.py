"""A REST request's JSON body decoded with the event loop's turns in between, whatever its shape.

The standard library's C decoder is fast but holds the event loop for the whole text, and its cost depends on
what the text holds, not only on its length: 32 MB of ``[],`` (11 M empty lists) took 3.3 s of CPU in one call,
32 MB of floats 1.8 s, while an apply of 10,000 vports (2.4 MB) takes ~40 ms. A body is therefore decoded in two
steps, each ticking a controller/pacer.py ``Pacer``:

1. ``scan`` walks the text's brackets and strings with a regular expression (the search itself in C), checks
   the nesting depth before anything is decoded, and records where each container longer than ``SPAN``
   characters ends: at most a few per ``SPAN`` of text at each level, so the record stays small;
2. ``decode`` hands every value of at most ``SPAN`` characters to the C decoder in one call (a few ms at worst),
   and walks a longer container member by member, here.

The result equals ``json.loads(text)``; on malformed text a ``json.JSONDecodeError`` names the position, found
without decoding the text again in one call (which would hold the loop as long as the attack it reports).
"""

from __future__ import annotations

import json
import re

from controller.pacer import NEVER, Pacer

# One unit of the pacer is about 10 us of CPU at worst (measured with the costliest values: 32 MB of ``[],``):
SPAN = 64 * 1024  # characters handed to the C decoder at once, at most (~6 ms for the costliest values)
CHARS_PER_TICK = 100  # characters decoded by the C decoder (~100 ns each for ``[],``, ~16 ns in an apply)
TOKENS_PER_TICK = 25  # brackets and quotes found by ``scan`` (~0.4 us each)
MEMBERS_PER_TICK = 10  # members of a long container walked here (~1 us each)
PAUSE_EVERY = 2000  # units between two turns of the event loop: ~20 ms at worst, ~5 ms for an apply
_OUTSIDE = re.compile(r'[\[\]{}"]')
_INSIDE = re.compile(r'["\\]')
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_scanstring = json.decoder.scanstring


class TooDeep(ValueError):
    """The text nests lists and objects deeper than allowed."""


def loads(text: str, max_depth: int, pacer: Pacer = NEVER):
    """``json.loads(text)``, paced (see the module docstring); raises ``TooDeep`` for nesting deeper than
    ``max_depth`` and ``json.JSONDecodeError`` for anything malformed."""
    long_ends = scan(text, max_depth, pacer)
    return _Decoder(text, long_ends, pacer).decode()


def scan(text: str, max_depth: int, pacer: Pacer = NEVER) -> dict[int, int]:
    """{where a container longer than ``SPAN`` opens: where it closes}; checks the depth and the brackets' balance
    (outside strings) on the way, without decoding anything."""
    opened: list[int] = []
    long_ends: dict[int, int] = {}
    i, n, tokens = 0, len(text), 0
    while True:
        m = _OUTSIDE.search(text, i)
        if m is None:
            break
        i = m.end()
        c = m.group()
        tokens += 1
        if c == '"':
            i = _string_end(text, i)
            tokens += 1
        elif c in "[{":
            opened.append(i - 1)
            if len(opened) > max_depth:
                raise TooDeep(f"nested deeper than {max_depth} levels")
        else:
            if not opened or (text[opened[-1]] == "[") != (c == "]"):
                raise json.JSONDecodeError(f"unexpected {c!r}", text, i - 1)
            start = opened.pop()
            if i - start > SPAN:
                long_ends[start] = i
        if tokens >= TOKENS_PER_TICK:
            pacer.tick(tokens // TOKENS_PER_TICK)
            tokens %= TOKENS_PER_TICK
    if opened:
        raise json.JSONDecodeError("unclosed list or object", text, opened[-1])
    return long_ends


def _string_end(text: str, i: int) -> int:
    """Past the closing quote of the string whose content starts at ``i``."""
    while True:
        m = _INSIDE.search(text, i)
        if m is None:
            raise json.JSONDecodeError("unterminated string", text, i - 1)
        if m.group() == '"':
            return m.end()
        i = m.end() + 1  # a backslash: the character after it is escaped


class _Decoder:
    """Decodes the text, walking here only the containers ``scan`` found long."""

    def __init__(self, text: str, long_ends: dict[int, int], pacer: Pacer):
        self.text, self.long_ends, self.pacer = text, long_ends, pacer
        self.chars = 0

    def decode(self):
        text = self.text
        value, end = self._value(self._skip(0))
        end = self._skip(end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return value

    def _skip(self, i: int) -> int:
        return _WS.match(self.text, i).end()

    def _value(self, i: int):
        """(the value starting at ``i``, where it ends)."""
        end = self.long_ends.get(i)
        if end is None:
            value, end = _DECODER.raw_decode(self.text, i)
            self._decoded(end - i)
            return value, end
        return (self._object(i) if self.text[i] == "{" else self._list(i)), end

    def _object(self, i: int) -> dict:
        text, out = self.text, {}
        i = self._skip(i + 1)
        if text[i] == "}":
            return out
        for count in range(len(text)):
            if text[i] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
            key, i = _scanstring(text, i + 1, True)
            i = self._skip(i)
            if text[i] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            out[key], i = self._value(self._skip(i + 1))
            i = self._next(i, "}", count)
            if i < 0:
                return out
        raise AssertionError("unreachable: every member takes at least one character")

    def _list(self, i: int) -> list:
        text, out = self.text, []
        i = self._skip(i + 1)
        if text[i] == "]":
            return out
        for count in range(len(text)):
            value, i = self._value(i)
            out.append(value)
            i = self._next(i, "]", count)
            if i < 0:
                return out
        raise AssertionError("unreachable: every member takes at least one character")

    def _next(self, i: int, closing: str, count: int) -> int:
        """Where the next member starts, past the comma after ``i``; -1 at the container's end. Ticks once every
        ``MEMBERS_PER_TICK`` members."""
        if count % MEMBERS_PER_TICK == MEMBERS_PER_TICK - 1:
            self.pacer.tick()
        i = self._skip(i)
        c = self.text[i:i + 1]
        if c == closing:
            return -1
        if c != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", self.text, i)
        return self._skip(i + 1)

    def _decoded(self, chars: int) -> None:
        self.chars += chars
        if self.chars >= CHARS_PER_TICK:
            self.pacer.tick(self.chars // CHARS_PER_TICK)
            self.chars %= CHARS_PER_TICK
