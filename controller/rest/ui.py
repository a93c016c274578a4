"""Canopy Architect: the topology page's static files, served under /ui/ by the REST server (server.py).

The files hold no data: the page reads everything through the public /v1 API, under the API's own rules
(reads open from loopback, a bearer token otherwise, which the page asks for and sends itself). Only files
inside the packaged ``controller/ui`` folder can be served; anything else is a JSON 404.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ui"
PREFIX = "/ui"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8",
         ".LICENSE": "text/plain; charset=utf-8"}
# the page is self-contained: no script, style, image or connection from anywhere but this server
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class StaticReply:
    status: int
    content_type: str
    body: bytes
    headers: dict


def handles(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def serve(method: str, path: str) -> StaticReply:
    """The reply to ``method path`` for a path under /ui (see ``handles``)."""
    if method not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", f"{method} is not allowed here; use GET", {"Allow": "GET, HEAD"})
    if path == PREFIX:
        return StaticReply(301, "text/plain; charset=utf-8", b"", {"Location": PREFIX + "/"})
    rel = path[len(PREFIX) + 1:] or "index.html"
    target = _resolve(rel)
    if target is None:
        return _error(404, "not_found", f"no such file: {path}")
    body = target.read_bytes()
    cache = "no-cache" if target.suffix == ".html" else "max-age=300"
    return StaticReply(200, _content_type(target), b"" if method == "HEAD" else body,
                       {**SECURITY_HEADERS, "Cache-Control": cache})


def _resolve(rel: str) -> Path | None:
    """The file under ROOT that ``rel`` names, or None (missing, a folder, or outside ROOT)."""
    if "\\" in rel or "\x00" in rel or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    target = (ROOT / rel).resolve()
    if ROOT not in target.parents or not target.is_file() or _content_type(target) is None:
        return None
    return target


def _content_type(path: Path) -> str | None:
    return TYPES.get(path.suffix)


def _error(status, code, reason, headers=None) -> StaticReply:
    body = {"error": {"code": code, "message": reason, "reason": reason, "field": None}}
    return StaticReply(status, "application/json", (json.dumps(body, indent=1) + "\n").encode(), headers or {})
