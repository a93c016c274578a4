"""The BGP speaker without peers: exabgp.conf as ExaBGP itself reads it, its environment, the
bookkeeping of commands and acknowledgements, ExaBGP's JSON messages, and the relay process."""

import base64
import contextlib
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bgp.routes import (
    InclusiveMulticastRoute,
    IpPrefixRoute,
    MacIpRoute,
    parse_batch_command,
    to_batch_command,
    to_command,
)
from bgp.speaker import Neighbor, RouteBook, Speaker, SpeakerConfig, exabgp_env, render_config
from tests.unit.evpn_fixtures import fixture_text

REPO = Path(__file__).resolve().parents[2]

TYPE2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
                   next_hop="192.0.2.1", route_targets=("65000:5001",), router_mac="02:00:00:00:00:01")
TYPE3 = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
TYPE5 = IpPrefixRoute(rd="65000:100", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                      route_targets=("65000:9001",))
PEER = "127.0.0.1"  # the peer address in the captured fixtures


def table(*routes):
    return {route.key: route for route in routes}


def fixture(name: str) -> str:
    """A captured ExaBGP message as ExaBGP sends it: one line."""
    return json.dumps(json.loads(fixture_text(name)))


def state_line(state: str, peer: str = PEER, reason: str | None = None) -> str:
    """A neighbor-changes message in ExaBGP 5.0.15's exact format (captured against GoBGP)."""
    extra = f', "reason": "{reason}"' if reason is not None else ""
    return ('{ "exabgp": "5.0.0", "time": 1795470120.39, "host" : "vm", "pid" : 2476, "ppid" : 2469, '
            '"counter": 6, "type": "state", "neighbor": { "address": { "local": "127.0.0.72", '
            f'"peer": "{peer}" }}, "asn": {{ "local": 65000, "peer": 65001 }}, "router-id": "127.0.0.72" , '
            f'"state": "{state}"{extra} }} }}')


# --------------------------------------------------------------------------- exabgp.conf


def exabgp_reads(config: SpeakerConfig) -> dict[str, dict[str, str]]:
    """Render ``config`` and return each neighbor's settings as ExaBGP's own validator parsed them."""
    os.makedirs(config.workdir, exist_ok=True)
    Path(config.conf_path).write_text(render_config(config))
    out = subprocess.run([sys.executable, "-m", "bgp.exabgp_ext", "validate", "-nv", config.conf_path],
                         env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    neighbors, current = {}, None
    for line in out.stdout.splitlines():
        if not line.startswith(config.conf_path + " "):
            continue
        text = line[len(config.conf_path) + 1:]
        if text.startswith("neighbor "):
            current = neighbors.setdefault(text.split()[1], {})
        elif current is not None and text.startswith("  ") and not text.startswith("   ") and text.endswith(";"):
            key, _, value = text.strip().rstrip(";").partition(" ")
            current[key] = value.strip('"')
    return neighbors


def test_exabgp_reads_every_neighbor_setting(tmp_path):
    password = "pa ss;{w}#rd'\"\\"  # every character that ExaBGP's tokeniser would otherwise choke on
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", workdir=str(tmp_path), neighbors=(
        Neighbor("10.0.0.2", 65001, port=1790, md5_password=password, hold_time=30, local_address="10.0.0.1"),
        Neighbor("10.0.0.3", 65000, hold_time=0, passive=True, local_address="10.0.0.1"),
    ))
    read = exabgp_reads(config)
    first, second = read["10.0.0.2"], read["10.0.0.3"]
    assert (first["local-as"], first["peer-as"], first["router-id"]) == ("65000", "65001", "10.0.0.1")
    assert (first["local-address"], first["connect"], first["hold-time"]) == ("10.0.0.1", "1790", "30")
    assert base64.b64decode(first["md5-password"]).decode() == password and first["md5-base64"] == "true"
    assert first["passive"] == "false" and "listen" not in first
    assert second["passive"] == "true" and second["hold-time"] == "0" and "md5-password" not in second
    assert second["peer-as"] == "65000" and second["connect"] == "179"


