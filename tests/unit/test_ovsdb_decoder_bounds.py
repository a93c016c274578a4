"""A long OVSDB message holds the event loop for a bounded stretch whatever its shape (ovsdb/jsonstream.py): no call
of the C decoder reads more than ``WINDOW`` characters, the pacer is ticked as the work goes (one long row, a long
error, a table of many tiny rows), and an object with more than ``MAX_MEMBERS`` members is refused, naming where it
is. Work counted in characters the C decoder read, not in time."""

from __future__ import annotations

import json

import pytest

from controller.pacer import Pacer
from ovsdb import jsonpaced, jsonruns, jsonstream
from ovsdb.jsonstream import Parser

WINDOW = 4096  # small, so that small texts show the shapes


class Reads:
    """Wraps the C decoder's scanner: how many characters each call read, and those read since the last pause."""

    def __init__(self, monkeypatch):
        self.largest = self.total = 0
        self.in_vain = 0  # calls of the scanner that read part of the text and failed (a value cut by the window)
        self.since_pause = 0
        self.worst_stretch = 0
        real = jsonpaced._SCAN

        def scan(text, i):
            try:
                value, end = real(text, i)
            except (StopIteration, ValueError):
                self._read(max(0, len(text) - i))  # at most the rest of the text (none: i beyond it)
                self.in_vain += i < len(text)
                raise
            self._read(end - i)
            return value, end
        monkeypatch.setattr(jsonpaced, "_SCAN", scan)
        for module in (jsonstream, jsonruns):  # the strings and whitespace read outside the scanner
            if hasattr(module, "_scanstring"):
                monkeypatch.setattr(module, "_scanstring", self._scanstring(module._scanstring))
            for name in ("_WS",):
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, _Pattern(getattr(module, name), self._read))
        self.loads = []
        real_loads = json.loads
        monkeypatch.setattr(json, "loads", lambda text, **kw: self.loads.append(len(text)) or real_loads(text, **kw))

    def _scanstring(self, real):
        def scanstring(text, start, strict=True):
            try:
                value, end = real(text, start, strict)
            except ValueError:
                self._read(max(0, len(text) - start))  # at most the rest of the text
                raise
            self._read(end - start)
            return value, end
        return scanstring

    def _read(self, chars: int) -> None:
        self.total += chars
        self.largest = max(self.largest, chars)
        self.since_pause += chars
        self.worst_stretch = max(self.worst_stretch, self.since_pause)

    def pause(self) -> None:
        self.since_pause = 0


class _Pattern:
    """A compiled regular expression whose ``match`` says how far it read."""

    def __init__(self, pattern, read):
        self.pattern, self.read = pattern, read

    def match(self, text, pos=0, endpos=1 << 62):
        found = self.pattern.match(text, pos, endpos)
        self.read(found.end() - pos)
        return found


def decode(text: str, reads: Reads, every: int = 10):
    parser = Parser(1 << 26, Pacer(reads.pause, every))
    assert parser.feed(text) == len(text) and parser.is_done()
    return parser, parser.finish()


def row_update(values: str) -> str:
    return ('{"id":null,"method":"update3","params":[["m","Open_vSwitch"],"t",{"Port":{"u":{"insert":{"c":["set",['
            + values + ']]}}}}]}')


@pytest.fixture
def reads(monkeypatch):
    monkeypatch.setattr(jsonpaced, "WINDOW", WINDOW, raising=False)
    return Reads(monkeypatch)


def test_one_long_row_is_decoded_a_window_at_a_time_with_pauses(reads):
    """One row of small ints (a peer's 5 million held the loop ~205 ms in one call of the C decoder)."""
    text = row_update(",".join(["7"] * 200_000))
    _, value = decode(text, reads)
    assert value == json.loads(text)
    assert reads.largest <= WINDOW
    # between two pauses: what 10 ticks count (CHARS_PER_TICK each) and a window read in vain on each side
    assert reads.worst_stretch <= 10 * jsonpaced.CHARS_PER_TICK + 2 * WINDOW


