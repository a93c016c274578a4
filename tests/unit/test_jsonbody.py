"""A REST body is decoded a window at a time whatever its shape (controller/rest/jsonbody.py, issue 15): the same
value as ``json.loads`` or an error where it errs, no call of the C decoder over more than ``SPAN`` characters of a
container, pauses all along for every hostile shape, and ``POST /v1/trace`` refuses a body over ``QUESTION_BODY``
before decoding it. Counted, never timed (docs/benchmarks.md, "Branch bodypace", has the CPU)."""

import io
import json
import random

import pytest

from controller.rest import jsonbody
from controller.programmer import Programmer
from controller.rest import inspection as rest_inspect
from controller.rest.api import Api
from controller.rest.wire import MAX_DEPTH, QUESTION_BODY, ApiError, _json_body
from controller.rest.server import RestServer
from tests.unit.helpers import make_settings
from tests.unit.pipeline_case import build_state
from tests.unit.test_apply_pacing import apply_body, body_request

MB = 1024 * 1024


# ------------------------------------------------------------------------------------- same as json.loads

def random_value(r: random.Random, depth: int = 0):
    kind = r.randrange(9 if depth < 5 else 5)
    if kind == 0:
        return r.choice([r.randrange(-10**9, 10**9), r.random() * 10 ** r.randrange(-5, 30), 0, -0.0])
    if kind == 1:  # strings whose commas, brackets and quotes a cut may land in
        return r.choice(["", "a,b", "x,", ",", '","', '"', "\\", "],[", "},{", "é\u2028", "\ud83d\ude00",
                         "a" * r.randrange(80), ", {"])
    if kind == 2:
        return r.choice([None, True, False])
    if kind in (3, 4):
        return r.choice([[], {}])
    if kind in (5, 6):
        return [random_value(r, depth + 1) for _ in range(r.randrange(15))]
    return {r.choice(["a", "b", "c,", "d}", "{e", ""]) + str(r.randrange(20)): random_value(r, depth + 1)
            for _ in range(r.randrange(12))}


def random_text(r: random.Random) -> str:
    value = random_value(r)
    indent = r.choice([None, None, 0, 1, "\t", " \r\n "])
    separators = r.choice([(",", ":"), (", ", ": "), (" ,\n", " : ")])
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=r.random() < 0.5)
    if r.random() < 0.2:  # a duplicate key: json.loads keeps its first position and its last value
        text = text.replace('"a1"', '"b2"')
    return r.choice(["", " ", "\n"]) + text + r.choice(["", " \n"])


def corrupted(r: random.Random, text: str) -> str:
    i = r.randrange(len(text) + 1)
    cut = r.choice([0, 1, 2])
    return text[:i] + r.choice(["", ",", "]", "}", "[", "{", '"', ":", "x", "1", "\\", " "]) + text[i + cut:]