def test_neighbor_without_local_address(tmp_path):
    alone = SpeakerConfig(asn=65000, router_id="10.0.0.1", workdir=str(tmp_path / "a"),
                          neighbors=(Neighbor("10.0.0.2", 65001),))
    assert exabgp_reads(alone)["10.0.0.2"]["local-address"] == "auto"  # ExaBGP picks, router-id names us
    listening = SpeakerConfig(asn=65000, router_id="10.0.0.1", workdir=str(tmp_path / "b"), listen="10.0.0.9",
                              listen_port=1179, neighbors=(Neighbor("10.0.0.2", 65001, passive=True,
                                                                    md5_password="secret"),))
    read = exabgp_reads(listening)["10.0.0.2"]
    assert read["local-address"] == "10.0.0.9"  # accepting needs to know which address is ours
    assert read["listen"] == "1179" and read["md5-ip"] == "10.0.0.9"  # the MD5 key on the listening socket


def test_relay_process_and_api_section(tmp_path):
    text = render_config(SpeakerConfig(asn=65000, router_id="10.0.0.1", workdir=str(tmp_path),
                                       neighbors=(Neighbor("10.0.0.2", 65001),)))
    assert f'run "{sys.executable}" -m bgp.relay "{tmp_path}/api.sock";' in text
    assert "encoder json;" in text
    assert "api { processes [ canopy ]; neighbor-changes; receive { parsed; update; open; } }" in text
    assert "capability { graceful-restart 120; }" in text
    assert "family { l2vpn evpn; }" in text


def test_unwritable_path_is_refused(tmp_path):
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", workdir=str(tmp_path / 'it"s'), neighbors=())
    with pytest.raises(ValueError, match="workdir"):
        render_config(config)


def test_environment_listens_nowhere_unless_told(tmp_path):
    base = {"PATH": "/usr/bin", "exabgp_tcp_port": "1234", "PYTHONPATH": "/elsewhere"}
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path))
    env = exabgp_env(config, base)
    assert env["exabgp_tcp_bind"] == "" and "exabgp_tcp_port" not in env
    assert env["exabgp_daemon_drop"] == "false" and env["exabgp_api_ack"] == "true"
    assert env["exabgp_log_destination"] == str(tmp_path / "exabgp.log")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]
    assert env["exabgp_api_cli"] == "false" and env["PATH"] == "/usr/bin"
    listening = exabgp_env(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), listen="10.0.0.1",
                                         listen_port=1179, workdir=str(tmp_path)), base)
    assert (listening["exabgp_tcp_bind"], listening["exabgp_tcp_port"]) == ("10.0.0.1", "1179")


def test_environment_names_a_known_user_when_this_uid_has_no_name(tmp_path, monkeypatch):
    """Run with a uid the user database does not know (a container's arbitrary uid), ExaBGP still gets a daemon.user
    that its own settings parser accepts."""
    import pwd

    from exabgp.environment import parsing

    unnamed = next(uid for uid in range(20000, 30000) if not _has_name(pwd, uid))
    monkeypatch.setattr(os, "getuid", lambda: unnamed)
    env = exabgp_env(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path)), {})
    assert parsing.user(env["exabgp_daemon_user"]) == env["exabgp_daemon_user"]


def _has_name(pwd, uid) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- commands and acks


def attached(*routes) -> tuple[RouteBook, list[str]]:
    book = RouteBook((Neighbor(PEER, 65001),))
    book.set_desired(table(*routes))
    return book, book.attach()


def ack_all(book: RouteBook, answer: str = "done") -> None:
    for _ in range(len(book.pending)):
        book.handle_line(answer)


def test_nothing_is_sent_before_exabgp_connects_then_everything_is():
    book = RouteBook(())
    assert book.set_desired(table(TYPE2, TYPE3)) == []
    assert book.attach() == [to_batch_command([TYPE2, TYPE3], "announce")]  # one line, one acknowledgement
    assert book.announced == {}  # not before the acknowledgements
    ack_all(book)
    assert book.announced == table(TYPE2, TYPE3) and not book.pending


def many(count: int, vni: int = 5001) -> list:
    return [MacIpRoute(rd="65000:100", mac=f"52:54:00:00:{i >> 8:02x}:{i & 0xff:02x}", l2_vni=vni,
                       next_hop="192.0.2.1", route_targets=("65000:5001",)) for i in range(count)]


