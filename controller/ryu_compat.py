"""The one door to Ryu.

Ryu 4.34 is unmaintained and needs two workarounds on Python 3.11 (both documented in docs/ryu.md):

1. Installing it needs ``setuptools<58`` and ``PBR_VERSION=4.34`` (done by .ci/setup).
2. ``ryu.app.wsgi`` imports ``eventlet.wsgi.ALREADY_HANDLED``, removed from eventlet in 0.30.3; we put it
   back before Ryu is imported.

Every other Canopy module imports Ryu names from here, so a move to os-ken touches this file only.
"""

import warnings

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")

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
from ryu.lib import hub, type_desc  # noqa: E402
from ryu.lib.packet import dhcp as pkt_dhcp  # noqa: E402
from ryu.lib.packet import ethernet as pkt_ethernet  # noqa: E402
from ryu.lib.packet import ipv4 as pkt_ipv4  # noqa: E402
from ryu.lib.packet import packet as pkt_packet  # noqa: E402
from ryu.lib.packet import udp as pkt_udp  # noqa: E402
from ryu.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3, ofproto_v1_4  # noqa: E402

RyuApp = app_manager.RyuApp

__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "MAIN_DISPATCHER",
    "RyuApp",
    "hub",
    "pkt_dhcp",
    "pkt_ethernet",
    "pkt_ipv4",
    "pkt_packet",
    "pkt_udp",
    "ofp_event",
    "ofproto_parser",
    "ofproto_protocol",
    "ofproto_v1_3",
    "ofproto_v1_4",
    "set_ev_cls",
    "type_desc",
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
