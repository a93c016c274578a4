"""The topology page's static files (controller/rest/ui.py) and the API fields the page relies on."""

import pytest

from controller.rest import ui

from .helpers import Controller, demo_net


@pytest.mark.parametrize("path, ctype", [("/ui/", "text/html"), ("/ui/index.html", "text/html"),
                                         ("/ui/architect.js", "text/javascript"), ("/ui/architect.css", "text/css"),
                                         ("/ui/vendor/cytoscape.min.js", "text/javascript")])
def test_the_page_and_its_files_are_served_with_their_types(path, ctype):
    reply = ui.serve("GET", path)
    assert reply.status == 200 and reply.content_type.startswith(ctype) and reply.body
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in reply.headers["Content-Security-Policy"]


def test_the_vendored_library_ships_with_its_licence():
    reply = ui.serve("GET", "/ui/vendor/cytoscape.LICENSE")
    assert reply.status == 200 and b"Permission is hereby granted" in reply.body


@pytest.mark.parametrize("path", ["/ui/../rest/api.py", "/ui/vendor/../../rest/ui.py", "/ui/./index.html",
                                  "/ui//index.html", "/ui/missing.js", "/ui/vendor", "/ui/vendor/",
                                  "/ui/index.html\x00.js", "/ui/..%2frest/api.py", "/ui/\\index.html"])
def test_nothing_outside_the_page_folder_or_missing_is_served(path):
    reply = ui.serve("GET", path)
    assert reply.status == 404 and reply.content_type == "application/json" and b'"not_found"' in reply.body


def test_head_has_no_body_other_methods_are_refused_with_allow():
    assert ui.serve("HEAD", "/ui/").status == 200 and ui.serve("HEAD", "/ui/").body == b""
    refused = ui.serve("POST", "/ui/index.html")
    assert refused.status == 405 and refused.headers["Allow"] == "GET, HEAD"


def test_ui_without_slash_redirects():
    reply = ui.serve("GET", "/ui")
    assert reply.status == 301 and reply.headers["Location"] == "/ui/"
    assert ui.handles("/ui") and ui.handles("/ui/x") and not ui.handles("/uix") and not ui.handles("/v1/ui")


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def test_status_state_version_moves_with_every_state_change(ctl):
    before = ctl.call("GET", "/v1/status")[1]["state_version"]
    demo_net(ctl)
    after = ctl.call("GET", "/v1/status")[1]["state_version"]
    assert after > before


def test_switches_carry_their_programming_status(ctl):
    # no VRS over OVSDB here: a switch known only over OpenFlow is listed with its reconciler's counts
    ctl.state.datapath_up(0xab, "192.0.2.1:5000", conn=1)
    assert ctl.call("GET", "/v1/switches")[1]["items"][0]["sync"] is None
    ctl.api.switch_status = lambda dpid, tick: {"state": "in_sync", "desired": 7, "installed": 7, "pending": 0,
                                          "rejected": 0, "sent": {"flow_mod": 3}} if dpid == 0xab else None
    item = ctl.call("GET", "/v1/switches")[1]["items"][0]
    assert item["sync"] == {"state": "in_sync", "desired": 7, "installed": 7, "pending": 0, "rejected": 0}
    assert ctl.call("GET", "/v1/switches/00000000000000ab")[1]["sync"]["state"] == "in_sync"
