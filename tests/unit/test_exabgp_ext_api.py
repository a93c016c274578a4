"""The ExaBGP extension's API side (``bgp.exabgp_ext_api``): what ExaBGP writes to Canopy held and written together,
received withdrawals read without ExaBGP's attribute machinery (hostile UPDATE bodies read exactly as ExaBGP's own
unpack reads them) and batched (going out while ExaBGP stays busy, and when it stops its processes), the collector
kept off the routes during a burst of commands."""

import copy
import random
import struct
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bgp import exabgp_codec, exabgp_ext, exabgp_ext_api
from bgp.received import from_exabgp_json
from tests.unit.exabgp_cases import TYPE2_L2, TYPE3, TYPE5, RecordingPipe, api_processes, mp_unreach, received


def _read(unpack, body: bytes, negotiated) -> tuple[str, str]:
    """What an unpack makes of a received UPDATE body: ("update", its JSON after the header) or ("raises", the
    exception's type and text: ExaBGP's Notify ends the session, anything else is its Notify(1, 0))."""
    from exabgp.bgp.message.direction import Direction

    neighbor = exabgp_codec._codec(65000, 65001)[0]
    try:
        update = unpack(exabgp_ext.Update, body, Direction.IN, negotiated)
    except Exception as error:  # noqa: BLE001 - the outcome compared, whatever it is
        return "raises", f"{type(error).__name__}: {error}"
    return "update", exabgp_ext.Response.JSON("5.0.0").update(neighbor, "receive", update, None, "", "").split(
        '"type"')[1]


def _mangled(body: bytes, rng: random.Random) -> bytes:
    """``body`` with one to three bytes changed, deleted or inserted at random places."""
    body = bytearray(body)
    for _ in range(rng.randint(1, 3)):
        where, byte, edit = rng.randrange(len(body) + 1), rng.randrange(256), rng.random()
        if edit < 0.5 and where < len(body):
            body[where] = byte
        elif edit < 0.75 and where < len(body):
            del body[where]
        else:
            body.insert(where, byte)
    return bytes(body)


# --------------------------------------------------------------------------- held writes


def test_api_messages_are_held_and_written_together_in_order_before_the_reactor_sleeps(monkeypatch):
    """ExaBGP wrote (and flushed) each API message on its own: one system call and one wake-up of the relay per
    received UPDATE. Held, they go out in one write, in order, when the reactor is about to sleep (or once
    API_HOLD_BYTES are held, or the oldest is API_HOLD_SECONDS old: made large here, so no clock decides)."""
    from types import SimpleNamespace

    exabgp_ext.install()
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_SECONDS", 3600.0)
    processes = exabgp_ext.Processes()
    pipe = RecordingPipe()
    processes._process["canopy"] = SimpleNamespace(stdin=pipe)
    for line in ('{"counter": 1}', '{"counter": 2}', "done"):
        processes.write("canopy", line)
    exabgp_ext_api.flush_api(processes, idle=False)  # busy, and nothing held long enough
    assert pipe.writes == []
    reactor = SimpleNamespace(processes=processes, _poller=SimpleNamespace(poll=lambda timeout: []))
    list(exabgp_ext_api._wait_for_io_flushed(reactor, 10))  # about to sleep: everything goes out
    assert pipe.writes == [b'{"counter": 1}\n{"counter": 2}\ndone\n'] and pipe.flushes == 1
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_BYTES", 10)
    processes.write("canopy", '{"counter": 3}')  # past API_HOLD_BYTES: at once
    assert pipe.writes[1:] == [b'{"counter": 3}\n']


# --------------------------------------------------------------------------- received withdrawals, read


def unpacked_json(body: bytes, unpack) -> tuple[str, str]:
    """ExaBGP's JSON of an UPDATE body unpacked by ``unpack``: (the whole, the part after the header's time,
    host, pids and counter)."""
    from exabgp.bgp.message.direction import Direction

    neighbor, negotiated = exabgp_codec._codec(65000, 65001)
    update = unpack(exabgp_ext.Update, body, Direction.IN, negotiated)
    text = exabgp_ext.Response.JSON("5.0.0").update(neighbor, "receive", update, None, "", "")
    return text, text.split('"type"')[1]


