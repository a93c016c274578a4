"""Only the ``ovsdb.idl`` package imports the ``ovs`` library (Open vSwitch's Python IDL, pinned at 4.0.0): its
quirks and the hacks around them stay in one place (ovsdb/idl/__init__.py). ``ovsdb`` is Canopy's own package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "ovsdb", "openflow", "bgp")
DOOR = ROOT / "ovsdb" / "idl"


def _ovs_imports(path: Path) -> list[str]:
    """The ``ovs`` modules ``path`` imports (absolute imports only: a relative one stays in Canopy)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [name for name in names if name == "ovs" or name.startswith("ovs.")]
    return found


def _modules(under: Path):
    return sorted(under.rglob("*.py"))


def test_no_module_outside_ovsdb_idl_imports_ovs():
    outside = [path for package in PACKAGES for path in _modules(ROOT / package) if DOOR not in path.parents]
    offenders = {str(path.relative_to(ROOT)): names for path in outside if (names := _ovs_imports(path))}
    assert offenders == {}, "only ovsdb/idl/ may import the ovs library: %s" % offenders


def test_the_scan_sees_the_imports_of_ovsdb_idl():
    """The scan above would pass vacuously if it missed every import: it finds those of the door itself."""
    assert {name for path in _modules(DOOR) for name in _ovs_imports(path)} >= {"ovs.db.idl", "ovs.jsonrpc"}
