"""One log stream for everything in the process: Canopy's loggers, Ryu's and eventlet's WSGI server.

A single handler on the root logger writes either text (``FORMAT``) or JSON lines (one object per line:
time, level, logger, message, and exc when there is a traceback); the root logger's level is the one
level of every logger (``log_level``; changed at run time with ``set_level``: REST PUT /v1/log-level or
SIGHUP). eventlet's chatter ("(pid) accepted ...", "wsgi starting up/exiting") is demoted to debug, and
its access lines are dropped: Canopy writes its own (logger canopy.rest.access, without the query string).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("text", "json")
# loggers that carry eventlet's WSGI server output (Ryu's wrapper logs it as ryu.lib.hub)
_WSGI_LOGGERS = ("ryu.lib.hub", "canopy.rest.access", "eventlet.wsgi", "eventlet")
_EVENTLET_ACCESS = re.compile(r'^\S+ - - \[[^\]]*\] "')
_EVENTLET_CHATTER = re.compile(r"^(\(\d+\) )?(accepted |wsgi starting up|wsgi exit|connection reset|timed out)"
                               r"|^\d+ RLock\(s\) were not greened")  # Ryu patches threads after its imports


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
               .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _WsgiNoise(logging.Filter):
    """eventlet's access lines dropped, its connection chatter demoted to debug (module docstring)."""

    def filter(self, record):
        if record.levelno < logging.getLogger().level and not getattr(record, "announce", False):
            # a logger outside the tree (eventlet makes such) skips the level check of the tree
            return False
        if record.name not in _WSGI_LOGGERS:
            return True
        message = record.getMessage()
        if _EVENTLET_ACCESS.match(message):
            return False
        if _EVENTLET_CHATTER.match(message):
            if logging.getLogger().level > logging.DEBUG:
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def setup(level: str = "info", fmt: str = "text", stream=None):
    """Send every logger's records through one handler in ``fmt`` at ``level``; safe to call again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_canopy", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT))
    handler.addFilter(_WsgiNoise())
    handler._canopy = True
    root.addHandler(handler)
    logging.lastResort = handler  # records of loggers outside the tree come here too
    canopy = logging.getLogger("canopy")
    for old in [h for h in canopy.handlers if getattr(h, "_canopy", False)]:
        canopy.removeHandler(old)
    canopy.setLevel(logging.NOTSET)
    canopy.propagate = True
    set_level(level)
    logging.captureWarnings(True)
    return canopy


def set_level(level: str) -> str:
    """Set the one level of every logger; returns the previous one's name."""
    previous = current_level()
    logging.getLogger().setLevel(LEVELS[level])
    return previous


def current_level() -> str:
    value = logging.getLogger().level
    return next((name for name, number in LEVELS.items() if number == value), logging.getLevelName(value).lower())


def announce(logger: logging.Logger, msg: str, *args) -> None:
    """Log an operator's action (a level change, a reload) at info whatever the level: it is never lost."""
    record = logger.makeRecord(logger.name, logging.INFO, "(canopy)", 0, msg, args, None)
    record.announce = True
    logger.handle(record)


class Throttle:
    """A logger for bad input that may repeat: each ``key`` is logged at most once per ``interval``
    seconds; the next line says how many were held back meanwhile. At most ``max_keys`` keys are
    remembered (the oldest are forgotten), so garbage that keeps changing cannot grow memory."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_keys: int = 1024, clock=None):
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock or time.monotonic
        self._keys: dict = {}  # key -> [last logged at, held back since]

    def log(self, level: int, key, msg: str, *args) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval`` ago; True if logged."""
        now = self._clock()
        seen = self._keys.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        held = seen[1] if seen is not None else 0
        self._keys.pop(key, None)
        self._keys[key] = [now, 0]
        while len(self._keys) > self.max_keys:
            del self._keys[next(iter(self._keys))]
        if held:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, held, now - seen[0])
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key, msg: str, *args) -> bool:
        return self.log(logging.WARNING, key, msg, *args)
