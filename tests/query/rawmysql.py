"""A tiny MySQL protocol client for the tests: exact packets, nothing hidden.

PyMySQL and mysqlclient never use server-side prepared statements and never send
COM_FIELD_LIST, COM_SET_OPTION, COM_CHANGE_USER or a refused command, so these tests speak
the protocol themselves (sysbench in bench/query uses the binary protocol too).
"""

from __future__ import annotations

import hashlib
import socket
import struct

CLIENT_LONG_PASSWORD = 1
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_SECURE_CONNECTION = 1 << 15
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_CONNECT_ATTRS = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC = 1 << 21
CLIENT_DEPRECATE_EOF = 1 << 24

BASE_CAPS = (
    CLIENT_LONG_PASSWORD
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC
)


def native_scramble(password: bytes, nonce: bytes) -> bytes:
    if not password:
        return b""
    s1 = hashlib.sha1(password).digest()
    s2 = hashlib.sha1(s1).digest()
    mask = hashlib.sha1(nonce + s2).digest()
    return bytes(a ^ b for a, b in zip(s1, mask))


def lenenc(n: int) -> bytes:
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def read_lenenc(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 251:
        return b, pos + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}[b]
    return int.from_bytes(buf[pos + 1 : pos + 1 + width], "little"), pos + 1 + width


class ServerError(Exception):
    def __init__(self, code: int, state: str, message: str) -> None:
        super().__init__(f"{code} ({state}): {message}")
        self.code, self.state, self.message = code, state, message


def parse_err(p: bytes) -> ServerError:
    code = struct.unpack("<H", p[1:3])[0]
    if p[3:4] == b"#":
        return ServerError(code, p[4:9].decode(), p[9:].decode("utf-8", "replace"))
    return ServerError(code, "HY000", p[3:].decode("utf-8", "replace"))


