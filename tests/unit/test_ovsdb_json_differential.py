"""A hostile peer's bytes read as a real JSON parser reads them (ovsdb/jsonstream.py against ``json``'s
``raw_decode``): random values (a table's rows keyed by uuids, keys repeated, strings holding quotes, brackets,
``},"``, backslashes, escapes, characters outside the ASCII table), serialised compactly or not, then mutated at
random (characters deleted, inserted, replaced, moved: raw control characters, lone quotes and backslashes
included), fed to a ``Parser`` in random chunks (cut mostly next to a quote or a backslash: a string going on in the
next read, an escape split across two), framed and decoded whole or walked with pauses (``_Paced``, a table's rows
``_members``). The same value and the same characters taken as ``raw_decode``, or no value when it finds none."""

from __future__ import annotations

import json
import random
import re
import uuid

import pytest

from ovsdb import jsonpaced, jsonstream
from ovsdb.jsonstream import MAX_DEPTH, Parser

_STRICT = json.JSONDecoder(parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
TOKENS = ["a", "", " ", "\u00e9", "\U0001f600", '"', "\\", "{", "}", "[", "]", ",", ":", '},"', '"},"', "\n", "\x01",
          "\\u0041", "\ud83d", '},"00000000-0000-4000-8000-000000000001":']
PLAIN = ["a", "", " ", "\u00e9", "\U0001f600", "{", "}", "[", "]", ",", ":", '},', "\ud83d"]  # no escape once dumped
MUTATIONS = '{}[]",: \t\n0a-.\\eE+1u\x00\x1f\u00e9\U0001f600'


_tokens = [TOKENS]  # the tokens of the message being made


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(_tokens[0]) for _ in range(rng.randrange(0, 8)))


def _value(rng: random.Random, depth: int):
    kind = rng.randrange(10 if depth < 6 else 6)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 1.5, 2e300, 10 ** 30, -0.0])
    if kind < 6:
        return _string(rng)
    if kind < 8:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _object(rng, depth + 1, rng.randrange(5))


def _object(rng: random.Random, depth: int, size: int) -> dict | list:
    keys = [str(uuid.UUID(int=rng.randrange(4))) if rng.random() < 0.5 else _string(rng) for _ in range(size)]
    return [[key, _value(rng, depth)] for key in keys]  # pairs: a key repeated stays in the text


def _text(rng: random.Random, tree) -> str:
    """``tree`` serialised (pairs as objects, so repeated keys reach the text)."""
    separators = rng.choice([(",", ":"), (", ", ": "), (" ,", " :\n")])
    ensure_ascii = rng.random() < 0.5 and _tokens[0] is TOKENS

    def dump(node):
        if isinstance(node, list) and node and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                                   for p in node):
            return "{" + separators[0].join(json.dumps(k, ensure_ascii=ensure_ascii) + separators[1] + dump(v)
                                            for k, v in node) + "}"
        if isinstance(node, list):
            return "[" + separators[0].join(map(dump, node)) + "]"
        return json.dumps(node, ensure_ascii=ensure_ascii)
    return dump(tree)


def _message(rng: random.Random) -> str:
    """An update3-like message (its table's rows at the depth ``_members`` reads) or any value, mutated or not."""
    _tokens[0] = PLAIN if rng.random() < 0.5 else TOKENS
    if rng.random() < 0.7:
        rows = [[str(uuid.UUID(int=rng.randrange(40))), [["insert", _object(rng, 4, rng.randrange(4))]]]
                for _ in range(rng.randrange(1, 40))]
        tables = [[rng.choice(["Port", "Interface", _string(rng)]), rows] for _ in range(rng.randrange(1, 3))]
        text = _text(rng, [["id", None], ["method", "update3"], ["params", [["m", "O"], "t", tables]]])
    else:
        text = _text(rng, rng.choice([_object(rng, 1, rng.randrange(6)), [_value(rng, 1) for _ in range(4)]]))
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        if len(text) < 2:
            break
        k = rng.randrange(len(text))
        change = rng.randrange(4)
        if change == 0:
            text = text[:k] + text[k + 1:]
        elif change == 1:
            text = text[:k] + rng.choice(MUTATIONS) + text[k:]
        elif change == 2:
            text = text[:k] + rng.choice(MUTATIONS) + text[k + 1:]
        else:
            j = rng.randrange(len(text))
            text = text[:k] + text[j:j + rng.randrange(1, 60)] + text[k:]
    return text + rng.choice(["", "", '{"next":1}', " [", "x"])


