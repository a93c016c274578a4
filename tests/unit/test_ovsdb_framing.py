"""ovsdb/jsonstream.py ``Parser.feed``: a chunk in which the value does not end is taken whole (strings cut out and
brackets counted in C), and every chunking of every message frames exactly as the search bracket by bracket does:
the same characters taken per call, the same end, the same errors (too deep, too long), the same value."""

from __future__ import annotations

import json
import random

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


def frames(text: str, cuts: list[int], whole: bool = True):
    """What a Parser does with ``text`` cut at ``cuts`` (then the rest of each chunk fed again, as Connection.recv
    does): (characters taken per call, done, error, value)."""
    parser = Parser(1 << 26)
    if not whole:
        parser._take_whole = lambda s, i: False
    taken, pos = [], 0
    for end in [*cuts, len(text)]:
        while pos < end and not parser.is_done():
            count = parser.feed(text[pos:end])
            taken.append(count)
            pos += count
            if count == 0:
                break
    return taken, parser.is_done(), parser.error, parser.finish() if parser.is_done() else None


@pytest.mark.parametrize("text", TRICKY + [json.dumps(update3(30)), json.dumps(update3(30)) + '{"next":1}'])
def test_every_chunking_frames_as_the_search_bracket_by_bracket_does(text):
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
        assert frames(text, cuts) == frames(text, cuts, whole=False), cuts
    for cut in range(1, min(len(text), 400)):  # every single cut, escapes and quotes split included
        assert frames(text, [cut]) == frames(text, [cut], whole=False), cut


def test_too_deep_and_too_long_fail_as_before():
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    for cuts in ([3], [MAX_DEPTH // 2, MAX_DEPTH + 2], [10, 20, 30]):
        got = frames(deep, cuts)
        assert got == frames(deep, cuts, whole=False) and got[2] and "deeper" in got[2]
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
