"""One long JSON text (an OVSDB message longer than ``ovsdb.jsonstream.PACED_CHARS``, framed by ``jsonstream.Parser``)
decoded with pauses: ``Paced`` walks its outer ``SPLIT_DEPTH`` levels here (a table's rows in one loop:
``Paced._object``, the rows decoded in groups by one C call each: ``_members``) and decodes each value below them in C,
given at most ``WINDOW`` characters of the text at a time; a longer value is walked here too, a longer string or run of
whitespace read a window at a time (ovsdb/jsonruns.py); the pacer is ticked once per ``CHARS_PER_TICK`` units of work;
an object of more than ``MAX_MEMBERS`` members or a number longer than ``MAX_NUMBER`` refuses the message
(``TooBig``). The whole story, with the costs that set these numbers: ovsdb/jsonstream.py's docstring."""

from __future__ import annotations

import json
import re

from ovsdb import jsonruns

SPLIT_DEPTH = 4  # levels walked here in any long message: message, params, <table-updates>, a table's rows
WINDOW = 512 * 1024  # characters the C decoder reads at once in a long message (~20 ms of CPU at worst); longer: walked
CHARS_PER_TICK = 2048  # characters walked count as one unit of the pacer (a row of the IDL: idl.PAUSE_ROWS a pause)
CUT = 2  # characters a number cut by the window's end may lose and still decode ("e+" of 1e+5): Paced._edge
MAX_NUMBER = WINDOW  # characters in a number: a real is converted in one call (30 MB: ~60 ms of CPU); none is so long
MEMBER_CHARS = 32  # a member or element walked here costs as much as this many characters decoded in C
GROUP_CHARS = 64 * 1024  # a table's rows decoded together in one C call (``_members``): ~3 ms of CPU at most
# The characters an object's first group may span (then twice those of the one before, up to GROUP_CHARS): a group is
# copied before it is decoded, and one that ends at its object's end copied its rest in vain (a peer's many tiny
# tables, a row keyed by a uuid never far ahead: 64 KB copied for each, 1.6-2.2x the walk's CPU); looked for only from
# a member keyed by a uuid (a row's)
FIRST_GROUP = 256
# Members of one object of a long message (a table's rows in an update): the dict the 699,051st goes into doubles,
# copying every member in one C call (~40 ms of CPU here; ~80 ms at 1.4 million). Checked at each tick (at most
# CHARS_PER_TICK // MEMBER_CHARS + 1 members apart) and at the object's end: the bound leaves room for those between.
# A legitimate update of 32 MiB (ovsdb.max_message_bytes) holds fewer: a row takes 50 characters or more (its uuid,
# quoted, a colon, a row update such as {"new":{}} and a comma): tests/unit/test_ovsdb_decoder_bounds.py.
MAX_MEMBERS = 698_000
_ROW_KEY = re.compile(r'"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}":')  # a row's uuid
_CUTS_TRIED = 4  # a `},"` not followed by a row's uuid skipped, back from the end of a group's characters (_members)


def no_constants(name):
    raise ValueError(f"{name} is not JSON")


DECODER = json.JSONDecoder(parse_constant=no_constants)
_SPACES = " \t\n\r"  # (and "": the end of a text)
_NUMBER_START = frozenset("-0123456789")
_NUMBER = re.compile(r"[-+0-9.eE]*")  # what a number's text may hold (the C decoder says whether it is one)
_scanstring = json.decoder.scanstring
_SCAN = DECODER.scan_once  # raw_decode without its Python frame: (value, end), StopIteration where no value starts


class TooBig(ValueError):
    """A long message holds more than the decoder takes (``MAX_MEMBERS``, ``MAX_NUMBER``)."""


