"""Bounded, fast framing and decoding of the JSON-RPC messages OVSDB peers send.

``ovs.json.Parser`` (pure Python in ovs 4.0.0) takes time quadratic in a string's length: one 1 MiB JSON
string held the hub for about 19 s. ``Parser`` here has its interface (``feed``, ``is_done``, ``finish``)
and is what ``ovsdb.idl`` gives every connection instead:

- ``feed`` only finds where the message ends: a message that starts and ends in one chunk (of at most
  ``PACED_CHARS``) is decoded by the C decoder, which says where it ends (the value is kept for ``finish``), at the
  cost of the message, not of the rest of the chunk (a read of ~100 echo requests or small updates); the rest of a
  chunk the message does not end in is taken at once (its complete strings cut out and its brackets counted in C);
  in the chunk where it ends, a message of at most ``PACED_CHARS`` is decoded whole by the C decoder too; otherwise
  there (and before its first bracket), a regular expression jumps to the next bracket or quote (inside a string,
  to the next quote or backslash), so work is linear and mostly in C;
- ``finish`` decodes the framed text with the standard library's C decoder: in one call, or, for a message longer
  than ``PACED_CHARS`` (an update of 10,000 ports and interfaces: 3.5 MB, ~32 ms of CPU in one call), walking its
  outer ``SPLIT_DEPTH`` levels here (a table's rows in one loop: ``_Paced._rows``) and decoding each value below
  them (a row, in an OVSDB update) in C, ticking ``pacer`` once per ``CHARS_PER_TICK`` characters walked (keys,
  separators, whitespace and empty containers too: a peer's table of 2.6 million rows ``"k":0``, counted by its
  values alone, held the event loop ~240 ms between two pauses), so the event loop gets its turns meanwhile. The
  value is the same; on any error the whole text is decoded again in one call, for the decoder's own message;
- a message longer than ``max_chars`` characters (UTF-8 text: bytes for ASCII), or nested deeper than
  ``MAX_DEPTH``, is an error at once, without reading the rest; the connection then drops (EPROTO);
- the bytes read are decoded from UTF-8 by ``ovs.jsonrpc.Connection.recv`` with a decoder of its own per call: a
  character split between two calls (a read that ended in its middle, then EAGAIN) would be lost and the next
  call's first bytes refused (EILSEQ, the connection dropped, and the same message again after the reconnect).
  ``whole_characters`` says where the bytes read end on a character, so that the stream holds back the rest
  (ovsdb/idl/links.py ``_ReadBudget``).

Same results as ``ovs.json``: objects, arrays, str, int, float, bool and None; the top level must be an
object or an array; NaN and Infinity are refused. An error is returned by ``finish`` as a str, as
``ovs.json`` does (a message is never a bare string).
"""

from __future__ import annotations

import itertools
import json
import re

from controller.pacer import NEVER

MAX_DEPTH = 128  # OVSDB messages nest about 8 deep; the C decoder must never reach the recursion limit
PACED_CHARS = 256 * 1024  # longer messages are decoded a value at a time (a few ms of CPU in one call below this)
SPLIT_DEPTH = 4  # levels walked in Python: message, params, <table-updates>, a table's rows; a row is decoded whole
CHARS_PER_TICK = 2048  # characters walked count as one unit of the pacer (a row of the IDL: idl.PAUSE_ROWS a pause)
_OUTSIDE = re.compile(r'[\[\]{}"]')
_INSIDE = re.compile(r'["\\]')
_SPACE = re.compile(r"[ \t\r\n]*")
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a complete JSON string (its escapes included)
_CLOSER = '\x00"'  # appended to a chunk: ends a string the chunk ends in (an escape's backslash too), else stays
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_WS = re.compile(r"[ \t\n\r]*")
_scanstring = json.decoder.scanstring
_SCAN = _DECODER.scan_once  # raw_decode without its Python frame: (value, end), StopIteration where no value starts
_UNSET = object()  # Parser._value before (or without) a decoding in feed


