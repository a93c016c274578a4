"""Logging for Canopy's own loggers (named canopy.*), apart from Ryu's."""

import logging
import sys

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
