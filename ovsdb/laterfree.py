"""The rows a big update's slices deleted, held past their reports and freed after the last one, a run at a time.

Why: 10,000 ports deleted in one transaction are reported in slices (ovsdb/idl/slices.py), each slice's vports unbound
and their EVPN routes withdrawn as it is reported. Freed as each slice's report returned (its ``RowChanges`` dropped),
the deleted rows (their datums, atoms and uuids: 20,000 rows) took ~70-80 ms of the intake's ~300 ms of CPU before
the last slice's withdrawals (docs/benchmarks.md "intake41", "free42"). Held until the update's last slice is
reported, that CPU follows the last withdrawal instead of preceding it, and the event loop gets a turn between runs
of ``FREE_ROWS`` rows (the speaker's thread, the programming pass). Memory stays bounded: what one update deleted
(whose JSON was held whole meanwhile), freed as soon as its last slice is reported; nothing is held when the update
was not cut (ovsdb/peersession.py: only what a slice's report took is held).
"""

from __future__ import annotations

from collections.abc import Callable

FREE_ROWS = 1000  # row changes freed between two turns of the event loop (~3-4 ms of CPU: a deleted port's rows)


class LaterFree:
    """Row changes (``RowChanges``) held past their reports (``hold``), freed by ``free``."""

    def __init__(self):
        self._held: list = []

    def __len__(self) -> int:
        """The row changes held."""
        return len(self._held)

    def hold(self, changes) -> None:
        """Keep ``changes`` (a ``RowChanges`` already reported; None: nothing) until ``free``."""
        if changes is not None:
            self._held.extend(changes.take_all())

    def free(self, pause: Callable[[], None]) -> None:
        """Drop every change held, ``FREE_ROWS`` at a time (each run freed in C: ``del`` of a list's tail), calling
        ``pause`` between runs (a turn for the other green threads: none after the last)."""
        held = self._held
        while held:
            del held[-FREE_ROWS:]
            if held:
                pause()
