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
  outer ``SPLIT_DEPTH`` levels (ovsdb/jsonpaced.py ``Paced``: a table's rows in one loop) and decoding each value below
  them (a row, in an OVSDB update) in C, given at most ``WINDOW`` characters of the text at a time (the C decoder
  reads 1 MiB of ``[[[0]]]`` in ~40 ms, of ``{"a":1}`` ~28 ms, of UUID pairs ~3 ms): a value longer than that (one
  row of 5 million small ints held the event loop ~205 ms) is walked here too, level by level, down to values that
  fit; a longer string (a value or a key) or run of whitespace is read a window at a time (``ovsdb/jsonruns.py``:
  30 MB in one call held the loop ~30-50 ms). ``pacer`` is ticked once per ``CHARS_PER_TICK`` units of work: each
  character walked or read by the C decoder (in vain too, where a value went on beyond the window; a long string's
  twice), keys, separators, whitespace and empty containers included (a table of 2.6 million rows ``"k":0``, counted
  by its values alone, held the event loop ~240 ms between two pauses), and ``MEMBER_CHARS`` more for each member or
  element walked here; so the event loop gets its turns meanwhile. The value is the same, and so is an error: the
  walk raises what the C decoder raises on the whole text, the same message at the same position (decoding it all
  again to learn them held the loop as long as the text);
- an object of a long message with more than ``MAX_MEMBERS`` members (a table's rows in one update) refuses the
  message (``message refused: params/2/Port: more than 698000 members in one object``): the dict holding them would
  double in one C call, copying them all (~40 ms of CPU at 700,000, ~80 ms at 1.4 million), and an update within the
  default ``max_chars`` (32 MiB) cannot hold that many legitimate rows (each takes 50 characters or more: its uuid,
  quoted, a colon, a row update such as ``{"new":{}}`` and a comma); so does a number longer than ``MAX_NUMBER``
  (a real's digits are converted in one call).
  ``finish``'s error is also kept in ``error``, so the connection says why it dropped;
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
from ovsdb.jsonpaced import DECODER, Paced, TooBig, no_constants

MAX_DEPTH = 128  # OVSDB messages nest about 8 deep; the C decoder must never reach the recursion limit
PACED_CHARS = 256 * 1024  # longer messages are decoded with pauses (a few ms of CPU in one call below this)
_OUTSIDE = re.compile(r'[\[\]{}"]')
_INSIDE = re.compile(r'["\\]')
_SPACE = re.compile(r"[ \t\r\n]*")
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a complete JSON string (its escapes included)
_CLOSER = '\x00"'  # appended to a chunk: ends a string the chunk ends in (an escape's backslash too), else stays
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKETS_ONLY = {code: None for code in range(128) if chr(code) not in "[]{}"}  # str.translate: ASCII but brackets
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
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


_TO_SQUARE = str.maketrans("{}", "[]")  # a closer counts as one whatever it closes (``_STEP``)
_PASSES = 8  # rounds of innermost pairs ``_stays_inside`` takes out (OVSDB's rows nest ~4 deep in a chunk)


def _stays_inside(brackets: str, depth: int) -> int | None:
    """How much deeper than ``depth`` the value is after ``brackets`` (its brackets, outside strings, in order), when
    every depth they pass through stays above 0 and at most ``MAX_DEPTH``; None when that is not known this way (then
    they are walked one by one). In C (``str.replace``, a few rounds): the innermost pairs taken out, round after round,
    leave ``a`` closers then ``b`` openers (unmatched); every depth inside is at least ``depth - a`` and at most
    ``depth + b`` plus the rounds taken (how deep the pairs nest), and ends ``depth - a + b``. A chunk of a big update
    (64 KB: ~2,800 brackets) walked one by one cost ~150 instructions a bracket."""
    rest, rounds = brackets.translate(_TO_SQUARE), 0
    while "[]" in rest:
        if rounds == _PASSES:
            return None
        rest, rounds = rest.replace("[]", ""), rounds + 1
    closers = len(rest) - len(rest.lstrip("]"))
    openers = len(rest) - closers
    if depth - closers <= 0 or depth + openers + rounds > MAX_DEPTH:
        return None
    return openers - closers


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
        than ``MAX_DEPTH``: its complete strings cut out and its brackets counted in C (``str.split`` at the quotes
        of a chunk without a backslash, else ``re.sub``; ``str.translate``, ``itertools.accumulate``), instead of a
        regular expression search per bracket and quote (~0.15 s of CPU for the 3 MB update of 10,000 new ports; the
        pattern's cut alone ~27 ms of it, the split ~8). False, changing nothing, when the value may end in it (the
        search below then finds where) or nests too deep (for its message)."""
        if s.find("\\", i) == -1:  # no escape: each quote opens or closes a string (what ovsdb-server mostly sends)
            pieces = s[i:].split('"')  # outside, inside, outside, ...: in C, a third of the pattern's time below
            open_string = len(pieces) % 2 == 0  # an odd number of quotes: a string goes on in the next chunk
            brackets = "".join(pieces[0::2]).translate(_BRACKETS_ONLY)
            if len(brackets) != sum(map(brackets.count, "[]{}")):  # a character the table does not drop (not ASCII)
                brackets = _NOT_BRACKET.sub("", brackets)
        else:
            rest = _STRINGS.sub("", s[i:] + _CLOSER)  # with the closer, every string matches: no search from inside one
            open_string = not rest.endswith(_CLOSER)  # the closer ended a string that goes on in the next chunk
            brackets = _NOT_BRACKET.sub("", rest if open_string else rest[:-len(_CLOSER)])
        deeper = _stays_inside(brackets, self.depth) if brackets else None
        if deeper is not None:  # (the usual: no bracket walked one by one)
            self.depth += deeper
        elif brackets:
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
            value, end = DECODER.raw_decode(s, i)
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
            self._value, end = DECODER.raw_decode(text)
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
        try:
            if len(text) > PACED_CHARS:
                return Paced(text, self.pacer).decode()
            return json.loads(text, parse_constant=no_constants)
        except TooBig as exc:
            self.error = f"message refused: {exc}"
        except (ValueError, IndexError, RecursionError) as exc:  # IndexError: none known (the walk stays in the text)
            self.error = f"invalid JSON: {exc}"
        return self.error
