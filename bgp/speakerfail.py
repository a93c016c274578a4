"""Why Canopy's BGP speaker has no ExaBGP running: the reason an ExaBGP exited (``exit_reason``, from what it logged) or
an error raised while starting it (``one_line``), each one line for ``Speaker.status()`` and the log, and which
unexpected errors' tracebacks were logged already (``FirstTime``: once per distinct reason, at most one per LOG_EVERY
seconds, then one line).

Part of ``bgp.speaker``, apart so that module stays about the child process and the conversation with it.
"""

from __future__ import annotations

import os
import re
import time

from bgp.speakerconf import SpeakerConfig
from controller.loglimit import LOG_EVERY

TRACED_MAX = 32  # distinct reasons remembered; more (reasons that vary): forgotten, not grown
REASON_CHARS = 400  # of a reason: it is last_error, every peer's last_error, /v1/status degraded_reason, a log line

_LOG_LINE = re.compile(r"^\S+ \d+\s+\S+(?: \S+)?\s+(.*)$")  # "21:36:00 935    configuration   <message>"
_REJECTED = "could not load/reload configuration"


def exit_reason(returncode: int, config: SpeakerConfig, offsets: tuple[int, int]) -> str:
    """Why ExaBGP exited, for status() and the log: the configuration error it logged, if any (REASON_CHARS at most)."""
    return _clipped(_exit_reason(returncode, config, offsets))


def _exit_reason(returncode: int, config: SpeakerConfig, offsets: tuple[int, int]) -> str:
    if returncode < 0:
        return f"exabgp killed by signal {-returncode}"
    logged = [m.group(1).strip() for line in _new_lines(config.log_path, offsets[0])
              if (m := _LOG_LINE.match(line)) and m.group(1).strip()]
    if _REJECTED in logged:
        return "exabgp.conf rejected: " + " / ".join(logged[logged.index(_REJECTED) + 1:][:4])
    printed = [line.strip() for line in _new_lines(config.output_path, offsets[1]) if line.strip()]
    detail = (printed or logged or [""])[-1]
    return f"exabgp exited with status {returncode}" + (f": {detail}" if detail else "")


def _new_lines(path: str, offset: int) -> list[str]:
    """Lines appended to ``path`` since it was ``offset`` bytes long (at most its last 64 KiB)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset if offset <= size else 0, size - 65536))
            return handle.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def one_line(error: BaseException, named: bool = True) -> str:
    """``error`` as one line: its type's name (unless ``named`` is false) and the first line of its message (REASON_CHARS
    at most)."""
    detail = (str(error).splitlines() or [""])[0]
    if not named:
        return _clipped(detail)
    return _clipped(f"{type(error).__name__}: {detail}" if detail else type(error).__name__)


def _clipped(reason: str) -> str:
    """``reason`` cut to REASON_CHARS: ExaBGP's last line printed (a traceback's, quoting what a peer sent) or an
    error's message can be one line of any length (up to the 64 KiB read)."""
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS] + "... (cut)"


class FirstTime:
    """Reasons seen: ``first(reason)`` is True only the first time (a traceback is logged then, one line after), and
    at most once per LOG_EVERY seconds: a reason that varies (a counter or an id in an error's message) is new each
    time, and must not be a traceback each time. A reason refused for that is not remembered (traced later)."""

    def __init__(self, clock=time.monotonic):
        self._seen: set[str] = set()
        self._clock = clock
        self._last: float | None = None  # clock() when first() last said True

    def first(self, reason: str) -> bool:
        if reason in self._seen:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < LOG_EVERY:
            return False
        if len(self._seen) >= TRACED_MAX:
            self._seen.clear()
        self._seen.add(reason)
        self._last = now
        return True
