"""The AudioSpecificConfig reader the segmenter and muxer rely on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls.aac import SAMPLING_FREQUENCIES, AacConfigError, parse_audio_specific_config


def asc(object_type: int, frequency_index: int, channels: int, frame_length_flag: int = 0) -> bytes:
    bits = (object_type << 11) | (frequency_index << 7) | (channels << 3) | (frame_length_flag << 2)
    return bits.to_bytes(2, "big")


def test_aac_lc_48k_stereo() -> None:
    config = parse_audio_specific_config(bytes.fromhex("1190"))
    assert (config.object_type, config.sample_rate, config.channels) == (2, 48000, 2)
    assert config.frame_length == 1024
    assert config.frame_duration_ms == pytest.approx(21.333, abs=1e-3)


def test_trailing_sync_extension_is_ignored() -> None:
    # What ffmpeg's encoder writes for mono 48 kHz: LC + an explicit SBR sync extension.
    config = parse_audio_specific_config(bytes.fromhex("118856e500"))
    assert (config.object_type, config.sample_rate, config.channels) == (2, 48000, 1)


def test_frame_length_flag_means_960_samples() -> None:
    config = parse_audio_specific_config(asc(2, 3, 2, frame_length_flag=1))
    assert config.frame_length == 960
    assert config.frame_duration_ms == pytest.approx(20.0)


def test_explicit_sbr_reports_the_core_rate() -> None:
    # HE-AAC, explicit hierarchical signalling: AOT 5, 24 kHz core, 48 kHz output, then AOT 2.
    bits = (5 << 35) | (6 << 31) | (2 << 27) | (3 << 23) | (2 << 18)
    config = parse_audio_specific_config(bits.to_bytes(5, "big"))
    assert (config.object_type, config.sample_rate, config.channels) == (2, 24000, 2)


def test_escaped_frequency() -> None:
    bits = (2 << 35) | (15 << 31) | (44000 << 7) | (1 << 3)
    config = parse_audio_specific_config(bits.to_bytes(5, "big"))
    assert (config.sample_rate, config.channels) == (44000, 1)


@pytest.mark.parametrize(
    "data", [b"", b"\x10", asc(0, 3, 2), asc(2, 13, 2), (2 << 35 | 15 << 31).to_bytes(5, "big")]
)
def test_unusable_configs_raise(data: bytes) -> None:
    with pytest.raises(AacConfigError):
        parse_audio_specific_config(data)


@given(
    object_type=st.sampled_from([1, 2, 3, 4]),
    index=st.integers(min_value=0, max_value=len(SAMPLING_FREQUENCIES) - 1),
    channels=st.integers(min_value=1, max_value=7),
    flag=st.integers(min_value=0, max_value=1),
)
def test_round_trip(object_type: int, index: int, channels: int, flag: int) -> None:
    config = parse_audio_specific_config(asc(object_type, index, channels, flag))
    assert config.object_type == object_type
    assert config.sample_rate == SAMPLING_FREQUENCIES[index]
    assert config.channels == channels
    assert config.frame_length == (960 if flag else 1024)


@given(st.binary(max_size=8))
def test_arbitrary_bytes_parse_or_raise_config_error(data: bytes) -> None:
    try:
        config = parse_audio_specific_config(data)
    except AacConfigError:
        return
    assert config.sample_rate > 0
