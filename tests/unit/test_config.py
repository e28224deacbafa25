"""Configuration precedence and validation: flag > env > file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediaserver.config import ConfigError, load_config


def test_config_precedence_flag_env_file(tmp_path: Path) -> None:
    config_file = tmp_path / "server.toml"
    config_file.write_text('segment-duration = 4\nplaylist_size = 9\ngrace_period = 5\n')
    config = load_config({"segment_duration": "3"}, env={"MEDIASERVER_PLAYLIST_SIZE": "7"},
                         config_file=config_file)
    assert (config.segment_duration, config.playlist_size, config.grace_period) == (3.0, 7, 5.0)
    assert config.rtmp == ("0.0.0.0", 1935) and config.http == ("0.0.0.0", 8080)
    with pytest.raises(ConfigError, match="playlist_size"):
        load_config({}, env={"MEDIASERVER_PLAYLIST_SIZE": "zero"})
    with pytest.raises(ConfigError, match="duplicate_publish"):
        load_config({"duplicate_publish": "both"}, env={})
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text("no_such_option = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config({}, env={}, config_file=bad_file)


def test_http_bounds_come_from_flag_env_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "server.toml"
    config_file.write_text("http-keepalive-timeout = 7\n")
    config = load_config({"max_http_connections": "50"},
                         env={"MEDIASERVER_HTTP_HEADER_TIMEOUT": "2.5"}, config_file=config_file)
    assert (config.max_http_connections, config.http_header_timeout,
            config.http_keepalive_timeout) == (50, 2.5, 7.0)
    with pytest.raises(ConfigError, match="http_header_timeout"):
        load_config({"http_header_timeout": "0"}, env={})
