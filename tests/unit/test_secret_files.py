"""Secret files, read one way (controller/secretfile.py) by every setting that names one: rest.token_file and
rest.read_token_file (canopy run, check-settings, SIGHUP), ha.secret_file, the metadata agent's shared_secret_file
and token_file, and the Neutron driver's [canopy] token_file. Each refusal names the setting, the file and why: no
regular file (opening a FIFO blocked until a writer came, and its read until the writer ended), larger than 64 KiB,
a CR that is not part of one trailing CRLF, not UTF-8."""

import os
import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from controller import cli, lifecycle, resttoken, runtime, secretfile
from controller import metadata_agent as ma
from controller import settings as settings_mod
from tests.unit.fifo import fifo_without_writer
from tests.unit.helpers import TOKEN, Controller, running
from tests.unit.opens import opens_of

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy import client  # noqa: E402 (the driver package lives in its own folder)

FIFO = "is a FIFO, not a regular file: a secret file must be one (reading a FIFO could block"
SET_AT = SimpleNamespace(where=lambda key: "canopy.yaml:3")  # settings whose keys are on line 3 (Settings.where)
READERS = [  # (the setting as the error names it, read the file at path, the service named) for each token reader
    ("canopy.yaml:3: rest.read_token_file", lambda path: resttoken._read(SET_AT, "rest.read_token_file", path),
     "Canopy"),
    ("token_file", lambda path: ma.AgentSettings("http://n", "/s", ("http://c",), path).token(), "the metadata agent"),
    ("[canopy] token_file", lambda path: client.token_from(None, path), "Neutron"),
]
EACH_READER = pytest.mark.parametrize("key, read, reader", READERS, ids=["controller", "metadata-agent", "driver"])
ERRORS = (settings_mod.SettingsError, ma.SettingsError, client.ConfigError)


def private(path, content: bytes):
    path.write_bytes(content)
    path.chmod(0o600)
    return str(path)


def refusal(read, path) -> str:
    with pytest.raises(ERRORS) as refused:
        read(path)
    return str(refused.value)


# ------------------------------------------------------------------------------------ the reader, for each user

@EACH_READER
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, key, read, reader):
    """A FIFO's open blocks until a writer comes, and its read until the writer closes: at start, or at a SIGHUP on
    the event loop, the controller stalled. A reader that blocks is released by the test (tests/unit/fifo.py) and
    fails it: the file is opened without blocking, and refused because it is no regular file."""
    with fifo_without_writer(tmp_path / "token") as fifo:
        assert refusal(read, fifo) == f"{key}: {fifo} {FIFO} {reader} or never end)"


@EACH_READER
def test_a_directory_and_a_device_are_refused_as_no_regular_file(tmp_path, key, read, reader):
    directory = f"{key}: {tmp_path} is a directory, not a regular file: a secret file must be one"
    assert refusal(read, str(tmp_path)) == directory
    assert refusal(read, "/dev/zero") == (f"{key}: /dev/zero is a character device, not a regular file: a secret file "
                                          f"must be one (reading a character device could block {reader} or never end)")


