"""One channel-name rule: the HLS routes and the control API read the same definition."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_api import keys
from hls import http, names

REPO = Path(__file__).resolve().parents[2]
RULE_TEXT = "[a-z0-9][a-z0-9_-]"


def test_the_rule_is_written_once() -> None:
    writers = sorted(str(p.relative_to(REPO)) for p in REPO.glob("*/**/*.py")
                     if ".venv" not in p.parts and RULE_TEXT in p.read_text()
                     and not p.name.startswith("test_"))
    assert writers == ["hls/names.py"], writers
    assert http.CHANNEL_NAME is names.CHANNEL_NAME
    assert f"^{names.CHANNEL_NAME.pattern}$" == keys.CHANNEL_NAME_PATTERN


@pytest.mark.parametrize(
    ("name", "valid"),
    [("cam1", True), ("a", True), ("0-x_y", True), ("a" * 64, True), ("a" * 65, False),
     ("", False), ("-cam", False), ("_cam", False), ("Cam", False), ("cam.1", False),
     ("cam/1", False), ("cam 1", False)],
)
def test_api_and_hls_routes_agree(name: str, valid: bool) -> None:
    assert keys.is_valid_channel_name(name) is valid
    assert (http.CHANNEL_NAME.fullmatch(name) is not None) is valid
    if not valid:
        with pytest.raises(keys.InvalidChannelName):
            keys.validate_channel_name(name)
