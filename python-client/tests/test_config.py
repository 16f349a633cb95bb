"""berth.config: the environment contract, the secrets file, and its error messages."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from berth import config
from berth.config import ConfigError

BASE = {
    "BERTH_APP": "guestbook",
    "BERTH_VERSION": "v7",
    "BERTH_INSTANCE": "guestbook-v7-2",
    "BERTH_CACHE_SERVERS": "127.0.0.1:11211, cache-2:11311,[::1]:11411",
    "PAGE_SIZE": "25",
    "RATIO": "0.75",
    "FEATURE_X": "Yes",
    "HOSTS": "a, b,,c ",
    "EMPTY": "",
}


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_identity_and_servers_from_environment() -> None:
    config.reload(BASE)
    assert config.app() == "guestbook"
    assert config.version() == "v7"
    assert config.instance() == "guestbook-v7-2"
    assert config.cache_servers() == (
        ("127.0.0.1", 11211),
        ("cache-2", 11311),
        ("::1", 11411),
    )
    assert config.token() is None
    assert config.secret("anything") is None


def test_current_reads_os_environ_and_reload_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_APP", "from-os-environ")
    first = config.reload()
    assert config.current() is first
    assert config.app() == "from-os-environ"
    second = config.reload({"BERTH_APP": "other"})
    assert second is not first
    assert config.current() is second
    assert config.app() == "other"


def test_get_and_require() -> None:
    config.reload(BASE)
    assert config.get("PAGE_SIZE") == "25"
    assert config.get("NOPE") is None
    assert config.get("NOPE", "fallback") == "fallback"
    assert config.require("PAGE_SIZE") == "25"


def test_missing_required_key_names_key_and_place() -> None:
    config.reload(BASE)
    with pytest.raises(ConfigError) as err:
        config.require("DATABASE_TABLE")
    assert "'DATABASE_TABLE'" in str(err.value)
    assert "environment variable DATABASE_TABLE" in str(err.value)
    with pytest.raises(ConfigError, match="'EMPTY' is empty"):
        config.require("EMPTY")


@pytest.mark.parametrize(
    ("accessor", "name"),
    [
        (config.app, "BERTH_APP"),
        (config.version, "BERTH_VERSION"),
        (config.instance, "BERTH_INSTANCE"),
    ],
)
def test_missing_identity_fails_clearly(accessor: object, name: str) -> None:
    config.reload({})
    assert callable(accessor)
    with pytest.raises(ConfigError, match=f"'{name}' is not set"):
        accessor()


@pytest.mark.parametrize("bad", ["localhost", "host:", ":11211", "host:99999", "host:abc"])
def test_bad_cache_servers_name_the_variable(bad: str) -> None:
    config.reload({"BERTH_CACHE_SERVERS": f"127.0.0.1:1,{bad}"})
    with pytest.raises(ConfigError, match="BERTH_CACHE_SERVERS") as err:
        config.cache_servers()
    assert repr(bad) in str(err.value)


def test_unset_cache_servers_is_empty() -> None:
    config.reload({})
    assert config.cache_servers() == ()


def test_typed_accessors() -> None:
    config.reload(BASE)
    assert config.get_int("PAGE_SIZE") == 25
    assert config.get_int("NOPE", 10) == 10
    assert config.get_float("RATIO") == 0.75
    assert config.get_float("NOPE", 1.5) == 1.5
    assert config.get_bool("FEATURE_X") is True
    assert config.get_bool("EMPTY") is False
    assert config.get_bool("NOPE", True) is True
    assert config.get_list("HOSTS") == ["a", "b", "c"]
    assert config.get_list("NOPE", ["x"]) == ["x"]


def test_typed_accessors_reject_bad_values_and_missing_keys() -> None:
    config.reload(BASE)
    with pytest.raises(ConfigError, match=r"'RATIO': '0\.75' is not an integer"):
        config.get_int("RATIO")
    with pytest.raises(ConfigError, match="'HOSTS': 'a, b,,c ' is not a number"):
        config.get_float("HOSTS")
    with pytest.raises(ConfigError, match="'PAGE_SIZE': '25' is not a boolean"):
        config.get_bool("PAGE_SIZE")
    for accessor in (config.get_int, config.get_float, config.get_bool, config.get_list):
        with pytest.raises(ConfigError, match="required configuration key 'NOPE'"):
            accessor("NOPE")


def test_secrets_file_gives_token_and_secrets(tmp_path: Path) -> None:
    path = secrets_file(
        tmp_path,
        'token = "tok-123"\n[secrets]\nstripe_key = "sk_live"\nsession_key = "abc"\n',
    )
    config.reload({**BASE, "BERTH_SECRETS_FILE": str(path)})
    assert config.token() == "tok-123"
    assert config.secret("stripe_key") == "sk_live"
    assert config.require_secret("session_key") == "abc"
    assert config.secret("nope", "dflt") == "dflt"
    # Secrets are not configuration: get() reads only the environment.
    assert config.get("stripe_key") is None


def test_missing_secret_names_the_file(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, 'token = "t"\n')
    config.reload({"BERTH_SECRETS_FILE": str(path)})
    with pytest.raises(ConfigError) as err:
        config.require_secret("smtp_password")
    assert "'smtp_password'" in str(err.value)
    assert str(path) in str(err.value)
    assert "[secrets]" in str(err.value)


def test_missing_secret_without_secrets_file_says_so() -> None:
    config.reload({})
    with pytest.raises(ConfigError, match="BERTH_SECRETS_FILE is not set"):
        config.require_secret("smtp_password")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("token = ", "is not valid TOML"),
        ("token = 5\n", "'token' must be a string"),
        ("secrets = 3\n", "'secrets' must be a table"),
        ("[secrets]\nport = 5\n", "secret 'port' must be a string"),
        ('tokn = "x"\n', "unknown top-level key(s) tokn"),
    ],
)
def test_bad_secrets_file_fails_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = secrets_file(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load({"BERTH_SECRETS_FILE": str(path)})
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_absent_or_unreadable_secrets_file_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load({"BERTH_SECRETS_FILE": str(tmp_path / "none.toml")})
    if os.geteuid() != 0:  # root reads any file, so only a normal user can see the refusal
        path = secrets_file(tmp_path, 'token = "t"\n', mode=0o000)
        with pytest.raises(ConfigError, match="not readable"):
            config.load({"BERTH_SECRETS_FILE": str(path)})


def test_secrets_file_open_to_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secrets_file(tmp_path, 'token = "t"\n', mode=0o644)
    with caplog.at_level(logging.WARNING, logger="berth.config"):
        cfg = config.load({"BERTH_SECRETS_FILE": str(path)})
    assert cfg.token == "t"
    assert "accessible to other users" in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="berth.config"):
        config.load({"BERTH_SECRETS_FILE": str(path)})
    assert caplog.text == ""


def test_empty_token_means_no_login(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, 'token = ""\n')
    assert config.load({"BERTH_SECRETS_FILE": str(path)}).token is None
