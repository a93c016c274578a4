"""A long OVSDB message is decoded a value at a time with pauses (ovsdb/jsonstream.py): the same value as one call
to the C decoder, the same errors, and turns for the event loop while it is decoded."""

from __future__ import annotations

import json
import re

import pytest

from controller.pacer import Pacer
from ovsdb import jsonpaced, jsonstream
from ovsdb.jsonstream import PACED_CHARS, Parser


def update3(rows: int) -> dict:
    """An update3 as ovsdb-server sends it when ``rows`` ports appear: Interface and Port rows, the bridge's set."""
    interfaces = {f"{i:08x}-0000-4000-8000-000000000001": {"insert": {
        "name": f"p-o{i}", "external_ids": ["map", [["attached-mac", f"0e:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}"],
                                                    ["iface-id", f"o{i}"]]]}} for i in range(rows)}
    ports = {f"{i:08x}-0000-4000-8000-000000000002": {"insert": {
        "name": f"p-o{i}", "interfaces": ["uuid", f"{i:08x}-0000-4000-8000-000000000001"]}} for i in range(rows)}
    bridge = {"b0000000-0000-4000-8000-000000000000": {"modify": {
        "ports": ["set", [["uuid", f"{i:08x}-0000-4000-8000-000000000002"] for i in range(rows)]]}}}
    return {"id": None, "method": "update3", "params": [["monid", "Open_vSwitch"], "txn-1",
                                                        {"Interface": interfaces, "Port": ports, "Bridge": bridge}]}


def decoded(text: str, pacer=None):
    parser = Parser(1 << 26, *([pacer] if pacer is not None else []))
    assert parser.feed(text) == len(text) and parser.is_done()
    return parser.finish()


def test_a_long_update_is_decoded_with_pauses_into_the_same_value():
    message = update3(3000)
    text = json.dumps(message)
    assert len(text) > PACED_CHARS
    turns = []
    pacer = Pacer(lambda: turns.append(1), 10)
    assert decoded(text, pacer) == message == json.loads(text)
    assert len(turns) == pacer.pauses > 20  # once per ~20 KB of rows decoded (10 units of CHARS_PER_TICK)


def test_a_short_message_is_decoded_in_one_call():
    turns = []
    text = json.dumps(update3(10))
    assert decoded(text, Pacer(lambda: turns.append(1), 1)) == json.loads(text) and turns == []


@pytest.mark.parametrize("sample", [
    {"id": 1, "method": "update", "params": [None, {"Interface": {"u1": {"new": {"name": "tap\u00e9\"]}", "ofport": 7,
                                                                                 "mtu": 1.5, "up": True}}}}]},
    ["a\\\"b", {"k": [[], {}, [[[]]]], "\\": "\\\\"}, -3, 2.5e10, False, None, "\u2603 snow"],
    {"result": ["x" * 5000, "y\\n\\u0041" * 100], "error": None, "id": "echo", "d\u00e9j\u00e0": {"": {}}},
    [[], {}, [{}], {"a": []}],
    {"\U0001f600 key \u00e9" * 9: ["\U0001f600" * 40, "\u00e9\\\"\n" * 20, {"\ud83d x \ude00" * 5: "\\u0041" * 9}]},
])
@pytest.mark.parametrize("indent", [None, 1])
@pytest.mark.parametrize("window", [0, 7, 13, 25, 1 << 20])
def test_every_message_decodes_as_the_c_decoder_does_when_walked(monkeypatch, sample, indent, window):
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)  # every message walked
    monkeypatch.setattr(jsonpaced, "WINDOW", window)  # 0: every container; 7: values cut by the window's end
    text = json.dumps(sample, indent=indent, ensure_ascii=indent is None)
    assert decoded(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1,}', '{"a" 1}', '{"a": [1}}', '[1 2]', '[NaN]', '{"a": {"b": Infinity}}',
                                  '{1: 2}', '[1,]', '{"a": "\x01"}',
                                  # a table's rows (one level above SPLIT_DEPTH: _Paced._rows)
                                  '[[{"t": {"a": 1,}}]]', '[[{"t": {"a" 1}}]]', '[[{"t": {"a": }}]]',
                                  '[[{"t": {"a": NaN}}]]', '[[{"t": {"a": 1 "b": 2}}]]', '[[{"t": {"a": 1}x}]]',
                                  '[[{"t": {"a": {"b": 1}, 2: 3}}]]'])
@pytest.mark.parametrize("window", [0, 5, 1 << 20])
def test_a_malformed_long_message_fails_as_the_c_decoder_says(monkeypatch, text, window):
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    monkeypatch.setattr(jsonpaced, "WINDOW", window)
    got = decoded(text)
    assert isinstance(got, str) and got.startswith("invalid JSON: ")
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 1 << 30)
    assert decoded(text) == got  # the same message as decoding in one call


