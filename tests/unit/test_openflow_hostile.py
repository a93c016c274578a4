"""A hostile or broken switch cannot hold the event loop or end its own connection through Ryu's parser.

Each message here spun Ryu's parser for ever (a length of 0 that a parse loop steps by) or raised out of its receive
loop, and is now refused before Ryu sees it (controller/ofcheck.py). Parses are bounded by a count of Python lines
(tests/fuzz/openflow.py ``steps``), so a spin fails the test instead of hanging it.
"""

from __future__ import annotations

import logging
import struct

import pytest

from controller import ofcheck
from controller.ryu_compat import ofproto_v1_3, ofproto_v1_3_parser, ofproto_v1_4, ofproto_v1_4_parser
from tests.fuzz import openflow as fuzz

LINES = 200_000  # Python lines one parse may run: a real message of these takes a few thousand


def parse(buf: bytes) -> tuple[str, str]:
    return fuzz.parse(buf, lines=LINES)


def _msg(version, kind, body=b""):
    return struct.pack("!BBHI", version, kind, 8 + len(body), 9) + body


def _action(payload: bytes, kind=0xFFFF) -> bytes:
    return struct.pack("!HH", kind, 4 + len(payload)) + payload


def _ct(nested: bytes) -> bytes:
    """A Nicira ct action holding ``nested`` actions."""
    return _action(struct.pack("!IH", 0x2320, 35) + struct.pack("!H4sHB3xH", 0, b"\0" * 4, 0, 0xFF, 0) + nested)


def _controller2(props: bytes) -> bytes:
    body = struct.pack("!IH", 0x2320, 37) + b"\0" * 6 + props
    return _action(body + b"\0" * (-(len(body) + 4) % 8))


def _group_desc(version, actions: bytes) -> bytes:
    bucket = struct.pack("!HHII4x", 16 + len(actions), 1, 0xFFFFFFFF, 0xFFFFFFFF) + actions
    group = struct.pack("!HBxI", 8 + len(bucket), 1, 5) + bucket
    return _msg(version, 19, struct.pack("!HH4x", 7, 0) + group)


