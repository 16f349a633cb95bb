"""HTTPS: the client's SNI picks the certificate (wildcard per domain, exact per extra host),
verified by Python's ssl against the test certificates; the app sees X-Forwarded-Proto https."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from .conftest import BackendFactory, RouterFactory, app_entry


def make_cert(dir: Path, name: str, cn: str, sans: list[str]) -> tuple[Path, Path]:
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    san = ",".join(f"DNS:{s}" for s in sans)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName={san}"],
        check=True, capture_output=True,
    )
    return cert, key


def test_sni_picks_the_certificate(routers: RouterFactory, backends: BackendFactory, tmp_path: Path) -> None:
    wild_cert, wild_key = make_cert(tmp_path, "wild", "*.apps.test", ["*.apps.test"])
    shop_cert, shop_key = make_cert(tmp_path, "shop", "www.shop.test", ["www.shop.test"])
    config = (
        'domains = ["apps.test"]\n'
        f'[[tls_certificates]]\ncert_file = "{wild_cert}"\nkey_file = "{wild_key}"\nhosts = ["*.apps.test"]\n'
        f'[[tls_certificates]]\ncert_file = "{shop_cert}"\nkey_file = "{shop_key}"\nhosts = ["www.shop.test"]\n'
    )
    router = routers.start(config, https=True)
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a, hosts=["www.shop.test"])]})
    original = tmp_path / "wild-original.pem"
    original.write_bytes(wild_cert.read_bytes())
    cas = [original, shop_cert]
    for name, cn in [("shop.apps.test", "*.apps.test"), ("www.shop.test", "www.shop.test")]:
        status, body, subject = fetch(router.addrs["https"], name, cas)
        assert status == 200 and body["backend"] == "a"
        assert body["headers"]["x-forwarded-proto"] == "https"
        assert subject == cn
    # Plain HTTP still works beside HTTPS.
    assert router.get("/", host="shop.apps.test").status == 200

    # SIGHUP reloads the certificates: a broken set is refused and the current one stays...
    wild_cert.write_text("not a certificate")
    router.process.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert fetch(router.addrs["https"], "shop.apps.test", cas)[2] == "*.apps.test"
    # ... a good one is used by new connections.
    new_cert, new_key = make_cert(tmp_path, "rotated", "rotated.apps.test", ["*.apps.test"])
    wild_cert.write_bytes(new_cert.read_bytes())
    wild_key.write_bytes(new_key.read_bytes())
    router.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while fetch(router.addrs["https"], "shop.apps.test", [new_cert, shop_cert])[2] != "rotated.apps.test":
        assert time.monotonic() < deadline, "the rotated certificate was not picked up"
        time.sleep(0.05)
    assert router.process.proc.poll() is None


def fetch(addr: tuple[str, int], name: str, cas: list[Path]) -> tuple[int, dict, str]:
    """GET /tls over TLS to `addr`, presenting and verifying `name`: status, body, cert CN."""
    ctx = ssl.create_default_context()
    for ca in cas:
        ctx.load_verify_locations(str(ca))
    raw = socket.create_connection(addr, timeout=10)
    with ctx.wrap_socket(raw, server_hostname=name) as s:
        s.sendall(f"GET /tls HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        subject = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), subject


def test_http2_by_alpn_and_prior_knowledge(routers: RouterFactory, backends: BackendFactory, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "wild", "*.localhost", ["*.localhost", "shop.localhost"])
    config = (
        "http2 = true\n"
        f'[[tls_certificates]]\ncert_file = "{cert}"\nkey_file = "{key}"\nhosts = ["shop.localhost"]\n'
    )
    router = routers.start(config, https=True)
    a = backends.start("a")
    router.push({"generation": 1, "apps": [app_entry("shop", a, prefix="/shop")]})
    _, tls_port = router.addrs["https"]
    _, http_port = router.addrs["http"]
    runs = [
        ["--http2", "--cacert", str(cert), "--resolve", f"shop.localhost:{tls_port}:127.0.0.1",
         f"https://shop.localhost:{tls_port}/h2?x=1"],
        ["--http2-prior-knowledge", f"http://127.0.0.1:{http_port}/shop/h2?x=1"],
        ["--http1.1", f"http://127.0.0.1:{http_port}/shop/h2?x=1"],
    ]
    for args in runs:
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-w", "\\n%{http_version} %{http_code}",
             "-H", "X-Request-Id: h2-test", *args],
            check=True, capture_output=True, text=True,
        ).stdout
        body, _, meta = out.rpartition("\n")
        version, code = meta.split()
        assert code == "200", out
        assert version == ("1.1" if "--http1.1" in args else "2"), out
        got = json.loads(body)
        assert (got["path"], got["query"]) == ("/h2", "x=1")
        assert got["headers"]["x-request-id"] == "h2-test"
        assert got["headers"]["host"].startswith(("shop.localhost", "127.0.0.1"))
