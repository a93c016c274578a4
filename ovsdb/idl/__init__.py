"""The one door to the ``ovs`` library (Open vSwitch's Python OVSDB IDL), pinned at ovs==4.0.0.

Canopy is the OVSDB *manager*: hypervisors run ``ovs-vsctl set-manager tcp:CANOPY:6640`` and their
ovsdb-server connects to us. The ``ovs`` library is written for the opposite direction (a client
dialling a server), so this package adapts it, and it is the only part of Canopy that imports ``ovs``
(tests/unit/test_ovs_imports.py fails if another module does). Callers import from ``ovsdb.idl`` itself:

- ``links``: ``Listener``, ``PeerLink`` (an accepted connection's handshake calls), ``IdleLink``, ``Doorbell``.
- ``replica``: ``Replica`` (an ``ovs.db.idl.Idl`` over an *accepted* connection), its ``RowWriter``,
  ``PendingTransaction`` and ``TxnResult``.
- ``rows``: ``column_value``, ``column_values`` and the reference-set readers, cheaper than ``getattr`` on an IDL row.
- ``paced``: the ``Idl`` subclasses ``Replica`` runs, the one place that overrides ovs's private methods.
- ``refusals``: why an update from the peer is refused (``paced`` refuses it and closes the session).
- ``datums``: a column's JSON parsed into a Datum as ovs parses it, cheaper for plainly valid values (``paced``'s).
- ``rowloop``: an update2/update3 update's rows applied as ovs applies them, a row deleted, inserted or modified
  put in or taken from its table directly (``paced``'s).
- ``lazy``: a new row's plain columns (maps of strings, strings, one reference; an optional integer set on a column
  at its default) kept as their JSON in a ``LazyDatum``, their atoms made only when something reads them as a Datum;
  ``rows``' readers and ``slices`` read the JSON (``paced``'s).

Everything here is cooperative under eventlet: ``ovs.poller`` switches to a ``select.select`` based
poller when eventlet has patched ``select``, so ``wait()`` yields to other green threads.

``ovs.vlog`` drops every message unless ``Vlog.init`` was called, so the library's own warnings
(parse errors, receive errors) are invisible; callers log what they see through this package. The other
quirks of ovs 4.0.0 are listed in the modules that handle them.
"""

from ovsdb.idl.links import (DEFAULT_MAX_MESSAGE, DEFAULT_PROBE_MS, MAX_UNSOLICITED, OVS_VERSION, PINNED_OVS_VERSION,
                             READ_BUDGET, BoundedConnection, Doorbell, IdleLink, Listener, PeerError, PeerLink,
                             TlsStream, _peer_of, _poll, _ReadBudget, _session_on)
from ovsdb.idl.paced import _OVS_LOG, _PacedIdl, _TrackingIdl
from ovsdb.idl.replica import (_FINAL, KEEPALIVE_MS, PAUSE_ROWS, TXN_ERROR, TXN_SUCCESS, TXN_TIMED_OUT, TXN_TIMEOUT_MS,
                               TXN_TRY_AGAIN, TXN_UNCHANGED, PendingTransaction, Replica, RowWriter, TxnResult,
                               schema_helper)
from ovsdb.idl.rows import (_datum, _pending, column_value, column_values, reference_count, reference_keys,
                             referenced_rows, references)

__all__ = [
    "DEFAULT_MAX_MESSAGE", "DEFAULT_PROBE_MS", "MAX_UNSOLICITED", "OVS_VERSION", "PINNED_OVS_VERSION", "READ_BUDGET",
    "BoundedConnection", "Doorbell", "IdleLink", "Listener", "PeerError", "PeerLink", "TlsStream",
    "KEEPALIVE_MS", "PAUSE_ROWS", "TXN_ERROR", "TXN_SUCCESS", "TXN_TIMED_OUT", "TXN_TIMEOUT_MS", "TXN_TRY_AGAIN",
    "TXN_UNCHANGED", "PendingTransaction", "Replica", "RowWriter", "TxnResult", "schema_helper",
    "column_value", "column_values", "reference_count", "reference_keys", "referenced_rows", "references",
    # private to the package, imported by its tests
    "_FINAL", "_OVS_LOG", "_PacedIdl", "_ReadBudget", "_TrackingIdl", "_datum", "_peer_of", "_pending", "_poll",
    "_session_on",
]
