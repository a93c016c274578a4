"""``canopy apply --wait``: wait until every switch holds the policy seq the apply answered (docs/operations.md
"Waiting for the switches").

Each poll reads GET /v1/status (the role, the start-up hold, the store's seq), GET /v1/switches, whose items say
per switch ``sync.programmed_seq``: the newest policy seq that switch is known to hold (controller/programmed.py), and
GET /v1/vteps (``programmed_seq`` per hardware VTEP). A switch counts when an OVSDB session names it (a bridge over
OpenFlow only is handed nothing: docs/vrs.md); it is done when its programmed seq is the apply's or newer and it
refused nothing. The wait ends with 0 at the first poll where every counted switch is done (an apply that changed
nothing: at once, if the switches hold its seq already); with 5 when ``--wait-timeout`` passes first, or at once when
the only switches behind are those holding the seq but refusing flows (nothing retries them until the desired state
changes), naming each switch behind and why; with 3 when the controller could not be reached at the deadline (it is
polled again until then: it may be restarting, and the seq, the store's, survives that and an HA takeover).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

POLL = 0.5  # seconds between polls while waiting
SWITCHES = "/v1/switches?ports=false"  # the switches without their ports: a poll's work not that of every port (a
# controller before stop 50 ignores the parameter)
NAMED = 4  # switches behind named in a progress line (the rest counted); the final line names them all
EXIT_OK, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 3, 5  # (controller/cli.py's)


@dataclass
class Poll:
    """One poll's verdict: ``done``, ``total`` switches counted; ``behind``: (switch, why) of those not done;
    ``refused``: those holding the seq but refusing flows; ``note``: why nothing can be counted (held, standby);
    ``aside``: what else the controller says (its programming passes failing), which ends no wait."""
    done: int = 0
    total: int = 0
    behind: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    note: str = ""
    unnamed: int = 0
    aside: str = ""

    @property
    def finished(self) -> bool:
        return not self.note and not self.behind and not self.refused

    def line(self, seq: int, named: int | None = NAMED) -> str:
        if self.note:
            return f"programming seq {seq}: {self.note}"
        line = f"programming seq {seq}: {self.done}/{self.total} switch(es) hold it"
        lagging = self.behind + self.refused
        if lagging:
            shown = lagging if named is None else lagging[:named]
            line += "; " + "; ".join(f"{name}: {why}" for name, why in shown)
            if len(lagging) > len(shown):
                line += f"; {len(lagging) - len(shown)} more behind"
        if self.unnamed:
            line += (f" ({self.unnamed} bridge{'s' if self.unnamed > 1 else ''} over OpenFlow only not counted: no "
                     f"OVSDB session names {'them' if self.unnamed > 1 else 'it'})")
        return line + (f"; {self.aside}" if self.aside and not self.finished else "")


def wait_programmed(fetch, timeout: float, seq: int, clock=time.monotonic, sleep=time.sleep, out=sys.stderr) -> int:
    """Poll ``fetch(path)`` (-> (status, reply), status None: not reached) until every switch holds ``seq`` (module
    docstring), printing the progress line when it changes; 0, 3 or 5."""
    deadline = clock() + timeout
    last = None
    while True:
        polled = poll(fetch, seq)
        line = polled.line(seq) if polled is not None else \
            f"programming seq {seq}: the controller cannot be reached (restarting?): asking again"
        if line != last:
            print(f"canopy: {line}", file=out, flush=True)
            last = line
        if polled is not None and polled.finished:
            return EXIT_OK
        if polled is not None and polled.refused and not polled.behind and not polled.note:
            print(f"canopy: {polled.line(seq, None)}: refused flows are not sent again until the desired state "
                  "changes (GET /v1/switches/DPID/flows names the errors)", file=out, flush=True)
            return EXIT_TIMEOUT
        if clock() >= deadline:
            final = polled.line(seq, None) if polled is not None else "the controller cannot be reached"
            print(f"canopy: gave up after {timeout:g} s: {final}", file=out, flush=True)
            return EXIT_TIMEOUT if polled is not None else EXIT_UNREACHABLE
        sleep(POLL)


def poll(fetch, seq: int) -> Poll | None:
    """One poll's verdict; None if the controller was not reached."""
    status, reply = fetch("/v1/status")
    if status is None:
        return None
    said = reply if status == 200 and isinstance(reply, dict) else {}
    note, aside = _status_note(said, seq), _failing(said)
    status, listing = fetch(SWITCHES)
    if status is None:
        return None
    if status != 200:
        return Poll(note=note or _refused(status, listing))
    verdict = Poll(note=note, aside=aside)
    for item in (listing or {}).get("items", []):
        _count(verdict, item, seq)
    status, vteps = fetch("/v1/vteps")
    if status is None:
        return None
    if status != 200:
        return Poll(note=note or _refused(status, vteps, "/v1/vteps"))
    for item in (vteps or {}).get("items", []):
        _count_vtep(verdict, item, seq)
    return verdict


