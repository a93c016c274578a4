"""A VRS session's read of every port overtaken by a newer one (ovsdb/vrs.py ``refresh``): a speak's read, in whose
pauses the session's own next update is taken. What the dropped read found is not told (its refused claims: the newer
read tells them, once), it is counted apart (``dropped_reads``), and a big delete decoded meanwhile is still told
leaving at once (its vports' routes withdrawn at intake: controller/state_leaving.py)."""

from __future__ import annotations

from controller.pacer import Pacer
from ovsdb.claims import VrsClaims
from ovsdb.rowchanges import row_key
from ovsdb.vrs import VrsReporter
from tests.unit.sinks import Reports
from tests.unit.test_vrs_delta import PEER_B, Db, follow, port


class LeavingSink(Reports):
    def vrs_leaving(self, session, names):
        self.calls.append(("leaving", session, list(names)))

    def vrs_left(self, session, names):
        self.calls.append(("left", session, list(names)))


def _speak_with(db_b: Db, meanwhile, sink=None, unread=lambda: None):
    """Session A speaks, B (``db_b``) idle; ``unread()`` changes B's rows (an update B has not taken); A goes, and B
    speaks in A's thread, a read of every port with pauses: ``meanwhile(b)`` runs in its first pause. Returns (B,
    claims, sink)."""
    db_a, sink = Db(ports=2), sink or Reports()
    claims = VrsClaims(sink, grace=10.0)
    armed = []

    def pause():
        if armed == [True]:
            armed.append(False)
            meanwhile(b)

    b = VrsReporter(sink, "ovsdb:" + PEER_B, PEER_B, claims=claims, pacer=Pacer(pause, every=5))
    b.refresh([db_b.root])
    a = follow(db_a, sink, claims)
    assert a.speaking and not b.speaking
    unread()
    armed.append(True)
    a.gone()
    assert b.speaking and armed == [True, False]
    return b, claims, sink


def test_a_dropped_read_tells_no_refused_claim_and_is_counted_apart():
    """A port claiming tap3's interface (a hostile peer's row) arrives in B's next update, not taken yet when B is
    made to speak: the speak's read finds the claim, then B's update, taken in its pause, reads every port again and
    finds it too. The claim is told once (it was counted by both reads, the dropped one's count lost with it: twice
    in the claims' total, once in the session's); the dropped read is counted in ``dropped_reads``."""
    db_b = Db(ports=40)
    stolen = next(p for p in db_b.bridge.ports if p.name == "tap3").interfaces[0]

    def evil_port():
        db_b.bridge.ports = db_b.bridge.ports + [port("evil", stolen)]

    b, claims, _ = _speak_with(db_b, lambda b: b.refresh([db_b.root], db_b.take()), unread=evil_port)
    assert b.refused_claims == 1 and claims.refused_interface_claims == 1
    assert b.full_reads == 2 and b.dropped_reads == 1  # B's first read, its update's; the speak's dropped


def test_a_big_delete_decoded_during_a_speaks_read_is_told_leaving_at_once():
    """B's next update deletes ports; it is decoded (the slices' ``leaving``, before its first slice) in a pause of
    the speak's read. Its ports are told leaving then, named as B last read them (they were not: the read under way
    had not been kept, so the routes of a big delete waited for its slices)."""
    db_b = Db(ports=40)
    gone = [p for p in db_b.bridge.ports if p.name in ("tap1", "tap2", "tap3")]
    sink = LeavingSink()
    b, _, _ = _speak_with(db_b, lambda b: b.leaving([row_key(i) for p in gone for i in p.interfaces]), sink)
    told = [c for c in sink.calls if c[0] == "leaving"]
    assert told == [("leaving", b.key, ["tap1", "tap2", "tap3"])], told
