"""How a ``canopy`` command reaches a running controller: its REST address, its two tokens, its CA, one request.

The write token (``--token``, else ``--config``'s ``rest.token`` or token file, else ``CANOPY_TOKEN``, else the default
data directory's ``rest-token``) and the read-only token (``--read-token``, else ``--config``'s ``rest.read_token`` or
``rest.read_token_file``, else ``CANOPY_READ_TOKEN``; none by default) are found the same way. A read (``GET``, and
``POST /v1/trace``) sends the read-only token when one was found, else the write token; a write sends the write
token, else the read-only one, which the controller refuses ``403 read_only_token``: ``refusal_hint`` then names the
read-only token and where the write token comes from (docs/rest.md#authentication).
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

from controller import secretfile, yamldoc
from controller import settings as settings_mod

DEFAULT_URL = "http://127.0.0.1:8080"  # a controller with the default settings, on this host
GIVE_WRITE = "give --config with the controller's settings file, or --token (CANOPY_TOKEN)"
GIVE_READ = "or, for reads, --read-token (CANOPY_READ_TOKEN)"


def seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0 (``--timeout -1`` reached urllib as "ValueError: Timeout value
    out of range"; ``nan`` or ``inf`` never ended a wait)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def add_arguments(cmd) -> None:
    """The options of every command that talks to a running controller."""
    cmd.add_argument("--url", help="controller REST base URL (default: the REST address of --config's settings, "
                     f"else env CANOPY_URL, else {DEFAULT_URL})")
    cmd.add_argument("--token", help="bearer token (default: the REST token of --config's settings, else env "
                     "CANOPY_TOKEN, else the default data directory's rest-token)")
    cmd.add_argument("--read-token", help="the read-only token (rest.read_token), sent with reads (default: the "
                     "read-only token of --config's settings, else env CANOPY_READ_TOKEN); without one, reads send "
                     "the token")
    cmd.add_argument("--config", help="the controller's settings: talk to its REST address with its tokens")
    cmd.add_argument("--ca-file", help="CA certificate(s) (PEM) an https:// controller's certificate must be signed by "
                     "(default: env CANOPY_CA_FILE, else the system's CA store or SSL_CERT_FILE)")
    cmd.set_defaults(remote=True)


def resolve(args) -> str | None:
    """Fill in ``args.url``, ``args.token`` and ``args.read_token`` (with ``token_from``, ``read_token_from``: where
    each came from, or why there is none): each given on the command line, else what ``--config FILE`` configures,
    else the environment's (CANOPY_URL, CANOPY_TOKEN, CANOPY_READ_TOKEN), else the default address and the token of
    the default data directory. ``args.tls`` is the client TLS context of ``--ca-file`` (else env CANOPY_CA_FILE;
    not the settings' tls.ca_cert: that is the CA of the switches' certificates), None for the system's CA store.
    Returns why the settings file, the CA file or a token cannot be used (a token is one HTTP header value, as the
    controller's: secretfile.token_problem; nothing is sent then), or None."""
    settings = None
    if args.config:
        try:
            settings = settings_mod.load(args.config)
        except (settings_mod.SettingsError, yamldoc.DocError) as exc:
            return f"--config: {exc}"
    ca_file, where = ((args.ca_file, "--ca-file") if args.ca_file else
                      (os.environ.get("CANOPY_CA_FILE"), "CANOPY_CA_FILE"))
    args.tls, problem = client_tls(ca_file, where)
    if problem:
        return problem
    if not args.url:
        args.url = (rest_url(settings) if settings else None) or os.environ.get("CANOPY_URL") or DEFAULT_URL
    try:
        _settings_tokens(args, settings)
    except _Refused as exc:
        return str(exc)
    if not args.read_token and os.environ.get("CANOPY_READ_TOKEN"):
        args.read_token = os.environ["CANOPY_READ_TOKEN"]
        args.read_token_from = "the read-only token of CANOPY_READ_TOKEN"
    for token, source in ((args.token, args.token_from), (args.read_token, args.read_token_from)):
        problem = token and secretfile.token_problem(token)  # a newline in a header raised a traceback
        if problem:
            return f"{source}: {problem}"
    return None


def _settings_tokens(args, settings) -> None:
    """The tokens ``resolve`` takes from ``--config``'s settings (else the built-in ones) and CANOPY_TOKEN; _Refused
    names a token file there that cannot be used (``_settings_token``)."""
    args.token_from = "the token given by --token" if args.token else "no token"
    if not args.token and settings is not None:
        args.token, args.token_from = _write_token(settings, args.config)
    if not args.token and os.environ.get("CANOPY_TOKEN"):
        args.token, args.token_from = os.environ["CANOPY_TOKEN"], "the token of CANOPY_TOKEN"
    elif not args.token and settings is None:
        args.token, args.token_from = _write_token(settings_mod.load(None), "the built-in settings")
    args.read_token_from = "the read-only token given by --read-token" if args.read_token else "no read-only token"
    if not args.read_token and settings is not None and (settings.rest_read_token or settings.rest_read_token_file):
        args.read_token, args.read_token_from = _settings_token(
            settings.rest_read_token, settings.rest_read_token_file, "rest.read_token", "read-only token", args.config)


class _Refused(Exception):
    """A token file that is there and cannot be used: the message names it and why (nothing is sent)."""


def client_tls(path, where) -> tuple:
    """(an ssl.SSLContext that trusts only the CA certificates in ``path``, or None without a path; why the file cannot
    be used, naming ``where`` it came from, or None)."""
    if not path:
        return None, None
    try:
        with secretfile.checked_path(path) as checked:  # a FIFO there held the CLI until a writer came; ssl loads
            return ssl.create_default_context(cafile=checked), None  # the file checked, not one put there since
    except secretfile.NotRegular as exc:
        return None, f"{where}: {exc}{secretfile.blocking_note(exc.kind, 'the CLI')}"
    except ssl.SSLError as exc:  # an OSError too: first
        return None, f"{where}: {path} holds no PEM CA certificate ({exc.reason or exc})"
    except OSError as exc:
        return None, f"{where}: cannot read {path}: {exc.strerror or exc}"


def rest_url(settings) -> str:
    """Where a client on the controller's host reaches the REST API these settings serve: https with the tls
    section, the listen address (loopback when it listens on every address) and the port."""
    host = ipaddress.ip_address(settings.rest_listen)
    if host.is_unspecified:
        host = ipaddress.ip_address("::1" if host.version == 6 else "127.0.0.1")
    name = f"[{host}]" if host.version == 6 else str(host)
    return f"{'https' if settings.rest_tls else 'http'}://{name}:{settings.rest_port}"


def _write_token(settings, where: str) -> tuple:
    return _settings_token(settings.rest_token, settings.rest_token_file, "rest.token", "token", where)


def _settings_token(inline, path, key: str, kind: str, where: str) -> tuple:
    """(a REST token the settings give (``key`` inline, or the content of the file ``path``), or None; where it came
    from or why there is none: a refusal then names where the command looked, ``refusal_hint``). The file is read as
    the controller reads it (secretfile.read_text: a FIFO or a device refused without blocking, at most 64 KiB,
    UTF-8, private; one trailing LF or CRLF dropped): one that is absent, or that this user cannot open, is no token
    (reads may need none); one that is there and cannot be a token file raises _Refused, and nothing is sent."""
    if inline:
        return inline, f"{key} of {where}"
    try:
        token = secretfile.token_in(secretfile.read_text(f"{key}_file", path)) or None
    except secretfile.Unusable as exc:
        if not exc.denied and os.path.lexists(path):
            raise _Refused(f"the {kind} file of {where}: {exc.problem}") from None
        return None, f"no {kind}: {exc.problem} ({where})"
    return token, f"the {kind} file {path} ({where})" if token else f"no {kind}: {path} is empty ({where})"


def token_for(args, write: bool) -> tuple:
    """(the token a request sends, or None; where it came from, or why there is none): a read sends the read-only
    token when there is one, a write the write token; each falls back on the other."""
    ours = [(args.token, args.token_from), (args.read_token, args.read_token_from)]
    for token, where in ours if write else ours[::-1]:
        if token:
            return token, where
    return None, args.token_from


def refusal_hint(args, status, reply, write: bool) -> None:
    """After a refusal, on standard error: for a 401 (a write, or a read with rest.open_reads never or from afar),
    which token the controller refused or where the command looked for one; for a write refused 403
    ``read_only_token``, that the command holds only the read-only token, and where the write token comes from."""
    token, where = token_for(args, write)
    if status == 401:
        told = f"the controller refused {where}" if token else where
        print(f"canopy: {told}; {GIVE_WRITE}{'' if write else ', ' + GIVE_READ}", file=sys.stderr)
    elif status == 403 and _code(reply) == "read_only_token":
        print(f"canopy: this command writes, and {where} is the controller's read-only token (rest.read_token), which "
              f"only reads; the write token (rest.token) is needed: {GIVE_WRITE}", file=sys.stderr)


def _code(reply):
    err = reply.get("error") if isinstance(reply, dict) else None
    return err.get("code") if isinstance(err, dict) else None


def request(args, method, path, body, write: bool | None = None):
    """(status, json) from the controller, or (None, None) after printing why it could not be reached. ``write``
    (default: any method but GET) chooses the token sent (``token_for``)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(args.url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    token, _ = token_for(args, method != "GET" if write is None else write)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60, context=getattr(args, "tls", None)) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"canopy: cannot reach the controller at {args.url}: {reason}{tls_hint(reason, args.url)}",
              file=sys.stderr)
        return None, None


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the chain is trusted, the name is not in it
NAME_MISMATCH = (62, 64)


def tls_hint(reason, url: str, ca_from: str = "--ca-file (or CANOPY_CA_FILE)") -> str:
    """What to do about a certificate the client refused (empty for any other failure). A certificate that does not
    name the address asked for (ovs-pki's have no subjectAltName) is not a CA problem: another --ca-file cannot help."""
    if not isinstance(reason, ssl.SSLCertVerificationError):
        return ""
    if getattr(reason, "verify_code", None) in NAME_MISMATCH:
        host = urllib.parse.urlsplit(url).hostname
        return (f"; the controller's certificate does not name {host}: issue it with subjectAltName IP:{host} (or "
                "DNS:) from its CA, or ask for an address it names (docs/security.md, \"5. REST over HTTPS\")")
    return f"; give {ca_from} with the CA that signed the controller's certificate"
