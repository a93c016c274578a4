"""The one door to Ryu.

Ryu 4.34 is unmaintained and needs two workarounds on Python 3.11 (both documented in docs/ryu.md):

1. Installing it needs ``setuptools<58`` and ``PBR_VERSION=4.34`` (done by .ci/setup).
2. ``ryu.app.wsgi`` imports ``eventlet.wsgi.ALREADY_HANDLED``, removed from eventlet in 0.30.3; we put it
   back before Ryu is imported.

Every other Canopy module imports Ryu names from here, so a move to os-ken touches this file only.
"""

import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

import eventlet.wsgi  # noqa: E402

if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
    eventlet.wsgi.ALREADY_HANDLED = object()

from ryu.base import app_manager  # noqa: E402
from ryu.controller import ofp_event  # noqa: E402
from ryu.controller.handler import (  # noqa: E402
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from ryu.lib import hub  # noqa: E402
from ryu.ofproto import ofproto_v1_3  # noqa: E402

RyuApp = app_manager.RyuApp

__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "MAIN_DISPATCHER",
    "RyuApp",
    "hub",
    "ofp_event",
    "ofproto_v1_3",
    "set_ev_cls",
    "wsgi_classes",
    "run_manager",
]


def wsgi_classes():
    """Return (ControllerBase, WSGIApplication, route) from ryu.app.wsgi."""
    from ryu.app import wsgi

    return wsgi.ControllerBase, wsgi.WSGIApplication, wsgi.route


def run_manager(argv):
    """Run ryu-manager in this process with the given command-line arguments; returns its exit code."""
    from ryu.cmd import manager

    return manager.main(args=list(argv))
