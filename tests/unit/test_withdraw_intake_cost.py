"""The work a big delete of ports does from the update to the reporter's last snapshot, per port deleted: the replica's
parse in slices (ovsdb/idl/slices.py), its rows deleted and notified (ovsdb/idl/rowloop.py, paced.py), and the VRS
reporter dropping them from the bridge (ovsdb/vrs.py, bridgeports.py) at each slice, as the OVSDB session reads them
(evpn_routes' withdraw phase: each slice's vports are unbound, and their EVPN routes withdrawn, when it is reported).

Counted in Python bytecodes (every frame, ``sys.settrace``), not seconds."""

import json
import random

from ovsdb.claims import VrsClaims
from tests.unit.sinks import Reports
from tests.unit.test_duplicate_macs_pass import opcodes
from tests.unit.test_ovsdb_slices import UPDATE2, Database, session, take

PORTS = 4000  # six slices reported; the per-port cost is the point, as at 10,000 ports (trimU42)


def test_a_big_delete_reaches_the_reporters_last_snapshot_in_at_most_140_bytecodes_a_port():
    """4,000 ports deleted (with their interfaces, on two bridges): at most 140 bytecodes a port (~109 here; main at
    95a4b671: ~291, the plan's walk of the Port table, the bridges' differences owned and each slice's rows looked at
    for long sets in Python loops, the bridge's ``ports`` difference parsed and each element looked up with six Python
    calls, each slice's interfaces unset one by one; at b942caf: 12.86 M, ~1,285: each deleted row taken and notified
    with twelve Python calls, each port dropped from the bridge with three, the deleted rows looked at again by the
    reporter, each slice's rows picked in Python; at b287fd1: 4.18 M, ~418, each slice's bridge ``ports`` difference
    read element by element: ovsdb/idl/datums.py). The reporter's last snapshot holds none of them."""
    db = Database(random.Random(5))
    db._apply(db.insert_ports(PORTS))
    replica = db.fresh()
    sink = Reports()
    reporter = session(replica, VrsClaims(sink, 0.0), sink)
    update = json.loads(json.dumps(db.delete_ports(PORTS + 10)))  # (and the few Database begins with)
    reports = []
    replica.on_slice = lambda: reports.append(take(replica, reporter))

    def intake():
        replica._Idl__parse_update(update, UPDATE2)
        take(replica, reporter)

    counted = opcodes(intake)
    assert len(reports) > 5 and replica.refused is None
    assert not replica.tables["Port"].rows and reporter.last.ports == ()
    assert counted <= 140 * PORTS, counted
