"""Controller settings: defaults, refusals with file and line, and the REST token."""

import os
import stat

import pytest

from controller import settings as settings_mod
from controller import yamldoc


def load(tmp_path, text):
    path = tmp_path / "canopy.yaml"
    path.write_text(text)
    return settings_mod.load(str(path))


def test_defaults(tmp_path):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\n")
    assert (s.openflow_port, s.ovsdb_port, s.rest_listen, s.rest_port) == (6653, 6640, "127.0.0.1", 8080)
    assert s.bridge == "br-int" and s.rest_token is None and s.rest_token_file == f"{tmp_path}/d/rest-token"


@pytest.mark.parametrize("text, expected", [
    ("rest:\n  port: 80000\n", "canopy.yaml:2: rest.port: must be between 1 and 65535"),
    ("rest:\n  listen: localhost\n", "canopy.yaml:2: rest.listen: 'localhost' is not an IP address"),
    ("openflow: {port: 6653}\nbogus: 1\n", "canopy.yaml:2: bogus: unknown field"),
    ("allocation: {vni_min: 500, vni_max: 100}\n", "canopy.yaml:1: allocation.vni_min: must not be above vni_max"),
    ("log_level: loud\n", "canopy.yaml:1: log_level: must be one of debug, info, warning, error"),
])
def test_bad_settings_name_file_line_and_reason(tmp_path, text, expected):
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def test_settings_must_be_a_mapping(tmp_path):
    with pytest.raises(settings_mod.SettingsError, match="must be a mapping"):
        load(tmp_path, "- a\n- b\n")
    with pytest.raises(yamldoc.DocError, match="canopy.yaml:2: expected the node content"):
        load(tmp_path, "a: [\n")


def test_generated_token_is_private_and_stable(tmp_path):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\n")
    first = settings_mod.with_token(s)
    assert first.rest_token and len(first.rest_token) >= 32
    mode = stat.S_IMODE(os.stat(s.rest_token_file).st_mode)
    assert mode == 0o600
    assert settings_mod.with_token(s).rest_token == first.rest_token


def test_configured_token_file_must_exist(tmp_path):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{token_file: {tmp_path}/missing}}\n")
    with pytest.raises(settings_mod.SettingsError, match="does not exist"):
        settings_mod.with_token(s)