def whole_characters(data: bytes) -> int:
    """How many bytes of ``data`` (UTF-8) end on a whole character: all of them, or all but the 1-3 bytes of a
    character that ends beyond them. Malformed bytes count as whole: the decoder refuses them."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80 or byte >= 0xF8:  # ASCII, or no character's first byte
            return len(data)
        if byte >= 0xC0:  # a character's first byte: 2, 3 or 4 of them
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) - back if back < needed else len(data)
    return len(data)


def _skip(text: str, i: int) -> int:
    """Past the whitespace at ``i`` (ovsdb-server sends none)."""
    return _WS.match(text, i).end() if text[i] in " \t\n\r" else i


class Parser:
    """Frames and decodes one JSON value (see the module docstring)."""

    def __init__(self, max_chars: int, pacer=NEVER):
        self.max_chars = max_chars
        self.pacer = pacer
        self.parts: list[str] = []
        self.size = 0
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escape = False
        self.done = False
        self.error: str | None = None
        self._ends_here = False  # _take_whole found the value's end in the chunk, no deeper than MAX_DEPTH
        self._value = _UNSET  # the value, when decoded where its end was found (_decode_here, _decode_to_end)

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
        start, whole = i, False
        if not self.parts:  # the value starts in s: one that ends in s too is decoded at the cost of its own length
            end = self._decode_here(s, i)
            if end is not None:
                i, self.done = end, True
        while i < n and not self.done:
            if not self.in_string and not whole and self.depth > 0:
                whole = True  # once per call, inside the value: the rest of the chunk at once, else bracket by bracket
                if self._take_whole(s, i):
                    i = n
                    break
                end = self._decode_to_end(s, start, n)
                if end is not None:
                    i = end
                    self.done = True
                    break
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

    def _take_whole(self, s: str, i: int) -> bool:
        """Take ``s[i:]`` (``i`` outside a string) at once, when the value does not end in it and it nests no deeper
        than ``MAX_DEPTH``: its complete strings cut out and its brackets counted in C (``re.sub``,
        ``itertools.accumulate``), instead of a regular expression search per bracket and quote (~0.15 s of CPU for
        the 3 MB update of 10,000 new ports). False, changing nothing, when the value may end in it (the search
        below then finds where) or nests too deep (for its message)."""
        rest = _STRINGS.sub("", s[i:] + _CLOSER)  # with the closer, every string matches: no search from inside one
        open_string = not rest.endswith(_CLOSER)  # the closer ended a string that goes on in the next chunk
        brackets = _NOT_BRACKET.sub("", rest if open_string else rest[:-len(_CLOSER)])
        if brackets:
            depths = list(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=self.depth))
            if min(depths) <= 0 or max(depths) > MAX_DEPTH:
                self._ends_here = 0 in depths and max(itertools.islice(depths, depths.index(0))) <= MAX_DEPTH
                return False
            self.depth = depths[-1]
        if open_string:
            self.in_string = True
            self.escape = (len(s) - len(s.rstrip("\\"))) % 2 == 1
        return True

    def _decode_here(self, s: str, i: int) -> int | None:
        """Where the value that starts at ``s[i]`` ends, when it ends in ``s`` too: decoded whole in C (kept for
        ``finish``), which reads the value only, where ``_take_whole`` would read the rest of ``s`` for each of its
        messages (a read of 113 echo requests: 8 ms of CPU instead of 1). None, changing nothing, when ``s`` holds more
        than ``PACED_CHARS`` from ``i``, or the value does not end in it, is malformed or nests deeper than
        ``MAX_DEPTH`` (the walk then frames it, and ``finish`` or ``feed`` says what is wrong)."""
        if len(s) - i > PACED_CHARS:
            return None
        try:
            value, end = _DECODER.raw_decode(s, i)
        except (ValueError, RecursionError):
            return None
        brackets = _NOT_BRACKET.sub("", _STRINGS.sub("", s[i:end])) if end - i > 2 * MAX_DEPTH else ""
        if len(brackets) > 2 * MAX_DEPTH and max(itertools.accumulate(map(_STEP.__getitem__, brackets))) > MAX_DEPTH:
            return None
        self._value = value
        return end

    def _decode_to_end(self, s: str, start: int, n: int) -> int | None:
        """Where the value ends in ``s`` (``s[start:n]`` the part of it this call takes), once ``_take_whole``
        found that it ends there: the whole value decoded in C (kept for ``finish``), which also says where it ends,
        instead of a regular expression search per bracket and quote of the chunk (~0.45 ms of CPU for the last 4 KB
        read of a peer's schema, 3x its decoding). None, changing nothing, for a value longer than ``PACED_CHARS``
        (``finish`` decodes it with pauses) or one the decoder refuses (the search then finds the end, and
        ``finish`` says what is wrong)."""
        if not self._ends_here or not self.parts or self.size + n - start > PACED_CHARS:  # no parts: _decode_here
            return None
        text = "".join(self.parts) + s[start:n]
        try:
            self._value, end = _DECODER.raw_decode(text)
        except (ValueError, RecursionError):
            return None
        return start + end - self.size

    def _fail(self, consumed: int, message: str) -> int:
        self.error = f"after {self.size + consumed} characters: {message}"
        self.done = True
        self.parts = []
        self._value = _UNSET
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
        if self._value is not _UNSET:
            value, self._value, self.parts = self._value, _UNSET, []
            return value
        text = "".join(self.parts)
        self.parts = []
        if len(text) > PACED_CHARS:
            try:
                return _Paced(text, self.pacer).decode()
            except (ValueError, IndexError, RecursionError):
                pass  # decoded again below, in one call, for the decoder's own message
        try:
            return json.loads(text, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            return f"invalid JSON: {exc}"


class _Paced:
    """One long JSON text decoded a value at a time (see the module docstring); raises on anything malformed."""

    def __init__(self, text: str, pacer):
        self.text, self.pacer, self.chars = text, pacer, 0
        self.counted = 0  # the text before this is counted (``chars``, ticked)

    def decode(self):
        value, end = self._value(0, 0)
        if end != len(self.text):
            raise ValueError("extra data")
        return value

    def _value(self, i: int, depth: int):
        """(the value starting at ``i``, where it ends)."""
        text = self.text
        opening = text[i]
        if depth >= SPLIT_DEPTH or opening not in "[{":
            return _DECODER.raw_decode(text, i)  # counted where the loop it is in reaches its end (_reached)
        closing = "}" if opening == "{" else "]"
        out = {} if opening == "{" else []
        i = _skip(text, i + 1)
        if text[i] == closing:
            return out, i + 1
        if opening == "{" and depth + 1 == SPLIT_DEPTH:
            return self._rows(out, i)
        while True:
            if opening == "{":
                if text[i] != '"':
                    raise ValueError("a key is expected")
                key, i = _scanstring(text, i + 1, True)
                i = _skip(text, i)
                if text[i] != ":":
                    raise ValueError("':' is expected")
                out[key], i = self._value(_skip(text, i + 1), depth + 1)
            else:
                value, i = self._value(i, depth + 1)
                out.append(value)
            self._reached(i)
            i = _skip(text, i)
            if text[i] == closing:
                return out, i + 1
            if text[i] != ",":
                raise ValueError("',' is expected")
            i = _skip(text, i + 1)

    def _rows(self, out: dict, i: int):
        """(the object whose first key is at ``i``, where it ends): an object one level above ``SPLIT_DEPTH`` (a table's
        rows, in an OVSDB update), each of its values decoded in C, read in one loop: through ``_value`` each row cost
        six Python calls (a big delete's 20,000 rows of ``{"delete":null}``: ~1.3 µs each, two thirds of the decoding).
        The same value, the same errors, the same pacing (every character counted once: ``_reached``)."""
        text, scan, scanstring, counted = self.text, _SCAN, _scanstring, self.counted
        while True:
            if text[i] != '"':
                raise ValueError("a key is expected")
            key, i = scanstring(text, i + 1, True)
            if text[i] != ":":
                i = _skip(text, i)  # whitespace: ovsdb-server sends none
                if text[i] != ":":
                    raise ValueError("':' is expected")
            start = i + 1
            if text[start] in " \t\n\r":
                start = _skip(text, start)
            try:
                out[key], i = scan(text, start)
            except StopIteration:
                raise ValueError("a value is expected") from None
            self.chars += i - counted  # the row's key and value, and what was before it
            counted = i
            if self.chars >= CHARS_PER_TICK:
                self.counted = counted
                self._reached(i)
            if text[i] != ",":
                i = _skip(text, i)
                if text[i] == "}":
                    self.counted = counted
                    return out, i + 1
                if text[i] != ",":
                    raise ValueError("',' is expected")
            i += 1
            if text[i] in " \t\n\r":
                i = _skip(text, i)

    def _reached(self, i: int) -> None:
        """The text up to ``i`` walked: counted, and ``pacer`` ticked per ``CHARS_PER_TICK`` characters of it."""
        self.chars += i - self.counted
        self.counted = i
        if self.chars >= CHARS_PER_TICK:
            self.pacer.tick(self.chars // CHARS_PER_TICK)
            self.chars %= CHARS_PER_TICK
