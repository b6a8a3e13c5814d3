"""HTTPS: `init --tls` makes a self-signed certificate and `serve` speaks
TLS only; a reverse proxy's X-Script-Name prefix is honoured."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import signal
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import caldav
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.conftest import CLI, free_port, spawn_serve, start_instance_server, wait_for_port


def test_init_tls_serves_https_only(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "inst"
    result = subprocess.run(
        [*CLI, "init", "--home", str(home), "--database-url", database_url, "--tls"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    login = re.search(r"login: (\S+)\s+password: (\S+)", result.stdout)
    assert login, result.stdout
    user, password = login.groups()

    cert_path, key_path = home / "tls-cert.pem", home / "tls-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=364) < validity < dt.timedelta(days=366)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    conf = (home / "radicale.conf").read_text()
    assert "\nssl = True\n" in conf
    assert f"\ncertificate = {cert_path}\n" in conf and f"\nkey = {key_path}\n" in conf
    fingerprint = re.search(r"fingerprint: ([0-9A-F:]{95})", result.stdout)
    assert fingerprint
    assert fingerprint.group(1).replace(":", "").lower() == cert.fingerprint(hashes.SHA256()).hex()

    port = free_port()
    proc = spawn_serve(home, port)
    try:
        wait_for_port(port, lambda: None if proc.poll() is None else str(proc.communicate()))
        url = f"https://127.0.0.1:{port}/"
        client = caldav.DAVClient(url=url, username=user, password=password,
                                  ssl_verify_cert=str(cert_path))
        calendars = client.principal().calendars()
        assert isinstance(calendars, list)
        # Verification is real: without the certificate the server is not trusted.
        with pytest.raises(requests.exceptions.SSLError):
            requests.request("PROPFIND", url, auth=(user, password), timeout=10)
        # The name localhost is in the certificate too.
        r = requests.request("PROPFIND", f"https://localhost:{port}/", auth=(user, password),
                             verify=str(cert_path), timeout=10)
        assert r.status_code == 207
        # Plain HTTP on the same port gets no answer.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.request("PROPFIND", f"http://127.0.0.1:{port}/", auth=(user, password),
                             timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"on https://127.0.0.1:{port}/" in out


def test_tls_name_needs_tls(tmp_path: Path) -> None:
    result = subprocess.run([*CLI, "init", "--home", str(tmp_path / "x"), "--tls-name", "cal.example"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "--tls-name needs --tls" in result.stderr
    assert not (tmp_path / "x").exists()


def test_extra_tls_names(tmp_path: Path) -> None:
    from servicehop_caldav import tls

    cert = tls.create_self_signed(tmp_path / "c.pem", tmp_path / "k.pem",
                                  ["cal.example.org", "192.0.2.7"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "cal.example.org"]
    assert ipaddress.ip_address("192.0.2.7") in san.get_values_for_type(x509.IPAddress)


def test_reverse_proxy_prefix(instance_home: Path) -> None:
    """What the README's nginx example sends: the prefix stripped from the
    path and named in X-Script-Name; every href the server answers carries it."""
    htpasswd = instance_home / "test.htpasswd"
    htpasswd.write_text("ingrid:pw\n")
    server = start_instance_server(instance_home, {
        "auth": {"type": "htpasswd", "htpasswd_filename": str(htpasswd),
                 "htpasswd_encryption": "plain"},
        "rights": {"type": "owner_only"},
    })
    server.passwords = {"ingrid": "pw"}
    try:
        session = server.session("ingrid")
        proxy = {"X-Script-Name": "/caldav", "X-Forwarded-For": "203.0.113.9",
                 "X-Forwarded-Proto": "https", "X-Forwarded-Host": "cal.example.org"}
        assert session.request("MKCALENDAR", f"{server.url}/ingrid/visits/",
                               headers=proxy).status_code == 201
        r = session.request(
            "PROPFIND", f"{server.url}/ingrid/", headers={**proxy, "Depth": "1"},
            data='<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>',
        )
        assert r.status_code == 207
        root = ET.fromstring(r.content)
        hrefs = [e.text or "" for e in root.iter("{DAV:}href")]
        assert "/caldav/ingrid/" in hrefs and "/caldav/ingrid/visits/" in hrefs
        assert all(h.startswith("/caldav/") for h in hrefs), hrefs
    finally:
        server.stop()
