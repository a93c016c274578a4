"""A wall clock that a test can step, for every Python process started with this directory on PYTHONPATH and
``CANOPY_TEST_WALL_CLOCK_FILE`` set (the controller and its ExaBGP child inherit both): ``time.time`` and
``time.time_ns`` return the real wall clock plus the seconds the file holds (re-read at most every 0.1 s), as after
NTP or an operator stepped the host's clock. The monotonic clock is left alone, as a step leaves it. Without the
variable this module does nothing."""

import os
import time

_PATH = os.environ.get("CANOPY_TEST_WALL_CLOCK_FILE")

if _PATH:
    _real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
    _offset = [0.0, float("-inf")]  # seconds added, when to read the file next (monotonic)

    def _seconds_added() -> float:
        now = _monotonic()
        if now >= _offset[1]:
            try:
                with open(_PATH, encoding="ascii") as fh:
                    _offset[0] = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                pass
            _offset[1] = now + 0.1
        return _offset[0]

    time.time = lambda: _real_time() + _seconds_added()
    time.time_ns = lambda: _real_time_ns() + int(_seconds_added() * 1e9)
