"""Settings from TOML, environment and flags; the CLI refuses what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli import ExitCode, main
from relay.settings import Settings, SettingsError


def test_tls_is_required_off_loopback() -> None:
    with pytest.raises(SettingsError, match="TLS is required"):
        Settings(host="0.0.0.0").validate()
    Settings(host="127.0.0.1").validate()
    Settings(host="::1").validate()
    Settings(host="0.0.0.0", behind_tls_proxy=True, origin="https://relay.example").validate()
    with pytest.raises(SettingsError, match="https"):
        Settings(host="0.0.0.0", behind_tls_proxy=True, origin="http://relay.example").validate()


def test_every_problem_is_reported_at_once() -> None:
    bad = Settings(token_ttl_s=3600, database_url="mysql://x", notify_url="kafka://y")
    with pytest.raises(SettingsError) as err:
        bad.validate()
    text = str(err.value)
    assert "token_ttl_s" in text
    assert "database_url" in text
    assert "notify_url" in text


def test_toml_then_environment(tmp_path: Path) -> None:
    key = tmp_path / "k1"
    key.write_text("x" * 40)
    config = tmp_path / "relay.toml"
    config.write_text(
        'port = 9001\ndata_dir = "d"\nregistration = "invite"\n'
        '[[jwt_keys]]\nkid = "k1"\nsecret_file = "k1"\n'
    )
    settings = Settings.from_toml(config)
    assert settings.port == 9001
    assert settings.data_dir == tmp_path / "d"
    assert settings.jwt_keys[0].secret == b"x" * 40
    env = Settings.from_env(
        {"DRIFT_RELAY_PORT": "9002", "DRIFT_RELAY_HEARTBEAT_S": "2.5"}, base=settings
    )
    assert (env.port, env.heartbeat_s, env.registration) == (9002, 2.5, "invite")
    config.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="unknown relay settings: colour"):
        Settings.from_toml(config)


def test_cli_check_and_invite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--data-dir", str(tmp_path)]) == ExitCode.OK
    assert "configuration ok" in capsys.readouterr().out
    assert main(["invite", "--data-dir", str(tmp_path), "WELCOME-1"]) == ExitCode.OK
    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == ExitCode.USAGE
    assert "TLS is required" in capsys.readouterr().err
    assert (
        main(
            [
                "check",
                "--database-url",
                "postgresql://nobody@127.0.0.1:1/x",
                "--data-dir",
                str(tmp_path),
            ]
        )
        == ExitCode.USAGE
    )
    assert "share their token keys" in capsys.readouterr().err
    key = tmp_path / "key"
    key.write_text("k" * 40)
    config = tmp_path / "pg.toml"
    config.write_text(f'[[jwt_keys]]\nkid = "a"\nsecret_file = "{key}"\n')
    unreachable = [
        "check",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path),
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/x",
    ]
    assert main(unreachable) == ExitCode.FATAL
    assert "cannot open PostgreSQL" in capsys.readouterr().err
