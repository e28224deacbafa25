"""The one AAC AudioSpecificConfig reader (ISO/IEC 14496-3 1.6.2.1).

Its readers want different rates from the same config. A stream report wants what
a listener hears: the output rate, which with explicit SBR/PS signalling (HE-AAC,
HE-AACv2) is the extension rate, e.g. 48 kHz. The segmenter wants how long a frame
lasts, which is measured at the core rate the AAC frames are coded at (24 kHz
there: 1024 core samples, 42.7 ms). Both are here, so nobody parses twice.

`rtmp.flv` only hands over the sequence-header bytes: the RTMP layer needs no codec
config, and `rtmp/` and `hls/` do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLING_FREQUENCIES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
# channelConfiguration -> channel count (1.6.3.5; 7 is 7.1; 0: layout in a program config
# element). 8-10 and 15 are reserved.
CHANNEL_COUNTS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}
_ESCAPE_FREQUENCY_INDEX = 15
_ESCAPE_OBJECT_TYPE = 31
_SBR = 5
_PS = 29
# Object types whose GASpecificConfig starts with frameLengthFlag (1024 vs 960 samples).
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
# Longest prefix read: two escaped object types, two explicit 24-bit rates, the flags.
_PREFIX = 16


class AacConfigError(ValueError):
    """The AudioSpecificConfig is truncated or uses a reserved value."""


@dataclass(frozen=True, slots=True)
class AacConfig:
    """What a stream report, the segmenter and the muxer need from an AudioSpecificConfig."""

    object_type: int  # as signalled: 2 = AAC-LC, 5 = HE-AAC (SBR), 29 = HE-AACv2 (PS), ...
    sample_rate: int  # output rate: with explicit SBR/PS signalling, the extension rate
    channels: int  # output channels (PS: a mono core plays as stereo); 0 = in the PCE
    core_object_type: int  # the codec of the frames themselves (2 under SBR/PS)
    core_sample_rate: int  # the rate the frames are coded at: frame timing counts in it
    frame_length: int  # core samples per frame: 1024, or 960 when frameLengthFlag is set

    @property
    def frame_duration_ms(self) -> float:
        return self.frame_length * 1000.0 / self.core_sample_rate


class _Bits:
    """MSB-first reader over a few bytes held as one integer."""

    __slots__ = ("_pos", "_size", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._size = len(data) * 8
        self._pos = 0

    def read(self, count: int) -> int:
        end = self._pos + count
        if end > self._size:
            raise AacConfigError("AudioSpecificConfig is truncated")
        self._pos = end
        return (self._value >> (self._size - end)) & ((1 << count) - 1)

    def object_type(self) -> int:
        value = self.read(5)
        return 32 + self.read(6) if value == _ESCAPE_OBJECT_TYPE else value

    def frequency(self) -> int:
        index = self.read(4)
        if index == _ESCAPE_FREQUENCY_INDEX:
            rate = self.read(24)
            if not rate:
                raise AacConfigError("explicit sampling frequency of 0")
            return rate
        if index >= len(SAMPLING_FREQUENCIES):
            raise AacConfigError(f"reserved sampling frequency index {index}")
        return SAMPLING_FREQUENCIES[index]


def parse_audio_specific_config(data: bytes | bytearray | memoryview) -> AacConfig:
    """Parse the fields above; raises AacConfigError on anything unusable."""
    bits = _Bits(bytes(memoryview(data)[:_PREFIX]))
    object_type = bits.object_type()
    if object_type == 0:
        raise AacConfigError("the null audio object type (0)")
    core_rate = bits.frequency()
    channel_config = bits.read(4)
    output_rate, core_type = core_rate, object_type
    if object_type in (_SBR, _PS):
        # Explicit signalling: the output (extension) rate, then the core's object type.
        output_rate = bits.frequency()
        core_type = bits.object_type()
        if core_type == 0:
            raise AacConfigError("the null audio object type (0) under SBR/PS")
    channels = CHANNEL_COUNTS.get(channel_config)
    if channels is None:
        raise AacConfigError(f"channel configuration {channel_config} is reserved")
    if object_type == _PS and channels == 1:
        channels = 2  # parametric stereo decodes a mono core to stereo
    frame_length = 1024
    if core_type in _GA_OBJECT_TYPES and bits.read(1):
        frame_length = 960
    return AacConfig(object_type, output_rate, channels, core_type, core_rate, frame_length)
