"""The app's identity, configuration and secrets, read from the runtime contract.

The deployer starts every app process with `BERTH_*` environment variables and a secrets file;
this module is the one place that reads them, so a missing key fails early with a clear message.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Config",
    "ConfigError",
    "app",
    "cache_servers",
    "current",
    "get",
    "get_bool",
    "get_float",
    "get_int",
    "get_list",
    "instance",
    "load",
    "reload",
    "require",
    "require_secret",
    "secret",
    "token",
    "version",
]

ENV_APP: Final = "BERTH_APP"
ENV_VERSION: Final = "BERTH_VERSION"
ENV_INSTANCE: Final = "BERTH_INSTANCE"
ENV_CACHE_SERVERS: Final = "BERTH_CACHE_SERVERS"
ENV_SECRETS_FILE: Final = "BERTH_SECRETS_FILE"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})

_log = logging.getLogger("berth.config")


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the key and its source."""


class _Missing:
    """Marks "no default given", so that `None` stays a usable default."""


_MISSING: Final = _Missing()


@dataclass(frozen=True)
class Config:
    """One snapshot of the environment and the secrets file.

    `environ` holds the ordinary (non-secret) configuration; `secrets` the `[secrets]` table of
    the secrets file; `token` the app's own token for logging in to Berth services.
    """

    environ: Mapping[str, str]
    secrets: Mapping[str, str] = field(default_factory=dict)
    token: str | None = None
    secrets_file: str | None = None

    def get(self, key: str, default: str | None = None) -> str | None:
        """The environment variable `key`, or `default` when it is not set."""
        return self.environ.get(key, default)

    def require(self, key: str) -> str:
        """The environment variable `key`; raises `ConfigError` when it is not set or empty."""
        value = self.environ.get(key)
        if value is None or value == "":
            state = "is not set" if value is None else "is empty"
            raise ConfigError(
                f"required configuration key {key!r} {state}: "
                f"looked for the environment variable {key}"
            )
        return value

    def secret(self, name: str, default: str | None = None) -> str | None:
        """The secret `name` from the secrets file, or `default` when it is not there."""
        return self.secrets.get(name, default)

    def require_secret(self, name: str) -> str:
        """The secret `name`; raises `ConfigError` naming the file looked in when missing."""
        value = self.secrets.get(name)
        if value is None:
            if self.secrets_file is None:
                where = f"no secrets file is configured ({ENV_SECRETS_FILE} is not set)"
            else:
                where = f"looked in the [secrets] table of {self.secrets_file} ({ENV_SECRETS_FILE})"
            raise ConfigError(f"required secret {name!r} is missing: {where}")
        return value

    @property
    def app(self) -> str:
        """The app's name (`BERTH_APP`); required."""
        return self.require(ENV_APP)

    @property
    def version(self) -> str:
        """The running version of the app (`BERTH_VERSION`); required."""
        return self.require(ENV_VERSION)

    @property
    def instance(self) -> str:
        """This process' instance id (`BERTH_INSTANCE`); required."""
        return self.require(ENV_INSTANCE)

    @property
    def cache_servers(self) -> tuple[tuple[str, int], ...]:
        """`BERTH_CACHE_SERVERS` as (host, port) pairs; empty when unset."""
        return parse_servers(self.environ.get(ENV_CACHE_SERVERS, ""), ENV_CACHE_SERVERS)


def parse_servers(text: str, source: str) -> tuple[tuple[str, int], ...]:
    """Parses `host:port,host:port` (IPv6 as `[addr]:port`); `source` names it in errors."""
    servers: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, port_text = item.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(
                f"{source}: {item!r} is not a host:port address "
                f"(expected e.g. 127.0.0.1:11211 or [::1]:11211)"
            )
        servers.append((host, int(port_text)))
    return tuple(servers)


