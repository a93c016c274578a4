"""networking_canopy's [canopy] token and token_file: refused as Canopy refuses its own token files
(controller/secretfile.py, which the driver shares through a link); ca_file refused naming the option too."""

import ast
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "networking_canopy"))
from networking_canopy import client  # noqa: E402 (the driver package lives in its own folder)


def test_the_driver_reads_secrets_with_canopys_own_module_not_a_copy():
    linked = ROOT / "networking_canopy/networking_canopy/secretfile.py"
    assert os.path.samefile(linked, ROOT / "controller/secretfile.py")


def test_the_shared_module_imports_only_the_standard_library():
    """The driver runs in Neutron's environment, where Canopy is not installed (its .venv here has Canopy, so an
    import of it would pass every other test): secretfile.py may import nothing but the standard library."""
    tree = ast.parse((ROOT / "controller/secretfile.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert names and {name.split(".")[0] for name in names} <= sys.stdlib_module_names, names


def test_a_token_file_other_users_can_read_is_refused_naming_the_option_and_its_mode(tmp_path):
    token = tmp_path / "canopy-token"
    token.write_text("t0ken-for-neutron\n")
    for mode in (0o644, 0o604, 0o666):
        token.chmod(mode)
        with pytest.raises(client.ConfigError) as refused:
            client.token_from(None, str(token))
        assert str(refused.value).startswith(f"[canopy] token_file: {token} has mode {mode:04o}")
        assert "chmod 600" in str(refused.value) and "the user Neutron runs as" in str(refused.value)
    token.chmod(0o600)
    assert client.token_from(None, str(token)) == "t0ken-for-neutron"
    assert client.token_from("inline-token", str(token)) == "inline-token"  # token wins over token_file
    assert client.token_from(None, None) is None


@pytest.mark.parametrize("text, reason", [
    ("t0ken\n\n", "holds '\\n' at character 6"), ("t0ken\nsecond\n", "holds '\\n' at character 6"),
    ("t0ken\0\n", "holds '\\x00' at character 6"), (" t0ken\n", "holds ' ' at character 1"),
    ("t0ken \n", "holds ' ' at character 6"), ("\n", "is empty"), ("", "is empty"),
])
def test_a_token_file_with_more_than_the_token_and_one_newline_is_refused(tmp_path, text, reason):
    token = tmp_path / "canopy-token"
    token.write_text(text)
    token.chmod(0o600)
    with pytest.raises(client.ConfigError) as refused:
        client.token_from(None, str(token))
    assert str(refused.value).startswith(f"[canopy] token_file: {token}: the token in it {reason}")


def test_a_missing_token_file_and_a_bad_inline_token_name_their_option(tmp_path):
    with pytest.raises(client.ConfigError, match=r"^\[canopy\] token_file: .*/missing does not exist$"):
        client.token_from(None, str(tmp_path / "missing"))
    with pytest.raises(client.ConfigError, match=r"^\[canopy\] token: holds '\\n' at character 4"):
        client.token_from("abc\n", None)


def test_a_ca_file_that_cannot_be_used_names_its_option(tmp_path):
    """It raised FileNotFoundError or ssl.SSLError out of the driver's start, naming no option."""
    with pytest.raises(client.ConfigError, match=r"^\[canopy\] ca_file: cannot read .*/missing.pem: No such file"):
        client.CanopyClient("https://canopy.example:8080", "t0ken", ca_file=str(tmp_path / "missing.pem"))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(client.ConfigError, match=rf"^\[canopy\] ca_file: {not_pem} holds no PEM CA certificate"):
        client.CanopyClient("https://canopy.example:8080", "t0ken", ca_file=str(not_pem))
    assert client.CanopyClient("http://canopy.example:8080", "t0ken").context is None  # the system's store


def test_a_fifo_at_ca_file_is_refused_naming_its_option_without_waiting_for_a_writer(tmp_path):
    """ssl opened a FIFO at ca_file and held the driver's start until a writer came (review32); a reader that blocks
    is released by the test (tests/unit/fifo.py) and the test fails."""
    from tests.unit.fifo import fifo_without_writer

    fifo = tmp_path / "ca.pem"
    with fifo_without_writer(fifo), pytest.raises(client.ConfigError) as refused:
        client.CanopyClient("https://canopy.example:8080", "t0ken", ca_file=str(fifo))
    assert str(refused.value) == (f"[canopy] ca_file: {fifo} is a FIFO, not a regular file (reading a FIFO could "
                                  "block Neutron or never end)")
