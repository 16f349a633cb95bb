"""TLS on request (rustls) and caching_sha2_password inside TLS."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import pymysql
import pytest

from .conftest import Proxy
from .rawmysql import ServerError


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_proxy(proxy: Proxy, cert, tmp_path_factory) -> Iterator[Proxy]:
    p = proxy.spawn(tmp_path_factory.mktemp("tls-proxy"), f'tls_cert = "{cert[0]}"\ntls_key = "{cert[1]}"\n')
    yield p
    p.process.stop()


def _context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    return ctx


def test_pymysql_over_tls(tls_proxy: Proxy, cert) -> None:
    with tls_proxy.pymysql("alpha", ssl={"ca": str(cert[0])}) as c, c.cursor() as cur:
        assert isinstance(c._sock, ssl.SSLSocket)
        cur.execute("SELECT 1 + 1")
        assert cur.fetchone() == (2,)
    # PyMySQL's default (PREFERRED) upgrades on its own when the proxy offers TLS.
    with tls_proxy.pymysql("alpha") as c, c.cursor() as cur:
        assert isinstance(c._sock, ssl.SSLSocket)
        cur.execute("SELECT 3")
        assert cur.fetchone() == (3,)
    # Plain text still works unless require_tls.
    with tls_proxy.pymysql("alpha", ssl_disabled=True) as c, c.cursor() as cur:
        assert not isinstance(c._sock, ssl.SSLSocket)
        cur.execute("SELECT 5")
        assert cur.fetchone() == (5,)


def test_mysql_cli_verifies_the_certificate(tls_proxy: Proxy, cert) -> None:
    binary = shutil.which("mysql") or shutil.which("mariadb")
    if binary is None:
        pytest.fail("the mysql client is missing: apt-get install mariadb-client")
    a = tls_proxy.apps["alpha"]
    r = subprocess.run(
        [binary, "-h", tls_proxy.host, "-P", str(tls_proxy.port), "-u", a.name, "--ssl",
         f"--ssl-ca={cert[0]}", "--ssl-verify-server-cert", "--batch", "--skip-column-names", a.db,
         "-e", "SELECT 'over-tls'"],
        env=dict(os.environ, MYSQL_PWD=a.token), capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "over-tls"


def test_caching_sha2_password_inside_tls(tls_proxy: Proxy, cert) -> None:
    a = tls_proxy.apps["alpha"]
    r = tls_proxy.raw()
    r.start_tls(_context(cert[0]))
    r.login(a.name, a.token, plugin="caching_sha2_password")
    assert r.text_rows("SELECT 'sha2'") == [["sha2"]]
    r.close()
    r = tls_proxy.raw()
    r.start_tls(_context(cert[0]))
    with pytest.raises(ServerError) as e:
        r.login(a.name, "not-the-token", plugin="caching_sha2_password")
    assert e.value.code == 1045


def test_caching_sha2_without_tls_is_switched_to_native(tls_proxy: Proxy) -> None:
    a = tls_proxy.apps["alpha"]
    r = tls_proxy.raw()
    r.login(a.name, a.token, plugin="caching_sha2_password")  # follows the AuthSwitchRequest
    assert r.text_rows("SELECT 1") == [["1"]]
    r.close()


def test_require_tls(proxy: Proxy, cert, tmp_path) -> None:
    p = proxy.spawn(tmp_path, f'tls_cert = "{cert[0]}"\ntls_key = "{cert[1]}"\nrequire_tls = true\n')
    try:
        with pytest.raises(pymysql.err.OperationalError) as e:
            p.pymysql("alpha", ssl_disabled=True)
        assert e.value.args[0] == 1045 and "requires TLS" in e.value.args[1]
        r = p.raw()
        with pytest.raises(ServerError) as e2:
            r.login(p.apps["alpha"].name, p.apps["alpha"].token)
        assert e2.value.code == 1045
        with p.pymysql("alpha", ssl={"ca": str(cert[0])}) as c, c.cursor() as cur:
            cur.execute("SELECT 4")
            assert cur.fetchone() == (4,)
    finally:
        p.process.stop()


def test_tls_request_without_tls_configured_is_refused(proxy: Proxy, cert) -> None:
    with pytest.raises(pymysql.err.MySQLError):
        proxy.pymysql("alpha", ssl={"ca": str(cert[0])})
