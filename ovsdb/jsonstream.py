"""Bounded, fast framing and decoding of the JSON-RPC messages OVSDB peers send.

``ovs.json.Parser`` (pure Python in ovs 4.0.0) takes time quadratic in a string's length: one 1 MiB JSON
string held the hub for about 19 s. ``Parser`` here has its interface (``feed``, ``is_done``, ``finish``)
and is what ``ovsdb.idl`` gives every connection instead:

- ``feed`` only finds where the message ends: a regular expression jumps to the next bracket or quote
  (inside a string, to the next quote or backslash), so work is linear and mostly in C;
- ``finish`` decodes the framed text with the standard library's C decoder;
- a message longer than ``max_chars`` characters (UTF-8 text: bytes for ASCII), or nested deeper than
  ``MAX_DEPTH``, is an error at once, without reading the rest; the connection then drops (EPROTO).

Same results as ``ovs.json``: objects, arrays, str, int, float, bool and None; the top level must be an
object or an array; NaN and Infinity are refused. An error is returned by ``finish`` as a str, as
``ovs.json`` does (a message is never a bare string).
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 128  # OVSDB messages nest about 8 deep; the C decoder must never reach the recursion limit
_OUTSIDE = re.compile(r'[\[\]{}"]')
_INSIDE = re.compile(r'["\\]')
_SPACE = re.compile(r"[ \t\r\n]*")


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


class Parser:
    """Frames and decodes one JSON value (see the module docstring)."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.size = 0
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escape = False
        self.done = False
        self.error: str | None = None

    def feed(self, s: str) -> int:
        """Take characters of ``s`` up to the end of the value; returns how many were taken."""
        if self.done:
            return 0
        i, n = 0, len(s)
        if not self.started:
            i = _SPACE.match(s).end()
            if i == n:
                return n
            if s[i] not in "[{":
                return self._fail(i, "syntax error at beginning of input (an object or array is expected)")
            self.started = True
        start = i
        while i < n:
            if self.in_string:
                if self.escape:
                    self.escape = False
                    i += 1
                    continue
                m = _INSIDE.search(s, i)
                if m is None:
                    i = n
                    break
                i = m.end()
                if m.group() == "\\":
                    self.escape = True
                else:
                    self.in_string = False
                continue
            m = _OUTSIDE.search(s, i)
            if m is None:
                i = n
                break
            i = m.end()
            c = m.group()
            if c == '"':
                self.in_string = True
            elif c in "[{":
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    return self._fail(i, f"nested deeper than {MAX_DEPTH}")
            else:
                self.depth -= 1
                if self.depth == 0:
                    self.done = True
                    break
        self.parts.append(s[start:i])
        self.size += i - start
        if self.size > self.max_chars:
            return self._fail(i, f"message longer than {self.max_chars} characters")
        return i

    def _fail(self, consumed: int, message: str) -> int:
        self.error = f"after {self.size + consumed} characters: {message}"
        self.done = True
        self.parts = []
        return consumed

    def is_done(self) -> bool:
        return self.done

    def finish(self):
        """The decoded value, or a str describing why there is none."""
        if self.error is not None:
            return self.error
        if not self.started:
            return "empty input stream"
        if not self.done:
            return "unexpected end of input"
        text = "".join(self.parts)
        self.parts = []
        try:
            return json.loads(text, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            return f"invalid JSON: {exc}"
