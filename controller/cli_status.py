"""Human-readable output of ``canopy status`` and the switch progress of ``canopy apply --wait``."""

from __future__ import annotations

import datetime
import sys
import time

POLL = 0.5  # seconds between polls of /v1/switches while waiting
SETTLED_POLLS = 2  # consecutive polls with nothing pending before the switches count as programmed


def render_status(reply: dict) -> str:
    """/v1/status as lines of text: durations and times readable, every key shown (new ones at the end)."""
    data = dict(reply)
    uptime = data.pop("uptime", None)
    lines = [f"Canopy {data.pop('version', '?')}, role {data.pop('role', '?')}"
             + (f", up {duration(uptime)} (since {when(time.time() - uptime)})" if uptime is not None else "")]
    counts = data.pop("counts", None) or {}
    objects = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(counts.items()) if n)
    lines.append(f"policy: seq {data.pop('seq', '?')}, {objects or 'no objects'}")
    switches = data.pop("switches", None)
    if isinstance(switches, dict):
        names = {"openflow": "OpenFlow", "ovsdb": "OVSDB"}
        lines.append("switches: " + ", ".join(f"{n} over {names.get(name, name)}" for name, n in sorted(switches.items())))
    if "vports_bound" in data:
        lines.append(f"vports bound: {data.pop('vports_bound')}")
    for key, value in sorted(data.items()):
        lines += _lines(key, value, "")
    return "\n".join(lines)


def _lines(key, value, indent):
    if isinstance(value, dict):
        out = [f"{indent}{key.replace('_', ' ')}:"]
        for k, v in sorted(value.items()):
            out += _lines(k, v, indent + "  ")
        return out
    if isinstance(value, float) and value > 1e9:  # an epoch time
        value = when(value)
    elif isinstance(value, list):
        value = ", ".join(_item(v) for v in value) or "none"
    elif value is None:  # JSON null: not Python's spelling of it
        value = "-"
    return [f"{indent}{key.replace('_', ' ')}: {value}"]


def _item(value) -> str:
    """One element of a list: a dict is its values in order (``{"kind": "vrs", "name": "hv1"}``: ``vrs hv1``)."""
    if isinstance(value, dict):
        return " ".join(str(v) for v in value.values())
    return str(value)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _progress(switches: list) -> tuple[int, int, str]:
    """(switches in sync, switches counted, the progress line) of /v1/switches' items: every VRS an OVSDB session
    names, one not connected over OpenFlow too (its flows cannot be programmed), not a bridge known over OpenFlow only
    (given nothing to program: docs/vrs.md)."""
    named = [i for i in switches if i.get("chassis")]
    syncs = [i["sync"] for i in named if i.get("sync")]
    unnamed = sum(1 for i in switches if i.get("sync") and not i.get("chassis"))
    done = sum(1 for s in syncs if not s.get("pending") and s.get("state") in ("in_sync", "standby"))
    pending = sum(s.get("pending") or 0 for s in syncs)
    line = f"programming switches: {done}/{len(named)} in sync, {pending} flow(s) pending"
    if len(named) > len(syncs):
        line += f", {len(named) - len(syncs)} not connected over OpenFlow"
    if unnamed:
        line += (f" ({unnamed} bridge{'s' if unnamed > 1 else ''} over OpenFlow only not counted: no OVSDB session "
                 f"names {'them' if unnamed > 1 else 'it'})")
    return done, len(named), line


def _refused(status: int, reply) -> str:
    """The progress line of a listing refused (no items: not "0/0 in sync")."""
    message = ((reply or {}).get("error") or {}).get("message") if isinstance(reply, dict) else None
    return f"programming switches: GET /v1/switches answered {status}" + (f" ({message})" if message else "")


def _held(status: dict) -> str:
    """What the controller's start-up hold waits for (/v1/status ``startup_hold``: nothing is handed to any switch
    while it lasts, controller/startup_hold.py), "" once it has ended."""
    hold = status.get("startup_hold") or {}
    return (hold.get("message") or "switches") if hold.get("state") == "syncing" else ""


def when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _poll(fetch) -> tuple[bool, str] | None:
    """(whether the switches are programmed, the progress line) of one poll; None if the controller was not reached."""
    status, reply = fetch("/v1/status")
    if status is None:
        return None
    held = _held(reply if status == 200 and isinstance(reply, dict) else {})
    status, reply = fetch("/v1/switches")
    if status is None:
        return None
    if status != 200:
        return False, _refused(status, reply)
    done, total, line = _progress((reply or {}).get("items", []))
    if held:
        return False, f"programming switches: held after the start ({held})"
    return done == total, line


def wait_programmed(fetch, timeout: float, clock=time.monotonic, sleep=time.sleep, out=sys.stderr) -> int:
    """Poll ``fetch(path)`` (-> (status, reply) of a GET of /v1/status, then of /v1/switches) until the start-up hold
    has ended and every VRS an OVSDB session names is connected over OpenFlow with nothing pending (``_progress``),
    printing progress when it changes; 0, 3 (unreachable) or 5 (timed out). After a restart the switches come back
    one by one and are handed nothing while the hold lasts: without it, a wait while none is back yet (or back over
    OpenFlow only) counted nothing to wait for."""
    deadline = clock() + timeout
    settled, last = 0, None
    while True:
        polled = _poll(fetch)
        if polled is None:
            return 3
        programmed, line = polled
        if line != last:
            print(f"canopy: {line}", file=out, flush=True)
            last = line
        settled = settled + 1 if programmed else 0
        if settled >= SETTLED_POLLS:
            return 0
        if clock() >= deadline:
            print(f"canopy: gave up after {timeout:g} s: {line}", file=out, flush=True)
            return 5
        sleep(POLL)
