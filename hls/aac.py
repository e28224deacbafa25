"""Just enough of the AAC AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) for HLS.

The segmenter needs the frame duration (to close a publish's last segment
at the right length) and the muxer needs a valid config before it declares
an audio track, because the MPEG-TS writer builds every ADTS header from it.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLING_FREQUENCIES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_ESCAPE_FREQUENCY_INDEX = 15
_ESCAPE_OBJECT_TYPE = 31
_SBR_OBJECT_TYPES = (5, 29)  # explicit SBR / PS signalling wraps a core object type
# Object types whose GASpecificConfig starts with frameLengthFlag (1024 vs 960 samples).
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})


class AacConfigError(ValueError):
    """The AudioSpecificConfig is truncated or uses a reserved value."""


@dataclass(frozen=True, slots=True)
class AacConfig:
    """The parts of an AudioSpecificConfig that HLS packaging cares about."""

    object_type: int  # the core object type (2 = AAC LC) even when SBR/PS is signalled
    sample_rate: int  # the core sample rate: what one frame's duration is measured in
    channels: int  # 0 means "defined in the stream" (program config element)
    frame_length: int  # samples per frame: 1024, or 960 when frameLengthFlag is set

    @property
    def frame_duration_ms(self) -> float:
        return self.frame_length * 1000.0 / self.sample_rate


class _Bits:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte_index, bit_index = divmod(self._pos, 8)
            if byte_index >= len(self._data):
                raise AacConfigError("AudioSpecificConfig is truncated")
            value = (value << 1) | ((self._data[byte_index] >> (7 - bit_index)) & 1)
            self._pos += 1
        return value

    def object_type(self) -> int:
        value = self.read(5)
        return 32 + self.read(6) if value == _ESCAPE_OBJECT_TYPE else value

    def frequency(self) -> int:
        index = self.read(4)
        if index == _ESCAPE_FREQUENCY_INDEX:
            return self.read(24)
        if index >= len(SAMPLING_FREQUENCIES):
            raise AacConfigError(f"reserved sampling frequency index {index}")
        return SAMPLING_FREQUENCIES[index]


def parse_audio_specific_config(data: bytes | memoryview) -> AacConfig:
    """Parse the fields above; raises AacConfigError on anything unusable."""
    bits = _Bits(bytes(data))
    object_type = bits.object_type()
    sample_rate = bits.frequency()
    channels = bits.read(4)
    if object_type in _SBR_OBJECT_TYPES:
        bits.frequency()  # the SBR output rate; frame timing follows the core rate
        object_type = bits.object_type()
    if object_type == 0:
        raise AacConfigError("audio object type 0 is reserved")
    if sample_rate <= 0:
        raise AacConfigError("sample rate is zero")
    frame_length = 1024
    if object_type in _GA_OBJECT_TYPES and bits.read(1):
        frame_length = 960
    return AacConfig(object_type, sample_rate, channels, frame_length)