def test_a_fifo_and_a_device_are_refused_without_being_opened(tmp_path, monkeypatch):
    """They were opened (without blocking) and refused by fstat: opening a device can do something by itself (a tape
    rewinds), and opening a FIFO wakes a writer waiting for a reader. stat refuses them first, reached directly and
    through a link (stat follows it, as open would). A FIFO of the test's own: the kernel's count of its opens
    (inotify) shows none. A device: the system's /dev/null (a node of the test's own needs root, mknod, and the unit
    tests need none), which everyone opens all the time, so the opens counted are this process's, by what each
    reached; a regular file's read shows what both counts see of a reader's open."""
    os.mkfifo(tmp_path / "fifo", 0o600)
    os.symlink(tmp_path / "fifo", tmp_path / "fifo-link")
    os.symlink("/dev/null", tmp_path / "null-link")
    real_open, reached = os.open, []
    monkeypatch.setattr(os, "open", lambda path, *args, **kw: reached.append(os.path.realpath(path))
                        or real_open(path, *args, **kw))
    for path in (str(tmp_path / "fifo"), str(tmp_path / "fifo-link")):
        with opens_of(path) as opens, pytest.raises(secretfile.Unusable) as refused:
            secretfile.read_text("ha.secret_file", path)
        assert str(refused.value).startswith(f"ha.secret_file: {path} {FIFO}") and opens() == 0, path
    device = "is a character device, not a regular file: a secret file must be one (reading a character device"
    for path in ("/dev/null", str(tmp_path / "null-link")):
        with pytest.raises(secretfile.Unusable) as refused:
            secretfile.read_text("ha.secret_file", path)
        assert str(refused.value).startswith(f"ha.secret_file: {path} {device}"), path
    assert reached == []
    secret = private(tmp_path / "secret", b"a secret\n")
    with opens_of(secret) as opens:  # what a reader's open does to either count
        assert secretfile.read_secret("ha.secret_file", secret) == "a secret" and opens() == 1
    assert reached == [os.path.realpath(secret)]


def test_a_fifo_put_at_the_path_after_the_stat_is_refused_by_fstat_without_blocking(tmp_path, monkeypatch):
    """The path may name another file at the open than at the stat: what was opened is checked again (fstat), and
    the open does not wait for a writer. The stat here sees a regular private file, the open a FIFO."""
    regular, swapped, real = os.stat(private(tmp_path / "secret", b"a secret\n")), str(tmp_path / "fifo"), os.stat
    monkeypatch.setattr(os, "stat", lambda path, **kw: regular if path == swapped else real(path, **kw))
    with fifo_without_writer(swapped) as fifo, pytest.raises(secretfile.Unusable) as refused:
        secretfile.read_secret("ha.secret_file", fifo)
    assert str(refused.value) == f"ha.secret_file: {fifo} {FIFO} Canopy or never end)"


@EACH_READER
def test_a_unix_socket_is_refused_as_a_socket_not_as_a_file_it_cannot_read(tmp_path, monkeypatch, key, read, reader):
    """A socket's open fails (ENXIO) before fstat could name it: it was "cannot read ...: No such device or
    address"."""
    monkeypatch.chdir(tmp_path)  # a short path to bind: AF_UNIX paths hold at most 107 bytes
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("token")
        path = str(tmp_path / "token")
        assert refusal(read, path) == (f"{key}: {path} is a socket, not a regular file: a secret file must be one "
                                       f"(reading a socket could block {reader} or never end)")


@EACH_READER
def test_a_file_over_64_kib_is_refused_naming_its_size_and_one_of_64_kib_is_read(tmp_path, key, read, reader):
    """It was read whole, however large, on the event loop at a SIGHUP."""
    big = private(tmp_path / "token", b"t" * secretfile.MAX_BYTES + b"\n")
    assert refusal(read, big) == (f"{key}: {big} holds 65537 bytes: a secret file holds one secret, at most 65536 "
                                  "bytes (is it the file you meant?)")
    private(tmp_path / "token", b"t" * (secretfile.MAX_BYTES - 1) + b"\n")
    assert read(big) == "t" * (secretfile.MAX_BYTES - 1)


@EACH_READER
def test_one_trailing_crlf_is_a_line_end_and_any_other_cr_is_refused_by_name(tmp_path, key, read, reader):
    """Text mode turned every CR into a newline: a lone trailing CR was cut off silently, and a CR inside was
    reported as a newline, a character the file did not hold."""
    path = private(tmp_path / "token", b"t0ken\r\n")
    assert read(path) == "t0ken"
    for content, at in ((b"t0ken\r", 6), (b"t0k\ren\n", 4), (b"t0ken\r\n\r\n", 6), (b"t0ken\n\r\n", 6)):
        private(tmp_path / "token", content)
        char = "\\n" if content == b"t0ken\n\r\n" else "\\r"
        assert refusal(read, path).startswith(f"{key}: {path}: the token in it holds '{char}' at character {at}: a "
                                              "token is printable ASCII without spaces"), content