@pytest.mark.parametrize("flags", [0x90, 0x80])
def test_a_withdraw_only_evpn_update_is_read_without_exabgps_attribute_unpack_and_gives_the_same(flags,
                                                                                                 monkeypatch):
    """GoBGP withdraws one route per UPDATE (MP_UNREACH_NLRI only): read by the extension (ExaBGP's attribute
    machinery is two thirds of reading one), it is the Update ExaBGP's own unpack gives: same JSON, same keys."""
    exabgp_ext.install()
    body = mp_unreach(TYPE2_L2, TYPE3, TYPE5, flags=flags)
    _, expected = unpacked_json(body, exabgp_ext_api._THROUGH["unpack_update"])
    monkeypatch.setattr(exabgp_ext.Attributes, "unpack", classmethod(lambda *a: pytest.fail("ExaBGP's unpack")))
    text, tail = unpacked_json(body, exabgp_ext.Update.unpack_message.__func__)
    assert tail == expected
    assert from_exabgp_json(text) == [("withdraw", route.key) for route in (TYPE2_L2, TYPE3, TYPE5)]


@pytest.mark.parametrize("body", [
    struct.pack("!HH", 0, 6) + bytes([0x90, 15, 0, 3, 0, 25, 70]),  # End-of-RIB for l2vpn evpn
    mp_unreach(TYPE2_L2, flags=0xD0),  # transitive flags on MP_UNREACH
    mp_unreach(TYPE2_L2)[:-1],  # an NLRI cut short
    struct.pack("!HH", 0, 5) + bytes([0x80, 15, 3, 0, 1, 1]) + b"\x00",  # IPv4 unicast, with IPv4 NLRI after
], ids=["eor", "flags", "short", "ipv4"])
def test_anything_but_a_plain_evpn_withdrawal_is_left_to_exabgps_unpack(body, monkeypatch):
    calls = []

    def exabgps(cls, data, direction, negotiated):
        calls.append(data)
        return "exabgp's"

    exabgp_ext.install()
    monkeypatch.setitem(exabgp_ext_api._THROUGH, "unpack_update", exabgps)
    from exabgp.bgp.message.direction import Direction

    _, negotiated = exabgp_codec._codec(65000, 65001)
    assert exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated) == "exabgp's" and calls == [body]


def test_mangled_withdrawals_are_read_exactly_as_exabgps_own_unpack_reads_them():
    """Hostile input: withdraw-only UPDATE bodies and an End-of-RIB, every value of the attribute's flags and
    bytes changed, cut or added at random (lengths, family, NLRI headers), give through the extension's unpack the
    same Update or the same error as through ExaBGP's own; the fast path takes a share of them (those still well
    formed), never one it reads differently."""
    exabgp_ext.install()
    negotiated = exabgp_codec._codec(65000, 65001)[1]
    ours, exabgps = exabgp_ext.Update.unpack_message.__func__, exabgp_ext_api._THROUGH["unpack_update"]
    end_of_rib = bytes([0, 0, 0, 7, 0x90, 15, 0, 3, 0, 25, 70])
    bases = [mp_unreach(TYPE2_L2, TYPE3, TYPE5), mp_unreach(TYPE3, flags=0x80), mp_unreach(TYPE2_L2), end_of_rib]
    from exabgp.bgp.message.direction import Direction

    rng, fast, differ = random.Random(26), 0, []
    every_flag = [base[:4] + bytes([flags]) + base[5:] for base in bases for flags in range(256)]
    for body in every_flag + [_mangled(rng.choice(bases), rng) for _ in range(1500)]:
        fast += exabgp_ext_api.evpn_withdrawals(body, Direction.IN, negotiated) is not None
        if _read(ours, body, negotiated) != _read(exabgps, body, negotiated):
            differ.append(body.hex())
    assert differ == [] and fast > 100


