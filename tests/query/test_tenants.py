"""Tenants reload on SIGHUP: a revoked token closes its open sessions within seconds and
cannot log in again; a new token works at once; a broken file keeps the previous set."""

from __future__ import annotations

import secrets
import signal
import time
import urllib.request

import pytest

from .conftest import App, Proxy
from .rawmysql import ServerError


def test_revoking_a_token_closes_its_sessions(proxy: Proxy, tmp_path) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(proxy.tenants.read_text())
    p = proxy.spawn(tmp_path, "", tenants=tenants)
    try:
        alpha = proxy.apps["alpha"]
        session = p.login("alpha")
        assert session.text_rows("SELECT 1") == [["1"]]
        rotated = App(alpha.name, secrets.token_hex(32))
        tenants.write_text(
            "".join(a.tenant_toml() for k, a in proxy.apps.items() if k != "alpha") + rotated.tenant_toml()
        )
        p.process.send_signal(signal.SIGHUP)
        assert session.closed_by_peer()
        r = p.raw()
        with pytest.raises(ServerError) as e:
            r.login(alpha.name, alpha.token)
        assert e.value.code == 1045
        r = p.raw()
        r.login(rotated.name, rotated.token)
        assert r.text_rows("SELECT 2") == [["2"]]
        r.close()
        # A broken file is refused and the current set stays.
        tenants.write_text("[[app]]\nname = 'Not Valid'\n")
        p.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        r = p.raw()
        r.login(rotated.name, rotated.token)
        r.close()
    finally:
        p.process.stop()


def test_admin_endpoint(proxy: Proxy) -> None:
    host, port = proxy.admin
    with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as r:
        assert r.read() == b"ok"
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "query_proxy_refusals_total" in text and "query_proxy_logins_total" in text
