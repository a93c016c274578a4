"""Canopy names of the objects Neutron made: ``os-`` + the Neutron id (mapping's module docstring)."""

from __future__ import annotations

import re

PREFIX = "os-"
_NAME = re.compile(r"^os-[0-9a-fA-F-]{1,60}$")


def name_of(neutron_id: str) -> str:
    return PREFIX + neutron_id


def neutron_id(name: str) -> str | None:
    """The Neutron id in a name this driver made, None for any other name."""
    return name[len(PREFIX):] if isinstance(name, str) and _NAME.match(name) else None
