"""The protocol surface, packet by packet, with the raw client: login variants, prepared
statements (COM_STMT_*), COM_FIELD_LIST, COM_SET_OPTION, COM_RESET_CONNECTION,
COM_CHANGE_USER, refused commands, oversized packets."""

from __future__ import annotations

import struct

import pytest

from .conftest import Proxy
from .rawmysql import (
    BASE_CAPS,
    CLIENT_DEPRECATE_EOF,
    CLIENT_MULTI_STATEMENTS,
    CLIENT_SSL,
    Raw,
    ServerError,
    native_scramble,
)


def test_greeting_offers_native_password_and_no_local_infile(proxy: Proxy) -> None:
    r = proxy.raw()
    assert r.plugin == "mysql_native_password"
    assert len(r.nonce) == 20
    assert not r.server_caps & (1 << 7)  # CLIENT_LOCAL_FILES
    assert not r.server_caps & (1 << 5)  # CLIENT_COMPRESS
    assert "MariaDB" in r.server_version
    r.sock.close()


@pytest.mark.parametrize("caps", [BASE_CAPS, BASE_CAPS | CLIENT_DEPRECATE_EOF])
def test_login_and_results_in_both_eof_modes(proxy: Proxy, caps: int) -> None:
    r = proxy.login("alpha", caps=caps, attrs={"_client_name": "raw-test", "program_name": "pytest"})
    assert r.text_rows("SELECT 1, NULL, 'x'") == [["1", None, "x"]]
    assert r.query("DO 1") == [{"ok": True, "status": 2}]
    r.close()


def test_wrong_token_and_unknown_app_get_the_same_error(proxy: Proxy) -> None:
    a = proxy.apps["alpha"]
    errors = []
    for user, token in ((a.name, "wrong"), ("nosuchapp", "wrong"), (a.name, "")):
        r = proxy.raw()
        with pytest.raises(ServerError) as e:
            r.login(user, token)
        errors.append((e.value.code, e.value.state, e.value.message.replace(user, "U")))
        assert r.closed_by_peer()
    assert errors[0] == errors[1] == (1045, "28000", "Access denied for user 'U' (using password: YES)")


def test_auth_switch_from_another_plugin(proxy: Proxy) -> None:
    r = proxy.raw()
    r.login(proxy.apps["alpha"].name, proxy.apps["alpha"].token, plugin="caching_sha2_password")
    assert r.text_rows("SELECT 2") == [["2"]]
    r.close()


def test_login_database_must_be_the_apps_own(proxy: Proxy) -> None:
    a = proxy.apps["alpha"]
    r = proxy.login("alpha", db=a.db)
    assert r.text_rows("SELECT DATABASE()") == [[a.db]]
    r.close()
    for other in ("information_schema", "mysql", proxy.apps["beta"].db):
        r = proxy.raw()
        with pytest.raises(ServerError) as e:
            r.login(a.name, a.token, db=other)
        assert e.value.code == 1044 and e.value.state == "42000"


def test_non_utf8_connection_charset_is_refused(proxy: Proxy) -> None:
    r = proxy.raw()
    with pytest.raises(ServerError) as e:
        r.login(proxy.apps["alpha"].name, proxy.apps["alpha"].token, collation=8)  # latin1
    assert e.value.code == 1115


def test_tls_request_is_answered_with_an_error(proxy: Proxy) -> None:
    r = proxy.raw()
    r.write(struct.pack("<IIB", BASE_CAPS | CLIENT_SSL, 1 << 24, 45) + b"\0" * 23, seq=1)
    p = r.read()
    assert p[0] == 0xFF and b"TLS" in p


