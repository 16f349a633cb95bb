"""The collector's own command line: --print-config, --check-config, clear startup errors,
graceful SIGTERM."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import CollectorFactory


def run(factory: CollectorFactory, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(factory.binary("log-collector")), *args],
                          capture_output=True, text=True, timeout=30)


def test_print_and_check_config(collectors: CollectorFactory, tmp_path: Path) -> None:
    r = run(collectors, "--print-config", "--listen-json", "127.0.0.1:7000")
    assert r.returncode == 0, r.stderr
    assert 'listen_json = "127.0.0.1:7000"' in r.stdout
    assert 'commit_interval = "50ms"' in r.stdout
    cfg = tmp_path / "c.toml"
    cfg.write_text(r.stdout)
    r = run(collectors, "--config", str(cfg), "--check-config")
    assert r.returncode == 0 and "configuration ok" in r.stdout, r.stderr
    cfg.write_text('segmnt_bytes = "1MiB"\n')
    r = run(collectors, "--config", str(cfg), "--check-config")
    assert r.returncode == 2 and "segmnt_bytes" in r.stderr and "c.toml" in r.stderr
    cfg.write_text('commit_interval = "5s"\n')
    r = run(collectors, "--config", str(cfg), "--check-config")
    assert r.returncode == 2 and "commit_interval" in r.stderr
    bad = tmp_path / "tenants.toml"
    bad.write_text('[[app]]\nname = "Bad Name"\ntoken = "x"\n')
    r = run(collectors, "--tenants", str(bad), "--check-config")
    assert r.returncode == 2 and "tenants" in r.stderr


def test_sigterm_stops_cleanly_and_a_taken_port_is_a_clear_error(collectors: CollectorFactory) -> None:
    c = collectors.start()
    host, port = c.addr("json")
    r = run(collectors, "--data-dir", str(c.data_dir) + "-2", "--listen-json", f"{host}:{port}",
            "--listen-syslog", "127.0.0.1:0", "--listen-http", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0")
    assert r.returncode == 1 and f"cannot listen for JSON lines on {host}:{port}" in r.stderr
    conn = c.json_conn({"app": "a", "ack": True})
    conn.send({"message": "x"})
    assert conn.wait_ack(1) == []
    conn.close()
    assert c.process.stop() == 0
    collectors.running.remove(c)
