"""A VRS without a VTEP IP (README's `external_ids:canopy-vtep-ip` left out or misspelt) is said so in the log: its
VMs bind and are programmed on it, but no other switch has a tunnel to them, and nothing else told the operator."""

from __future__ import annotations

import logging
from dataclasses import replace

from controller.discovery import VrsSnapshot
from controller.policy import Policy
from controller.state import State

PEER = "10.250.0.12:51034"


def snapshot(vtep_ip=None):
    return VrsSnapshot(session="ovsdb:" + PEER, peer=PEER, chassis="hv2", bridge_present=True, datapath_id=2,
                       fail_mode="secure", protocols=("OpenFlow13", "OpenFlow14"), vtep_ip=vtep_ip)


def vtep_lines(caplog):
    lines = [r.getMessage() for r in caplog.records if "VTEP IP" in r.getMessage()]
    caplog.clear()
    return lines


def test_a_vrs_without_a_vtep_ip_is_warned_of_once_and_its_ip_when_it_comes(caplog):
    state = State(Policy())
    with caplog.at_level(logging.INFO, "canopy.state"):
        state.vrs_update(snapshot())
        [line] = vtep_lines(caplog)
        assert line.startswith("VRS hv2 has no VTEP IP (external_ids:canopy-vtep-ip, or vrs.hosts")
        state.vrs_update(replace(snapshot(), ports=()))  # another report, still without: no second line
        assert vtep_lines(caplog) == []
        state.vrs_update(snapshot("192.0.2.12"))
        assert vtep_lines(caplog) == ["VRS hv2: VTEP IP 192.0.2.12"]
        state.vrs_update(snapshot())  # taken away again
        assert [line.split(" (")[0] for line in vtep_lines(caplog)] == ["VRS hv2 has no VTEP IP"]


def test_a_vtep_ip_from_the_settings_is_one(caplog):
    state = State(Policy(), hosts=[("hv2", {"vtep_ip": "192.0.2.12", "flavour": "kvm"})])
    with caplog.at_level(logging.INFO, "canopy.state"):
        state.vrs_update(snapshot())
    assert vtep_lines(caplog) == []


def test_a_vrs_that_goes_and_comes_back_is_warned_of_once_per_connection_and_nothing_is_kept_for_it(caplog):
    """The warning keeps no state of its own (it compares the switch's last snapshot): gone, nothing of it is left to
    grow; back without an IP, one warning again; back with one, no line (it was never said to lack one)."""
    state = State(Policy())
    with caplog.at_level(logging.INFO, "canopy.state"):
        for _ in range(3):
            state.vrs_update(snapshot())
            state.vrs_update(replace(snapshot(), ports=()))
            assert [line.split(" (")[0] for line in vtep_lines(caplog)] == ["VRS hv2 has no VTEP IP"]
            state.vrs_gone(snapshot().session)
            assert snapshot().session not in state.vrs
        state.vrs_update(snapshot("192.0.2.12"))
        assert vtep_lines(caplog) == []
