"""Serve controller.rest.api.Api through ryu-manager's WSGI server (ryu.app.wsgi).

One catch-all route hands every request to the framework-free Api, so routing, errors and the OpenAPI
document live in one place and unknown paths still get JSON errors. Paths under /ui are the topology page's
static files (controller/rest/ui.py).
"""

from __future__ import annotations

import webob

from controller.rest import ui
from controller.rest.api import Request
from controller.ryu_compat import wsgi_classes

ControllerBase, WSGIApplication, route = wsgi_classes()

API_KEY = "canopy_api"


class RestController(ControllerBase):
    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.api = data[API_KEY]

    @route("canopy", "/{path:.*}", requirements={"path": ".*"})
    def dispatch(self, req, path=None):
        if ui.handles(req.path_info or "/"):
            page = ui.serve(req.method, req.path_info)
            out = webob.Response(status=page.status, body=page.body, content_type=page.content_type)
            out.headers.update(page.headers)
            return out
        request = Request(method=req.method, path=req.path_info or "/",
                          query={k: v for k, v in req.GET.items()},
                          headers={k.lower(): v for k, v in req.headers.items()},
                          body=req.body if req.content_length else b"",
                          remote=req.remote_addr or "")
        resp = self.api.handle(request)
        out = webob.Response(status=resp.status, body=resp.encoded())
        out.headers["Content-Type"] = resp.content_type if resp.content_type != "application/json" \
            else "application/json; charset=UTF-8"
        for name, value in resp.headers.items():
            out.headers[name] = value
        return out


def register(wsgi_app, api):
    wsgi_app.register(RestController, {API_KEY: api})