def _expected(text: str):
    """(value, characters taken) as ``raw_decode`` reads the first value, or None where it reads none (or one
    ``Parser`` refuses: not an object or array, nested deeper than ``MAX_DEPTH``)."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if text[start:start + 1] not in ("{", "["):
        return None
    try:
        value, end = _STRICT.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    strings = re.sub(r'"(?:[^"\\]|\\.)*"', "", text[start:end])
    depth = most = 0
    for c in strings:
        depth += (c in "[{") - (c in "]}")
        most = max(most, depth)
    return None if most > MAX_DEPTH else (value, end)


def _fed(text: str, rng: random.Random):
    """(the value or None, characters taken) of a Parser fed ``text`` in random chunks."""
    marks = [m.start() + d for m in re.finditer(r'["\\]', text) for d in (0, 1, 2)]
    cuts = sorted({c for c in rng.sample(marks, min(len(marks), rng.randrange(0, 6))) +
                   [rng.randrange(1, len(text) + 1) for _ in range(rng.randrange(0, 4))] if 0 < c < len(text)})
    parser, pos = Parser(1 << 26), 0
    for end in [*cuts, len(text)]:
        while pos < end and not parser.is_done():
            count = parser.feed(text[pos:end])
            pos += count
            if count == 0:
                break
    if not parser.is_done():
        return None, pos
    got = parser.finish()
    return (None if isinstance(got, str) else got), pos


@pytest.mark.parametrize("seed", range(6))
def test_hostile_text_in_random_chunks_reads_as_json_reads_it(monkeypatch, seed):
    rng = random.Random(seed)
    grouped, unescaped = [], []
    members, take_whole = jsonpaced._members, Parser._take_whole

    def counted_members(window, start, most):
        found = members(window, start, most)
        grouped.append(found is not None and len(found[0]) > 1)
        return found

    def counted_take_whole(parser, s, i):
        unescaped.append("\\" not in s[i:] and '"' in s[i:])
        return take_whole(parser, s, i)
    monkeypatch.setattr(jsonpaced, "_members", counted_members)
    monkeypatch.setattr(Parser, "_take_whole", counted_take_whole)
    for _ in range(700):
        text = _message(rng)
        expected = _expected(text)
        monkeypatch.setattr(jsonstream, "PACED_CHARS", rng.choice([0, 0, 40, 1 << 20]))  # 0: walked with pauses
        monkeypatch.setattr(jsonpaced, "WINDOW", rng.choice([7, 60, 300, 1 << 20]))
        monkeypatch.setattr(jsonpaced, "GROUP_CHARS", rng.choice([50, 200, 64 * 1024]))
        value, taken = _fed(text, rng)
        if expected is None:
            assert value is None, text
        else:
            assert value is not None and (repr(value), taken) == (repr(expected[0]), expected[1]), text
    assert sum(grouped) > 50 and sum(unescaped) > 100, (sum(grouped), sum(unescaped))  # the fast paths were taken


def test_the_messages_hold_what_the_fast_paths_read():
    """The generator makes what the test is about: texts without a backslash (framed at their quotes), tables' rows
    keyed by uuids with ``},"`` between them (decoded many in one C call), repeated keys, and errors."""
    rng = random.Random(0)
    texts = [_message(rng) for _ in range(700)]
    assert sum("\\" not in t and '"' in t for t in texts) > 100
    assert sum(re.search(r'\},"[0-9a-f-]{36}":', t) is not None for t in texts) > 100
    assert sum(_expected(t) is None for t in texts) > 100 and sum(_expected(t) is not None for t in texts) > 300
