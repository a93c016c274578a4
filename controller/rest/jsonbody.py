"""A REST request's JSON body decoded with the event loop's turns in between, whatever its shape.

The standard library's C decoder is fast but holds the event loop for the whole text, and its cost depends on
what the text holds, not only on its length: 32 MB of ``[],`` (11 M empty lists) took 3.5 s of CPU in one call,
one object of 1 M keys 0.9 s, 32 MB of floats 1.8 s, while an apply of 10,000 vports takes ~13 ms. Its hooks do
not bound it: they are called for objects and numbers only, and an object's hook only once it is whole.

So no call here hands the C decoder more than ``SPAN`` characters of a list or an object (~4 ms for the costliest
shape, empty lists). A container is decoded a window at a time: ``opener + text[p:cut] + closer`` in one C call,
where ``cut`` is a comma before ``p + window``. A window that decodes whole ends at a member boundary (a cut
inside a string or inside a nested container cannot decode), so its members are the container's next members;
one that decodes short of its end met the container's own closing bracket. A window that fails is shrunk (to
just before the string the decoder found unterminated, else halved); below ``MIN_WINDOW`` one member is decoded
on its own (a nested container recursively, so a long one is itself walked in windows) and the window grows back,
doubling after each success. A body of strings full of commas therefore costs a small constant factor, not a
quadratic one; an apply (lists of similar objects, cut before the next ``{``) one C call per ``SPAN``.

The result equals ``json.loads(text)`` (an object's windows are merged with ``dict.update``: a duplicate key keeps
its first position and its last value, as there). Malformed text raises ``json.JSONDecodeError`` at its real
position: the member path decodes at positions of the text itself. Nesting deeper than ``max_depth`` raises
``TooDeep``, checked window by window (and when the C decoder runs out of recursion inside one); an object of
more than ``MAX_MEMBERS`` members, or more than ``MAX_CONTAINERS`` lists and objects or ``MAX_VALUES`` values in
all, ``TooMany``. ``text`` turns the body's bytes into text a megabyte at a time.

A string or a number decoded on its own is one call: one longer than ``MAX_SCALAR`` is refused (``TooMany``).
"""

from __future__ import annotations

import codecs
import json
import re

from controller.pacer import Pacer, collector_paused

SPAN = 32 * 1024  # characters of a container handed to the C decoder at once, at most
FIRST_WINDOW = 2 * 1024  # a container's first window: small, as its first member may be a long container
MIN_WINDOW = 64  # below this, one member is decoded on its own
CHARS_PER_UNIT = 10  # one unit of the pacer: ~1 us of the C decoder at worst (``[],`` at ~110 ns a character)
CALL_UNITS = 3  # the Python around one call of the C decoder (~3 us)
VALUES_PER_UNIT = 20  # values of a window's members looked at for their nesting depth (~50 ns each)
MEASURE_SLICE = 1000  # containers of a window looked into between two ticks
MAX_CONTAINERS = 1_000_000  # lists and objects in a body, at most: freeing 11 M of them took ~280 ms in one stretch
MAX_VALUES = 2_000_000  # values in a body, at most: freeing 4 M strings took ~60 ms in one stretch
MAX_SCALAR = 1024 * 1024  # characters of one string or number, at most (~3 ms of the C decoder)
TEXT_EVERY = 1024 * 1024  # bytes of a body turned into text between two pauses (~1 ms; 32 MB in one: ~20 ms)
PAUSE_EVERY = 5000  # units between two turns of the event loop: ~5 ms at worst
MAX_MEMBERS = 200_000  # members of one object, at most: growing a dict past it resizes it in one stretch (>10 ms)
_WS = re.compile(r"[ \t\n\r]*")
_CLOSER = {"[": "]", "{": "}"}
_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
_NUMBER = re.compile(r"[-+0-9.eE]*")
_DECODER = json.JSONDecoder()
_LAST_BEFORE: dict[str, re.Pattern] = {}  # a member's first character: the last comma followed by it


class TooDeep(ValueError):
    """The text nests lists and objects deeper than allowed."""


class TooMany(ValueError):
    """An object of more members than ``MAX_MEMBERS``, a body of more lists and objects than ``MAX_CONTAINERS`` or
    of more values than ``MAX_VALUES``: no Canopy document has one (an apply of 10,000 vports holds ~30,000
    containers and ~100,000 values), a dict that large is resized in one stretch (~15 ms at 350,000 keys, ~90 ms at
    1.4 M) and a body of 11 M containers is freed in one (~280 ms) when its request ends."""


