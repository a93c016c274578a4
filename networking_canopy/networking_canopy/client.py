"""A small JSON client for Canopy's REST API (docs/rest.md), standard library only."""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

from networking_canopy import secretfile

LOG = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A ``[canopy]`` option that cannot be used; the message names the option and the reason."""


def token_from(token: str | None, token_file: str | None) -> str | None:
    """The REST token: ``[canopy] token``, else the content of ``token_file``, refused (ConfigError) as Canopy
    refuses its own token files (secretfile.py): a file other users can read, no regular file, a token that is no one
    HTTP header value (a NUL, a space, a second line)."""
    if token:
        problem = secretfile.token_problem(token)
        if problem:
            raise ConfigError(f"[canopy] token: {problem}")
        return token
    if not token_file:
        return None
    try:
        return secretfile.read_token("[canopy] token_file", token_file, reader="Neutron")
    except secretfile.Unusable as exc:
        raise ConfigError(str(exc)) from None


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context that trusts the CA certificates in ``[canopy] ca_file`` (None without one: the system's store);
    ConfigError naming the option when the file cannot be read, is no regular file (a FIFO there held the driver's
    start until a writer came) or holds no PEM certificate (it raised OSError or SSLError out of the driver's start,
    naming nothing)."""
    if not ca_file:
        return None
    try:
        # no FIFO or device is opened (the driver's start would wait on it), and ssl loads the file checked, not one
        # put at the path since (secretfile.checked_path)
        with secretfile.checked_path(ca_file) as checked:
            return ssl.create_default_context(cafile=checked)
    except ssl.SSLError as exc:  # an OSError too: first
        raise ConfigError(f"[canopy] ca_file: {ca_file} holds no PEM CA certificate ({exc.reason or exc})") from None
    except secretfile.NotRegular as exc:
        raise ConfigError(f"[canopy] ca_file: {exc}{secretfile.blocking_note(exc.kind, 'Neutron')}") from None
    except OSError as exc:
        raise ConfigError(f"[canopy] ca_file: cannot read {ca_file}: {exc.strerror or exc}") from None


class CanopyError(Exception):
    """Canopy refused a request (``status`` >= 400) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, code: str, reason: str, field: str | None = None):
        self.status, self.code, self.reason, self.field = status, code, reason, field
        where = f"{field}: " if field else ""
        super().__init__(f"Canopy {status} {code}: {where}{reason}")


class _TryAnother(Exception):
    """This controller did nothing with the request and another may take it: ``error`` if none does."""

    def __init__(self, error: CanopyError):
        self.error = error


class CanopyClient:
    """``url``: one controller, or the nodes of a redundant pair separated by commas. A request goes to the node
    that last answered; it goes to the next only when this one did nothing with it: no connection (refused,
    unreachable, connect timeout) or ``503 not_active`` (a standby refuses writes and changes nothing). A request
    sent whose answer is late is never sent again (it may have been applied).

    A node whose TLS handshake fails (most often its certificate, checked against ``[canopy] ca_file``) is passed
    over like one that refuses connections, with one warning naming it and the reason when it starts failing (or
    fails for another reason), not one per request, and one line when it answers again."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0, ca_file: str | None = None):
        self.bases = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        if not self.bases:
            raise ValueError(f"[canopy] url: no URL in {url!r}")
        self.current = 0  # index into bases of the node that last answered
        self.token = token
        self.timeout = timeout
        self.context = tls_context(ca_file)
        self.ca_source = f"[canopy] ca_file {ca_file}" if ca_file else "the system's CA store"
        self._tls_failing: dict[str, str] = {}  # node (base URL) -> why its TLS handshake fails, while it does
        self._tls_lock = threading.Lock()  # the API workers' threads, the watch and the sync share one client

    @property
    def base(self) -> str:
        return self.bases[self.current]

    def request(self, method: str, path: str, body=None, query: dict | None = None, timeout: float | None = None):
        first = self.current
        for step in range(len(self.bases)):
            index = (first + step) % len(self.bases)
            try:
                result = self._request_at(self.bases[index], method, path, body, query, timeout)
            except _TryAnother as exc:
                error = exc.error
                continue
            except CanopyError as exc:
                if exc.status:  # it answered (a refusal): the next request goes to it first as well
                    self.current = index
                raise
            self.current = index
            return result
        raise error

    def _request_at(self, base, method, path, body, query, timeout):
        url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout, context=self.context) as reply:
                self._tls_state(base, None)
                raw = reply.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            self._tls_state(base, None)
            error = _error(exc.code, _body(exc))
            if error.status == 503 and error.code == "not_active":
                raise _TryAnother(error) from None
            raise error from None
        except urllib.error.URLError as exc:  # before an answer could be read: refused, unreachable, TLS
            if isinstance(exc.reason, ssl.SSLError):
                self._tls_state(base, _tls_reason(exc.reason))
            raise _TryAnother(CanopyError(0, "unreachable", f"{method} {url}: {exc.reason}")) from None
        except (OSError, ValueError, http.client.HTTPException) as exc:  # sent, and the answer timed out, broke
            # off (IncompleteRead) or was no HTTP (BadStatusLine) or no JSON
            raise CanopyError(0, "unreachable", f"{method} {url}: {exc}") from None

    def _tls_state(self, base: str, failing: str | None) -> None:
        """Log a node's TLS handshake when it starts failing, fails for another reason, or succeeds again."""
        with self._tls_lock:
            before = self._tls_failing.get(base)
            if failing == before:
                return
            if failing is None:
                del self._tls_failing[base]
            else:
                self._tls_failing[base] = failing
        if failing is None:
            LOG.info("Canopy node %s: its TLS certificate is accepted again", base)
        else:
            then = ("requests go to the other nodes in [canopy] url" if len(self.bases) > 1 else
                    "requests to it fail")
            LOG.warning("Canopy node %s: TLS fails (%s; checked against %s): %s until it is accepted", base,
                        failing, self.ca_source, then)

    # one line each for what the driver does
    def get(self, path, **query):
        return self.request("GET", path, query=query or None)

    def items(self, collection, **query):
        return self.get(f"/v1/{collection}", **query)["items"]

    def create(self, collection, body):
        return self.request("POST", f"/v1/{collection}", body)

    def update(self, collection, obj_id, fields):
        return self.request("PATCH", f"/v1/{collection}/{urllib.parse.quote(obj_id)}", fields)

    def delete(self, collection, obj_id, cascade=False):
        query = {"cascade": "true"} if cascade else None
        return self.request("DELETE", f"/v1/{collection}/{urllib.parse.quote(obj_id)}", query=query)

    def watch_vports(self, since: int | None, wait: int, prefix: str):
        query = {"wait": str(wait), "prefix": prefix}
        if since is not None:
            query["since"] = str(since)
        return self.request("GET", "/v1/watch/vports", query=query, timeout=wait + self.timeout)


def _tls_reason(exc: ssl.SSLError) -> str:
    """Why a TLS handshake failed, in OpenSSL's words: the certificate check's message where there is one."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return str(exc.reason or exc)


def _body(exc: urllib.error.HTTPError) -> bytes:
    """A refusal's body, or what of it arrived before it broke off."""
    try:
        return exc.read()
    except (OSError, http.client.HTTPException) as broken:
        return getattr(broken, "partial", b"")


def _error(status: int, raw: bytes) -> CanopyError:
    try:
        err = json.loads(raw)["error"]
        return CanopyError(status, err.get("code", "?"), err.get("reason", ""), err.get("field"))
    except (ValueError, KeyError, TypeError):
        return CanopyError(status, "http", raw[:200].decode("utf-8", "replace"))