def test_many_routes_go_in_lines_of_at_most_batch_routes_and_each_line_is_one_acknowledgement():
    routes = many(1201)
    book = RouteBook((Neighbor(PEER, 65001),), batch=500)
    book.set_desired(table(*routes))
    commands = book.attach()
    assert [len(parse_batch_command(c)[2]) for c in commands] == [500, 500, 201]
    assert [r for c in commands for r in parse_batch_command(c)[2]] == routes
    book.handle_line("done")
    assert len(book.announced) == 500 and len(book.pending) == 2
    ack_all(book)
    assert book.announced == table(*routes)
    withdrawals = book.set_desired(table(*routes[:100]))  # 1,101 withdrawn: three lines, not 1,101
    assert [(parse_batch_command(c)[1], len(parse_batch_command(c)[2])) for c in withdrawals] == \
        [("withdraw", 500), ("withdraw", 500), ("withdraw", 101)]
    ack_all(book)
    assert book.announced == table(*routes[:100])


def test_a_refused_line_of_many_routes_is_sent_again_one_route_per_line():
    routes = many(3)
    book, commands = attached(*routes)
    assert len(commands) == 1
    book.handle_line("error")
    retries = book.take_outbox()
    assert retries == [to_command(r, "announce") for r in routes] and book.take_outbox() == []
    book.handle_line("done")
    book.handle_line("error")  # only the second route is bad
    book.handle_line("done")
    assert set(book.announced) == {routes[0].key, routes[2].key} and set(book.failed) == {routes[1].key}


def test_change_withdraws_exactly_what_went_and_announces_what_changed():
    book, _ = attached(TYPE2, TYPE3, TYPE5)
    ack_all(book)
    moved = MacIpRoute(**{**TYPE2.__dict__, "router_mac": "02:00:00:00:00:09"})
    commands = book.set_desired(table(moved, TYPE5))
    assert commands == [to_command(TYPE3, "withdraw"), to_command(moved, "announce")]  # a batch of one
    ack_all(book)
    assert book.announced == table(moved, TYPE5)
    assert book.set_desired(table(moved, TYPE5)) == []


def test_refused_announce_is_not_announced_nor_resent_until_it_changes(caplog):
    book, _ = attached(TYPE3)
    with caplog.at_level(logging.ERROR, logger="canopy.bgp.speaker"):
        book.handle_line("error")
    assert book.announced == {} and not book.pending
    assert to_command(TYPE3, "announce") in caplog.text
    assert book.set_desired(table(TYPE3)) == []
    other = InclusiveMulticastRoute(**{**TYPE3.__dict__, "vni": 5002})
    assert book.set_desired(table(other)) == [to_command(other, "announce")]


def test_exabgp_gone_forgets_announced_and_received_and_reinjects_on_reconnect():
    book, _ = attached(TYPE5)
    ack_all(book)
    book.handle_line(state_line("up"))
    book.handle_line(fixture("rx_type2_macadv.json"))
    assert len(book.received) == 1
    assert book.detach() is True
    assert book.announced == {} and book.received == {}
    assert [row["state"] for row in book.peer_rows()] == ["down"]
    assert book.attach() == [to_command(TYPE5, "announce")]


def test_stray_acknowledgement_is_ignored():
    book = RouteBook(())
    assert book.handle_line("done") is False and book.announced == {}


# --------------------------------------------------------------------------- ExaBGP messages


def test_peer_states_and_counts():
    book, _ = attached(TYPE3)
    ack_all(book)
    assert book.peer_rows()[0]["state"] == "idle" and book.peer_rows()[0]["since"] is None
    assert book.handle_line(state_line("connected")) is True
    assert book.handle_line(state_line("up")) is True
    row = book.peer_rows()[0]
    assert (row["state"], row["sent"], row["received"], row["last_error"]) == ("up", 1, 0, None)
    assert row["uptime"] is not None and row["since"] is not None
    assert book.handle_line(state_line("down", reason="notification received (6,3)")) is True
    row = book.peer_rows()[0]
    assert (row["state"], row["uptime"], row["sent"]) == ("down", None, 0)
    assert row["last_error"] == "notification received (6,3)"


