"""Certificates for TLS tests, made with openssl: a CA, and certificates it signs (PEM files in a directory).

``Pki(dir, "canopy-ca")`` makes the CA; ``issue(name, ips)`` a key and certificate for ``name`` signed by it
(the IP addresses go into subjectAltName, so HTTPS clients can check the controller's address). A second
``Pki`` is a different CA: what its certificates are refused by, is what the tests prove.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "30"


@dataclass(frozen=True)
class Identity:
    """A private key and the certificate for it."""

    key: Path
    cert: Path


class Pki:
    def __init__(self, directory: Path, name: str):
        self.dir = Path(directory) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca_key, self.ca_cert = self.dir / "ca-key.pem", self.dir / "ca-cert.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS, "-subj", f"/CN={name}",
                 "-keyout", self.ca_key, "-out", self.ca_cert,
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name: str, ips: tuple[str, ...] = ()) -> Identity:
        """A key and a certificate for ``name`` (CN), signed by this CA."""
        key, csr, cert = (self.dir / f"{name}-{what}.pem" for what in ("privkey", "req", "cert"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
        ext = self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\n" +
                       (f"subjectAltName={','.join(f'IP:{ip}' for ip in ips)}\n" if ips else ""))
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
                 "-days", DAYS, "-out", cert, "-extfile", ext)
        return Identity(key, cert)


def _openssl(*args) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
