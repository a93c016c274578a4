"""Settings of a secure deployment (issue 12, item 7; docs/security.md): the tls section, per-listener TLS
switches, certificate files checked at load with file and line, and the HA link's listen default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller import settings as settings_mod
from controller import tls

REPO = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tests.harness.pki import Pki

    root = tmp_path_factory.mktemp("pki")
    ca = Pki(root, "ca")
    return ca, ca.issue("controller", ips=("127.0.0.1",))


def load(tmp_path, text):
    path = tmp_path / "canopy.yaml"
    path.write_text(text)
    return settings_mod.load(str(path))


def tls_section(pki, **override):
    ca, own = pki
    files = {"key": str(own.key), "cert": str(own.cert), "ca_cert": str(ca.ca_cert)} | override
    return "tls:\n" + "".join(f"  {k}: {v}\n" for k, v in files.items())


def test_without_a_tls_section_nothing_serves_tls(tmp_path):
    s = load(tmp_path, "log_level: info\n")
    assert s.tls is None and not (s.openflow_tls or s.ovsdb_tls or s.rest_tls)
    assert tls.listener_context(s, "ovsdb") is None


def test_the_tls_section_turns_tls_on_for_every_listener_unless_one_says_no(tmp_path, pki):
    s = load(tmp_path, tls_section(pki))
    assert s.openflow_tls and s.ovsdb_tls and s.rest_tls
    assert s.tls.key == str(pki[1].key)
    mutual = tls.listener_context(s, "openflow")
    assert mutual.verify_mode.name == "CERT_REQUIRED"
    assert tls.listener_context(s, "rest").verify_mode.name == "CERT_NONE"  # REST clients use the token
    s = load(tmp_path, tls_section(pki) + "rest: {tls: false}\n")
    assert s.openflow_tls and s.ovsdb_tls and not s.rest_tls
    assert tls.listener_context(s, "rest") is None


@pytest.mark.parametrize("text, expected", [
    ("ovsdb: {tls: true}\n", "canopy.yaml:1: ovsdb.tls: needs the tls section (key, cert, ca_cert)"),
    ("tls: {key: /k, cert: /c}\n", "canopy.yaml:1: tls.ca_cert: is required"),
    ("tls: {key: /k, cert: /c, ca_cert: /a, extra: 1}\n", "canopy.yaml:1: tls.extra: unknown field"),
    ("rest: {tls: maybe}\n", "canopy.yaml:1: rest.tls: must be true or false"),
])
def test_bad_tls_settings_name_file_line_and_field(tmp_path, text, expected):
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def test_certificate_files_are_checked_when_loaded_one_line_each(tmp_path, pki):
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, tls_section(pki, key=missing))
    assert str(info.value) == f"{tmp_path}/canopy.yaml:2: tls.key: cannot read {missing}: No such file or directory"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, tls_section(pki, ca_cert=garbage))
    assert f"canopy.yaml:4: tls.ca_cert: {garbage}: no PEM CA certificate in it" in str(info.value)
    assert "\n" not in str(info.value)
    other = tmp_path / "other-key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(other), "2048"], check=True, capture_output=True)
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, tls_section(pki, key=other))
    assert "tls.cert: " in str(info.value) and "matching private key" in str(info.value)


def test_ha_listens_on_the_address_towards_its_peer_not_on_all(tmp_path):
    s = load(tmp_path, "ha: {peer: 127.0.0.2, secret: 0123456789abcdef}\n")
    assert s.ha.listen == "127.0.0.1"  # the source address the kernel picks for 127.0.0.2
    s = load(tmp_path, "ha: {peer: 127.0.0.2, secret: 0123456789abcdef, listen: 127.0.0.3}\n")
    assert s.ha.listen == "127.0.0.3"
    assert settings_mod.defaults().ha.listen != "0.0.0.0"


def test_ha_without_a_route_to_its_peer_needs_an_explicit_listen(tmp_path):
    """In a network namespace of its own (no routes at all), the default cannot be found: a clear error."""
    (tmp_path / "canopy.yaml").write_text("ha: {peer: 10.250.0.2, secret: 0123456789abcdef}\n")
    check = ("import sys; from controller import settings as s\n"
             "try: s.load(sys.argv[1])\nexcept s.SettingsError as e: print(e)\n")
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", check, str(tmp_path / "canopy.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "canopy.yaml:1: ha.listen: no default: no route to ha.peer 10.250.0.2" in done.stdout, done.stderr


def test_the_container_settings_do_not_open_reads_on_all_addresses():
    raw = yaml.safe_load((REPO / "config" / "container.yaml").read_text())
    s = settings_mod.load(str(REPO / "config" / "container.yaml"))
    assert raw["rest"]["listen"] != "0.0.0.0" or s.open_reads == "never"


def test_a_fifo_or_a_directory_at_a_certificate_setting_is_refused_without_opening_it(tmp_path, pki):
    """A FIFO at tls.cert held the load (the controller's start, check-settings) until a writer came (review32): only
    a regular file is opened. A reader that blocks is released by the test (tests/unit/fifo.py) and the test fails."""
    from tests.unit.fifo import fifo_without_writer

    fifo = tmp_path / "cert.pem"
    with fifo_without_writer(fifo), pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, tls_section(pki, cert=fifo))
    assert str(info.value) == (f"{tmp_path}/canopy.yaml:3: tls.cert: {fifo} is a FIFO, not a regular file (reading a "
                               "FIFO could block Canopy or never end)")
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, tls_section(pki, ca_cert=tmp_path))
    assert str(info.value) == f"{tmp_path}/canopy.yaml:4: tls.ca_cert: {tmp_path} is a directory, not a regular file"