def outcome(decode, text):
    try:
        return "value", json.dumps(decode(text))  # dumps: the key order too
    except (ValueError, RecursionError):
        return "error", None


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of a few characters: every path (cut, shrink, one member alone, a container's own end) runs."""
    monkeypatch.setattr(jsonbody, "SPAN", 48)
    monkeypatch.setattr(jsonbody, "FIRST_WINDOW", 12)
    monkeypatch.setattr(jsonbody, "MIN_WINDOW", 3)


def test_the_value_is_json_loads_value_and_a_corrupt_text_errs_alike(small_windows):
    """800 seeds: every arc of controller/rest/jsonbody.py that 1,500 seeds reach (185, traced) is reached by seed 758
    (stop 42, trimU42)."""
    seen = {"value": 0, "error": 0}
    for seed in range(800):
        r = random.Random(seed)
        text = random_text(r)
        for candidate in (text, corrupted(r, text), corrupted(r, corrupted(r, text))):
            expected = outcome(json.loads, candidate)
            assert outcome(lambda t: jsonbody.loads(t, MAX_DEPTH + 100), candidate) == expected, (seed, candidate)
            seen[expected[0]] += 1
    assert seen["value"] > 800 and seen["error"] > 500


def test_a_malformed_text_is_named_where_it_breaks(small_windows):
    text = '{"a": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20 x], "b": 1}'
    with pytest.raises(json.JSONDecodeError) as err:
        jsonbody.loads(text, MAX_DEPTH)
    assert err.value.pos == text.index(" x") + 1


# ------------------------------------------------------------------------------------- hostile shapes

def spans(monkeypatch):
    """The characters of a container each C call was given (a scalar's own length for a scalar)."""
    seen = []
    decode, string = jsonbody.c_decode, jsonbody.c_string

    def recorded(text, i):
        value, end = decode(text, i)
        seen.append(end - i)
        return value, end

    def recorded_string(text, i):
        value, end = string(text, i)
        seen.append(end - i)
        return value, end

    monkeypatch.setattr(jsonbody, "c_decode", recorded)
    monkeypatch.setattr(jsonbody, "c_string", recorded_string)
    return seen


def listed(member: str, size: int = 4 * MB) -> str:
    return '{"a": [' + ",".join([member] * (size // (len(member) + 1))) + "]}"


HOSTILE = {
    "empty lists": listed("[]"), "empty objects": listed("{}"), "floats": listed("1.5"), "ints": listed("1"),
    "strings": listed('""'), "strings full of commas": listed('"a,a,a"'), "strings ending in commas": listed('"x,"'),
    "nulls": listed("null"), "deep but allowed": '{"a": ' + "[" * 30 + ",".join(["1"] * (2 * MB)) + "]" * 30 + "}",
    "object of many keys": "{" + ",".join(f'"k{i}": null' for i in range(150_000)) + "}",
}


def most_between_pauses(seen) -> int:
    """The most characters handed to the C decoder between two pauses (``None`` in ``seen``: a pause)."""
    most = run = 0
    for span in seen:
        run = 0 if span is None else run + span
        most = max(most, run)
    return most


# a stretch between two pauses: PAUSE_EVERY units of CHARS_PER_UNIT characters, plus the call that crossed it
STRETCH = jsonbody.PAUSE_EVERY * jsonbody.CHARS_PER_UNIT + jsonbody.SPAN + 2


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_a_hostile_shape_is_decoded_in_short_calls_with_pauses(shape, monkeypatch):
    monkeypatch.setattr(jsonbody, "MAX_CONTAINERS", 10**8)  # what is decoded is what is counted here
    monkeypatch.setattr(jsonbody, "MAX_VALUES", 10**8)
    text = HOSTILE[shape]
    seen = spans(monkeypatch)
    assert jsonbody.loads(text, MAX_DEPTH, lambda: seen.append(None)) == json.loads(text)
    assert max(span for span in seen if span is not None) <= jsonbody.SPAN + 2  # the opener and closer around
    assert most_between_pauses(seen) <= STRETCH
    assert len(text) // STRETCH <= seen.count(None) <= len(text) // 1000  # not one pause per member either


@pytest.mark.parametrize("where", ["value", "key", "number"])
def test_a_string_or_number_over_max_scalar_is_refused_without_decoding_it(where, monkeypatch):
    monkeypatch.setattr(jsonbody, "MAX_SCALAR", 1000)
    seen = spans(monkeypatch)
    long, allowed = {"value": ('{"a": "%s"}', "x,"), "key": ('{"%s": 1}', "y,"), "number": ('{"a": 1.%s}', "5")}[where]
    at_limit = long % (allowed * (999 // len(allowed)))
    assert jsonbody.loads(at_limit + " " * 2000, MAX_DEPTH) == json.loads(at_limit)
    seen.clear()
    with pytest.raises(jsonbody.TooMany):
        jsonbody.loads(long % (allowed * 100_000), MAX_DEPTH)
    assert sum(seen) <= 2 * jsonbody.FIRST_WINDOW  # the first windows failing on it, never the scalar


def test_an_object_of_too_many_members_is_refused(monkeypatch):
    monkeypatch.setattr(jsonbody, "MAX_MEMBERS", 1000)
    with pytest.raises(jsonbody.TooMany):
        jsonbody.loads("{" + ",".join(f'"k{i}": 1' for i in range(1001)) + "}", MAX_DEPTH)
    assert len(jsonbody.loads("{" + ",".join(f'"k{i}": 1' for i in range(1000)) + "}", MAX_DEPTH)) == 1000
    with pytest.raises(ApiError) as refused:
        _json_body(body_request(b'{"a": {' + b",".join(b'"k%d": 1' % i for i in range(1001)) + b"}}"))
    assert (refused.value.status, refused.value.code) == (400, "bad_json") and "1000 members" in refused.value.reason


def test_a_body_of_too_many_lists_and_objects_is_refused_before_it_is_all_decoded(monkeypatch):
    seen = spans(monkeypatch)
    with pytest.raises(ApiError) as refused:
        _json_body(body_request(listed("[]", 8 * MB).encode()))
    assert (refused.value.status, refused.value.code) == (400, "bad_json")
    assert f"more than {jsonbody.MAX_CONTAINERS} lists and objects" in refused.value.reason
    assert sum(seen) < 4 * MB  # 1,000,001 of its 2.8 M lists: refused there
    body = {"a": [[]] * (jsonbody.MAX_CONTAINERS - 2)}  # with the body and "a": at the limit
    assert _json_body(body_request(body)) == body
    with pytest.raises(ApiError) as refused:
        _json_body(body_request({"a": [None] * jsonbody.MAX_VALUES}))
    assert f"more than {jsonbody.MAX_VALUES} values" in refused.value.reason


def test_the_bytes_become_text_a_piece_at_a_time_as_in_one(monkeypatch):
    monkeypatch.setattr(jsonbody, "TEXT_EVERY", 5)
    r = random.Random(7)
    for _ in range(300):
        raw = "".join(r.choice("aé€😀\n") for _ in range(r.randrange(30))).encode()
        if r.random() < 0.3:
            raw = raw[:r.randrange(len(raw) + 1)] + r.choice([b"\xff", b"\xe2\x82", b""])
        try:
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            expected = UnicodeDecodeError
        pauses = []
        try:
            got = jsonbody.text(raw, lambda: pauses.append(1))
        except UnicodeDecodeError:
            got = UnicodeDecodeError
        assert got == expected and (got is UnicodeDecodeError or len(pauses) == max(0, -(-len(raw) // 5) - 1))


@pytest.mark.parametrize("text", ["[" * 40 + "]" * 40, '{"a": ' + "[" * 5000 + "1" + "]" * 5000 + "}",
                                  '{"a": [' + "[" * 50 + "]" * 50 + "," + ",".join(["1"] * 10000) + "]}"])
def test_too_deep_is_refused_in_windows_and_on_its_own(text, small_windows):
    with pytest.raises(jsonbody.TooDeep):
        jsonbody.loads(text, MAX_DEPTH)


def test_an_apply_of_10000_vports_is_decoded_in_windows_of_at_most_span(monkeypatch):
    text = apply_body(10_000).decode()
    seen = spans(monkeypatch)
    assert jsonbody.loads(text, MAX_DEPTH, lambda: seen.append(None)) == json.loads(text)
    calls = [span for span in seen if span is not None]
    assert max(calls) <= jsonbody.SPAN + 2 and most_between_pauses(seen) <= STRETCH
    assert sum(calls) <= 1.05 * len(text)  # cuts before the next vport's "{" do not fail
    assert len(text) // STRETCH <= seen.count(None) <= 2 * len(text) // STRETCH


# ------------------------------------------------------------------------------------- POST /v1/trace

def trace(api, settings, body: bytes):
    """(status line, the answer) of one POST /v1/trace through the WSGI application eventlet's server calls,
    with no token, and whether the body was decoded at all."""
    decoded = []
    loads = jsonbody.loads
    jsonbody.loads = lambda *args: (decoded.append(1), loads(*args))[1]
    try:
        server = RestServer("127.0.0.1", 0, api, settings.limits)
        status = []
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/trace", "QUERY_STRING": "",
                   "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
                   "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body)}
        answer = b"".join(server.application(environ, lambda line, headers: status.append(line)))
    finally:
        jsonbody.loads = loads
    return status[0], json.loads(answer), bool(decoded)


def test_a_trace_question_over_64_kib_is_refused_before_it_is_decoded(tmp_path):
    state = build_state()
    programmer = Programmer(state)
    programmer.refresh(full=True)
    settings = make_settings(tmp_path)
    api = Api(None, state, settings, extra_routes=rest_inspect.routes(state, programmer))
    status, answer, decoded = trace(api, settings, listed("[]", QUESTION_BODY).encode())
    assert status.startswith("413") and not decoded
    assert answer["error"]["code"] == "too_large" and str(QUESTION_BODY) in answer["error"]["reason"]
    question = {"vport": "web1", "packet": "ip,nw_dst=10.0.2.11"}
    status, answer, decoded = trace(api, settings, json.dumps(question).encode())
    assert status.startswith("200") and decoded and answer["exits"]