def test_received_routes_are_tracked_per_peer_and_dropped_when_it_goes_down():
    book = RouteBook((Neighbor(PEER, 65001), Neighbor("127.0.0.9", 65002)))
    book.handle_line(state_line("up"))
    for name in ("rx_type2_macadv.json", "rx_type2_two_labels.json", "rx_type3_multicast_pmsi.json",
                 "rx_type5_prefix.json"):
        assert book.handle_line(fixture(name)) is True
    other = fixture("rx_type5_prefix.json").replace('"peer": "127.0.0.1"', '"peer": "127.0.0.9"')
    book.handle_line(other)
    assert {peer for peer, _ in book.received} == {PEER, "127.0.0.9"}
    mine = {key: route for (peer, key), route in book.received.items() if peer == PEER}
    assert sorted(route.TYPE for route in mine.values()) == [2, 2, 3, 5]
    assert {(r.mac, r.l2_vni, r.l3_vni) for r in mine.values() if r.TYPE == 2} == {
        ("52:54:00:aa:bb:cc", 5001, None), ("52:54:00:aa:bb:dd", 5001, 9001)}
    assert book.peer_rows()[0]["received"] == 4

    assert book.handle_line(fixture("rx_type2_withdraw.json")) is True
    assert "52:54:00:aa:bb:cc" not in {r.mac for r in book.received.values() if r.TYPE == 2}
    assert book.handle_line(fixture("rx_type2_withdraw.json")) is False  # nothing left to withdraw

    assert book.handle_line(state_line("down", reason="peer reset")) is True
    assert {peer for peer, _ in book.received} == {"127.0.0.9"}


@pytest.mark.parametrize("line", [
    "{ not json", '{"type": "update"}', '{"type": "state", "neighbor": {}}', '{"type": "update", "neighbor": 3}',
    '["a list"]', "shutdown", "", '{"type": "state", "neighbor": {"address": {"peer": "127.0.0.1"}, "state": "odd"}}',
])
def test_malformed_lines_are_dropped(line):
    book = RouteBook((Neighbor(PEER, 65001),))
    assert book.handle_line(line) is False
    assert book.received == {} and book.peer_rows()[0]["state"] == "idle"


def test_state_of_an_unconfigured_peer_is_ignored():
    book = RouteBook((Neighbor(PEER, 65001),))
    assert book.handle_line(state_line("up", peer="127.0.0.99")) is False


# --------------------------------------------------------------------------- the relay


@contextlib.contextmanager
def relay_session(tmp_path, stdout=subprocess.DEVNULL):
    """A relay process (its stdin a pipe of the test's: ExaBGP's side) connected to a socket the test listens on
    (the speaker's side): (relay, connection); the relay is killed afterwards if it did not exit."""
    path = str(tmp_path / "api.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        relay = subprocess.Popen([sys.executable, "-m", "bgp.relay", path], cwd=REPO, stdin=subprocess.PIPE,
                                 stdout=stdout)
        try:
            conn, _ = listener.accept()
            conn.settimeout(30)
            with conn:
                yield relay, conn
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.wait(timeout=30)


def test_relay_copies_both_ways_and_exits_when_the_speaker_closes(tmp_path):
    with relay_session(tmp_path, stdout=subprocess.PIPE) as (relay, conn):
        relay.stdin.write(b'{"type": "state"}\ndone\n')
        relay.stdin.flush()
        received = b""
        while received.count(b"\n") < 2:
            received += conn.recv(4096)
        assert received == b'{"type": "state"}\ndone\n'
        conn.sendall(b"announce evpn {}\n")
        assert relay.stdout.readline() == b"announce evpn {}\n"
        conn.close()
        assert relay.wait(timeout=30) == 0


def test_relay_exits_when_exabgp_closes_its_stdin(tmp_path):
    with relay_session(tmp_path) as (relay, conn):
        relay.stdin.close()
        assert relay.wait(timeout=30) == 0
        assert conn.recv(10) == b""


