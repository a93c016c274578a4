"""Where the tests find the captured EVPN messages (tests/unit/evpn_fixtures.py): ``CANOPY_EVPN_FIXTURES`` when set,
else ``shared/fixtures/exabgp-evpn`` beside the checkout; absent, a test reading them fails naming the variable."""

import shutil

import pytest

from tests.unit import evpn_fixtures
from tests.unit.evpn_fixtures import FIXTURES_ENV, fixture_text, fixtures_dir


def test_the_variable_names_the_fixtures_directory(tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(fixtures_dir(), moved)
    (moved / "rx_type2_macadv.json").write_text("{}")
    monkeypatch.setenv(FIXTURES_ENV, str(moved))
    assert fixtures_dir() == moved and fixture_text("rx_type2_macadv.json") == "{}"


def test_a_variable_naming_no_directory_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path / "none"))
    with pytest.raises(pytest.fail.Exception, match=f"{FIXTURES_ENV}={tmp_path / 'none'} names no directory"):
        fixture_text("rx_type2_macadv.json")


def test_fixtures_absent_from_the_default_place_fail_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    monkeypatch.setattr(evpn_fixtures, "DEFAULT", tmp_path / "none")
    with pytest.raises(pytest.fail.Exception, match=f"not at {tmp_path / 'none'}.*set {FIXTURES_ENV} to the directory"):
        fixtures_dir()
