"""`query-proxy provision` / `deprovision` and the binary's config flags."""

from __future__ import annotations

import secrets
import subprocess

from .conftest import MariaDB, Proxy


def test_provision_is_idempotent_and_repairs_grants(proxy: Proxy, mariadb: MariaDB) -> None:
    name = "qp-" + secrets.token_hex(3)
    ident = "app_" + name.replace("-", "_")
    try:
        for _ in range(2):
            r = proxy.run("provision", name)
            assert f"provisioned {name}" in r.stdout
        assert mariadb.query("SHOW DATABASES LIKE %s", (ident,)) == [(ident,)]
        mariadb.query(f"GRANT FILE, PROCESS ON *.* TO '{ident}'@'%'")
        mariadb.query(f"GRANT SELECT ON mysql.* TO '{ident}'@'%'")
        proxy.run("provision", name)
        grants = " ".join(r[0] for r in mariadb.query(f"SHOW GRANTS FOR '{ident}'@'%'"))
        assert "FILE" not in grants and "PROCESS" not in grants and "`mysql`" not in grants
    finally:
        for _ in range(2):
            r = proxy.run("deprovision", name)
            assert f"deprovisioned {name}" in r.stdout
    assert mariadb.query("SHOW DATABASES LIKE %s", (ident,)) == []
    assert mariadb.query("SELECT COUNT(*) FROM mysql.user WHERE user = %s", (ident,)) == [(0,)]


def test_provision_refuses_bad_names(proxy: Proxy) -> None:
    for bad in ("root", "Bad_Name", "x" * 40, "a;drop"):
        r = proxy.run("provision", bad, check=False)
        assert r.returncode != 0 and "query-proxy:" in r.stderr, (bad, r)


def test_print_and_check_config(proxy: Proxy) -> None:
    r = proxy.run("--print-config", "--listen", "127.0.0.1:7000")
    assert 'listen = "127.0.0.1:7000"' in r.stdout
    assert 'backend_admin_user = "' in r.stdout
    assert "BERTH_QUERY_BACKEND_SECRET" not in r.stdout
    r = proxy.run("--check-config", "--tenants", str(proxy.tenants))
    assert r.stdout.strip() == "configuration ok"
    bad = proxy.config.parent / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    r = subprocess.run([str(proxy.bin), "--config", str(bad), "--check-config"], capture_output=True, text=True, env=proxy.env)
    assert r.returncode == 2 and "no_such_key" in r.stderr
