"""What nodes write to Redis for each other, and how it is read back (pure).

Anything read from Redis may come from another version of this server or from a
hand-edited key: decoding checks every field and raises RecordError, so a bad
record is skipped (and counted) instead of breaking a listing or a publish.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from control_api.live import StreamStats
from hls.resume import PlaylistResume


class RecordError(ValueError):
    """A record in Redis that this node cannot use."""


def base_url(host: str, port: int) -> str:
    """`http://host:port` for a node address; IPv6 literals get their brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# ---- stream stats (ms:streams:{node}) --------------------------------------------------

_STATS_TYPES: dict[str, tuple[type, ...]] = {
    "channel": (str,),
    "publisher": (str,),
    "started_at": (int, float),
    "video_codec": (str, type(None)),
    "width": (int, type(None)),
    "height": (int, type(None)),
    "fps": (int, float, type(None)),
    "bitrate_bps": (int, float),
    "keyframe_interval": (int, float, type(None)),
    "audio_codec": (str, type(None)),
    "sample_rate": (int, type(None)),
    "audio_channels": (int, type(None)),
    "warnings": (list,),
}
assert set(_STATS_TYPES) == {f.name for f in fields(StreamStats)}


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or Infinity; an unmeasurable figure travels as null."""
    return value if value is None or math.isfinite(value) else None


def stats_to_json(stats: StreamStats) -> str:
    values = asdict(stats)
    for name in ("fps", "keyframe_interval"):
        values[name] = _finite_or_none(values[name])
    for name in ("started_at", "bitrate_bps"):
        values[name] = _finite_or_none(values[name]) or 0.0
    values["warnings"] = list(stats.warnings)
    return json.dumps(values, separators=(",", ":"))


def stats_from_json(text: str) -> StreamStats:
    try:
        values = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"stream stats are not JSON: {exc}") from None
    if not isinstance(values, dict) or set(values) != set(_STATS_TYPES):
        raise RecordError("stream stats do not have the expected fields")
    for name, types in _STATS_TYPES.items():
        value = values[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise RecordError(f"stream stats field {name} has the wrong type")
    if not all(isinstance(item, str) for item in values["warnings"]):
        raise RecordError("stream stats warnings must be strings")
    values["warnings"] = tuple(values["warnings"])
    return StreamStats(**values)


# ---- playlist state to carry on (ms:resume:{channel}) ------------------------------------


@dataclass(frozen=True, slots=True)
class ResumeRecord:
    """Where a channel's playlist stood on the node that was its origin, and when."""

    node: str
    resume: PlaylistResume
    recorded_at: float  # wall clock (epoch seconds) of the segment it follows


def resume_fields(record: ResumeRecord) -> dict[str, str]:
    resume = record.resume
    values = {
        "node": record.node,
        "next_sequence": str(resume.next_sequence),
        "discontinuity_sequence": str(resume.discontinuity_sequence),
        "target_duration": str(resume.target_duration),
        "recorded_at": repr(record.recorded_at),
    }
    if resume.timeline_end_ms is not None:
        values["timeline_end_ms"] = str(resume.timeline_end_ms)
    return values


def resume_from_fields(values: dict[str, Any]) -> ResumeRecord:
    try:
        node = values["node"]
        timeline = values.get("timeline_end_ms")
        resume = PlaylistResume(
            next_sequence=int(values["next_sequence"]),
            discontinuity_sequence=int(values["discontinuity_sequence"]),
            target_duration=int(values["target_duration"]),
            timeline_end_ms=None if timeline is None else int(timeline),
        )
        recorded_at = float(values["recorded_at"])
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordError(f"playlist state unusable: {exc!r}") from None
    if not isinstance(node, str) or not node or not math.isfinite(recorded_at):
        raise RecordError("playlist state has no usable node or time")
    return ResumeRecord(node, resume, recorded_at)