def _status_note(status: dict, seq: int) -> str:
    """Why no switch can hold ``seq`` now, from /v1/status: "" if none."""
    if status.get("role") == "standby":
        return "the controller answering is the HA standby, which programs nothing (asking again: the active answers " \
               "here after a takeover)"
    hold = status.get("startup_hold") or {}
    if hold.get("state") == "syncing":
        return f"held after the start ({hold.get('message') or 'switches'})"
    if isinstance(status.get("seq"), int) and status["seq"] < seq:
        return f"the controller answering holds policy up to seq {status['seq']} only (another node, or a store " \
               "restored from an older backup)"
    return ""


def _failing(status: dict) -> str:
    """The controller's programming passes failing (/v1/status ``programming``), "" if they do not."""
    programming = status.get("programming") or {}
    if programming.get("state") == "degraded":
        return f"programming passes fail ({programming.get('reason')}): the switches keep their last good state"
    return ""


def _count(verdict: Poll, item: dict, seq: int) -> None:
    sync, name = item.get("sync"), item.get("chassis")
    if not name:
        verdict.unnamed += 1 if sync else 0
        return
    verdict.total += 1
    if not sync:
        verdict.behind.append((name, "not connected over OpenFlow (it cannot be programmed until it connects)"))
        return
    have = sync["programmed_seq"] if "programmed_seq" in sync else _old_style(sync, seq)
    if have is not None and have >= seq:
        if sync.get("rejected"):
            verdict.refused.append((name, f"holds seq {have} but refused {sync['rejected']} flow(s)"))
        else:
            verdict.done += 1
        return
    verdict.behind.append((name, _why(sync, have)))


def _count_vtep(verdict: Poll, item: dict, seq: int) -> None:
    """A hardware VTEP an OVSDB session serves (one only bound in policy is not counted, as a VRS no session names);
    not by a controller older than ``programmed_seq``."""
    if not item.get("connected") or "programmed_seq" not in item:
        return
    verdict.total += 1
    have = item["programmed_seq"]
    if have is not None and have >= seq:
        verdict.done += 1
        return
    held = f"holds seq {have}" if have is not None else "holds no seq yet on this connection"
    verdict.behind.append((f"hardware VTEP {item.get('name')}", f"its rows are still being written ({held}; "
                           "GET /v1/ovsdb/sessions: its state, conflicts and waits)"))


def _old_style(sync: dict, seq: int) -> int | None:
    """A controller older than ``programmed_seq``: in sync with nothing pending counts as holding ``seq``."""
    return seq if sync.get("state") in ("in_sync", "standby") and not sync.get("pending") else None


WHY = {"connected": "connected, not read back yet", "reading": "being read back",
       "waiting": "given no desired state yet (its OVSDB report is still being taken)",
       "standby": "held: this controller is not the active one", "error": "a round failed (it is read back again)",
       "not_master": "refused: the switch says this controller is not its master", "stopped": "disconnecting"}


def _why(sync: dict, have: int | None) -> str:
    state = sync.get("state")
    held = f"holds seq {have}" if have is not None else "holds no seq yet on this connection"
    if state in WHY:
        return f"{WHY[state]} ({held})"
    pending = sync.get("pending") or 0
    return f"still programming ({held}, {pending} flow(s) pending)" if pending else f"still programming ({held})"


def _refused(status: int, reply, path: str = "/v1/switches") -> str:
    """Why a poll counts nothing: the listing refused (no items: not "0/0")."""
    message = ((reply or {}).get("error") or {}).get("message") if isinstance(reply, dict) else None
    return f"GET {path} answered {status}" + (f" ({message})" if message else "")
