"""Human-readable output of ``canopy status`` (the wait of ``canopy apply --wait``: controller/cli_wait.py)."""

from __future__ import annotations

import datetime
import time


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


def when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