def _read_secrets(path: str) -> tuple[str | None, dict[str, str]]:
    where = f"secrets file {path} ({ENV_SECRETS_FILE})"
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{where} is not readable by this user") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{where} cannot be read: {e}") from None
    if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Not fatal: the deployer owns the file; but say so, since secrets should not leak.
        _log.warning(
            "%s is accessible to other users (mode %o); it should be 0600", where, mode & 0o777
        )
    token = data.pop("token", None)
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"{where}: 'token' must be a string")
    table = data.pop("secrets", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'secrets' must be a table ([secrets])")
    if data:
        unknown = ", ".join(sorted(data))
        raise ConfigError(
            f"{where}: unknown top-level key(s) {unknown}; only 'token' and [secrets] are allowed"
        )
    secrets: dict[str, str] = {}
    for name, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: secret {name!r} must be a string")
        secrets[name] = value
    return token, secrets


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Reads a fresh `Config` from `environ` (default `os.environ`) and its secrets file.

    Raises `ConfigError` when the secrets file is named but cannot be read or parsed.
    """
    env = dict(os.environ if environ is None else environ)
    path = env.get(ENV_SECRETS_FILE) or None
    token: str | None = None
    secrets: dict[str, str] = {}
    if path is not None:
        token, secrets = _read_secrets(path)
    return Config(environ=env, secrets=secrets, token=token or None, secrets_file=path)


_lock = threading.Lock()
_current: Config | None = None


def current() -> Config:
    """The process-wide `Config`, loaded from `os.environ` on first use."""
    global _current
    cfg = _current
    if cfg is None:
        with _lock:
            if _current is None:
                _current = load()
            cfg = _current
    return cfg


def reload(environ: Mapping[str, str] | None = None) -> Config:
    """Replaces the process-wide `Config` (from `environ`, default `os.environ`) and returns it.

    Clients built from the previous one (e.g. `berth.cache`'s default client) are rebuilt on
    their next call.
    """
    global _current
    cfg = load(environ)
    with _lock:
        _current = cfg
    return cfg


def app() -> str:
    """The app's name (`BERTH_APP`)."""
    return current().app


def version() -> str:
    """The app version this process runs (`BERTH_VERSION`)."""
    return current().version


def instance() -> str:
    """This process' instance id (`BERTH_INSTANCE`)."""
    return current().instance


def token() -> str | None:
    """The app's token for logging in to Berth services, or None (local, anonymous services)."""
    return current().token


def cache_servers() -> tuple[tuple[str, int], ...]:
    """The cache servers (`BERTH_CACHE_SERVERS`) as (host, port) pairs."""
    return current().cache_servers


def get(key: str, default: str | None = None) -> str | None:
    """The configuration value `key` (an environment variable), or `default`."""
    return current().get(key, default)


def require(key: str) -> str:
    """The configuration value `key`; raises `ConfigError` when it is missing or empty."""
    return current().require(key)


def secret(name: str, default: str | None = None) -> str | None:
    """The secret `name` from the secrets file, or `default`."""
    return current().secret(name, default)


def require_secret(name: str) -> str:
    """The secret `name`; raises `ConfigError` when it is missing."""
    return current().require_secret(name)


def _typed(key: str, default: object, kind: str) -> str | None:
    value = current().get(key)
    if value is None and isinstance(default, _Missing):
        raise ConfigError(
            f"required configuration key {key!r} ({kind}) is not set: "
            f"looked for the environment variable {key}"
        )
    return value


def _bad(key: str, value: str, kind: str) -> ConfigError:
    return ConfigError(f"configuration key {key!r}: {value!r} is not {kind}")


def get_int(key: str, default: int | _Missing = _MISSING) -> int:
    """`key` as an int; `default` when unset, or `ConfigError` when unset without a default."""
    value = _typed(key, default, "an integer")
    if value is None:
        assert not isinstance(default, _Missing)
        return default
    try:
        return int(value.strip())
    except ValueError:
        raise _bad(key, value, "an integer") from None


def get_float(key: str, default: float | _Missing = _MISSING) -> float:
    """`key` as a float; `default` when unset, or `ConfigError` when unset without a default."""
    value = _typed(key, default, "a number")
    if value is None:
        assert not isinstance(default, _Missing)
        return default
    try:
        return float(value.strip())
    except ValueError:
        raise _bad(key, value, "a number") from None


def get_bool(key: str, default: bool | _Missing = _MISSING) -> bool:
    """`key` as a bool (1/true/yes/on or 0/false/no/off/empty, any case); see `get_int`."""
    value = _typed(key, default, "a boolean")
    if value is None:
        assert not isinstance(default, _Missing)
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _bad(key, value, "a boolean (1/true/yes/on or 0/false/no/off)")


def get_list(key: str, default: list[str] | _Missing = _MISSING) -> list[str]:
    """`key` split on commas, items stripped and empty ones dropped; see `get_int`."""
    value = _typed(key, default, "a comma-separated list")
    if value is None:
        assert not isinstance(default, _Missing)
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]
