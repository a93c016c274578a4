"""A tiny stand-in for Nova's API that records what Neutron tells it (run as a script).

``python -m tests.harness.fake_nova <port> <record file>``: every POST to ``/v2.1/os-server-external-events``
is appended to the record file as one JSON line per event (name, server_uuid, tag = port id, status) and
answered as Nova answers it; any other request gets an empty JSON object.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENTS_PATH = "/v2.1/os-server-external-events"


def handler_for(record_path: str):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/") != EVENTS_PATH:
                return self._reply(404, {"itemNotFound": {"message": self.path}})
            events = json.loads(raw or b"{}").get("events", [])
            with open(record_path, "a", encoding="utf-8") as out:
                for event in events:
                    out.write(json.dumps(event, sort_keys=True) + "\n")
            return self._reply(200, {"events": [{**e, "code": 200, "status": e.get("status", "completed")}
                                                for e in events]})

        def do_GET(self):  # noqa: N802
            return self._reply(200, {})

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-nova: " + fmt % args + "\n")

    return Handler


def main(argv=None) -> None:
    port, record_path = (argv or sys.argv[1:])[:2]
    ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(record_path)).serve_forever()


def read_events(record_path) -> list[dict]:
    try:
        with open(record_path, encoding="utf-8") as src:
            return [json.loads(line) for line in src if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    main()
