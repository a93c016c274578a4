"""Who keeps a datapath id that two OpenFlow connections claim (DESIGN: switches are identified by chassis).

OpenFlow has no authentication of its own: any peer can send a features reply with a real switch's
datapath id. A second connection must not silently take the live session over (the first would then be
orphaned: shown disconnected and never programmed again). ``decide`` picks the session to keep:

1. The chassis whose OVSDB session reports that datapath id (its integration bridge) is the witness: a
   connection from the address of that OVSDB session beats one from elsewhere.
2. Otherwise (no such chassis yet, or both or neither from its address) the live session is kept while it
   answers an OpenFlow echo request within ``PROBE_TIMEOUT``; a session that does not answer (its switch
   restarted and reconnected before the old TCP connection timed out) gives way to the newcomer.

The loser's connection is closed and the conflict logged by the caller (controller/app.py).
"""

from __future__ import annotations

from controller.ryu_compat import probe_datapath

PROBE_TIMEOUT = 2.0  # seconds the live session has to answer an echo request


def peer(dp) -> str:
    """``ip:port`` of a datapath's connection."""
    return "%s:%s" % tuple(dp.address[:2]) if dp.address else "?"


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def chassis_of(state, dpid: int):
    """The VRS snapshot (OVSDB) whose integration bridge has datapath id ``dpid``, or None."""
    return next((snap for snap in state.vrs.values() if snap.datapath_id == dpid), None)


def decide(state, live_dp, new_dp, openflow_port: int) -> tuple[bool, str]:
    """(True to keep ``live_dp``'s session, else False to hand it to ``new_dp``; the reason, for the log)."""
    snap = chassis_of(state, new_dp.id)
    if snap is not None:
        host = _host(snap.peer)
        live_ok, new_ok = live_dp.address[0] == host, new_dp.address[0] == host
        connected = [t for t, up, _ in snap.controllers if up and t.endswith(f":{openflow_port}")]
        said = f"chassis {snap.chassis} reports over OVSDB from {host}" + \
            (f" (controller {', '.join(connected)} connected)" if connected else "")
        if live_ok != new_ok:
            return live_ok, said
    if probe_datapath(live_dp, PROBE_TIMEOUT):
        return True, "the live session answers echo requests"
    return False, f"the live session did not answer an echo request within {PROBE_TIMEOUT:g} s"
