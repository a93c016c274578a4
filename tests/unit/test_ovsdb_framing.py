"""ovsdb/jsonstream.py ``Parser.feed``: a chunk in which the value does not end is taken whole (strings cut out and
brackets counted in C), and every chunking of every message frames exactly as the search bracket by bracket does:
the same characters taken per call, the same end, the same errors (too deep, too long), the same value."""

from __future__ import annotations

import json
import random
import time

import pytest

from ovsdb import jsonstream
from ovsdb.jsonstream import MAX_DEPTH, Parser
from tests.unit.test_ovsdb_paced_json import update3

TRICKY = [
    '{"a":"x\\"]}","b":[1,2,{"c":"\\\\"}],"d":"\\\\\\"{["}',
    '[["\\\\\\\\",["]"]],{"}":"{"}, "\\u005c\\"", [[[[]]]]]',
    '{"s": "' + "\\\\" * 7 + '\\"' + '[' * 5 + '"}',
    json.dumps({"k": ["a\"b", "c\\d", "e]f", "{g", "\\\\\"]"], "n": [[[[[None]]]]]}),
]
# without a backslash (a chunk's strings then cut out at its quotes: str.split), brackets inside strings, a string
# going on across chunks, a character outside the ASCII table the brackets are picked from (str.translate)
NO_ESCAPE = [
    '{"a":"]}[{","b":[1,{"c":"x"}],"d":"{[","e":[[["]]]"]]]}',
    '[["]",["[[["]],{"}":"{"},"\u00e9]",[[[[]]]],"é{"]',
    '{"a":[1,é,"]"],"b":"["}',
    '{"ké":["é","[",{" ":"}"}],"n":[[[[[null]]]]]}',
]
MALFORMED = ['{"a" 1,"b":[2]}{"next":1}', '[1 2,["]"]]', '{"n":NaN,"s":"]"}', '{"a":[1,]}']


def frames(text: str, cuts: list[int], whole: bool = True):
    """What a Parser does with ``text`` cut at ``cuts`` (then the rest of each chunk fed again, as Connection.recv
    does): (characters taken per call, done, error, value)."""
    parser = Parser(1 << 26)
    if not whole:
        parser._take_whole = lambda s, i: False
        parser._decode_here = lambda s, i: None
    taken, pos = [], 0
    for end in [*cuts, len(text)]:
        while pos < end and not parser.is_done():
            count = parser.feed(text[pos:end])
            taken.append(count)
            pos += count
            if count == 0:
                break
    return taken, parser.is_done(), parser.error, parser.finish() if parser.is_done() else None


@pytest.mark.parametrize("text", TRICKY + NO_ESCAPE + MALFORMED + [json.dumps(update3(30)),
                                                                 json.dumps(update3(30)) + '{"next":1}'])
def test_every_chunking_frames_as_the_search_bracket_by_bracket_does(text):
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
        assert frames(text, cuts) == frames(text, cuts, whole=False), cuts
    for cut in range(1, min(len(text), 400)):  # every single cut, escapes and quotes split included
        assert frames(text, [cut]) == frames(text, [cut], whole=False), cut


