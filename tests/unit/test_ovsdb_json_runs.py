"""A long string or run of whitespace in a long OVSDB message is read a piece at a time (ovsdb/jsonruns.py), with the
result ``json.decoder.scanstring`` gives on the whole text: the same value, or the same error at the same position,
wherever a piece ends (inside escapes, between the halves of a surrogate pair, next to the closing quote)."""

from __future__ import annotations

import json
import random

import pytest

from ovsdb import jsonruns

BODIES = [
    "plain text, long enough for several pieces of twelve",
    "\\ud83d\\ude00" * 5 + "x",  # surrogate pairs back to back
    "a\\ud83d\\ude00b\\ud83d\\u0041\\ud83d\\ud83d\\ude00\\ude00\\uDBFF\\uDFFFz",  # pairs, lone halves, upper case
    "\\\\ud83d\\\\\\ud83d\\ude00\\\\\\\\u0041\\\\",  # escaped backslashes before a u: no escapes there
    "\\n\\t\\\"\\/\\b\\f\\r\\\\" * 3,
    "\u00e9\u2603\U0001d11e raw non-ASCII \U0001f600 characters",
    "control character: abcdefghijklmnop\x01qrs",
    "an escape the decoder refuses: abcdefghijklmn\\x",
    "a \\u escape with no hex digits: abcdefghij\\u12G4",
    "a pair's second half malformed: abc\\ud83d\\uZZZZ and more",
    "a first half at the end: abcdefghijklmnopq\\ud83d",
    "a first half before a quote escape: abcdefgh\\ud83d\\\"\\ude00",
    "",
]


def outcome(read, text: str, i: int):
    try:
        return read(text, i)
    except json.JSONDecodeError as exc:
        return ("error", exc.msg, exc.pos, exc.lineno, exc.colno)


@pytest.fixture
def reads(monkeypatch):
    """How far each call of the C decoder read (to the end of its value, or to its error's position)."""
    got = []
    real = jsonruns._scanstring

    def scanstring(text, start, strict=True):
        try:
            value, end = real(text, start, strict)
        except json.JSONDecodeError as exc:
            got.append((len(text) if exc.pos < start else exc.pos) - start)  # unterminated: it read to the end
            raise
        got.append(end - start)
        return value, end
    monkeypatch.setattr(jsonruns, "_scanstring", scanstring)
    return got


def pieces(size: int, reads: list):
    """jsonruns.string with ``size``, checking that no call of the C decoder reads more than a piece (and its closing
    quote) and that ``done`` goes forward."""
    def read(text, i):
        seen = [i + 1]  # the first piece starts after the quote
        reads.clear()

        def done(j):
            assert j > seen[-1], ("no progress", seen, j)  # a piece that made none: the loop would never end
            seen.append(j)
        try:
            return jsonruns.string(text, i, size, done)
        finally:
            assert seen == sorted(set(seen)), seen
            assert all(b - a <= max(size, jsonruns.PIECE_MIN) for a, b in zip(seen, seen[1:]))
            assert max(reads) <= max(size, jsonruns.PIECE_MIN) + 1, (reads, size)
    return read


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("prefix", ["", '{"k":', '[\n"x",\n'])
def test_a_string_read_in_pieces_of_every_size_is_what_one_call_reads(body, prefix, reads):
    for text in (prefix + '"' + body + '"' + "]}", prefix + '"' + body):  # the second: unterminated
        i = len(prefix)
        whole = outcome(lambda t, k: json.decoder.scanstring(t, k + 1, True), text, i)
        reads.clear()
        for size in range(0, len(text) + 2):
            assert outcome(pieces(size, reads), text, i) == whole, (text, size)


def random_body(rng: random.Random, valid: bool) -> str:
    tokens = ["a", "z", " ", "\u00e9", "\U0001f600", "\\n", "\\\\", "\\\"", "\\/", "\\u0041", "\\u00e9",
              "\\ud83d\\ude00", "\\ud83d", "\\ude00", "\\uDBFF", "\\uDC00", "u", "d83d"]
    if not valid:
        tokens += ["\x01", "\\x", "\\u12G4", "\\u", "\\"]
    return "".join(rng.choice(tokens) for _ in range(rng.randrange(1, 60)))


@pytest.mark.parametrize("seed", range(4))
def test_random_strings_read_in_pieces_are_what_one_call_reads(seed, reads):
    rng = random.Random(seed)
    for _ in range(300):
        text = '["' + random_body(rng, valid=rng.random() < 0.5) + '"]'
        whole = outcome(lambda t, k: json.decoder.scanstring(t, k + 1, True), text, 1)
        for size in (0, 24, 25, 26, 27, 29, 30, 31, 37):
            assert outcome(pieces(size, reads), text, 1) == whole, (text, size)


def test_whitespace_is_skipped_in_pieces():
    text = "[1," + " \t\r\n" * 100 + "2]"
    for size in (0, 12, 13, 50, 399, 400, 401, 1000):
        seen = []
        assert jsonruns.spaces(text, 3, size, seen.append) == len(text) - 2
        assert len(seen) == 400 // max(size, jsonruns.PIECE_MIN)
    assert jsonruns.spaces("[1,   ", 3, 12, seen.append) == 6  # to the end of the text
