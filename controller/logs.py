"""Logging for Canopy's own loggers (named canopy.*), apart from Ryu's."""

import logging
import sys
import time

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup(level: str = "info"):
    root = logging.getLogger("canopy")
    root.setLevel(getattr(logging, level.upper()))
    if not any(getattr(h, "_canopy", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._canopy = True
        root.addHandler(handler)
    root.propagate = False
    return root


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