def test_too_deep_and_too_long_fail_as_before():
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    for cuts in ([], [3], [MAX_DEPTH // 2, MAX_DEPTH + 2], [10, 20, 30]):  # []: it starts and ends in one chunk
        got = frames(deep, cuts)
        assert got == frames(deep, cuts, whole=False) and got[2] and "deeper" in got[2]
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # as deep as allowed, the next message in the same chunk
    want = ([2 * MAX_DEPTH], True, None, json.loads(deepest))
    assert frames(deepest + "[1]", []) == frames(deepest + "[1]", [], whole=False) == want
    text = json.dumps(update3(50))
    short = Parser(len(text) // 2)
    taken = short.feed(text[:len(text) // 3]), short.feed(text[len(text) // 3:])
    assert short.error and "longer than" in short.error and taken[0] == len(text) // 3


class Counting:
    """``jsonstream._OUTSIDE`` counting its searches."""

    def __init__(self, real):
        self.real, self.searches = real, 0

    def search(self, *args):
        self.searches += 1
        return self.real.search(*args)


def test_a_chunk_the_message_does_not_end_in_is_taken_without_a_search_per_bracket(monkeypatch):
    text = json.dumps(update3(4000))  # ~1.1 MB, in reads of 64 KiB
    counting = Counting(jsonstream._OUTSIDE)
    monkeypatch.setattr(jsonstream, "_OUTSIDE", counting)
    parser = Parser(1 << 26)
    pos = 0
    for _ in range(1000):
        if parser.is_done():
            break
        pos += parser.feed(text[pos:pos + 65536])
    assert pos == len(text) and parser.finish() == json.loads(text)
    assert counting.searches < 13000  # the last chunk (the value ends in it), bracket by bracket; ~100,000 without


def test_the_chunk_a_short_message_ends_in_is_framed_without_a_search_per_bracket(monkeypatch):
    """A peer's schema (15.6 KB; every OVSDB session reads one as it connects, 50 at once after a restart) in the
    4 KB reads ovs.jsonrpc makes: the last read, where the message ends, was searched bracket by bracket and quote
    by quote (~850 searches, 3x the decoding's CPU); the value is decoded in C there instead, which says where it
    ends."""
    schema = {"name": "Open_vSwitch", "version": "8.5.0", "tables": {
        f"T{t}": {"columns": {f"c{c}": {"type": {"key": {"type": "string", "enum": ["set", ["a", "b]", "{c"]]},
                                                "min": 0, "max": "unlimited"}} for c in range(12)},
                  "indexes": [["c0"]], "isRoot": True} for t in range(12)}}
    text = json.dumps({"id": 2, "result": schema, "error": None}, separators=(",", ":")) + '{"id":"echo"'
    counting = Counting(jsonstream._OUTSIDE)
    monkeypatch.setattr(jsonstream, "_OUTSIDE", counting)
    parser, pos = Parser(1 << 26), 0
    for _ in range(100):
        if parser.is_done():
            break
        pos += parser.feed(text[pos:pos + 4096])
    assert text[pos:] == '{"id":"echo"' and parser.finish() == {"id": 2, "result": schema, "error": None}
    assert counting.searches <= 2  # the opening bracket; ~2,000 bracket by bracket
    assert frames(text, list(range(4096, len(text), 4096))) == frames(text, list(range(4096, len(text), 4096)),
                                                                      whole=False)


class Scanned:
    """``jsonstream._STRINGS`` counting the characters it cuts strings out of."""

    def __init__(self, real):
        self.real, self.chars = real, 0

    def sub(self, repl, text):
        self.chars += len(text)
        return self.real.sub(repl, text)


def test_a_read_of_many_small_messages_is_framed_at_the_cost_of_the_read(monkeypatch):
    """A 4 KB read of 113 echo requests (or small updates), framed as ``ovs.jsonrpc.Connection.recv`` does (a new
    Parser for what follows each message): each message that starts and ends in the read is decoded in C at the cost
    of its own length. Taking the rest of the read at once for each of them (strings cut out, brackets counted) read
    the rest of the read again per message: 113 x 2 KB, 8 ms of CPU for 4 KB (1 ms bracket by bracket)."""
    echo = {"method": "echo", "params": [], "id": 0}
    read = json.dumps(echo, separators=(",", ":")) * 113
    scanned = Scanned(jsonstream._STRINGS)
    monkeypatch.setattr(jsonstream, "_STRINGS", scanned)
    values, rest = [], read
    for _ in range(200):
        if not rest:
            break
        parser = Parser(1 << 26)
        rest = rest[parser.feed(rest):]
        assert parser.is_done()
        values.append(parser.finish())
    assert values == [echo] * 113 and rest == ""
    assert scanned.chars <= len(read)  # ~230,000 when the rest of the read is scanned per message


def _cpu_to_feed(chunk: str) -> float:
    """CPU time (``time.thread_time``: not wall clock) of the fastest of three feeds of ``chunk`` to a new Parser."""
    best = None
    for _ in range(3):
        parser = Parser(1 << 26)
        start = time.thread_time()
        parser.feed(chunk)
        spent = time.thread_time() - start
        best = spent if best is None else min(best, spent)
    return best


def test_a_chunk_ending_in_a_string_of_escaped_quotes_is_framed_in_linear_time():
    """Hostile input: a read that ends inside a string of 8,000 escaped quotes. Cutting out the complete strings
    must not search again from each quote inside the open one (quadratic: seconds of CPU per 16 KB read, the event
    loop held); it costs what the same string closed in the chunk costs."""
    body = '["' + '\\"' * 8000
    open_string, closed = _cpu_to_feed(body), _cpu_to_feed(body + '",')
    assert open_string < 5 * closed + 0.001, (open_string, closed)
    parser = Parser(1 << 26)
    assert parser.feed(body) == len(body) and parser.in_string and not parser.escape and parser.depth == 1
    assert parser.feed('\\\\"]') == 4 and parser.is_done() and parser.finish() == ['"' * 8000 + "\\"]


def test_chunks_without_a_backslash_are_framed_without_the_string_pattern(monkeypatch):
    """An update as ovsdb-server sends one (no escape in it: 10,000 new ports, 3.7 MB) fed in 64 KiB reads: its strings
    are cut out at their quotes (``str.split``, ~8 ms of CPU) rather than by ``_STRINGS`` (~27 ms on main, which ran it
    over every character); a chunk with a backslash still goes through the pattern. The same value either way."""
    text = json.dumps(update3(300), separators=(",", ":"))
    scanned = Scanned(jsonstream._STRINGS)
    monkeypatch.setattr(jsonstream, "_STRINGS", scanned)
    cuts = list(range(4096, len(text), 4096))
    assert frames(text, cuts) == frames(text, cuts, whole=False)
    assert scanned.chars == 0  # main: every character of every chunk but the last
    escaped = text.replace('"name":"', '"name":"\\\\', 1)
    assert frames(escaped, cuts) == frames(escaped, cuts, whole=False)
    assert scanned.chars > 0
