"""A discovery sink for the OVSDB reporters' tests (ovsdb/vrs.py ``VrsReporter``, ovsdb/vtep_reporter.py
``VtepReporter``): it keeps what they report, in order."""

from __future__ import annotations

from controller.discovery import DiscoverySink


class Reports(DiscoverySink):
    """``calls``: ("update", snapshot) or ("gone", session), as reported; ``updates``: the snapshots alone. VRS and
    hardware VTEP reports alike."""

    def __init__(self):
        self.calls, self.updates = [], []

    def vrs_update(self, snap) -> None:
        self.calls.append(("update", snap))
        self.updates.append(snap)

    def vrs_gone(self, session: str) -> None:
        self.calls.append(("gone", session))

    vtep_update, vtep_gone = vrs_update, vrs_gone