@EACH_READER
def test_a_missing_file_and_text_that_is_not_utf8_name_the_setting_the_file_and_why(tmp_path, key, read, reader):
    missing = str(tmp_path / "missing")
    assert refusal(read, missing) == f"{key}: {missing} does not exist"
    path = private(tmp_path / "token", b"t0k\xffen\n")
    assert refusal(read, path) == f"{key}: {path} is not UTF-8 text (byte 4 is 0xff)"


def test_a_secret_is_read_the_same_way_and_stripped(tmp_path):
    """The HA link's and the metadata agent's shared secret: white space around it is no part of it."""
    path = private(tmp_path / "secret", b"  a secret\r\n")
    assert secretfile.read_secret("ha.secret_file", path) == "a secret"
    with fifo_without_writer(tmp_path / "fifo") as fifo, pytest.raises(secretfile.Unusable) as refused:
        secretfile.read_secret("ha.secret_file", fifo)
    assert str(refused.value).startswith(f"ha.secret_file: {fifo} {FIFO} Canopy or never end)")
    assert refused.value.problem.startswith(f"{fifo} {FIFO}")  # without the key: the settings add file and line


@pytest.mark.parametrize("content, lines", [
    (b"a-secret-of-16-chars\nand more\n", 2), (b"a-secret\r\n\r\nof-16-chars", 3), (b" a-secret\rof-16-chars ", 2),
], ids=["LF", "CRLF", "CR"])
def test_a_secret_over_more_than_one_line_is_refused_naming_the_lines(tmp_path, capsys, content, lines):
    """A line break inside was kept as part of the HA secret or the metadata agent's shared secret (Nova's is one
    config value): two nodes, or the agent and Nova, then disagreed on the secret with no word why."""
    path = private(tmp_path / "secret", content)
    why = f"{path} holds {lines} lines: a secret file holds the secret on one line (a line break inside is no part "
    config = tmp_path / "canopy.yaml"
    config.write_text(f"data_dir: {tmp_path}/d\nha: {{node_id: a, peer: 127.0.0.2, secret_file: {path}}}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{config}:2: ha.secret_file: {why}")
    agent = ma.AgentSettings("http://n", path, ("http://c",), "/t")
    with pytest.raises(ma.SettingsError) as refused:
        agent.secret()
    assert str(refused.value).startswith(f"shared_secret_file: {why}")


# -------------------------------------------------------------- the commands and the reload that read them