def _members(window: str, start: int, most: int):
    """({key: value} of the members of an object that start at ``window[start]`` (a key's quote) and end at the last
    ``},"`` within ``most`` characters followed by a row's uuid as a key (a row's end, in a table's rows), or at the
    object's own end before it; where what follows them is in ``window``: the "," after the cut, or the object's
    closing brace), decoded by the C decoder in one call; None when there is no such ``},"`` or what is before it is
    not whole members (it closed an object inside a member, or anything is malformed): the loop then reads them one
    by one, as before, and finds any error where the C decoder finds it. A ``},"`` is never inside a string (its
    quote would be escaped there), so it ends a member or a value inside one, and only the first gives an object
    the decoder takes to its end. ~2 µs of Python a row less: 20,000 rows of 10,000 new ports,
    ~45 ms of CPU of the ~80 their walk took (the C decoder's own ~32)."""
    stop = start + most
    for _ in range(_CUTS_TRIED):
        cut = window.rfind('},"', start, stop)
        if cut <= start:
            return None
        if _ROW_KEY.match(window, cut + 2):  # the next member's key is a row's uuid: the brace most likely ends a row
            break
        stop = cut + 2  # (the one before it: a table's end, a column's object inside a row)
    else:
        return None
    group = "{" + window[start:cut + 1] + "}"
    try:
        members, end = _SCAN(group, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    # the brace added closed it (the "," after the cut comes next), or one of the window's: the object's own end
    return members, (cut + 1 if end == len(group) else start + end - 2)


class Paced:
    """One long JSON text decoded with pauses (see the module docstring); raises on anything malformed what the C
    decoder raises on the whole text (the same message and position), or ``TooBig``."""

    def __init__(self, text: str, pacer):
        self.text, self.pacer = text, pacer
        self.units = 0  # work not yet ticked, in characters (a member or element walked: MEMBER_CHARS more)
        self.counted = 0  # the text before this is counted
        self.size = WINDOW
        self.window, self.offset = "", 0  # text[offset:offset + len(window)]: what the C decoder is given
        self.path: list = []  # the keys and indexes of the containers walked below SPLIT_DEPTH or beyond a window
        self.ungrouped = 0  # members starting before this are read one by one (``_members`` found none there)

    def decode(self):
        text = self.text
        try:
            value, end = self._value(0, 0)
        except StopIteration as stop:
            raise json.JSONDecodeError("Expecting value", text, stop.value) from None
        end = self._skip(end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
        return value

    def _value(self, i: int, depth: int, tried: bool = False):
        """(the value starting at ``i``, where it ends): from ``SPLIT_DEPTH`` down, decoded in C when the window holds
        it; else walked here (a container), read a window at a time (a string: ovsdb/jsonruns.py), or decoded in C
        from the whole text (a number, at most ``MAX_NUMBER`` characters: a longer one refuses the message)."""
        if depth >= SPLIT_DEPTH:
            found = self._bounded(i, tried)
            if found is not None:
                return found
        text = self.text
        opening = text[i:i + 1]
        if opening == "{":
            return self._object(i, depth)
        if opening == "[":
            return self._array(i, depth)
        if opening in _NUMBER_START and _NUMBER.match(text, i, i + MAX_NUMBER + 1).end() - i > MAX_NUMBER:
            raise TooBig("%s: a number longer than %d characters" % (self._where(), MAX_NUMBER))
        if opening == '"':
            return jsonruns.string(text, i, self.size, self._pieced)
        return _SCAN(text, i)

    def _bounded(self, i: int, tried: bool):
        """(the value at ``i``, where it ends) when the C decoder reads it within the window (made afresh at ``i``
        once if the current one does not hold it, or ``tried``), else None. An error is raised only where the window
        reaches the end of the text: elsewhere it may be the window's end (the walk then finds the error, if any)."""
        text, window, offset = self.text, self.window, self.offset
        for fresh in (tried, True):
            if fresh:
                if offset == i:
                    return None
                window, offset = self.window, self.offset = text[i:i + self.size], i
            final = offset + len(window) == len(text)
            edge = self._edge()
            try:
                value, end = _SCAN(window, i - offset)
            except StopIteration as stop:
                if final:
                    raise StopIteration(stop.value + offset) from None
            except json.JSONDecodeError as exc:
                if final:
                    raise json.JSONDecodeError(exc.msg, text, exc.pos + offset) from None
            except ValueError:
                if final:
                    raise
            else:
                if end + offset < edge:
                    return value, end + offset
            self._wasted(i)
        return None

    def _object(self, i: int, depth: int):
        """(the object at ``i``, where it ends), its members read in one loop, each value decoded in the window where
        it fits (a table's rows, in an update: through ``_value`` each would cost three Python calls more). Inside a
        container ``i`` never reaches the end of the text: framed, it ends where its first bracket is closed."""
        text, scan, scanstring, spaces = self.text, _SCAN, _scanstring, _SPACES
        member, tick, most = MEMBER_CHARS, CHARS_PER_TICK, MAX_MEMBERS
        out = {}
        i = self._skip(i + 1)
        if text[i] == "}":
            return out, i + 1
        window, offset, units, mark = self.window, self.offset, self.units, i  # mark: counted up to
        split = depth + 1 < SPLIT_DEPTH
        if depth + 1 == SPLIT_DEPTH and offset + len(window) < min(i + self.size, len(text)) \
                and i - offset >= self.size // 8:
            # a table's rows: in a window made where they start, a row that fits is not first read in vain where the
            # window another table left ends in it (a 10,000-port delete's bridge row: ~440 KB, ~1.5 ms); not where
            # the window was made less than an eighth of one before (many small tables, each copying a window: a
            # 10 MB update of 600,000 tables took ~9.5 s of CPU instead of ~1.5)
            window, offset = self.window, self.offset = text[i:i + self.size], i
        edge, near = self._limits(split)
        group = FIRST_GROUP  # the characters the next group may span (doubling: see FIRST_GROUP)
        while True:
            if i >= near:  # a member starting this close to the window's end: a fresh window rather than one read in
                window, offset = self.window, self.offset = text[i:i + self.size], i  # vain (and the error's lines
                edge, near = self._limits(split)  # counted in it: ~0.3 ms)
            if text[i] != '"':
                raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
            if not split and i >= self.ungrouped and _ROW_KEY.match(window, i - offset):  # (a row: a uuid, quoted)
                found = _members(window, i - offset, min(group, self.size))
                if found is None:  # none before that far: the members one by one until then (a search per member
                    self.ungrouped = i + min(group, self.size)  # read the same characters again and again)
                group = min(2 * group, GROUP_CHARS)
                if found is not None:  # members decoded in one C call: the loop goes on at the "," after them
                    members, end = found
                    if len(out) + len(members) > most and \
                            len(out) + len(members) - sum(map(out.__contains__, members)) > most:  # repeated: no more
                        raise TooBig("%s: more than %d members in one object" % (self._where(), most))
                    out.update(members)
                    i = end + offset
                    units += MEMBER_CHARS * len(members) + i - mark
                    mark = i
                    if text[i] == "}":  # the object's end
                        self._counted(units + 1, i + 1)
                        return out, i + 1
                    if units >= tick:
                        units, mark = self._counted(units, i), i
                    i += 1  # the ","
                    if text[i] in spaces:
                        i = self._skip(i)
                    continue
            try:  # in the window: a key it does not hold (or a malformed one) is read from the text, in pieces
                key, end = scanstring(window, i + 1 - offset, True)
                i = end + offset
            except ValueError:
                self.units, self.counted = units + i - mark, i
                key, i = jsonruns.string(text, i, self.size, self._pieced)
                units, mark = self.units + i - self.counted, i
            if text[i] != ":":
                i = self._skip(i)  # whitespace: ovsdb-server sends none
                if text[i] != ":":
                    raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
            i += 1
            if text[i] in spaces:
                i = self._skip(i)
            try:
                if split:
                    raise ValueError("walked")
                out[key], end = scan(window, i - offset)  # i - offset < 0: a ValueError
                end += offset
                if end >= edge:
                    raise ValueError("the window's end")
                units += member + end - mark
                i = mark = end
            except (StopIteration, ValueError):
                self.units, self.counted = units + MEMBER_CHARS + i - mark, i
                out[key], i = self._beyond(i, depth + 1, key)
                units, mark = self.units + i - self.counted, i
                window, offset = self.window, self.offset
                edge, near = self._limits(split)
            c = text[i]
            if c != ",":
                if c != "}":
                    i = self._skip(i)
                    c = text[i]
                if c == "}":
                    if len(out) > most:
                        raise TooBig("%s: more than %d members in one object" % (self._where(), most))
                    self._counted(units + i + 1 - mark, i + 1)
                    return out, i + 1
                if c != ",":
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i += 1
            if text[i] in spaces:
                i = self._skip(i)
            if units >= tick:  # at most tick // member members since the last check: the dict stays below its doubling
                if len(out) > most:
                    raise TooBig("%s: more than %d members in one object" % (self._where(), most))
                units, mark = self._counted(units + i - mark, i), i

    def _array(self, i: int, depth: int):
        """(the array at ``i``, where it ends), as ``_object`` reads an object."""
        text, scan = self.text, _SCAN
        out = []
        append = out.append
        i = self._skip(i + 1)
        if text[i] == "]":
            return out, i + 1
        window, offset, units, mark = self.window, self.offset, self.units, i
        edge = self._edge()
        split = depth + 1 < SPLIT_DEPTH
        while True:
            try:
                if split:
                    raise ValueError("walked")
                value, end = scan(window, i - offset)
                end += offset
                if end >= edge:
                    raise ValueError("the window's end")
                units += MEMBER_CHARS + end - mark
                i = mark = end
            except (StopIteration, ValueError):
                self.units, self.counted = units + MEMBER_CHARS + i - mark, i
                value, i = self._beyond(i, depth + 1, len(out))
                units, mark = self.units + i - self.counted, i
                window, offset = self.window, self.offset
                edge = self._edge()
            append(value)
            c = text[i]
            if c != "," and c != "]":
                i = self._skip(i)
                c = text[i]
            if c == "]":
                self._counted(units + i + 1 - mark, i + 1)
                return out, i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i += 1
            if text[i] in _SPACES:
                i = self._skip(i)
            if units >= CHARS_PER_TICK:
                units, mark = self._counted(units + i - mark, i), i

    def _skip(self, i: int) -> int:
        """Past the whitespace at ``i`` (ovsdb-server sends none; ``i`` may be the end of the text), read a window at a
        time, the pacer ticked for each (the loop it is in counts these characters again: paced twice as often)."""
        if self.text[i:i + 1] not in _SPACES:
            return i
        return jsonruns.spaces(self.text, i, self.size, self._spaced)

    def _pieced(self, j: int) -> None:
        """A string read up to ``j`` (ovsdb/jsonruns.py): each piece is read twice (where it may end, then decoded)."""
        self.units += j - self.counted
        self._reached(j)

    def _spaced(self, _j: int) -> None:
        self.pacer.tick(max(1, self.size // CHARS_PER_TICK))

    def _edge(self) -> int:
        """Where a value decoded in the window may have been cut by its end, and is decoded again: one that ends there
        or ``CUT`` characters before (a number: ``1.`` of ``1.5`` decodes as 1, ``1e+`` of ``1e+5`` as 1, the rest
        left for the walk, which then saw a malformed message); past the text when the window reaches its end."""
        end = self.offset + len(self.window)
        return len(self.text) + 1 if end == len(self.text) else end - CUT

    def _limits(self, split: bool) -> tuple[int, int]:
        """(``_edge``, where a member of an object whose members are decoded in the window gets a fresh one: the last
        eighth of a window that does not reach the text's end)."""
        edge = self._edge()
        return edge, (edge - self.size // 8 if edge <= len(self.text) and not split else len(self.text) + 2)

    def _counted(self, units: int, i: int) -> int:
        """A loop's ``units`` of work, the text up to ``i`` counted in them: ticked (see ``_reached``); those left."""
        self.units, self.counted = units, i
        self._reached(i)
        return self.units

    def _beyond(self, i: int, depth: int, step):
        """(the value at ``i``, where it ends: key or index ``step`` of a container walked) where the loop did not
        decode it in the window: above ``SPLIT_DEPTH``, or the window did not hold it (tried once more in a window
        made afresh at ``i``; in one that reaches the end of the text, its error is the value's own)."""
        tried = depth >= SPLIT_DEPTH and (self.offset + len(self.window) != len(self.text) or not self.window)
        if tried:
            self._wasted(i)
        self.path.append(step)
        value = self._value(i, depth, tried)
        self.path.pop()
        return value

    def _wasted(self, i: int) -> None:
        """The C decoder may have read the window from ``i`` to its end in vain: counted as work done."""
        self._reached(self.offset + len(self.window))
        self.counted = i

    def _where(self) -> str:
        """Where the object walked sits in the message: its keys and indexes (params/2/Port: a table's rows)."""
        return "/".join(str(step) for step in self.path) or "the message"

    def _reached(self, i: int) -> None:
        """The text up to ``i`` walked: counted, and ``pacer`` ticked per ``CHARS_PER_TICK`` units of work."""
        if i > self.counted:
            self.units += i - self.counted
            self.counted = i
        if self.units >= CHARS_PER_TICK:
            self.pacer.tick(self.units // CHARS_PER_TICK)
            self.units %= CHARS_PER_TICK