def c_decode(text: str, i: int):
    """The C decoder's ``raw_decode`` (a module function: the tests record each call's span)."""
    return _DECODER.raw_decode(text, i)


def c_string(text: str, i: int):
    """The C decoder's string scanner, for an object's key decoded on its own (recorded like ``c_decode``)."""
    return json.decoder.scanstring(text, i)


def text(raw: bytes, pause=None) -> str:
    """``raw.decode("utf-8")``, pausing between two pieces of ``TEXT_EVERY`` bytes (an incremental decoder keeps a
    character split between two pieces whole); raises ``UnicodeDecodeError`` likewise (its position within the
    piece). A body of one piece never pauses: a small write takes no turn of the REST lane (controller/rest/lane.py),
    where it would wait behind every big answer asked before it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pacer = Pacer(pause, 1)
    pieces = []
    for start in range(0, len(raw), TEXT_EVERY):
        if start:
            pacer.tick()
        pieces.append(decoder.decode(raw[start:start + TEXT_EVERY], start + TEXT_EVERY >= len(raw)))
    return "".join(pieces)


def loads(text: str, max_depth: int, pause=None):
    """``json.loads(text)``, pausing (``pause()``: the event loop's turn) every ``PAUSE_EVERY`` units of work; raises
    ``TooDeep`` for nesting deeper than ``max_depth``, ``TooMany`` for an object of more than ``MAX_MEMBERS`` members
    or more than ``MAX_CONTAINERS`` lists and objects or ``MAX_VALUES`` values, and ``json.JSONDecodeError`` for
    anything malformed. The cyclic
    collector is paused meanwhile: a body of millions of lists would otherwise be walked by it again and again."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    with collector_paused():
        return _Decoder(text, max_depth, Pacer(pause, PAUSE_EVERY)).decode()


class _Decoder:
    def __init__(self, text: str, max_depth: int, pacer: Pacer):
        self.text, self.max_depth, self.pacer = text, max_depth, pacer
        self.values = self.containers = 0  # decoded so far (a container counts as both)

    def decode(self):
        text = self.text
        value, end = self._value(self._skip(0), 0)
        end = self._skip(end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return value

    def _skip(self, i: int) -> int:
        return _WS.match(self.text, i).end()

    def _call(self, decode, text: str, i: int):
        """``decode(text, i)``, ticking the pacer for the characters it went through; the C decoder's running out
        of recursion is nesting far deeper than any limit here."""
        try:
            value, end = decode(text, i)
        except json.JSONDecodeError as exc:
            self.pacer.tick(CALL_UNITS + (exc.pos - i) // CHARS_PER_UNIT)
            raise
        except RecursionError:
            raise TooDeep(f"nested deeper than {self.max_depth} levels") from None
        self.pacer.tick(CALL_UNITS + (end - i) // CHARS_PER_UNIT)
        return value, end

    def _value(self, i: int, depth: int):
        """(the value starting at ``i``, where it ends): a list or an object in windows, a scalar in one call."""
        if self.text[i:i + 1] in ("[", "{"):
            if depth >= self.max_depth:
                raise TooDeep(f"nested deeper than {self.max_depth} levels")
            return self._container(i, depth + 1)
        self._check_scalar(i)
        return self._call(c_decode, self.text, i)

    def _check_scalar(self, i: int) -> None:
        """Raises ``TooMany`` for a string or a number of more than ``MAX_SCALAR`` characters: one is one call of the
        C decoder (a string of 32 MB of escapes took ~100 ms), and no Canopy document has one. Its extent is found
        by a regular expression that looks no further than the limit."""
        text, end = self.text, i + MAX_SCALAR + 2
        if len(text) <= end:
            return
        if text[i:i + 1] == '"':
            if _STRING.match(text, i, end) is None:  # longer, or not closed well: an error either way
                raise TooMany(f"a string of more than {MAX_SCALAR} characters")
        elif _NUMBER.match(text, i, end).end() >= end:
            raise TooMany(f"a number of more than {MAX_SCALAR} characters")

    def _container(self, start: int, depth: int):
        """(the list or object opening at ``start``, where it ends), decoded a window at a time."""
        opener = self.text[start]
        self._count(1, 1)
        out = [] if opener == "[" else {}
        add = out.extend if opener == "[" else out.update
        p, window, first = start + 1, FIRST_WINDOW, True
        while True:
            found = self._window(opener, p, window, first, depth)
            if found is None:
                p, closed = self._member(out, p, depth, first)
                window = 4 * MIN_WINDOW
            else:
                members, p, closed, used = found
                if opener == "{" and len(out) + len(members) > MAX_MEMBERS:
                    raise TooMany(f"an object of more than {MAX_MEMBERS} members")
                add(members)
                window = min(SPAN, 2 * used)
            if closed:
                return out, p
            first = False

    def _measure(self, members, depth: int) -> None:
        """Counts the containers among a window's members (their container is at level ``depth``) and raises
        ``TooDeep`` when they nest past the limit, ``TooMany`` past ``MAX_CONTAINERS``: measured here, window by
        window, a whole body's values are never walked in one stretch (a list of 11 M members was, ~100 ms)."""
        level = [members]
        while level:
            below = []
            for start in range(0, len(level), MEASURE_SLICE):
                before = len(below)
                for item in level[start:start + MEASURE_SLICE]:
                    below.extend(item.values() if isinstance(item, dict) else item)
                self.pacer.tick((len(below) - before) // VALUES_PER_UNIT)
            level = [value for value in below if isinstance(value, (list, dict))]
            self._count(len(below), len(level))
            depth += 1
            if level and depth > self.max_depth:
                raise TooDeep(f"nested deeper than {self.max_depth} levels")

    def _count(self, values: int, containers: int) -> None:
        self.values += values
        self.containers += containers
        if self.containers > MAX_CONTAINERS:
            raise TooMany(f"more than {MAX_CONTAINERS} lists and objects")
        if self.values > MAX_VALUES:
            raise TooMany(f"more than {MAX_VALUES} values")

    def _window(self, opener: str, p: int, window: int, first: bool, depth: int):
        """(members, where the next starts, whether the container closed, the window) decoded in one C call over
        at most ``window`` characters from ``p``; None when no window of at least ``MIN_WINDOW`` decoded."""
        text, closer = self.text, _CLOSER[opener]
        retries = 0
        while window >= MIN_WINDOW:
            cut = self._cut(p, min(p + window, len(text)))
            wrapped = opener + text[p:cut] + closer
            try:
                members, end = self._call(c_decode, wrapped, 0)
            except json.JSONDecodeError as exc:
                failed_at = p - 1 + exc.pos  # the text decoded well up to here (an unterminated string starts here)
                retries += 1
                shorter = failed_at + 1 - p if failed_at < cut and retries <= 2 else window // 2
                window = min(shorter, window - 1)
                continue
            if not members and not (first and end < len(wrapped)):
                return None  # ",]" or ",," : the member path names the error where it is
            self._measure(members, depth)
            if end < len(wrapped):  # the text's own closing bracket ended it
                return members, p + end - 1, True, window
            if text[cut:cut + 1] == ",":
                return members, cut + 1, False, window
            if text[cut:cut + 1] == closer:
                return members, cut + 1, True, window
            window //= 2  # no comma in the window: the cut was anywhere (inside a number, say)
        return None

    def _cut(self, p: int, end: int) -> int:
        """A comma in [p, end) most likely between two members: the last one followed by the character the first
        member starts with (the next ``{`` of a list of objects, the next key of an object), else the last one,
        else ``end``."""
        q = self._skip(p)
        first = self.text[q:q + 1] if q < end else ""
        if first:
            pattern = _LAST_BEFORE.get(first)
            if pattern is None:
                pattern = _LAST_BEFORE[first] = re.compile(r"(?s).*(,)[ \t\n\r]*" + re.escape(first))
            m = pattern.match(self.text, p, end)
            if m is not None:
                return m.start(1)
        comma = self.text.rfind(",", p, end)
        return comma if comma >= 0 else end

    def _member(self, out, p: int, depth: int, first: bool):
        """One member decoded on its own, at positions of the text: (where the next starts, whether the container
        closed)."""
        text = self.text
        closer = "]" if isinstance(out, list) else "}"
        p = self._skip(p)
        if first and text[p:p + 1] == closer:
            return p + 1, True
        if closer == "}":
            if text[p:p + 1] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, p)
            self._check_scalar(p)
            key, p = self._call(c_string, text, p + 1)
            p = self._skip(p)
            if text[p:p + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, p)
            if len(out) >= MAX_MEMBERS:
                raise TooMany(f"an object of more than {MAX_MEMBERS} members")
            out[key], p = self._value(self._skip(p + 1), depth)
        else:
            value, p = self._value(p, depth)
            out.append(value)
        self._count(1, 0)
        p = self._skip(p)
        c = text[p:p + 1]
        if c == closer:
            return p + 1, True
        if c != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", text, p)
        return p + 1, False