def test_a_tables_rows_are_decoded_without_a_python_call_per_row(monkeypatch):
    """The rows of a table (one level above SPLIT_DEPTH) are read in one loop, each row decoded in C: a big delete's
    20,000 rows of ``{"delete":null}`` cost ~1.3 µs each through a walk of six Python calls per row. The same value,
    whitespace or none, and the pauses as before."""
    rows = 3000
    message = {"id": None, "method": "update3", "params": [["monid", "Open_vSwitch"], "txn-1", {
        "Port": {f"{i:08x}-0000-4000-8000-000000000002": {"delete": None} for i in range(rows)},
        "Interface": {f"{i:08x}-0000-4000-8000-000000000001": {"delete": None} for i in range(rows)}}]}
    walked = []
    real = jsonpaced.Paced._value
    monkeypatch.setattr(jsonpaced.Paced, "_value",
                        lambda self, i, depth, *tried: walked.append(depth) or real(self, i, depth, *tried))
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    for indent in (None, 1):
        text = json.dumps(message, indent=indent)
        walked.clear()
        turns = []
        assert decoded(text, Pacer(lambda: turns.append(1), 1)) == message
        assert len(walked) < 20, len(walked)  # the message, its params, the tables: not the 6,000 rows
        assert len(turns) >= len(json.dumps(list(message["params"][2]["Port"].values()))) // jsonpaced.CHARS_PER_TICK


@pytest.mark.parametrize("shape", ["long keys", "empty containers", "whitespace"])
def test_a_long_message_ticks_per_character_walked_whatever_its_shape(monkeypatch, shape):
    """A peer may send any shape: the pacer is ticked once per CHARS_PER_TICK characters of the text walked, keys,
    separators, whitespace and empty containers included. Counted by the values decoded alone, a table of rows
    ``"<key>":0`` (one character of value a row) or a list of ``[]`` (none) was walked without a pause."""
    class Units:  # the units ticked
        n = 0

        def tick(self, units=1):
            self.n += units

    rows = 20_000
    if shape == "long keys":
        table = {f"{i:08x}-0000-4000-8000-000000000002" + "k" * 40: 0 for i in range(rows)}
        message = {"id": None, "method": "update3", "params": [["m", "Open_vSwitch"], "t", {"Port": table}]}
    elif shape == "empty containers":
        message = {"id": None, "method": "update3", "params": [[[] for _ in range(rows)], {}, [{}] * rows]}
    else:
        message = {"id": None, "method": "update3", "params": [list(range(rows)), "t", {"Port": {"k": list(range(9))}}]}
    text = json.dumps(message)
    if shape == "whitespace":
        text = text.replace(",", "," + " " * 64)
    assert len(text) > 10 * jsonpaced.CHARS_PER_TICK
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    units = Units()
    assert decoded(text, units) == message
    assert units.n >= len(text) // jsonpaced.CHARS_PER_TICK - 1


def outcome(text: str):
    """What a Parser makes of ``text`` fed whole: (characters taken, done, the value or the error's text)."""
    parser = Parser(1 << 26)
    taken = parser.feed(text)
    return taken, parser.is_done(), parser.finish()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window", [0, 11, 1 << 20])
def test_mutated_updates_decode_walked_as_in_one_call(monkeypatch, seed, window):
    """A peer may send anything: updates with characters deleted, inserted, replaced or moved, at random (seeded),
    walked (every message longer than PACED_CHARS, here all) give what decoding in one call gives: the same value,
    or the same error, and the same characters taken."""
    import random

    rng = random.Random(seed)
    monkeypatch.setattr(jsonpaced, "WINDOW", window)
    message = update3(3)
    message["params"][2]["Port"].update({f"{i:08x}-0000-4000-8000-00000000000d": {"delete": None} for i in range(2)})
    bases = [json.dumps(message), json.dumps(message, indent=1), json.dumps(message, separators=(",", ":"))]
    alphabet = '{}[]",: \t\n0a-.\\eE+1u'
    for _ in range(400):
        text = rng.choice(bases)
        for _ in range(rng.choice([1, 1, 2, 3])):
            marks = [m.start() for m in re.finditer(r'[{}\[\]",:]', text)]  # mostly next to the structure
            k = min(rng.choice(marks) + rng.randrange(-1, 2), len(text) - 1) if rng.random() < 0.7 else \
                rng.randrange(len(text))
            change = rng.randrange(4)
            if change == 0:
                text = text[:k] + text[k + 1:]
            elif change == 1:
                text = text[:k] + rng.choice(alphabet) + text[k:]
            elif change == 2:
                text = text[:k] + rng.choice(alphabet) + text[k + 1:]
            else:
                j = rng.randrange(len(text))
                text = text[:k] + text[j:j + rng.randrange(1, 40)] + text[k:]
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 1 << 30)
        whole = outcome(text)
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
        assert outcome(text) == whole, text


