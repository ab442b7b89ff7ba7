from pathlib import Path

import pytest

from butter.errors import ButterConfigError
from butter.settings import load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.transport.driver == "tcp"
    assert settings.host_manager.driver == "diversity"
    assert settings.max_frame == 4 * 1024 * 1024
    assert settings.memory_budget == 512 * 1024 * 1024


def test_priority_defaults_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "butter.toml"
    config.write_text(
        '[butter]\nport = 1111\nrequest_timeout = 3\n'
        '[butter.transport]\ndriver = "memory"\n[butter.transport.options]\nnetwork = "file"\ninbox = 5\n'
    )
    settings = load_settings(config_file=config)
    assert (settings.port, settings.transport.driver, settings.transport.options) == (
        1111, "memory", {"network": "file", "inbox": 5})
    monkeypatch.setenv("BUTTER_PORT", "2222")
    monkeypatch.setenv("BUTTER_TRANSPORT__OPTIONS__NETWORK", "env")
    settings = load_settings(config_file=config)
    assert settings.port == 2222
    assert settings.transport.options == {"network": "env", "inbox": 5}  # deep merge keeps the file's inbox
    assert settings.request_timeout == 3
    settings = load_settings(config_file=config, cli_args=["--port", "3333", "--memory_budget", "1GiB"])
    assert settings.port == 3333 and settings.memory_budget == 1024**3
    assert settings.transport.options["network"] == "env"


def test_butter_toml_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "butter.toml").write_text("[butter]\nport = 4444\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().port == 4444


@pytest.mark.parametrize(
    ("overrides", "key"),
    [({"port": 70000}, "port"), ({"max_frame": "10"}, "max_frame"), ({"peers": ["nonsense"]}, "peers"),
     ({"memory_budget": "1KiB"}, "memory_budget"), ({"transport": {"driver": "tcp", "x": 1}}, "transport.x")],
)
def test_invalid_values_name_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ButterConfigError, match=key.replace(".", r"\.")):
        load_settings(**overrides)


def test_invalid_env_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUTTER_REQUEST_TIMEOUT", "soon")
    with pytest.raises(ButterConfigError, match="request_timeout"):
        load_settings()


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ButterConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml")
