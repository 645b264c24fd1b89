"""TLS material for the secured test broker and the TLS tests, made with ``openssl``.

A self-signed CA (2 days), a broker certificate for 127.0.0.1 and localhost in a PKCS12 keystore, and
a client certificate (``CN=claims-worker-mtls``) with an encrypted key for mutual TLS. Passwords reach
``openssl`` through the environment, never in its argument list.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MTLS_USER", "CertificateError", "Certificates", "make_ca", "make_certificates"]

MTLS_USER = "claims-worker-mtls"  # the client certificate's CN; its principal is User:CN=<this>


class CertificateError(RuntimeError):
    """``openssl`` is missing or failed."""


@dataclass(frozen=True)
class Certificates:
    """Files made by ``make_certificates``: the CA, the broker's PKCS12 keystore, a client certificate."""

    ca_file: Path
    ca_key: Path
    keystore: Path
    keystore_password: str
    # A client certificate (CN=claims-worker-mtls) with an encrypted key, for mutual TLS.
    client_cert: Path
    client_key: Path
    client_key_password: str


def _openssl(*args: str, password: str | None = None) -> None:
    """Run openssl; ``password`` reaches it as ``env:CLAIMS_TLS_PASSWORD``, never in argv."""
    openssl = shutil.which("openssl")
    if openssl is None:
        msg = "openssl not found: install it to generate the test certificates"
        raise CertificateError(msg)
    env = {**os.environ, "CLAIMS_TLS_PASSWORD": password} if password is not None else None
    done = subprocess.run([openssl, *args], capture_output=True, text=True, check=False, timeout=60, env=env)
    if done.returncode != 0:
        msg = f"openssl {args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}"
        raise CertificateError(msg)


def make_ca(folder: Path, name: str = "claims-worker test CA") -> tuple[Path, Path]:
    """Create a self-signed CA (2 days) in ``folder``; return its certificate and key files."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def make_certificates(folder: Path) -> Certificates:
    """Create a CA and a broker certificate for 127.0.0.1 and localhost, packed in a PKCS12 keystore."""
    ca, ca_key = make_ca(folder)
    key, csr, cert = folder / "broker.key", folder / "broker.csr", folder / "broker.pem"
    extensions = folder / "broker.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(extensions),
    )  # fmt: skip
    password = secrets.token_urlsafe(18)
    keystore = folder / "broker.p12"
    _openssl(
        "pkcs12", "-export", "-in", str(cert), "-inkey", str(key), "-certfile", str(ca), "-name", "broker",
        "-out", str(keystore), "-passout", "env:CLAIMS_TLS_PASSWORD", password=password,
    )  # fmt: skip
    client_cert, client_key, client_password = _client_certificate(folder, ca, ca_key)
    for private in (key, keystore, client_key):
        private.chmod(0o600)
    return Certificates(ca, ca_key, keystore, password, client_cert, client_key, client_password)


def _client_certificate(folder: Path, ca: Path, ca_key: Path) -> tuple[Path, Path, str]:
    """Sign a client certificate ``CN=claims-worker-mtls`` whose PEM key is encrypted with a new password."""
    password = secrets.token_urlsafe(18)
    key, csr, cert = folder / "client.key", folder / "client.csr", folder / "client.pem"
    extensions = folder / "client.ext"
    extensions.write_text("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-subj", f"/CN={MTLS_USER}", "-keyout", str(key), "-out", str(csr),
        "-passout", "env:CLAIMS_TLS_PASSWORD", password=password,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-out", str(cert), "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key, password
