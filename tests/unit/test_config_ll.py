"""The LL-HLS options: from flag, env and file like every option; nonsense is refused
before the server starts, not at each publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediaserver.config import ConfigError, add_arguments, load_config
from mediaserver.hub import HubSettings


def test_ll_hls_is_on_by_default_with_a_third_of_a_second_parts() -> None:
    config = load_config({}, env={})
    assert (config.ll_hls, config.part_duration) == ("on", 0.333)


def test_ll_options_come_from_flag_env_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "server.toml"
    config_file.write_text('ll-hls = "off"\npart_duration = 0.5\n')
    assert load_config({}, env={}, config_file=config_file).ll_hls == "off"
    config = load_config({"ll_hls": "on"}, env={"MEDIASERVER_PART_DURATION": "0.25"},
                         config_file=config_file)
    assert (config.ll_hls, config.part_duration) == ("on", 0.25)
    with pytest.raises(ConfigError, match="ll_hls"):
        load_config({"ll_hls": "yes"}, env={})
    with pytest.raises(ConfigError, match="part_duration"):
        load_config({"part_duration": "0"}, env={})


def test_help_lists_the_ll_options() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    assert "--ll-hls on|off" in text and "--part-duration SECONDS" in text


@pytest.mark.parametrize("part", [2.0, 5.0, 0.01])
def test_a_part_that_cannot_fit_a_segment_is_a_start_up_error(part: float) -> None:
    with pytest.raises(ValueError, match="part_duration"):
        HubSettings(segment_duration=2.0, part_duration=part).check()
    HubSettings(segment_duration=2.0, part_duration=None).check()  # LL off: no parts at all
