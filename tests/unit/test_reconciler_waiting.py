"""A switch read back with nothing to program yet is "waiting", not "reading" (openflow/reconciler.py).

A bridge no OVSDB session names (its manager not set, or an ovsdb-server that does not read it: docs/vrs.md) is read
back and then given no desired state. It stayed "reading" for as long as it was connected: ``canopy apply --wait``
waited for it until its timeout, and the controller never counted itself quiet (controller/app.py ``_quiet``: the
collector's refresh waited for it)."""

from __future__ import annotations

import logging

from openflow.reconciler import SwitchReconciler
from tests.unit.green import turns_until
from tests.unit.test_read_back_lost_part import Switch, part

VERSION = 4


def started():
    switch = Switch(VERSION, lambda xid: [part(VERSION, xid, 1, 0, b"")])  # holds no flow
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.reconciler"))
    rec.start()
    return rec


def test_a_switch_read_back_with_nothing_desired_is_waiting_then_in_sync_once_given_its_flows():
    rec = started()
    try:
        turns_until(lambda: rec.state not in ("connected", "reading"), rec._thread, what="the read-back")
        assert rec.state == "waiting" and rec.status()["pending"] == 0
        rec.set_desired_owners({}, [])
        turns_until(lambda: rec.state == "in_sync", rec._thread, what="in sync with nothing desired")
    finally:
        rec.stop()
