"""HTTPS for an instance: a self-signed certificate made with `cryptography`.

``servicehop-caldav init --tls`` writes ``tls-cert.pem`` (the certificate,
to hand to clients that should trust it) and ``tls-key.pem`` (its private
key, mode 0600) into the instance and turns on Radicale's own TLS
(``[server] ssl``, ``certificate``, ``key``). For a public name and a
certificate clients trust without asking, terminate TLS in a reverse proxy
instead (README, "Behind a reverse proxy").
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls-cert.pem"
KEY_FILE = "tls-key.pem"
VALIDITY = datetime.timedelta(days=365)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def create_self_signed(cert_path: Path, key_path: Path, names: Iterable[str] = ()) -> x509.Certificate:
    """Write a new EC P-256 key (mode 0600) and a self-signed certificate for
    ``localhost``, ``127.0.0.1``, ``::1`` and ``names``, valid for a year.

    A server certificate as clients expect one: subject alternative names,
    serverAuth extended key usage, not a CA (Firefox and Thunderbird refuse
    a CA certificate used by a server), at most 398 days (Apple's limit).
    """
    all_names = list(dict.fromkeys([*DEFAULT_NAMES, *names]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, all_names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "servicehop-caldav (self-signed)"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in all_names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as clients show it (AB:CD:...)."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def enable_in_config(conf: str, cert_path: Path, key_path: Path) -> str:
    """radicale.conf text with ``[server] ssl = True`` and the certificate's paths."""
    lines = (
        "# HTTPS with the certificate `init --tls` made (self-signed; clients ask to trust it).\n"
        "ssl = True\n"
        f"certificate = {cert_path}\n"
        f"key = {key_path}\n"
    )
    new, count = re.subn(r"^\[server\][ \t]*\n", lambda m: m.group(0) + lines, conf, count=1,
                         flags=re.MULTILINE)
    if not count:
        new = conf.rstrip("\n") + "\n\n[server]\n" + lines
    return new


def set_up(home: Path, conf: str, names: Iterable[str] = ()) -> tuple[str, x509.Certificate]:
    """Make the instance's certificate; return radicale.conf using it and the certificate."""
    cert_path, key_path = home / CERT_FILE, home / KEY_FILE
    cert = create_self_signed(cert_path, key_path, names)
    return enable_in_config(conf, cert_path, key_path), cert
