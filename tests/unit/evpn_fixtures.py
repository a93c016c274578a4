"""Where the captured EVPN messages are (``rx_*.json``: ExaBGP's JSON of routes GoBGP sent it;
``gobgp_rib_after_exabgp_announce.json``: GoBGP's RIB after ExaBGP announced to it): kept outside the repository, by
default in ``shared/fixtures/exabgp-evpn`` beside the checkout, elsewhere when ``CANOPY_EVPN_FIXTURES`` names their
directory (docs/testing.md). Absent, a test that reads them fails naming the variable: it is not skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES_ENV = "CANOPY_EVPN_FIXTURES"
DEFAULT = Path(__file__).resolve().parents[3] / "shared/fixtures/exabgp-evpn"  # beside the checkout


def fixtures_dir() -> Path:
    """The fixtures' directory; the test fails naming ``CANOPY_EVPN_FIXTURES`` when it is not there."""
    configured = os.environ.get(FIXTURES_ENV)
    path = Path(configured) if configured else DEFAULT
    if not path.is_dir():
        where = f"{FIXTURES_ENV}={configured} names no directory" if configured else \
            f"they are not at {path} (the default: {FIXTURES_ENV} is not set)"
        pytest.fail(f"the captured EVPN messages (rx_*.json) are needed: {where}; set {FIXTURES_ENV} to the directory "
                    "holding them (docs/testing.md)", pytrace=False)
    return path


def fixture_text(name: str) -> str:
    """The text of the fixture file ``name``."""
    return (fixtures_dir() / name).read_text()