@pytest.mark.parametrize("window", [0, 9, 1 << 20])
def test_every_one_character_edit_of_a_small_update_decodes_walked_as_in_one_call(monkeypatch, window):
    """Exhaustively: each character of a small update deleted, and each of ``{}[]",: 0`` inserted before it or put in
    its place: walked, the same value or error as in one call (a table's rows are read by _Paced._rows)."""
    monkeypatch.setattr(jsonpaced, "WINDOW", window)
    text = ('{"id":null,"method":"update3","params":[["m","O"],"t",{"Port":{"a":{"delete":null},"b":{"x":[1]}},'
            '"Bridge":{"c":{"modify":{"ports":["set",[]]}}}}]}')
    edits = []
    for k in range(len(text)):
        edits.append(text[:k] + text[k + 1:])
        for c in '{}[]",: 0':
            edits += [text[:k] + c + text[k:], text[:k] + c + text[k + 1:]]
    for edited in edits:
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 1 << 30)
        whole = outcome(edited)
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
        assert outcome(edited) == whole, edited


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window", [0, 25, 29])
def test_messages_of_random_strings_decode_walked_as_in_one_call(monkeypatch, seed, window):
    """Strings (keys and values, above and below the rows) of characters, escapes, surrogate pairs and lone halves,
    some malformed (a control character, an escape the decoder refuses), read a piece at a time (ovsdb/jsonruns.py:
    the pieces no longer than the window, so cut everywhere) give what decoding in one call gives."""
    import random

    from tests.unit.test_ovsdb_json_runs import random_body

    rng = random.Random(seed)
    monkeypatch.setattr(jsonpaced, "WINDOW", window)
    for _ in range(150):
        def q():
            return '"' + random_body(rng, valid=rng.random() < 0.9) + '"'
        text = ('{"id":null,' + q() + ':' + q() + ',"params":[["m",' + q() + '],"t",{"Port":{' + q() + ':{'
                + q() + ':[' + q() + ',' + q() + '],"c":' + q() + '}}}]}')
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 1 << 30)
        whole = outcome(text)
        monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
        assert outcome(text) == whole, text


def test_a_tables_rows_as_ovsdb_server_sends_them_are_decoded_many_in_one_c_call(monkeypatch):
    """ovsdb-server's update (no whitespace: a row ends ``},"`` before the next row's uuid) of 3,000 new ports: its
    rows decoded by the C decoder up to ``GROUP_CHARS`` at a time (``_members``), not one call and ~2 µs of Python
    each (main: 6,001 calls, one per row; 10,000 ports: the walk ~80 ms of CPU, the C decoder's own ~32). The same
    value, and the pauses as before: at least one tick per ``CHARS_PER_TICK`` characters."""
    class Units:
        n = 0

        def tick(self, units=1):
            self.n += units

    message = update3(3000)
    text = json.dumps(message, separators=(",", ":"))
    calls = []
    real = jsonpaced._SCAN

    def scan(s, i):
        value, end = real(s, i)
        calls.append(end - i)  # the characters it decoded
        return value, end
    monkeypatch.setattr(jsonpaced, "_SCAN", scan)
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    units = Units()
    assert decoded(text, units) == message
    assert len(calls) <= 4 * len(text) // jsonpaced.GROUP_CHARS + 10, len(calls)
    assert max(calls) <= jsonpaced.WINDOW  # a call decodes a window at most (the bridge row: 144 KB, alone)
    assert units.n >= len(text) // jsonpaced.CHARS_PER_TICK - 1


def test_small_objects_walked_among_rows_copy_no_more_than_their_own_characters_for_one_c_call(monkeypatch):
    """A peer's update of many tiny tables, every third holding two rows (a ``},"<uuid>":`` never far ahead): each
    tiny table's first member looked for a group of rows (``_members``) copied up to ``GROUP_CHARS`` of the text
    (64 KB, ~5 µs) to decode its few characters (13.7 MB: ~1.7 s of CPU more than the walk before it, 1.6x). The
    characters a table's groups may span start small and double as its rows are found, and a group is looked for only
    from a member keyed by a uuid (a row's): the same value, the characters a group may copy less than 3x the text's
    (5.7x with groups looked for from any member, 1,400x on the merge of ins40)."""
    tables = {}
    for i in range(30_000):
        tables[f"T{i}"] = {"a": 0} if i % 3 else {f"{2 * i:08x}-0000-4000-8000-000000000001": {"a": {}},
                                                   f"{2 * i + 1:08x}-0000-4000-8000-000000000001": {}}
    message = {"id": None, "method": "update3", "params": [["m", "O"], "t", tables]}
    text = json.dumps(message, separators=(",", ":"))
    spans = []
    real = jsonpaced._members

    def members(window, start, most):
        spans.append(min(most, len(window) - start))  # what it may copy
        return real(window, start, most)
    monkeypatch.setattr(jsonpaced, "_members", members)
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    assert decoded(text) == message
    assert sum(spans) <= 3 * len(text), (sum(spans), len(text))
