"""The View's indexes kept by a live View (controller/derive.py ``View``: ``_on``, ``_holders``, ``_sessions``,
``_datapaths``, ``_dom_subnets``) are private to the View and the modules that keep it (controller/derive.py,
controller/view*.py): every other module asks the View's public methods (``endpoint_ids_on``,
``session_of_datapath``, ``subnets_on``, ``vteps_of``, ...), which answer for a View derived from scratch as well.
openflow/gateway_garp.py read ``view._sessions`` (stop 42); walked in every module's source here."""

from __future__ import annotations

import ast
import pathlib

from controller.derive import SwitchInfo, View
from tests.unit.test_takeover_cost import world

PRIVATE = {"_on", "_holders", "_sessions", "_datapaths", "_dom_subnets"}
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _names_a_view(node) -> bool:
    """``view``, ``v``, ``self.view``, ``programmer.view``, ...: what the code calls a View."""
    return (isinstance(node, ast.Name) and node.id in ("view", "v")) or \
        (isinstance(node, ast.Attribute) and node.attr == "view")


def test_no_module_but_the_views_own_reads_a_views_private_indexes():
    readers = []
    for package in ("controller", "openflow", "bgp", "ovsdb"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.parent.name == "controller" and (path.name == "derive.py" or path.name.startswith("view")):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in PRIVATE and _names_a_view(node.value):
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert readers == []


def test_the_public_accessors_answer_for_a_live_view_and_one_derived_from_scratch(monkeypatch):
    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    _state, prog = world(3)
    live, fresh = prog.view, prog.derive()
    for session in live.switches:
        own = {eid for eid, ep in live.endpoints.items() if ep.session == session}
        assert own and live.endpoint_ids_on(session) == own
        assert fresh.endpoint_ids_on(session) is None  # (no index: the caller walks the endpoints)
    assert live.endpoint_ids_on("nowhere") == set()
    bare = View(switches={"s1": SwitchInfo("s1", 7, "hv1", None, None)})
    assert bare.session_of_datapath(7) == "s1" and bare.session_of_datapath(8) is None