def test_relay_takes_exabgps_output_while_the_speaker_is_busy_and_hands_all_of_it_over(tmp_path):
    """ExaBGP blocks when its pipe to the relay is full: the relay reads it at once and holds it until the
    speaker (whose event loop may be compiling) reads, so ExaBGP keeps decoding updates meanwhile; what it
    wrote before closing still reaches the speaker, in order."""
    lines = b"".join(b'{"type": "update", "n": %d, "pad": "%s"}\n' % (i, b"x" * 200) for i in range(20000))
    with relay_session(tmp_path) as (relay, conn):
        writer = threading.Thread(target=lambda: (relay.stdin.write(lines), relay.stdin.close()), daemon=True)
        writer.start()
        writer.join(30)  # the speaker reads nothing meanwhile: ~4.6 MB, far beyond the pipe and socket buffers
        assert not writer.is_alive(), "ExaBGP's writes blocked while the speaker was not reading"
        received = bytearray()
        while chunk := conn.recv(1 << 16):
            received += chunk
        assert bytes(received) == lines
        assert relay.wait(timeout=30) == 0


def test_relay_takes_the_speakers_commands_while_exabgp_is_busy_and_hands_all_of_them_over(tmp_path):
    """ExaBGP reads its commands 16 KiB per turn of its reactor: the relay holds what the speaker sends until
    ExaBGP reads it, so the speaker (on the controller's event loop) hands a burst over at once instead of a
    socket buffer's worth per turn; ExaBGP then gets all of it, in order."""
    commands = b"".join(b'withdraw evpn [{"n": %d, "pad": "%s"}]\n' % (i, b"x" * 200) for i in range(20000))
    with relay_session(tmp_path, stdout=subprocess.PIPE) as (relay, conn):
        writer = threading.Thread(target=conn.sendall, args=(commands,), daemon=True)
        writer.start()
        writer.join(30)  # ExaBGP reads nothing meanwhile: ~4.7 MB, far beyond the socket and pipe buffers
        assert not writer.is_alive(), "the speaker's sends blocked while ExaBGP was not reading"
        read_all_then_close(relay, conn, commands)


def read_all_then_close(relay, conn, commands: bytes) -> None:
    """Read the relay's stdout until all of ``commands`` came (once eventlet has patched this process, in other tests,
    a pipe read may be short), then close the speaker's side: the relay ends cleanly."""
    received = bytearray()
    while len(received) < len(commands) and (chunk := relay.stdout.read(len(commands) - len(received))):
        received += chunk
    assert bytes(received) == commands
    conn.close()
    assert relay.wait(timeout=30) == 0


def test_the_relay_fills_a_pipe_of_a_mebibyte_to_exabgp_so_exabgp_reads_a_burst_without_waiting_for_it(tmp_path):
    """ExaBGP reads its commands 16 KiB per turn of its reactor, and a line of 500 withdrawals is ~136 KiB: in Linux's
    default pipe of 64 KiB, ExaBGP waited for the relay to be scheduled again several times per line (the lab's
    two cores busy with OVS, GoBGP and the controller). The relay's pipe to ExaBGP holds a mebibyte, filled at once."""
    import fcntl
    import termios

    from bgp import relay as relay_module

    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) < relay_module.PIPE_SIZE:
        pytest.skip("this system's pipe-max-size is below the relay's pipe size")
    commands = b"".join(b'withdraw evpn [{"n": %d, "pad": "%s"}]\n' % (i, b"x" * 200) for i in range(12000))
    with relay_session(tmp_path, stdout=subprocess.PIPE) as (relay, conn):
        fd = relay.stdout.fileno()
        conn.sendall(commands)  # ~2.8 MB: the relay holds what the pipe does not
        held = 0
        for _ in range(300):  # bounded: 30 s
            held = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4), sys.byteorder)
            if held > relay_module.PIPE_SIZE // 2:  # (a page's bytes may stay unused by a partial write)
                break
            select.select([], [], [], 0.1)
        assert fcntl.fcntl(fd, relay_module.F_GETPIPE_SZ) >= relay_module.PIPE_SIZE
        assert held > relay_module.PIPE_SIZE // 2, held  # (Linux's default pipe: 65,536 bytes at most)
        read_all_then_close(relay, conn, commands)