class Raw:
    """One connection; `caps` are the capability flags the client asks for."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.seq = 0
        self.caps = 0
        self.login_seq = 1
        self.greeting = self.read()
        g = self.greeting
        assert g[0] == 10, g
        end = g.index(b"\0", 1)
        self.server_version = g[1:end].decode()
        pos = end + 1
        self.connection_id = struct.unpack("<I", g[pos : pos + 4])[0]
        self.nonce = g[pos + 4 : pos + 12]
        pos += 13
        low = struct.unpack("<H", g[pos : pos + 2])[0]
        high = struct.unpack("<H", g[pos + 5 : pos + 7])[0]
        self.server_caps = low | high << 16
        pos += 7 + 1 + 10
        self.nonce += g[pos : pos + 12]
        self.plugin = g[pos + 13 :].rstrip(b"\0").decode()

    # -- packets ---------------------------------------------------------------------------
    def _recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self) -> bytes:
        payload = b""
        while True:
            hdr = self._recv(4)
            n = int.from_bytes(hdr[:3], "little")
            self.seq = (hdr[3] + 1) & 0xFF
            payload += self._recv(n)
            if n < 0xFFFFFF:
                return payload

    def write(self, payload: bytes, seq: int | None = None) -> None:
        seq = self.seq if seq is None else seq
        out = b""
        while True:
            chunk, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
            out += len(chunk).to_bytes(3, "little") + bytes([seq & 0xFF]) + chunk
            seq += 1
            if len(chunk) < 0xFFFFFF:
                break
        self.seq = seq & 0xFF
        self.sock.sendall(out)

    def closed_by_peer(self) -> bool:
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except OSError:
            return True

    # -- login -----------------------------------------------------------------------------
    def start_tls(self, context, caps: int = BASE_CAPS) -> None:
        """Sends SSLRequest and wraps the socket in TLS; the login then continues inside."""
        self.write(struct.pack("<IIB", caps | CLIENT_SSL, 1 << 30, 45) + b"\0" * 23, seq=1)
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.login_seq = 2

    def login(
        self,
        user: str,
        password: str,
        db: str | None = None,
        caps: int = BASE_CAPS,
        plugin: str = "mysql_native_password",
        collation: int = 45,
        attrs: dict[str, str] | None = None,
    ) -> bytes:
        """Sends HandshakeResponse41 and follows an AuthSwitch; returns the final packet."""
        if db is not None:
            caps |= CLIENT_CONNECT_WITH_DB
        if attrs:
            caps |= CLIENT_CONNECT_ATTRS
        self.caps = caps
        auth = native_scramble(password.encode(), self.nonce) if plugin == "mysql_native_password" else b"\x01" * 32
        if self.login_seq == 2:
            caps |= CLIENT_SSL
        p = struct.pack("<IIB", caps, 1 << 30, collation) + b"\0" * 23
        p += user.encode() + b"\0"
        p += lenenc(len(auth)) + auth if caps & CLIENT_PLUGIN_AUTH_LENENC else bytes([len(auth)]) + auth
        if db is not None:
            p += db.encode() + b"\0"
        p += plugin.encode() + b"\0"
        if attrs:
            kv = b"".join(lenenc(len(k)) + k.encode() + lenenc(len(v)) + v.encode() for k, v in attrs.items())
            p += lenenc(len(kv)) + kv
        self.write(p, seq=self.login_seq)
        r = self.read()
        if r == b"\x01\x04":  # caching_sha2_password: full authentication, password in clear
            self.write(password.encode() + b"\0")
            r = self.read()
        if r[:1] == b"\xfe":  # AuthSwitchRequest
            end = r.index(b"\0", 1)
            assert r[1:end] == b"mysql_native_password", r
            nonce = r[end + 1 :].rstrip(b"\0")
            self.write(native_scramble(password.encode(), nonce))
            r = self.read()
        if r[:1] == b"\xff":
            raise parse_err(r)
        return r

    # -- commands --------------------------------------------------------------------------
    def command(self, payload: bytes) -> None:
        self.write(payload, seq=0)

    def _eof_mode(self) -> bool:
        return bool(self.caps & CLIENT_DEPRECATE_EOF)

    def _end(self, p: bytes) -> bool:
        return p[:1] == b"\xfe" and len(p) < 0xFFFFFF and (len(p) < 9 or self._eof_mode())

    def _status(self, p: bytes) -> int:
        if p[0] == 0xFE and not self._eof_mode():
            return struct.unpack("<H", p[3:5])[0]
        _, pos = read_lenenc(p, 1)
        _, pos = read_lenenc(p, pos)
        return struct.unpack("<H", p[pos : pos + 2])[0]

    def results(self) -> list[list[bytes] | dict]:
        """Reads every result of a COM_QUERY/COM_STMT_EXECUTE: a list of row-packet lists
        (raw payloads) or OK dicts; raises ServerError on ERR."""
        out: list = []
        while True:
            p = self.read()
            if p[0] == 0xFF:
                raise parse_err(p)
            if p[0] == 0x00:
                st = self._status(p)
                out.append({"ok": True, "status": st})
                if not st & 8:
                    return out
                continue
            ncol, _ = read_lenenc(p, 0)
            for _ in range(ncol):
                self.read()
            if not self._eof_mode():
                assert self._end(self.read())
            rows = []
            while True:
                p = self.read()
                if p[0] == 0xFF:
                    raise parse_err(p)
                if self._end(p):
                    break
                rows.append(p)
            out.append(rows)
            if not self._status(p) & 8:
                return out

    def query(self, sql: str | bytes) -> list:
        self.command(b"\x03" + (sql.encode() if isinstance(sql, str) else sql))
        return self.results()

    def text_rows(self, sql: str) -> list[list[str | None]]:
        rows = self.query(sql)[0]
        out = []
        for p in rows:
            pos, row = 0, []
            while pos < len(p):
                if p[pos] == 0xFB:
                    row.append(None)
                    pos += 1
                    continue
                n, pos = read_lenenc(p, pos)
                row.append(p[pos : pos + n].decode())
                pos += n
            out.append(row)
        return out

    def simple(self, payload: bytes) -> bytes:
        """A command answered by one packet; raises ServerError on ERR."""
        self.command(payload)
        p = self.read()
        if p[:1] == b"\xff":
            raise parse_err(p)
        return p

    def prepare(self, sql: str) -> tuple[int, int, int]:
        self.command(b"\x16" + sql.encode())
        p = self.read()
        if p[0] == 0xFF:
            raise parse_err(p)
        stmt_id, ncols, nparams = struct.unpack("<IHH", p[1:9])
        for _ in range(nparams):
            self.read()
        if nparams and not self._eof_mode():
            assert self._end(self.read())
        for _ in range(ncols):
            self.read()
        if ncols and not self._eof_mode():
            assert self._end(self.read())
        return stmt_id, ncols, nparams

    def execute(self, stmt_id: int, params: list[int | str] = (), flags: int = 0) -> list:
        p = b"\x17" + struct.pack("<IBI", stmt_id, flags, 1)
        if params:
            p += b"\0" * ((len(params) + 7) // 8) + b"\x01"
            types = b"".join(b"\x08\x00" if isinstance(v, int) else b"\xfd\x00" for v in params)
            vals = b"".join(
                struct.pack("<q", v) if isinstance(v, int) else lenenc(len(v.encode())) + v.encode()
                for v in params
            )
            p += types + vals
        self.command(p)
        return self.results()

    def close(self) -> None:
        try:
            self.command(b"\x01")
        except OSError:
            pass
        self.sock.close()
