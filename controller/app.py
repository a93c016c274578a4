"""The Ryu application: thin glue between Ryu's events and Canopy's State.

Handlers here only translate events into State changes (STYLE.md rule 1). The store, State, the policy
service, the REST API and the OVSDB manager listener are built once, from the Settings that
``canopy run`` parked in controller.runtime.
"""

from __future__ import annotations

import logging

from controller import runtime
from controller.core import build_core
from controller.rest import wsgi as rest_wsgi
from controller.rest.api import Api, Route, Response
from controller.ryu_compat import (
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    RyuApp,
    ofp_event,
    ofproto_v1_3,
    set_ev_cls,
)
from ovsdb.server import OvsdbManagerServer

log = logging.getLogger("canopy.app")


class CanopyApp(RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": rest_wsgi.WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = runtime.SETTINGS
        if settings is None:
            raise RuntimeError("start Canopy with 'canopy run', which passes its settings to this app")
        self.settings = settings
        self.store, self.state, self.service = build_core(settings)
        self.ovsdb = OvsdbManagerServer(settings.ovsdb_listen, settings.ovsdb_port, self.state,
                                        bridge=settings.bridge, log=logging.getLogger("canopy.ovsdb"))
        sessions = Route("GET", "/v1/ovsdb/sessions", self._ovsdb_sessions, "accepted OVSDB manager connections")
        self.api = Api(self.service, self.state, settings, extra_routes=[sessions])
        rest_wsgi.register(kwargs["wsgi"], self.api)
        counts = self.state.policy.counts()
        log.info("Canopy started: data %s, %s; OpenFlow %s:%d, OVSDB %s:%d, REST %s:%d",
                 settings.data_dir, ", ".join(f"{n} {k}s" for k, n in counts.items() if n) or "no policy yet",
                 settings.openflow_listen, settings.openflow_port, settings.ovsdb_listen, settings.ovsdb_port,
                 settings.rest_listen, settings.rest_port)

    def start(self):
        thread = super().start()
        self.ovsdb.start()
        return thread

    def stop(self):
        self.ovsdb.stop()
        self.store.close()
        super().stop()

    def _ovsdb_sessions(self, req):
        items = self.ovsdb.sessions()
        return Response(200, {"items": items, "count": len(items)})

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _datapath_state(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            peer = "%s:%s" % dp.address[:2] if dp.address else "?"
            self.state.datapath_up(dp.id, peer, conn=id(dp))
        elif ev.state == DEAD_DISPATCHER:
            self.state.datapath_down(dp.id, conn=id(dp))