def test_the_relay_holds_at_most_max_pending_of_commands_for_an_exabgp_that_does_not_read(tmp_path):
    """An ExaBGP that stops reading (busy, or hung): the relay takes the speaker's commands until it holds
    ``MAX_PENDING`` bytes (1 MiB here), then no more: the speaker's socket fills and its own buffer keeps the rest.
    Once ExaBGP reads again it gets every command, in order."""
    path = str(tmp_path / "api.sock")
    bound = 1 << 20
    commands = b"".join(b"withdraw evpn [%d]\n" % i for i in range(700000))  # ~16 MB
    code = f"import sys, bgp.relay as r; r.MAX_PENDING = {bound}; sys.exit(r.main([{path!r}]))"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(30)
        relay = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.setblocking(False)
                sent = 0
                while sent < len(commands):  # until the relay takes no more (nothing for 2 s)
                    try:
                        sent += conn.send(commands[sent:sent + (1 << 20)])
                    except BlockingIOError:
                        if not select.select([], [conn], [], 2.0)[1]:
                            break
                # what it holds, plus the socket's and the pipe's buffers (a few hundred KiB each)
                assert sent < bound + (2 << 20)
                conn.settimeout(30)
                writer = threading.Thread(target=conn.sendall, args=(commands[sent:],), daemon=True)
                writer.start()  # ExaBGP reads again
                received = bytearray()
                while len(received) < len(commands) and (chunk := relay.stdout.read(len(commands) - len(received))):
                    received += chunk
                writer.join(30)
                assert bytes(received) == commands
            assert relay.wait(timeout=30) == 0
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.wait(timeout=30)


def test_the_speaker_hands_the_relay_all_its_socket_takes_in_one_turn(tmp_path):
    """The speaker's thread gets a turn only between the event loop's other stretches: one turn writes as much
    as the socket takes (not one 64 KiB chunk), stops without error when it is full, and keeps the rest, in
    order, for the next turn."""
    config = SpeakerConfig(asn=65000, router_id="192.0.2.1", neighbors=(Neighbor(PEER, 65001),),
                           workdir=str(tmp_path))
    speaker = Speaker(config)
    ours, relay_end = socket.socketpair()
    with ours, relay_end:
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        commands = b"".join(b"withdraw evpn [%d]\n" % i for i in range(600000))  # ~12 MB
        speaker._conn, speaker._outbuf = ours, bytearray(commands)
        speaker._write()
        taken = len(commands) - len(speaker._outbuf)
        assert 1 << 16 < taken < len(commands)  # more than the 64 KiB a turn took before
        relay_end.settimeout(30)
        received = bytearray()
        while len(received) < taken:
            received += relay_end.recv(1 << 20)
        assert bytes(received) == commands[:taken]
        assert bytes(speaker._outbuf) == commands[taken:]


def test_commands_queued_while_the_speaker_waits_are_written_in_the_turn_that_wakes_it(tmp_path, monkeypatch):
    """The speaker's thread waits in select for what it has to write; commands queued meanwhile (the withdrawals a
    big delete hands over at intake, a chunk between two pauses of the event loop) wake it, and that very turn
    writes them: it used to find them only when it selected again, a turn later (after the next chunk's work)."""
    import types

    import bgp.speaker as speaker_module
    from bgp.speakerproc import wake_pair

    config = SpeakerConfig(asn=65000, router_id="192.0.2.1", neighbors=(Neighbor(PEER, 65001),),
                           workdir=str(tmp_path))
    speaker = Speaker(config)
    ours, relay_end = socket.socketpair()
    speaker._wake_r, speaker._wake_w = wake_pair()
    with ours, relay_end, speaker._wake_r, speaker._wake_w:
        ours.setblocking(False)
        speaker._conn = ours
        asked = []

        def waiting(readable, writable, errors, timeout):
            asked.append(list(writable))
            speaker._change(lambda routes: ["withdraw evpn [1]"], None)  # queued and woken while it waits
            return select.select(readable, writable, errors, timeout)

        monkeypatch.setattr(speaker_module, "select", types.SimpleNamespace(select=waiting))
        speaker._poll(0)
        assert asked == [[]]  # it waited with nothing to write
        relay_end.settimeout(5)
        assert relay_end.recv(100) == b"withdraw evpn [1]\n" and not speaker._outbuf