@pytest.mark.parametrize("shape", ["nested rows", "long string keys", "empty arrays"])
def test_any_long_value_below_the_rows_is_read_in_windows(reads, shape):
    if shape == "nested rows":
        values = ",".join(['[[[1,2],{"a":[3]}]]'] * 20_000)
    elif shape == "long string keys":
        values = '["map",{' + ",".join(f'"k{i}":"{"v" * 30}"' for i in range(20_000)) + "}]"
    else:
        values = ",".join(["[]"] * 100_000)
    text = row_update(values)
    _, value = decode(text, reads)
    assert value == json.loads(text)
    assert reads.largest <= WINDOW
    assert reads.worst_stretch <= 10 * jsonpaced.CHARS_PER_TICK + 2 * WINDOW


LONG = 100_000  # characters of one string or run of whitespace: many windows


@pytest.mark.parametrize("shape", ["a string in a row", "a key in a row", "a string above the rows",
                                   "a key above the rows", "whitespace in a row", "whitespace above the rows",
                                   "escapes in a row"])
def test_a_long_string_or_whitespace_is_read_a_window_at_a_time(reads, shape, monkeypatch):
    """One string or run of whitespace as long as a message takes (30 MB: ~30-50 ms of CPU in one call) is read a
    window at a time, with pauses, into the same value."""
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    long, pairs = '"' + "s" * LONG + '"', '"' + "\\ud83d\\ude00\\u00e9" * (LONG // 18) + '"'
    text = {"a string in a row": row_update(long), "a key in a row": row_update('["map",{' + long + ':1}]'),
            "a string above the rows": '{"id":null,"method":"update3","params":[' + long + ',"t",{}]}',
            "a key above the rows": '{"id":null,"method":"update3","params":[["m","O"],"t",{' + long + ':{}}]}',
            "whitespace in a row": row_update("1," + " " * LONG + "2"),
            "whitespace above the rows": '{"id":null,"method":"update3","params":[' + " " * LONG + '1,"t",{}]}',
            "escapes in a row": row_update(pairs)}[shape]
    _, value = decode(text, reads)
    assert value == json.loads(text)
    assert reads.total >= LONG  # read by the calls counted here
    assert reads.largest <= WINDOW + 1, reads.largest  # and a string's closing quote
    assert reads.worst_stretch <= 10 * jsonpaced.CHARS_PER_TICK + 2 * WINDOW


def test_an_error_at_the_end_of_a_long_row_is_found_without_decoding_all_again(reads):
    """The decoder's own message, without a call that reads the whole text (it held the loop as long as the text)."""
    text = row_update(",".join(["7"] * 200_000) + " x")
    whole = f"invalid JSON: {_error(text)}"
    reads.loads.clear()
    parser, got = decode(text, reads)
    assert got == whole and parser.error == whole  # the session is dropped with this reason (links.py limit_error)
    assert reads.largest <= WINDOW and not [n for n in reads.loads if n > jsonstream.PACED_CHARS]
    assert reads.worst_stretch <= 10 * jsonpaced.CHARS_PER_TICK + 2 * WINDOW


def _error(text: str) -> Exception:
    try:
        json.loads(text)
    except ValueError as exc:
        return exc
    raise AssertionError("valid")


def table(rows: int) -> str:
    return ('{"id":null,"method":"update3","params":[["m","Open_vSwitch"],"t",{"Bridge":{},"Port":{'
            + ",".join(f'"{i:x}":0' for i in range(rows)) + "}}]}")


def test_a_table_of_more_rows_than_an_object_takes_is_refused_naming_it(reads, monkeypatch):
    """A dict past ~700,000 members doubles in one C call (~80 ms at 1.4 million): refused, with where it is."""
    monkeypatch.setattr(jsonpaced, "MAX_MEMBERS", 1000, raising=False)
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    _, value = decode(table(1000), reads)
    assert len(value["params"][2]["Port"]) == 1000
    parser, got = decode(table(1001), reads)
    assert got == parser.error == "message refused: params/2/Port: more than 1000 members in one object"
    reads.total = 0
    text = table(50_000)
    _, got = decode(text, reads)  # refused as the rows come, not at their end: the dict never doubles past the bound
    assert got == "message refused: params/2/Port: more than 1000 members in one object"
    assert reads.total < 1100 * len(text) // 50_000


def test_a_table_of_many_tiny_rows_is_paced_per_row(reads, monkeypatch):
    """Rows of one character of value: each row walked counts for MEMBER_CHARS, not its few characters only."""
    class Units:
        n = 0

        def tick(self, units=1):
            self.n += units

    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    rows = 50_000
    units = Units()
    parser = Parser(1 << 26, units)
    text = table(rows)
    assert parser.feed(text) == len(text)
    assert len(parser.finish()["params"][2]["Port"]) == rows
    assert units.n >= rows // 64  # a row: at least 32 characters of work (CHARS_PER_TICK 2048 a tick)


@pytest.mark.parametrize("case", ["refused", "malformed"])
def test_the_connection_says_why_a_long_message_dropped_it(monkeypatch, case):
    """What ovsdb/server.py logs at the drop (``limit_error``): the refusal or the decoder's message (ovs only wrote
    it to its own log, which is silent)."""
    import errno
    import socket

    import ovs.stream

    from ovsdb.idl.links import BoundedConnection

    monkeypatch.setattr(jsonpaced, "MAX_MEMBERS", 1000, raising=False)
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)  # (a shorter message cannot hold 698,001 members)
    text = table(1001) if case == "refused" else row_update(",".join(["7"] * 200_000) + " x")
    data = text.encode()
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        theirs.setblocking(False)
        rpc = BoundedConnection(ovs.stream.Stream(ours, "unix:test", 0), 1 << 22)
        sent, status = 0, errno.EAGAIN
        for _ in range(1000):  # bounded: one call per read budget, the peer writing what its socket takes meanwhile
            if sent < len(data):
                try:
                    sent += theirs.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
            status, _ = rpc.recv()
            if status != errno.EAGAIN:
                break
        assert status == errno.EPROTO
        expected = "message refused: params/2/Port: more than 1000 members in one object" if case == "refused" else \
            f"invalid JSON: {_error(text)}"
        assert rpc.limit_error == expected
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("where", ["in a row", "above the rows"])
def test_a_number_longer_than_the_window_refuses_the_message(reads, where, monkeypatch):
    """A real's digits are converted in one call (30 MB: ~60 ms of CPU); no OVSDB number is that long."""
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    monkeypatch.setattr(jsonpaced, "MAX_NUMBER", WINDOW, raising=False)  # as long as the window, as it is
    number = "1." + "5" * (2 * WINDOW)
    text = row_update(number) if where == "in a row" else \
        '{"id":null,"method":"update3","params":[' + number + ',"t",{}]}'
    parser, got = decode(text, reads)
    assert got == parser.error and got.startswith("message refused: ") and \
        got.endswith(f": a number longer than {WINDOW} characters"), got
    assert reads.largest <= WINDOW
    _, fits = decode(row_update("1." + "5" * (WINDOW // 2)), reads)
    assert fits["params"][2]["Port"]["u"]["insert"]["c"] == ["set", [float("1." + "5" * (WINDOW // 2))]]



@pytest.mark.parametrize("number", ["1.5", "-0.25e-3", "2E+10", "7e5"])
def test_a_real_cut_by_the_windows_end_decodes_whole(reads, number, monkeypatch):
    """A real's prefix is a number too ("1." of "1.5" decodes as 1, "7e" of "7e5" as 7, leaving "."/"e" behind):
    with the window's end on each character of the reals, in a row and in a value walked below it, it decodes as in
    one call (it was refused as malformed)."""
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    reals = ",".join([number] * 3 * WINDOW)
    for shift in range(len(number) + 2):
        for text in (row_update(" " * shift + reals), row_update('{"a":[' + " " * shift + reals + "]}")):
            parser, value = decode(text, reads)
            assert parser.error is None and value == json.loads(text)


def test_a_table_of_the_default_message_size_holds_fewer_rows_than_an_object_takes():
    """What makes MAX_MEMBERS safe for a real update: the smallest row update ovsdb-server may send (old protocol,
    no column: 50 characters with its uuid and comma) does not fit MAX_MEMBERS times in ovsdb.max_message_bytes."""
    from ovsdb.idl.links import DEFAULT_MAX_MESSAGE

    smallest = '"%s":{"new":{}},' % ("0" * 8 + "-0000-4000-8000-" + "0" * 12)
    assert len(smallest) == 50 and DEFAULT_MAX_MESSAGE // len(smallest) < jsonpaced.MAX_MEMBERS


def test_rows_that_fit_the_window_are_never_read_in_vain(reads, monkeypatch):
    """A table's rows start in a window made where they start, and a row starting in a window's last eighth gets a
    fresh one: no row that fits a window is first read up to a window's end in vain (the 10,000-port delete's 460 KB
    bridge row was; each such read also raised an error whose line count read the window again)."""
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    ports = [f'["uuid","{i:08x}-0000-4000-8000-000000000002"]' for i in range(60)]  # a row of ~3 KB
    rows = ",".join(f'"{i:08x}-0000-4000-8000-000000000001":{{"delete":null}}' for i in range(500))
    text = ('{"id":null,"method":"update3","params":[["m","Open_vSwitch"],"t",{"Interface":{' + rows
            + '},"Bridge":{"b":{"modify":{"ports":["set",[' + ",".join(ports) + ']]}}}}]}')
    _, value = decode(text, reads)
    assert value == json.loads(text)
    assert reads.in_vain == 0 and reads.total <= len(text)


class _Sliced(str):
    """A text that counts the characters its slices copy (the windows made for the C decoder among them)."""

    copied = 0

    def __getitem__(self, key):
        part = str.__getitem__(self, key)
        if isinstance(key, slice):
            self.copied += len(part)
        return part


def test_many_small_tables_do_not_each_copy_a_window(monkeypatch):
    """The rows of a table start in a window made where they start, unless the window was made less than an eighth of
    one before: an update of many tiny tables copied a whole window for each (600,000 tables in 10 MB: ~9.5 s of CPU
    instead of ~1.5), its copying now bounded by a few times the text."""
    monkeypatch.setattr(jsonpaced, "WINDOW", WINDOW)
    tables = ",".join('"%d":{"r":0}' % k for k in range(3000))
    text = _Sliced('{"id":null,"method":"update3","params":[["m","O"],"t",{' + tables + '}]}')
    assert jsonpaced.Paced(text, Pacer(lambda: None, 10)).decode() == json.loads(text)
    assert text.copied <= 10 * len(text), (text.copied, len(text))


def test_a_table_whose_rows_repeat_is_refused_by_its_distinct_rows_only(reads, monkeypatch):
    """A row repeated (the last one counts, as for the C decoder) is not a member more: 1,000 rows sent twice, decoded
    many in one C call (``_members``) a group at a time, fit a bound of 1,000 as they fit json.loads's dict; 1,001
    distinct are refused."""
    monkeypatch.setattr(jsonpaced, "MAX_MEMBERS", 1000, raising=False)
    monkeypatch.setattr(jsonstream, "PACED_CHARS", 0)
    monkeypatch.setattr(jsonpaced, "GROUP_CHARS", 2000)  # groups of ~40 rows, the second half's all repeated
    rows = [f'"{i:08x}-0000-4000-8000-000000000002":{{"delete":null}}' for i in range(1000)]
    text = '{"id":null,"method":"update3","params":[["m","O"],"t",{"Port":{%s}}]}' % ",".join(rows + rows)
    _, value = decode(text, reads)
    assert value == json.loads(text) and len(value["params"][2]["Port"]) == 1000
    extra = ',"ffffffff-0000-4000-8000-000000000002":{"delete":null}'
    _, got = decode(text.replace("}}]}", extra + "}}]}"), reads)
    assert got == "message refused: params/2/Port: more than 1000 members in one object"
