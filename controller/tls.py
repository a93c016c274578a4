"""TLS for Canopy's listeners (docs/security.md): the certificate files of the ``tls`` settings, and the
server-side contexts made from them.

- OpenFlow and OVSDB are *mutual*: a peer must present a certificate signed by ``ca_cert`` (the CA that
  signs the switches' certificates, e.g. ovs-pki's switchca), else the handshake fails and the connection
  is closed before a single OpenFlow or OVSDB message is read.
- REST is server-side only (clients authenticate with the bearer token).

TLS 1.2 is the oldest version offered. Standard library only.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass

from controller import secretfile

MIN_VERSION = ssl.TLSVersion.TLSv1_2


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: this controller's private key and certificate, and the CA certificate(s) peers must hold."""

    key: str
    cert: str
    ca_cert: str | None  # None: no client certificates checked (a context that is not ``mutual`` only)


class TlsError(ValueError):
    """A certificate file cannot be used: ``field`` is the setting (key, cert or ca_cert), the message why."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field


def server_context(files: TlsFiles, mutual: bool) -> ssl.SSLContext:
    """A server-side context presenting ``files.cert``; with ``mutual``, clients must present a
    certificate signed by ``files.ca_cert``. Raises TlsError naming the file that is unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    with contextlib.ExitStack() as opened:
        if mutual and files.ca_cert is None:
            raise TlsError("ca_cert", "not set: clients' certificates are checked against it")
        key, cert, ca_cert = (path and _checked(opened, name, path) for name, path in
                              (("key", files.key), ("cert", files.cert), ("ca_cert", files.ca_cert)))
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsError("cert", f"{files.cert} with key {files.key}: not a PEM certificate and its matching "
                                   f"private key ({exc.reason or exc})") from None
        if mutual:
            try:
                context.load_verify_locations(ca_cert)
            except ssl.SSLError as exc:
                raise TlsError("ca_cert", f"{files.ca_cert}: no PEM CA certificate in it ({exc.reason or exc})") \
                    from None
            context.verify_mode = ssl.CERT_REQUIRED
    return context


def _checked(opened: contextlib.ExitStack, name: str, path: str) -> str:
    """The path ssl is to load ``path`` by (secretfile.checked_path, open until ``opened`` closes); TlsError naming
    the setting ``name`` unless it is a regular file this user can open. Read at start and by ``check-settings`` on
    the event loop: a FIFO put at the path would block it until a writer came (and opening a device can do
    something), so nothing but a regular file is opened (stat, then an open that does not wait), and ssl's loaders,
    which open a path themselves, are given that file's /proc/self/fd path: a file put at the path after the check
    (a FIFO, another certificate) is not what they load."""
    try:
        return opened.enter_context(secretfile.checked_path(path))
    except secretfile.NotRegular as exc:
        raise TlsError(name, f"{exc}{secretfile.blocking_note(exc.kind)}") from None
    except OSError as exc:
        raise TlsError(name, f"cannot read {path}: {exc.strerror or exc}") from None


def check(files: TlsFiles) -> None:
    """Raise TlsError if the files cannot make the contexts Canopy needs (read at start)."""
    server_context(files, mutual=True)


def listener_context(settings, listener: str) -> ssl.SSLContext | None:
    """The context ``listener`` (openflow, ovsdb or rest) serves with, or None when it serves plain TCP."""
    if not getattr(settings, f"{listener}_tls", False) or settings.tls is None:
        return None
    return server_context(settings.tls, mutual=listener != "rest")
