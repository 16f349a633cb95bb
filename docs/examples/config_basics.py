"""berth.config: who the app is, its plain configuration and its secrets.

Run with the runtime contract set (as the platform does), plus PAGE_SIZE=25, ADMINS=ann,bob
and DEBUG=no in the environment and `session_key` in the secrets file:

    berth config set APP PAGE_SIZE=25 ADMINS=ann,bob DEBUG=no
    berth config set APP --secret session_key
"""

from __future__ import annotations

import os

from berth import config


def main() -> None:
    # ANCHOR: identity
    app = config.app()  # BERTH_APP: the app's name
    version = config.version()  # BERTH_VERSION: the version this process runs
    instance = config.instance()  # BERTH_INSTANCE: this process
    print(f"{app} {version} on {instance}")
    # ANCHOR_END: identity
    assert app and version and instance.startswith(app)

    # ANCHOR: typed
    page_size = config.get_int("PAGE_SIZE")  # required: ConfigError when unset
    debug = config.get_bool("DEBUG", False)  # 1/true/yes/on, 0/false/no/off
    admins = config.get_list("ADMINS", [])  # comma-separated
    ratio = config.get_float("SAMPLE_RATIO", 0.1)  # unset: the default
    theme = config.get("THEME", "light")  # plain text, or the default
    # ANCHOR_END: typed
    assert (page_size, debug, admins, ratio, theme) == (25, False, ["ann", "bob"], 0.1, "light")

    # ANCHOR: missing
    try:
        config.require("SMTP_HOST")
    except config.ConfigError as e:
        message = str(e)  # names the key and where it was looked for
    # ANCHOR_END: missing
    assert "SMTP_HOST" in message, message

    # ANCHOR: secrets
    session_key = config.require_secret("session_key")  # from the secrets file
    stripe_key = config.secret("stripe_key", "test-mode")  # optional, with a default
    # ANCHOR_END: secrets
    assert session_key and stripe_key == "test-mode"
    assert config.token(), "the platform gives every app a token"

    # ANCHOR: load
    other = config.load({"BERTH_APP": "demo", "PAGE_SIZE": "10"})  # not installed
    assert other.app == "demo" and other.get("PAGE_SIZE") == "10"
    assert config.get("PAGE_SIZE") == "25"  # the process-wide snapshot is unchanged
    # ANCHOR_END: load

    # ANCHOR: bad-value
    config.reload({**os.environ, "PAGE_SIZE": "many"})  # as if the operator mistyped it
    try:
        config.get_int("PAGE_SIZE")
    except config.ConfigError as e:
        print(e)  # names the key, the value and the type it should have
    else:
        raise AssertionError("a malformed integer must be a ConfigError")
    finally:
        config.reload()  # back to os.environ
    # ANCHOR_END: bad-value
    assert config.get_int("PAGE_SIZE") == 25
    print("config_basics: ok")


if __name__ == "__main__":
    main()
