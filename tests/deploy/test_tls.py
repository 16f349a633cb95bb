"""berthd's control API over TLS: the CLI trusts a given CA (--ca-file / BERTH_CA_FILE) or the
system's roots, and refuses a server whose certificate it cannot verify."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from support.procs import ServerProcess


@pytest.fixture
def tls_berthd(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    bin_dir = Path(pytestconfig.getoption("--bin-dir"))
    # A private CA and a server certificate it signed (a CA certificate itself may not serve).
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    ca, ca_key, csr = tmp_path / "cert.pem", tmp_path / "ca.key", tmp_path / "server.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Berth test CA", "-keyout", ca_key,
        "-out", ca)
    run("req", *ec, "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    (tmp_path / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days",
        "2", "-extfile", tmp_path / "ext.cnf", "-out", cert)
    service_token = secrets.token_hex(32)
    (tmp_path / "service-token").write_text(service_token + "\n")
    (tmp_path / "berthd.toml").write_text(
        f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
        f'service_tokens = ["{hashlib.sha256(service_token.encode()).hexdigest()}"]\n'
        '[router]\nadmin_url = ""\n[services]\nblob_admin_url = ""\nlogs_admin_url = ""\n')
    p = ServerProcess([bin_dir / "berthd", "--config", tmp_path / "berthd.toml", "--data-dir",
                       tmp_path / "data", "--listen", "127.0.0.1:0", "--admin-listen",
                       "127.0.0.1:0", "--dashboard-listen", "127.0.0.1:0"], tmp_path, "berthd")
    port = p.wait_listen(["grpc"])["grpc"][1]
    yield tmp_path, port
    p.stop()


def berth(bin_dir: Path, tmp: Path, *args: str, ca: bool = True,
          server: str = "https://localhost") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env["BERTH_TOKEN_FILE"] = str(tmp / "data" / "operator-token")
    if ca:
        env["BERTH_CA_FILE"] = str(tmp / "cert.pem")
    return subprocess.run([str(bin_dir / "berth"), *args, "--server", server], env=env,
                          capture_output=True, text=True, timeout=30)


def test_the_cli_talks_tls_to_berthd_and_verifies_it(pytestconfig: pytest.Config,
                                                     tls_berthd: tuple[Path, int]) -> None:
    bin_dir = Path(pytestconfig.getoption("--bin-dir"))
    tmp, port = tls_berthd
    ok = berth(bin_dir, tmp, "apps", "create", "secure", server=f"https://localhost:{port}")
    assert ok.returncode == 0, ok.stderr
    listed = berth(bin_dir, tmp, "apps", "list", "--json", server=f"https://127.0.0.1:{port}")
    assert listed.returncode == 0 and "secure" in listed.stdout, listed.stderr
    # Without the CA the self-signed certificate is not trusted.
    refused = berth(bin_dir, tmp, "apps", "list", ca=False, server=f"https://localhost:{port}")
    assert refused.returncode != 0
    # Plain HTTP/2 to a TLS port does not work either.
    plain = berth(bin_dir, tmp, "apps", "list", ca=False, server=f"http://127.0.0.1:{port}")
    assert plain.returncode != 0


def test_a_service_follows_the_registry_over_tls(pytestconfig: pytest.Config,
                                                 tls_berthd: tuple[Path, int]) -> None:
    bin_dir = Path(pytestconfig.getoption("--bin-dir"))
    tmp, port = tls_berthd
    created = berth(bin_dir, tmp, "apps", "create", "tlsapp", "--json",
                    server=f"https://localhost:{port}")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["secret"]
    env = dict(os.environ, BERTH_REGISTRY_CA_FILE=str(tmp / "cert.pem"))
    cache = ServerProcess([bin_dir / "cache-server", "-p", "0", "-l", "127.0.0.1",
                           "--admin-listen", "127.0.0.1:0", "--registry-state",
                           tmp / "cache-registry.toml", "--registry", f"https://localhost:{port}",
                           "--registry-token", tmp / "service-token"], tmp, "cache-server",
                          env=env)
    try:
        cport = cache.wait_listen(["memcache"])["memcache"][1]
        deadline = time.monotonic() + 15
        while True:
            with socket.create_connection(("127.0.0.1", cport), timeout=5) as s:
                cred = f"tlsapp {token}".encode()
                s.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(cred), cred))
                if s.recv(200).startswith(b"STORED"):
                    break
            assert time.monotonic() < deadline, "the cache server never got the app over TLS"
            time.sleep(0.2)
    finally:
        cache.stop()