def test_withdrawals_with_add_path_identifiers_are_left_to_exabgps_unpack():
    """With ADD-PATH received for l2vpn evpn, each withdrawn NLRI starts with a 4-byte path identifier: the
    fast path does not read them (it would take the identifier for the NLRI's header), ExaBGP's unpack does."""
    import copy
    import struct

    from exabgp.bgp.message.direction import Direction

    exabgp_ext.install()
    negotiated = copy.copy(exabgp_codec._codec(65000, 65001)[1])
    negotiated.addpath = SimpleNamespace(receive=lambda afi, safi: True, send=lambda afi, safi: True)
    value = struct.pack("!HB", 25, 70) + b"".join(
        struct.pack("!I", path) + exabgp_ext.build_nlri(route, "withdraw").pack_nlri()
        for path, route in ((0x03020001, TYPE2_L2), (0x03020002, TYPE3)))  # each also reads as a 4-byte NLRI
    body = struct.pack("!HH", 0, len(value) + 3) + bytes([0x80, 15, len(value)]) + value
    assert exabgp_ext_api.evpn_withdrawals(body, Direction.IN, negotiated) is None
    ours = _read(exabgp_ext.Update.unpack_message.__func__, body, negotiated)
    assert ours == _read(exabgp_ext_api._THROUGH["unpack_update"], body, negotiated) and ours[0] == "update"


# --------------------------------------------------------------------------- received withdrawals, batched


def test_consecutive_withdrawals_of_a_peer_reach_canopy_as_one_message_in_order(monkeypatch):
    """GoBGP's one-route withdrawals, one API message each, cost ExaBGP its header and neighbor JSON and Canopy a
    message per route: consecutive ones of one peer become one message withdrawing them all, which closes before
    any other message (order kept) and before a withdrawal of another peer."""
    processes, pipe = api_processes(monkeypatch)
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:01:{i:02x}") for i in range(5)]
    for route in batch[:3]:
        received(processes, mp_unreach(route))
    received(processes, exabgp_codec.encode_update(TYPE3, "announce")[19:])
    other = copy.copy(exabgp_codec._codec(65000, 65001)[0])
    received(processes, mp_unreach(batch[3]))
    received(processes, mp_unreach(batch[4]), neighbor=other)
    exabgp_ext_api.flush_api(processes, idle=False)
    assert pipe.writes == []
    exabgp_ext_api.flush_api(processes)
    lines = pipe.writes[0].decode().splitlines()
    assert [from_exabgp_json(line) for line in lines] == [
        [("withdraw", route.key) for route in batch[:3]], [("announce", TYPE3)], [("withdraw", batch[3].key)],
        [("withdraw", batch[4].key)]]


def test_a_batch_of_withdrawals_goes_out_once_it_is_api_hold_bytes_long(monkeypatch):
    processes, pipe = api_processes(monkeypatch)
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_BYTES", 150)  # two NLRIs of ~98 bytes
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:02:{i:02x}") for i in range(3)]
    for route in batch:
        received(processes, mp_unreach(route))
    assert [from_exabgp_json(line) for line in pipe.writes[0].decode().splitlines()] == [
        [("withdraw", route.key) for route in batch[:2]]]