def test_prepared_statements_binary_protocol(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    r.query("DROP TABLE IF EXISTS ps")
    r.query("CREATE TABLE ps (id INT PRIMARY KEY, name VARCHAR(20))")
    ins, ncols, nparams = r.prepare("INSERT INTO ps VALUES (?, ?)")
    assert (ncols, nparams) == (0, 2)
    for i in range(5):
        assert r.execute(ins, [i, f"n{i}"])[0]["ok"]
    sel, ncols, nparams = r.prepare("SELECT name FROM ps WHERE id >= ? ORDER BY id")
    assert (ncols, nparams) == (1, 1)
    rows = r.execute(sel, [3])[0]
    # Binary rows: 0x00, the NULL bitmap, then the value (length-prefixed).
    assert [p[3:].decode() for p in rows] == ["n3", "n4"]
    r.simple(b"\x1a" + struct.pack("<I", sel))  # COM_STMT_RESET
    assert len(r.execute(sel, [0])[0]) == 5
    r.command(b"\x19" + struct.pack("<I", ins))  # COM_STMT_CLOSE: no answer
    with pytest.raises(ServerError) as e:
        r.execute(ins, [9, "x"])
    assert e.value.code == 1243  # unknown statement handler: the backend's own answer
    # A refused statement cannot be prepared; a cursor cannot be opened.
    with pytest.raises(ServerError) as e:
        r.prepare("SELECT * FROM mysql.user WHERE user = ?")
    assert e.value.code == 1044
    with pytest.raises(ServerError) as e:
        r.execute(sel, [0], flags=1)
    assert e.value.code == 1235
    assert r.text_rows("SELECT COUNT(*) FROM ps") == [["5"]]
    r.close()


def test_field_list_set_option_and_ping(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    r.query("CREATE TABLE IF NOT EXISTS fl (a INT, b TEXT)")
    r.command(b"\x04fl\0")
    names = []
    while True:
        p = r.read()
        if p[0] == 0xFE:
            break
        names.append(p)
    assert len(names) == 2
    assert r.simple(b"\x0e")[0] == 0x00  # COM_PING
    with pytest.raises(ServerError):
        r.query("SELECT 1; SELECT 2")  # multi-statements off
    r.simple(b"\x1b" + struct.pack("<H", 0))  # COM_SET_OPTION: multi-statements on
    assert len(r.query("SELECT 1; SELECT 2")) == 2
    r.close()


def test_init_db_only_to_the_apps_own_database(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    assert r.simple(b"\x02" + proxy.apps["alpha"].db.encode())[0] == 0x00
    for other in ("information_schema", "mysql", proxy.apps["beta"].db, "APP_X"):
        with pytest.raises(ServerError) as e:
            r.simple(b"\x02" + other.encode())
        assert e.value.code == 1044 and "database-admin" in e.value.message
    assert r.text_rows("SELECT DATABASE()") == [[proxy.apps["alpha"].db]]
    r.close()


def test_reset_connection_keeps_the_statement_timeout(proxy: Proxy) -> None:
    r = proxy.login("limits")
    assert r.text_rows("SELECT @@max_statement_time") == [["1.000000"]]
    r.query("SET @x = 5")
    assert r.simple(b"\x1f")[0] == 0x00
    assert r.text_rows("SELECT @x, @@max_statement_time") == [[None, "1.000000"]]
    r.close()


def test_change_user_same_app_other_app_and_bad_token(proxy: Proxy) -> None:
    r = proxy.login("alpha")
    b = proxy.apps["beta"]

    def change_user(name: str, token: str, db: str) -> bytes:
        p = b"\x11" + name.encode() + b"\0" + bytes([20]) + native_scramble(token.encode(), r.nonce)
        p += db.encode() + b"\0" + struct.pack("<H", 45) + b"mysql_native_password\0"
        r.command(p)
        return r.read()

    assert change_user(b.name, b.token, b.db)[0] == 0x00
    assert r.text_rows("SELECT CURRENT_USER()")[0][0].startswith(b.db + "@")
    p = change_user(b.name, b.token, proxy.apps["alpha"].db)
    assert p[0] == 0xFF and struct.unpack("<H", p[1:3])[0] == 1044
    assert r.closed_by_peer()

    r = proxy.login("alpha")
    p = change_user(b.name, "wrong", "")
    assert p[0] == 0xFF and struct.unpack("<H", p[1:3])[0] == 1045
    assert r.closed_by_peer()


@pytest.mark.parametrize(
    "payload,name",
    [
        (b"\x08\x00", "COM_SHUTDOWN"),
        (b"\x0c" + struct.pack("<I", 1), "COM_PROCESS_KILL"),
        (b"\x09", "COM_STATISTICS"),
        (b"\x0a", "COM_PROCESS_INFO"),
        (b"\x07\x01", "COM_REFRESH"),
        (b"\x0d", "COM_DEBUG"),
        (b"\x12" + b"\0" * 10, "COM_BINLOG_DUMP"),
        (b"\x15" + b"\0" * 10, "COM_REGISTER_SLAVE"),
        (b"\x1e" + b"\0" * 10, "COM_BINLOG_DUMP_GTID"),
        (b"\x99", "an unknown command"),
    ],
)
def test_refused_commands_keep_the_session(proxy: Proxy, payload: bytes, name: str) -> None:
    r = proxy.login("alpha")
    with pytest.raises(ServerError) as e:
        r.simple(payload)
    assert (e.value.code, e.value.state) == (1227, "42000")
    assert name in e.value.message
    assert r.text_rows("SELECT 1") == [["1"]]
    r.close()


def test_a_packet_over_max_packet_is_refused_and_the_connection_closed(proxy: Proxy, tmp_path) -> None:
    small = proxy.spawn(tmp_path, 'max_packet = "1MiB"\n')
    try:
        r = small.login("alpha")
        # Declare a 16 MiB command; the proxy refuses it from the header alone.
        r.sock.sendall((0xFFFFFF).to_bytes(3, "little") + b"\x00" + b"\x03SELECT ")
        p = r.read()
        assert p[0] == 0xFF and struct.unpack("<H", p[1:3])[0] == 1153
        assert r.closed_by_peer()
        r = small.login("alpha")
        assert r.text_rows("SELECT 1") == [["1"]]
        r.close()
    finally:
        small.process.stop()


def test_garbage_before_login_does_not_hurt_the_server(proxy: Proxy) -> None:
    r = proxy.raw()
    r.sock.sendall(b"\x05\x00\x00\x01hello")
    p = r.read()
    assert p[0] == 0xFF
    assert r.closed_by_peer()
    r2 = proxy.login("alpha")
    assert r2.text_rows("SELECT 1") == [["1"]]
    r2.close()
