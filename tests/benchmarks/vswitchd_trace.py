"""ovs-vswitchd's own timeline of a port_to_ping sample: when it added the port and when it read and answered the
controller's change sets (``port_to_ping --vswitchd-trace``).

The controller's log says when a change set was sent and confirmed; only ovs-vswitchd knows when its main
loop got to reading it. This switches on, for the sampling of a round, millisecond timestamps on
ovs-vswitchd's console log (which the lab writes to ``ovs-vswitchd.log``) and the ``vconn`` module's debug
lines (every OpenFlow message received and sent), and reads back, per Canopy sample of kvm1:

- ``added interface``: the bridge's INFO line for the sample's port (in ``bridge_reconfigure``, while the main
  loop is adding it: no OpenFlow message is read meanwhile);
- ``port status sent``: the OFPT_PORT_STATUS (reason ADD) announcing the port to the controller, sent from inside
  that reconfiguration (the ofport reaches OVSDB only when it has ended);
- per bundle of the controller in the sample's window: when ovs-vswitchd read its OPEN and when it sent the
  COMMIT reply (its ``bundle_id``).

Debug logging costs ovs-vswitchd a little CPU per message (a few dozen per sample), so the samples of a traced
round are not figures to compare with untraced ones.
"""

from __future__ import annotations

import re
from datetime import datetime

PATTERN = "%D{%Y-%m-%d %H:%M:%S.###}|%c|%p|%m"
PLAIN = "%D{%Y-%m-%dT%H:%M:%SZ}|%05N|%c|%p|%m"  # OVS's console default
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\|")
_OPEN = re.compile(r"received: OFPT_BUNDLE_CONTROL .*bundle_id=(0x[0-9a-f]+) type=OPEN_REQUEST")
_COMMIT = re.compile(r"sent \(Success\): OFPT_BUNDLE_CONTROL .*bundle_id=(0x[0-9a-f]+) type=COMMIT_REPLY")


def start(hv) -> int:
    """Timestamps in ms and vconn debug lines on ``hv``'s ovs-vswitchd; the log's size (read from there)."""
    hv.ovs.appctl("vlog/set", f"PATTERN:console:{PATTERN}")
    hv.ovs.appctl("vlog/set", "vconn:console:dbg")
    return _log(hv).stat().st_size


def stop(hv, offset: int) -> list[str]:
    """Back to OVS's console defaults; the log lines written since ``start``."""
    hv.ovs.appctl("vlog/set", "vconn:console:info")
    hv.ovs.appctl("vlog/set", f"PATTERN:console:{PLAIN}")
    with open(_log(hv), "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def _log(hv):
    return hv.ovs.rundir / "ovs-vswitchd.log"


def stamp(line: str) -> float | None:
    m = _STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else None


def entries(lines: list[str]) -> list[tuple[float, str]]:
    """(timestamp, text) per log entry: OVS prints a message's body on lines of their own, without a stamp."""
    out: list[tuple[float, str]] = []
    for line in lines:
        at = stamp(line)
        if at is not None:
            out.append((at, line))
        elif out:
            out[-1] = (out[-1][0], f"{out[-1][1]} {line.strip()}")
    return out


def sample_timeline(logged: list[tuple[float, str]], port: str, wall: float, first: float) -> dict[str, float]:
    """ovs-vswitchd's events (``entries``) for one sample (add-port at ``wall``, reply ``first`` s later), in
    seconds from the add-port: ``added interface``, ``port status sent``, and for the first and last bundle in
    the window ``bundle N read`` and ``bundle N committed`` (N: 1 for the first, 2 for the last, when they
    differ)."""
    out: dict[str, float] = {}
    opened: dict[str, float] = {}
    committed: dict[str, float] = {}
    for at, line in logged:
        if not -0.002 <= at - wall <= first + 0.002:
            continue
        t = at - wall
        if f"added interface {port} " in line:
            out.setdefault("added interface", t)
        elif "sent (Success): OFPT_PORT_STATUS" in line and f"({port})" in line and "ADD:" in line:
            out.setdefault("port status sent", t)
        elif m := _OPEN.search(line):
            opened.setdefault(m.group(1), t)
        elif m := _COMMIT.search(line):
            committed.setdefault(m.group(1), t)
    bundles = [b for b in opened if b in committed]
    for n, bundle in ((1, bundles[0] if bundles else None), (2, bundles[-1] if len(bundles) > 1 else None)):
        if bundle is not None:
            out[f"bundle {n} read"] = opened[bundle]
            out[f"bundle {n} committed"] = committed[bundle]
    return out