def test_a_batch_of_withdrawals_goes_out_api_hold_seconds_after_its_first_while_exabgp_stays_busy(monkeypatch):
    """The reactor never going idle (a peer always readable) must not keep withdrawals from Canopy: the batch
    goes out API_HOLD_SECONDS after its first withdrawal (the clock is ExaBGP's monotonic one, set here)."""
    processes, pipe = api_processes(monkeypatch)
    monkeypatch.setattr(exabgp_ext_api, "API_HOLD_SECONDS", 0.01)
    clock = [1000.0]
    monkeypatch.setattr(exabgp_ext_api, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:03:{i:02x}") for i in range(2)]
    received(processes, mp_unreach(batch[0]))
    clock[0] += 0.004
    received(processes, mp_unreach(batch[1]))
    exabgp_ext_api.flush_api(processes, idle=False)
    assert pipe.writes == []
    clock[0] += 0.007  # 11 ms after the first withdrawal, 7 after the last
    exabgp_ext_api.flush_api(processes, idle=False)
    assert [from_exabgp_json(line) for line in pipe.writes[0].decode().splitlines()] == [
        [("withdraw", route.key) for route in batch]]


def test_exabgp_stopping_its_processes_writes_an_open_batch_before_its_shutdown_message(monkeypatch):
    """Shutdown: the withdrawals received last reach Canopy, before ExaBGP's shutdown message, not never."""
    import json

    processes, pipe = api_processes(monkeypatch)
    batch = [replace(TYPE2_L2, mac=f"52:54:00:00:04:{i:02x}") for i in range(2)]
    for route in batch:
        received(processes, mp_unreach(route))
    stopped = SimpleNamespace(join=lambda: None)  # no child process to stop
    monkeypatch.setattr(processes, "_terminate", lambda name: stopped)
    monkeypatch.setattr("exabgp.reactor.api.processes.time", SimpleNamespace(sleep=lambda seconds: None))
    monkeypatch.setattr(processes, "clean", lambda: None)
    processes.terminate()
    lines = [line for write in pipe.writes for line in write.decode().splitlines()]
    assert [from_exabgp_json(line) for line in lines[:1]] == [[("withdraw", route.key) for route in batch]]
    assert len(lines) == 2 and json.loads(lines[1])["type"] == "notification"


# --------------------------------------------------------------------------- the cyclic collector


def test_a_big_command_freezes_what_exists_and_the_idle_reactor_collects_it_once():
    """A full collection of ExaBGP holding 10,000 routes stalled it in the middle of Canopy's withdrawals: after a
    command of FREEZE_ROUTES routes or more what exists is frozen; once the burst is over (IDLE_COLLECT seconds
    since, the reactor about to sleep), or FROZEN_MAX after the first freeze, it is unfrozen and collected, so
    cyclic garbage frozen meanwhile goes."""
    import gc
    import time
    import weakref

    from exabgp.configuration.core.format import formated

    from bgp.routes import to_batch_command
    from tests.unit.exabgp_cases import FakeReactor, batch_of, dispatch

    class Cycle:
        pass

    def cyclic_garbage():
        garbage = Cycle()
        garbage.me = garbage
        return weakref.ref(garbage)

    gc.collect()
    gc.unfreeze()
    enabled = gc.isenabled()
    gc.disable()  # only the freeze and the idle collection decide what is collected
    exabgp_ext_api._FROZEN.update(first=None, last=None)
    try:
        reactor = FakeReactor()
        small = [replace(route, rd="65000:7101") for route in batch_of(exabgp_ext_api.FREEZE_ROUTES - 1)]
        dispatch(reactor, formated(to_batch_command(small, "announce")))
        assert gc.get_freeze_count() == 0
        gone = cyclic_garbage()
        big = [replace(route, rd="65000:7102") for route in batch_of(exabgp_ext_api.FREEZE_ROUTES)]
        dispatch(reactor, formated(to_batch_command(big, "announce")))
        assert reactor.acks == ["done", "done"]
        assert gc.get_freeze_count() > 0 and gone() is not None  # frozen with the routes
        # the burst may go on (asked at the instant of the freeze: a slow machine may take IDLE_COLLECT to get here)
        assert not exabgp_ext_api.collect_when_idle(exabgp_ext_api._FROZEN["last"])
        assert gc.get_freeze_count() > 0
        exabgp_ext_api._FROZEN["first"] -= exabgp_ext_api.FROZEN_MAX  # big commands for that long: collected
        assert exabgp_ext_api.collect_when_idle(time.monotonic()) and gc.get_freeze_count() == 0 and gone() is None
        gone = cyclic_garbage()
        dispatch(reactor, formated(to_batch_command(big, "withdraw")))
        assert gc.get_freeze_count() > 0 and gone() is not None
        reactor.processes = SimpleNamespace()  # nothing held for any process
        exabgp_ext_api._THROUGH["wait_for_io"], wait = (lambda self, sleeptime: iter(())), \
            exabgp_ext_api._THROUGH["wait_for_io"]
        exabgp_ext_api._FROZEN["last"] -= exabgp_ext_api.IDLE_COLLECT  # the burst ended that long ago
        try:
            list(exabgp_ext_api._wait_for_io_flushed(reactor, 0))  # busy turn: not yet
            assert gc.get_freeze_count() > 0
            list(exabgp_ext_api._wait_for_io_flushed(reactor, 10))  # about to sleep: collected
        finally:
            exabgp_ext_api._THROUGH["wait_for_io"] = wait
        assert gc.get_freeze_count() == 0 and gone() is None and exabgp_ext_api._FROZEN["last"] is None
    finally:
        gc.unfreeze()
        exabgp_ext_api._FROZEN.update(first=None, last=None)
        if enabled:
            gc.enable()
