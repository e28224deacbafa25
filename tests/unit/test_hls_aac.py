"""The one AudioSpecificConfig reader: the stream report, the segmenter and the muxer.

It replaced two (rtmp/flv.py's and this one), which disagreed on explicit-SBR
HE-AAC: one reported the 48 kHz output rate, the other the 24 kHz core rate.
Both are right for their reader, so the one parser reports both.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls.aac import (
    CHANNEL_COUNTS,
    SAMPLING_FREQUENCIES,
    AacConfig,
    AacConfigError,
    parse_audio_specific_config,
)


def asc(object_type: int, frequency_index: int, channels: int, frame_length_flag: int = 0) -> bytes:
    bits = (object_type << 11) | (frequency_index << 7) | (channels << 3) | (frame_length_flag << 2)
    return bits.to_bytes(2, "big")


def asc_bits(*fields: tuple[int, int]) -> bytes:
    """(bit count, value) fields MSB first, zero-padded to whole bytes."""
    value, size = 0, 0
    for count, field in fields:
        value, size = (value << count) | field, size + count
    pad = -size % 8
    return (value << pad).to_bytes((size + pad) // 8, "big")


def summary(config: AacConfig) -> tuple[int, int, int]:
    return config.object_type, config.sample_rate, config.channels


def test_aac_lc_48k_stereo() -> None:
    config = parse_audio_specific_config(bytes.fromhex("1190"))
    assert config == AacConfig(2, 48000, 2, 2, 48000, 1024)
    assert config.frame_duration_ms == pytest.approx(21.333, abs=1e-3)


def test_trailing_sync_extension_is_ignored() -> None:
    # What ffmpeg's encoder writes for mono 48 kHz: LC + an explicit SBR sync extension.
    config = parse_audio_specific_config(bytes.fromhex("118856e500"))
    assert summary(config) == (2, 48000, 1)


def test_frame_length_flag_means_960_samples() -> None:
    config = parse_audio_specific_config(asc(2, 3, 2, frame_length_flag=1))
    assert config.frame_length == 960
    assert config.frame_duration_ms == pytest.approx(20.0)


def test_explicit_sbr_reports_output_rate_and_times_frames_at_the_core_rate() -> None:
    # HE-AAC, explicit hierarchical signalling: AOT 5, 24 kHz core, 48 kHz output, then AOT 2.
    config = parse_audio_specific_config(asc_bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 2), (1, 0)))
    # The report says what a listener gets; the frames are AAC-LC coded at 24 kHz, so one
    # frame (1024 core samples = 2048 output samples) lasts 42.7 ms, not 21.3 ms.
    assert config == AacConfig(5, 48000, 2, 2, 24000, 1024)
    assert config.frame_duration_ms == pytest.approx(1024 / 24)


def test_explicit_ps_plays_a_mono_core_as_stereo() -> None:
    config = parse_audio_specific_config(asc_bits((5, 29), (4, 6), (4, 1), (4, 3), (5, 2)))
    assert config == AacConfig(29, 48000, 2, 2, 24000, 1024)


def test_escaped_frequency() -> None:
    bits = (2 << 35) | (15 << 31) | (44000 << 7) | (1 << 3)
    config = parse_audio_specific_config(bits.to_bytes(5, "big"))
    assert (config.sample_rate, config.core_sample_rate, config.channels) == (44000, 44000, 1)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("119056e500"), (2, 48000, 2)),  # OBS, with SBR sync extension
        (bytes.fromhex("1190"), (2, 48000, 2)),
        (bytes.fromhex("1210"), (2, 44100, 2)),
        (bytes.fromhex("1208"), (2, 44100, 1)),
        (bytes.fromhex("1188"), (2, 48000, 1)),
        (bytes.fromhex("0a10"), (1, 44100, 2)),  # AAC Main
        (bytes.fromhex("13b0"), (2, 22050, 6)),
        (bytes.fromhex("11b8"), (2, 48000, 8)),  # channel config 7: 7.1
        (bytes.fromhex("1180"), (2, 48000, 0)),  # layout in a PCE
        (asc_bits((5, 2), (4, 15), (24, 50000), (4, 2)), (2, 50000, 2)),
        (asc_bits((5, 31), (6, 10), (4, 3), (4, 2)), (42, 48000, 2)),  # escaped type
        (asc_bits((5, 5), (4, 7), (4, 2), (4, 15), (24, 44100), (5, 2)), (5, 44100, 2)),
    ],
)
def test_configs_encoders_send(data: bytes, expected: tuple[int, int, int]) -> None:
    assert summary(parse_audio_specific_config(data)) == expected
    assert summary(parse_audio_specific_config(memoryview(data))) == expected
    assert summary(parse_audio_specific_config(bytearray(data))) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated"),
        (b"\x10", "truncated"),
        (b"\x11", "truncated"),
        (asc(0, 3, 2), "null audio object"),
        (asc(2, 13, 2), "reserved sampling frequency index 13"),
        (asc_bits((5, 2), (4, 3), (4, 8), (3, 0)), "channel configuration 8"),
        (asc_bits((5, 2), (4, 15), (24, 0), (4, 2), (3, 0)), "explicit sampling frequency of 0"),
        ((2 << 35 | 15 << 31).to_bytes(5, "big"), "explicit sampling frequency of 0"),
        (asc_bits((5, 2), (4, 15), (8, 1)), "truncated"),
        (asc_bits((5, 31)), "truncated"),
        (asc_bits((5, 5), (4, 6), (4, 2)), "truncated"),
        (asc_bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 0), (3, 0)), "under SBR/PS"),
    ],
)
def test_unusable_configs_raise(data: bytes, message: str) -> None:
    with pytest.raises(AacConfigError, match=message):
        parse_audio_specific_config(data)


@given(
    object_type=st.sampled_from([1, 2, 3, 4]),
    index=st.integers(min_value=0, max_value=len(SAMPLING_FREQUENCIES) - 1),
    channels=st.sampled_from(sorted(CHANNEL_COUNTS)),
    flag=st.integers(min_value=0, max_value=1),
)
def test_round_trip(object_type: int, index: int, channels: int, flag: int) -> None:
    config = parse_audio_specific_config(asc(object_type, index, channels, flag))
    assert config.object_type == config.core_object_type == object_type
    assert config.sample_rate == config.core_sample_rate == SAMPLING_FREQUENCIES[index]
    assert config.channels == CHANNEL_COUNTS[channels]
    assert config.frame_length == (960 if flag else 1024)


@given(st.binary(max_size=20))
def test_arbitrary_bytes_parse_or_raise_config_error(data: bytes) -> None:
    try:
        config = parse_audio_specific_config(data)
    except AacConfigError:
        return
    assert config.sample_rate > 0 and config.core_sample_rate > 0
    assert config.frame_duration_ms > 0
