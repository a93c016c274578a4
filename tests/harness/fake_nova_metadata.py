"""A stand-in for Nova's metadata API that checks what Nova checks (run as a script, or ``serve`` in a thread).

``python -m tests.harness.fake_nova_metadata <address> <port> <secret file> <instances file>``: the instances file
is JSON ``{instance id: {"project_id": ..., "name": ...}}``. Like Nova's handler for instance id requests
(nova/api/metadata/handler.py), a request without X-Instance-ID, X-Tenant-ID or X-Forwarded-For is refused (400),
one whose X-Instance-ID-Signature is not HMAC-SHA256(secret, instance id) in hex gets 403, an unknown instance or
a tenant that is not the instance's project 404. Otherwise ``/latest/meta-data/instance-id`` answers the instance
id and ``/openstack/latest/meta_data.json`` a JSON document with the instance's uuid, name, project and the
X-Forwarded-For it was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler_for(secret: bytes, instances: dict):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: bytes, ctype="text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's name)
            iid, tenant = self.headers.get("X-Instance-ID"), self.headers.get("X-Tenant-ID")
            remote, signature = self.headers.get("X-Forwarded-For"), self.headers.get("X-Instance-ID-Signature", "")
            if not (iid and tenant and remote):
                return self._reply(400, b"X-Instance-ID, X-Tenant-ID and X-Forwarded-For are required\n")
            expected = hmac.new(secret, iid.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, signature):
                return self._reply(403, b"Invalid proxy request signature.\n")
            instance = instances.get(iid)
            if instance is None or instance["project_id"] != tenant:
                return self._reply(404, b"instance not found or tenant mismatch\n")
            if self.path == "/latest/meta-data/instance-id":
                return self._reply(200, iid.encode())
            if self.path == "/openstack/latest/meta_data.json":
                doc = {"uuid": iid, "name": instance.get("name", ""), "project_id": tenant, "forwarded_for": remote}
                return self._reply(200, json.dumps(doc).encode(), "application/json")
            return self._reply(404, b"no such metadata\n")

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-nova-metadata: " + fmt % args + "\n")

    return Handler


def serve(address: str, port: int, secret: bytes, instances: dict) -> ThreadingHTTPServer:
    """Serve in a daemon thread; returns the server (``shutdown()`` it)."""
    server = ThreadingHTTPServer((address, port), handler_for(secret, instances))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv=None) -> None:
    address, port, secret_file, instances_file = (argv or sys.argv[1:])[:4]
    with open(secret_file, "rb") as src:
        secret = src.read().strip()
    with open(instances_file, encoding="utf-8") as src:
        instances = json.load(src)
    ThreadingHTTPServer((address, int(port)), handler_for(secret, instances)).serve_forever()


if __name__ == "__main__":
    main()