def _flow_stats(version, actions: bytes) -> bytes:
    match = struct.pack("!HH", 1, 4) + b"\0" * 4
    insts = struct.pack("!HH4x", 4, 8 + len(actions)) + actions
    head = struct.pack("!HBxIIHHHH4xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, 0xABC, 10, 1000)
    if version == 5:
        head = struct.pack("!HBxIIHHHHH2xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, 0, 0xABC, 10, 1000)
    entry = head + match + insts
    entry = struct.pack("!H", len(entry)) + entry[2:]
    return _msg(version, 19, struct.pack("!HH4x", 1, 0) + entry)


OUTPUT = _action(struct.pack("!IH6x", 3, 0xFFE5), kind=0)  # output:3, 16 bytes
ZERO = struct.pack("!HHII4x", 25, 0, 0x80000004, 3)  # a set-field action (in_port=3) of length 0

_PORT14 = struct.pack("!IH2x", 3, 48) + b"\0" * 32 + struct.pack("!HH4x", 0x1234, 0)  # a property of length 0
_FEATURES = struct.pack("!HB5x32sQQII", 64, 0, b"t", 0, 0, 0, 1) + b"\0" * 8
GROUP_SPINS = {  # name: (message, what the refusal at first use names: a byte of the group's entry)
    "bucket of length 0":
        (_msg(4, 19, struct.pack("!HH4x", 7, 0) + struct.pack("!HBxI", 24, 1, 5) + b"\0" * 16),
         "bucket at byte 8 has a length of 0"),
    "bucket action of length 0": (_group_desc(4, ZERO), "action at byte 24 has a length of 0"),
    "action nested in ct of length 0 (group)": (_group_desc(4, _ct(ZERO)), "action at byte 48 has a length of 0"),
    "controller2 property of length 0 (group)":
        (_group_desc(4, _controller2(struct.pack("!HH", 3, 0))), "controller2 property at byte 40 has a length of 0"),
}
SPINS = {  # name: (message, what the refusal names)
    "hello element of length 0":
        (_msg(4, 0, struct.pack("!HHI", 1, 0, 0x30)), "hello element at byte 8 has a length of 0"),
    "group description of length 0":
        (_msg(4, 19, struct.pack("!HH4x", 7, 0) + b"\0" * 8), "group description at byte 16 has a length of 0"),
    "OpenFlow 1.4 port of length 0":
        (_msg(5, 19, struct.pack("!HH4x", 13, 0) + b"\0" * 40), "port at byte 16 has a length of 0"),
    "OpenFlow 1.4 port property of length 0":
        (_msg(5, 12, struct.pack("!B7x", 0) + _PORT14), "port property at byte 56 has a length of 0"),
    "role status property of length 0":
        (_msg(5, 30, struct.pack("!IB3xQ", 2, 0, 5) + b"\0" * 8), "role status property at byte 24 has a length of 0"),
    "bundle control property of length 0":
        (_msg(5, 33, struct.pack("!IHH", 1, 1, 0) + b"\0" * 8), "bundle control property at byte 16 has a length of 0"),
    "meter configuration of length 0 (openflow/meters.py's read-back)":
        (_msg(4, 19, struct.pack("!HH4x", 10, 0) + struct.pack("!HHI", 0, 5, 7)),
         "meter configuration at byte 16 has a length of 0"),
    "table features reply (not asked for)":
        (_msg(4, 19, struct.pack("!HH4x", 12, 0) + _FEATURES), "multipart reply of type 12"),
}


@pytest.mark.parametrize("name", sorted(SPINS))
def test_a_message_that_spun_ryus_parser_is_refused_naming_its_field(name, caplog):
    message, named = SPINS[name]
    assert parse(message) == ("dropped", "")
    with pytest.raises(ofcheck.Refused, match=named):
        ofcheck.check_message(message, message[0], message[1])


@pytest.mark.parametrize("name", sorted(SPINS))
def test_ryus_parser_alone_spins_on_it_or_raises(name):
    """Why each guard is there (and that the line budget finds a spin): without it, Ryu spins, except on a table
    features reply of a length it reads safely (refused anyway: nothing asked for it), and on a group description of
    length 0, which its entry's own parser refuses as well (controller/groupdesc.py, installed without the guard)."""
    with ofcheck.uninstalled():
        outcome, _ = parse(SPINS[name][0])
    assert outcome == ("dropped" if name.startswith(("table features", "group description")) else "spin")


@pytest.mark.parametrize("name", sorted(GROUP_SPINS))
def test_a_group_whose_bucket_spun_ryus_parser_is_refused_at_first_use_naming_its_field(name):
    """A group description's buckets are parsed at first use (controller/groupdesc.py), each checked first: the
    message parses, its group's buckets are refused (a ValueError naming the field), with the guard or without it;
    the read-back decodes such a group as one it cannot trust (None: modified), and Ryu's own parser spins on it."""
    from controller.ryu_compat import ofproto_parser, ofproto_protocol
    from openflow import decode

    message, named = GROUP_SPINS[name]
    assert parse(message) == ("use-refused", "")
    with ofcheck.uninstalled():
        assert parse(message) == ("use-refused", "")
    dp = ofproto_protocol.ProtocolDesc(4)
    msg = ofproto_parser.msg(dp, 4, 19, len(message), 9, message)
    with pytest.raises(ValueError, match=named):
        msg.body[0].buckets  # noqa: B018
    assert decode.decode_group(dp.ofproto, ofproto_parser.msg(dp, 4, 19, len(message), 9, message).body[0]) is None
    ryus = dp.ofproto_parser.OFPGroupDescStats
    with ofcheck.uninstalled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(dp.ofproto_parser.OFPGroupDescStatsReply, "cls_stats_body_cls", ryus)
        assert parse(message)[0] == "spin"


def test_a_truncated_packet_in_match_is_refused_instead_of_ending_the_connection():
    match = struct.pack("!HH", 1, 12) + struct.pack("!I", 0x80000004)  # in_port's field, its 4-byte value cut off
    message = _msg(4, 10, struct.pack("!IHBBQ", 0xFFFFFFFF, 0, 0, 0, 1) + match)
    with ofcheck.uninstalled():
        assert parse(message) == ("raised", "OFPTruncatedMessage")  # out of Ryu's receive loop: the session ends
    assert parse(message) == ("dropped", "")
    with pytest.raises(ofcheck.Refused, match="match at byte 24 has a length of 12, not between 4 and the 8 bytes"):
        ofcheck.check_message(message, 4, 10)


@pytest.mark.parametrize("version, kind", [(1, 10), (3, 10), (6, 10), (4, 14), (4, 4), (5, 11)])
def test_a_version_or_kind_canopy_does_not_take_is_refused(version, kind):
    """A packet-in of OpenFlow 1.0, 1.2 or 1.5 on a 1.3 session, a flow-mod, an experimenter message and a
    flow-removed: parser code a switch has no reason to reach."""
    assert parse(_msg(version, kind, b"\0" * 32)) == ("dropped", "")
    with pytest.raises(ofcheck.Refused, match="not one"):
        ofcheck.check_message(_msg(version, kind, b"\0" * 32), version, kind)


def test_a_refusal_is_logged_naming_the_switch(caplog):
    class Switch:
        address = ("192.0.2.7", 40000)
    message = SPINS["hello element of length 0"][0]
    with caplog.at_level(logging.WARNING, logger="canopy.openflow"):
        assert ofcheck._guarded(None)(Switch(), 4, 0, len(message), 9, message) is None
    assert "openflow 192.0.2.7:40000: message refused before parsing: hello element at byte 8" in caplog.text


@pytest.mark.parametrize("ofp", [ofproto_v1_3, ofproto_v1_4])
def test_real_messages_of_every_kind_canopy_takes_still_parse(ofp):
    taken = {name: buf for name, buf in fuzz.seeds(ofp) if not name.startswith(("experimenter", "get-",
                                                                                 "flow-removed", "table-status"))
             and name not in ("mp-desc", "mp-aggregate", "mp-experimenter", "mp-table-features")}
    assert {name: parse(buf)[0] for name, buf in taken.items()} == dict.fromkeys(taken, "parsed")


@pytest.mark.parametrize("version", [4, 5])
def test_a_flow_stats_entry_with_a_bad_nested_action_is_refused_at_first_use(version):
    for actions, named in ((_ct(ZERO), "action at byte"), (_controller2(struct.pack("!HH", 3, 0)),
                                                           "controller2 property at byte")):
        message = _flow_stats(version, actions)
        assert parse(message) == ("use-refused", "")
        with ofcheck.uninstalled():  # the entry's own check (at first use) is flowstats', kept when uninstalled
            assert parse(message) == ("use-refused", "")
        from controller.ryu_compat import ofproto_parser, ofproto_protocol
        msg = ofproto_parser.msg(ofproto_protocol.ProtocolDesc(version), version, 19, len(message), 9, message)
        with pytest.raises(ValueError, match=named):
            msg.body[0].instructions


def test_ct_actions_nested_too_deep_are_refused():
    nested = OUTPUT
    for _ in range(ofcheck.NESTED_DEPTH + 1):
        nested = _ct(nested)
    assert parse(_group_desc(4, nested)) == ("use-refused", "")  # (a group's buckets: at first use)
    assert parse(_group_desc(4, _ct(_ct(OUTPUT)))) == ("parsed", "")


def test_a_seeded_fuzz_run_finds_no_spin_and_nothing_raised_out_of_ryu():
    found = fuzz.run(seed=38, random_count=3, lines=LINES, lengths=(0,))
    bad = {key: n for key, n in found.items() if key[1] in ("spin", "raised")}
    assert bad == {}
    assert sum(n for key, n in found.items() if key[1] == "parsed") > 1000  # not everything refused


def test_refusals_of_many_kinds_from_one_switch_log_once_and_keep_one_key(caplog):
    """A switch cycling through the types a refusal names (65,536 multipart types, 256 message types and versions)
    is one reason to the rate limit: one warning, one key kept, not one of each."""
    from controller import loglimit

    class Switch:
        address = ("192.0.2.8", 40000)
    def remembered():
        return {key for table in loglimit._last_logged.values() for key in table}
    before = remembered()
    messages = [_msg(4, 19, struct.pack("!HH4x", kind, 0)) for kind in range(100, 400)]
    messages += [_msg(4, kind, b"\0" * 8) for kind in range(40, 140)] + [_msg(v, 10, b"\0" * 8) for v in range(6, 60)]
    with caplog.at_level(logging.WARNING, logger="canopy.openflow"):
        for message in messages:
            assert ofcheck._guarded(None)(Switch(), message[0], message[1], len(message), 9, message) is None
    assert len([r for r in caplog.records if "192.0.2.8" in r.getMessage()]) <= 3  # type, multipart type, version
    assert len({key for key in remembered() - before if "192.0.2.8" in key}) <= 3


def test_a_message_ryu_cannot_parse_is_logged_once_and_short_not_dumped_whole_each_time(caplog):
    """Ryu logged each message it could not parse with its whole bytes in hex and a traceback (a 64 KiB reply: 190
    KiB of log, every time): a switch sending them flooded the log. Now one warning per switch and type, short."""
    from controller.ryu_compat import ofproto_parser, ofproto_protocol

    class Switch(ofproto_protocol.ProtocolDesc):
        address = ("192.0.2.9", 40000)
    entry = struct.pack("!HBxIIHHHH4xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, 1, 10, 1000) + struct.pack("!HH4x", 1, 4)
    message = _msg(4, 19, struct.pack("!HH4x", 1, 0) + entry * 1000)  # the first entry's length is 0: not parsed
    with caplog.at_level(logging.DEBUG):
        for _ in range(20):
            assert ofproto_parser.msg(Switch(4), 4, 19, len(message), 9, bytearray(message)) is None
    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "openflow 192.0.2.9:40000: message of type 19 (56016 bytes) could not be parsed, dropped" in text
    assert "flow stats entry" in text and len(text) < 600


@pytest.mark.parametrize("version", [4, 5])
def test_errors_a_switch_sends_are_logged_without_raising_and_limited(version, caplog):
    """Ryu's error handler raised on a HELLO_FAILED error whose text is not ASCII (the connection ended) and warned
    in three lines for each error echoing less than a header. ``ofcheck.error_received`` takes every error Ryu's
    parser makes of what a switch sends (an experimenter's too, data or none) without raising, and warns once per
    switch and reason for those two (tests/integration/test_hostile_openflow.py: the connection goes on)."""
    from controller.ryu_compat import ofproto_parser, ofproto_protocol

    class Switch(ofproto_protocol.ProtocolDesc):
        address = (f"192.0.2.{10 + version}", 40000)
    switch = Switch(version)
    errors = [struct.pack("!HH", 0, 0) + b"caf\xe9 \xff"] * 5 + [struct.pack("!HH", 1, 1) + b"\x04"] * 50 + \
        [struct.pack("!HH", 1, 1) + b"\x04\x0e\x00\x08\x00\x00\x00\x09", struct.pack("!HH", 0, 1),
         struct.pack("!HHI", 0xFFFF, 3, 0x2320) + b"\xff", struct.pack("!HH", 0xFFFF, 1)]
    with caplog.at_level(logging.DEBUG, logger="canopy.openflow"):
        for body in errors:
            message = _msg(version, 1, body)
            msg = ofproto_parser.msg(switch, version, 1, len(message), 9, message)
            if msg is not None:  # (an experimenter error too short for its header: not parsed, not dispatched)
                ofcheck.error_received(msg)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "parsed" not in r.message]
    assert len(warned) == 2, warned
    assert "the switch failed the hello (error code 0): b'caf\\xe9 \\xff'" in warned[0]
    assert "error type 1 code 1 echoes 1 bytes of the failed request" in warned[1]


@pytest.mark.parametrize("band_length", [0, 8, 20])
def test_a_meter_band_of_a_bad_length_is_refused_naming_it(band_length):
    """A meter configuration read back (openflow/meters.py) whose band's length is below a band's header or runs past
    its configuration: refused before Ryu, naming the band (Ryu's own parser stepped by it, checked only by assert)."""
    config = struct.pack("!HHI", 8 + 16, 5, 7) + struct.pack("!HHII4x", 1, band_length, 10, 10)
    message = _msg(4, 19, struct.pack("!HH4x", 10, 0) + config)
    assert parse(message) == ("dropped", "")
    with pytest.raises(ofcheck.Refused, match=f"meter band at byte 24 has a length of {band_length}"):
        ofcheck.check_message(message, 4, 19)
    whole = _msg(4, 19, struct.pack("!HH4x", 10, 0) + config[:10] + struct.pack("!H", 16) + config[12:])
    assert parse(whole) == ("parsed", "")