@pytest.mark.parametrize("key", ["token_file", "read_token_file"])
def test_canopy_run_stops_on_a_fifo_token_file_with_exit_2_naming_it(tmp_path, capsys, key):
    with fifo_without_writer(tmp_path / "token") as fifo:
        rest = f"{key}: {fifo}" if key == "token_file" else f"token: w, {key}: {fifo}"
        config = tmp_path / "canopy.yaml"
        config.write_text(f"data_dir: {tmp_path}/d\nrest: {{{rest}}}\n")
        assert cli.main(["run", "--config", str(config)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"cannot start: {config}:2: rest.{key}: {fifo} {FIFO} Canopy or never end)\n" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("key", ["token_file", "read_token_file"])
def test_check_settings_refuses_a_fifo_token_file_and_one_over_64_kib(tmp_path, capsys, key):
    config = tmp_path / "canopy.yaml"
    with fifo_without_writer(tmp_path / "token") as fifo:
        config.write_text(f"data_dir: {tmp_path}/d\nrest: {{{key}: {fifo}}}\n")
        assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{config}:2: rest.{key}: {fifo} {FIFO}")
    big = private(tmp_path / "big", b"t" * (secretfile.MAX_BYTES + 1))
    config.write_text(f"data_dir: {tmp_path}/d\nrest: {{{key}: {big}}}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert f"{config}:2: rest.{key}: {big} holds 65537 bytes" in capsys.readouterr().err


def test_check_settings_names_a_token_file_under_a_file_as_canopy_run_does(tmp_path, capsys):
    """A path through a regular file (ENOTDIR) was taken for one this user may not open, and passed."""
    under = tmp_path / "file" / "token"
    (tmp_path / "file").write_text("")
    config = tmp_path / "canopy.yaml"
    config.write_text(f"data_dir: {tmp_path}/d\nrest: {{token: w, read_token_file: {under}}}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert f"{config}:2: rest.read_token_file: cannot read {under}: Not a directory" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_USAGE
    assert (f"cannot start: {config}:2: rest.read_token_file: cannot read {under}: Not a directory\n"
            in capsys.readouterr().err)


def test_check_settings_names_an_ha_secret_file_that_is_no_utf8_or_a_fifo_without_a_traceback(tmp_path, capsys):
    """A byte that is no UTF-8 in ha.secret_file raised UnicodeDecodeError out of check-settings and canopy run."""
    secret = private(tmp_path / "ha-secret", b"sixteen-chars-or\xff-more\n")
    config = tmp_path / "canopy.yaml"
    config.write_text(f"data_dir: {tmp_path}/d\nha: {{node_id: a, peer: 127.0.0.2, secret_file: {secret}}}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err == f"{config}:2: ha.secret_file: {secret} is not UTF-8 text (byte 17 is 0xff)\n"
    with fifo_without_writer(tmp_path / "fifo") as fifo:
        config.write_text(f"data_dir: {tmp_path}/d\nha: {{node_id: a, peer: 127.0.0.2, secret_file: {fifo}}}\n")
        assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{config}:2: ha.secret_file: {fifo} {FIFO}")


def test_a_sighup_refuses_a_fifo_token_file_and_keeps_the_running_tokens(tmp_path, caplog):
    """The reload runs on the event loop: a FIFO there stalled every switch until someone wrote to it."""
    ctl = Controller(tmp_path)
    config = tmp_path / "canopy.yaml"
    with running(ctl):
        with fifo_without_writer(tmp_path / "read-token") as fifo:
            config.write_text(f"data_dir: {tmp_path / 'data'}\nrest: {{token: {TOKEN}, read_token_file: {fifo}}}\n")
            assert lifecycle.reload(str(config)) == []
        assert f"{config}:2: rest.read_token_file: {fifo} {FIFO}" in caplog.text
        assert runtime.SETTINGS.rest_read_token is None and runtime.SETTINGS.rest_token == TOKEN


def test_the_metadata_agent_refuses_a_fifo_shared_secret_with_exit_2(tmp_path, capsys):
    token = private(tmp_path / "token", b"t0ken\n")
    with fifo_without_writer(tmp_path / "secret") as fifo:
        config = tmp_path / "agent.yaml"
        config.write_text(f"nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: {fifo}\n"
                          f"canopy_url: http://192.0.2.1:8080\ntoken_file: {token}\n")
        assert cli.main(["metadata-agent", "--config", str(config)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"shared_secret_file: {fifo} {FIFO} the metadata agent or never end)" in err and "Traceback" not in err


def test_sighup_with_an_inline_token_never_opens_a_fifo_at_the_generated_token_file(tmp_path):
    """The reload's summary says whether the write token came from its file (rest.token_file, else the generated
    data_dir/rest-token): that file was opened with a plain open, on the event loop, so a FIFO there (with rest.token
    inline nothing else reads it) held the loop until a writer came. It is read as every token file is."""
    ctl = Controller(tmp_path, open_reads="never")
    config, data = tmp_path / "canopy.yaml", tmp_path / "data"
    Path(resttoken.token_path(str(data))).unlink(missing_ok=True)
    config.write_text(f"data_dir: {data}\nrest: {{token: {TOKEN}, open_reads: never}}\n")
    with running(ctl):
        with fifo_without_writer(resttoken.token_path(str(data))):
            done = lifecycle.reload(str(config))
        assert "REST token unchanged (inline)" in done
