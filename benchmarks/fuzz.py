"""`python -m benchmarks fuzz`: mutated RTMP sessions and FLV tags into the sans-I/O parsers.

The rule (ARCHITECTURE.md): bad input raises the protocol error and nothing else.
Two kinds of input, both deterministic for a given --seed and input index:

- rtmp: a whole publish session (the OBS 29 capture, and what our benchmark
  publisher sends) mutated at the message level (drop, duplicate, swap, splice,
  header fields, chunk size, payload) and at the byte level (bit flips, inserts,
  deletes, interesting values, chunk-header fields, truncation, splicing), then fed
  to `rtmp.connection.ServerConnection` in randomly split pieces. Publishes are
  accepted (a few refused) and the media goes on into a `mediaserver.publisher.
  Publisher`. Only `RemoteProtocolError` may come out.
- flv: a few mutated tag bodies (AVC, Enhanced RTMP HEVC, AAC, their sequence
  headers) through `rtmp.flv`'s parse functions (only `FlvError` allowed) and the
  one AudioSpecificConfig parser, then into a `Publisher` (nothing allowed).

Anything else is a finding: its input is saved as JSON (hex pieces) with the
traceback, and `--replay FILE` runs it again.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hls.aac import AacConfigError
from hls.aac import parse_audio_specific_config as parse_asc
from mediaserver.publisher import Publisher
from rtmp.chunk import SET_CHUNK_SIZE, ChunkReader, ChunkWriter
from rtmp.connection import ServerConnection
from rtmp.errors import ProtocolError, RemoteProtocolError
from rtmp.events import (
    AudioData,
    Connected,
    MediaReceived,
    Metadata,
    PublishRequested,
    VideoData,
)
from rtmp.flv import (
    AudioPacketType,
    FlvError,
    VideoPacketType,
    iter_nal_units,
    parse_audio_tag,
    parse_avc_config,
    parse_hevc_config,
    parse_video_tag,
)
from rtmp.handshake import HANDSHAKE_SIZE

from .flvfile import TAG_AUDIO, TAG_VIDEO, FlvTag

HANDSHAKE_BYTES = 1 + 2 * HANDSHAKE_SIZE  # C0 + C1 + C2
# Seeds keep their setup, metadata and sequence headers and only this much media, so an
# input costs microseconds to milliseconds rather than a 1.4 MB capture's worth.
SEED_MEDIA_BYTES = 24 * 1024
SEED_MAX_FRAME = 6 * 1024  # media messages larger than this are left out of a seed
FLV_SEED_MAX = 4096  # tag bodies are cut to this (truncation is a mutation anyway)
# Share of inputs that are FLV tag inputs (the rest are RTMP sessions).
FLV_SHARE = 0.3
# At most this many findings are saved as files (one per distinct crash site).
MAX_SAVED = 20
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
PROGRESS_EVERY = 5.0


@dataclass(frozen=True, slots=True)
class Msg:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class SessionSeed:
    name: str
    handshake: bytes
    messages: tuple[Msg, ...]


@dataclass(slots=True)
class FuzzStats:
    inputs: Counter[str] = field(default_factory=Counter)  # kind -> inputs run
    protocol_errors: Counter[str] = field(default_factory=Counter)  # allowed errors
    reached: Counter[str] = field(default_factory=Counter)  # rtmp: deepest event seen
    seconds: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)  # crash site -> count
    saved: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0  # with making the inputs


# --------------------------------------------------------------------------- seeds


def session_from_bytes(name: str, data: bytes) -> SessionSeed:
    """Cut a captured client->server byte stream into its handshake and messages."""
    reader = ChunkReader()
    reader.feed(data[HANDSHAKE_BYTES:])
    messages: list[Msg] = []
    media = 0
    try:
        while (msg := reader.next_message()) is not None:
            payload = bytes(msg.payload)
            if msg.type_id in (TAG_AUDIO, TAG_VIDEO) and len(payload) > 2 and payload[1] != 0:
                # Coded frames (not sequence headers): keep a budget of small ones.
                if len(payload) > SEED_MAX_FRAME or media + len(payload) > SEED_MEDIA_BYTES:
                    continue
                media += len(payload)
            messages.append(Msg(msg.csid, msg.type_id, msg.stream_id, msg.timestamp, payload))
    except ProtocolError:
        pass  # a capture cut mid-message: keep what came before
    return SessionSeed(name, data[:HANDSHAKE_BYTES], tuple(messages))


def encode(handshake: bytes, messages: list[Msg]) -> tuple[bytearray, list[int]]:
    """The session as bytes, and the offset of each message's first chunk header."""
    out = bytearray(handshake)
    offsets = []
    writer = ChunkWriter()
    for msg in messages:
        offsets.append(len(out))
        out += writer.write(msg.csid, msg.type_id, msg.stream_id, msg.timestamp, msg.payload)
        if msg.type_id == SET_CHUNK_SIZE and msg.stream_id == 0 and len(msg.payload) >= 4:
            size = int.from_bytes(msg.payload[:4], "big") & 0x7FFFFFFF
            writer.chunk_size = max(1, min(size, 1 << 24))
    return out, offsets


# --------------------------------------------------------------------------- mutations


def _mutate_bytes(rng: random.Random, data: bytearray, splice: bytes) -> None:
    """One byte-level mutation of data, in place."""
    if not data:
        data += bytes([rng.randrange(256)])
        return
    # Most mutations land after the handshake, where the parsing is.
    low = HANDSHAKE_BYTES if len(data) > HANDSHAKE_BYTES and rng.random() < 0.9 else 0
    pos = rng.randrange(low, len(data))
    choice = rng.randrange(7)
    if choice == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(low, len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == 1:  # insert random bytes
        data[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, rng.randint(1, 64))))
    elif choice == 2:  # delete a range
        del data[pos : pos + rng.choice((1, 2, 4, rng.randint(1, 256)))]
    elif choice == 3:  # an interesting value, 1 to 4 bytes wide
        width = rng.choice((1, 2, 3, 4))
        value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
        data[pos : pos + width] = value.to_bytes(width, rng.choice(("big", "little")))
    elif choice == 4:  # truncate
        del data[pos:]
    elif choice == 5:  # splice: our head, another session's tail
        cut = rng.randrange(len(splice)) if splice else 0
        del data[pos:]
        data += splice[cut:]
    else:  # repeat a slice (a resent or duplicated chunk)
        end = min(len(data), pos + rng.randint(1, 512))
        data[end:end] = data[pos:end]


def _tweak_header(rng: random.Random, data: bytearray, offsets: list[int]) -> None:
    """Change one field of a message's first chunk header (see rtmp/chunk.py)."""
    if not offsets:
        return
    at = rng.choice(offsets)
    if at >= len(data):
        return
    basic = data[at]
    fmt, field_choice = basic >> 6, rng.randrange(6)
    if field_choice == 0:  # header format
        data[at] = (basic & 0x3F) | (rng.randrange(4) << 6)
    elif field_choice == 1:  # chunk stream id: 0 and 1 switch to 2- and 3-byte forms
        data[at] = (basic & 0xC0) | rng.choice((0, 1, 2, 3, 4, 63, rng.randrange(64)))
    elif fmt < 3 and field_choice == 2:  # timestamp: extended marker or random
        value = rng.choice((0xFFFFFF, 0, rng.randrange(1 << 24)))
        data[at + 1 : at + 4] = value.to_bytes(3, "big")
    elif fmt < 2 and field_choice == 3:  # message length
        value = rng.choice((0, 1, 0xFFFFFF, rng.randrange(1 << 24), rng.randrange(1 << 12)))
        data[at + 4 : at + 7] = value.to_bytes(3, "big")
    elif fmt < 2 and field_choice == 4:  # message type id
        data[at + 7 : at + 8] = bytes([rng.choice((1, 2, 3, 4, 5, 6, 8, 9, 15, 17, 18, 20, 22,
                                                   rng.randrange(256)))])
    elif fmt == 0 and field_choice == 5:  # message stream id (little-endian)
        value = rng.choice((0, 1, 2, 0xFFFFFFFF, rng.randrange(1 << 32)))
        data[at + 8 : at + 12] = value.to_bytes(4, "little")
    else:
        data[at] ^= 1 << rng.randrange(8)


def _mutate_messages(rng: random.Random, messages: list[Msg], other: SessionSeed) -> None:
    """One message-level mutation, in place."""
    if not messages:
        messages.extend(other.messages[:3])
        return
    i = rng.randrange(len(messages))
    msg = messages[i]
    choice = rng.randrange(8)
    if choice == 0:
        del messages[i]
    elif choice == 1:
        messages.insert(rng.randrange(len(messages) + 1), msg)
    elif choice == 2:
        j = rng.randrange(len(messages))
        messages[i], messages[j] = messages[j], messages[i]
    elif choice == 3 and other.messages:  # splice in another session's message
        messages.insert(i, rng.choice(other.messages))
    elif choice == 4:  # header fields
        messages[i] = Msg(rng.choice((msg.csid, 2, 3, 4, 64, 319, 320, 65599)),
                          rng.choice((msg.type_id, msg.type_id, 1, 4, 8, 9, 17, 18, 20, 22)),
                          rng.choice((msg.stream_id, 0, 1, 2, 0xFFFFFFFF)),
                          rng.choice((msg.timestamp, 0, 0xFFFFFF, 0x1000000, 0xFFFFFFFF,
                                      rng.randrange(1 << 32))), msg.payload)
    elif choice == 5:  # a chunk size change, anywhere
        size = rng.choice((1, 2, 127, 128, 129, 4096, 65536, 0, 0x7FFFFFFF, 0x80000000,
                           0xFFFFFFFF))
        messages.insert(i, Msg(2, SET_CHUNK_SIZE, 0, 0, size.to_bytes(4, "big")))
    else:  # the payload
        payload = bytearray(msg.payload)
        _mutate_bytes(rng, payload, other.messages[0].payload if other.messages else b"")
        messages[i] = Msg(msg.csid, msg.type_id, msg.stream_id, msg.timestamp, bytes(payload))


def _split(rng: random.Random, data: bytes) -> list[bytes]:
    """Random read boundaries: whole, a few cuts, or many small reads."""
    mode = rng.random()
    if mode < 0.3 or len(data) < 2:
        return [data]
    if mode < 0.9:
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 24))))
    else:
        cuts, pos = [], 0
        while pos < len(data) and len(cuts) < 4096:
            pos += rng.randint(1, 9)
            cuts.append(pos)
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def rtmp_input(rng: random.Random, seeds: list[SessionSeed]) -> list[bytes]:
    seed = rng.choice(seeds)
    other = rng.choice(seeds)
    messages = list(seed.messages)
    structural = rng.randint(0, 3)
    for _ in range(structural):
        _mutate_messages(rng, messages, other)
    data, offsets = encode(seed.handshake, messages)
    splice = bytes(encode(other.handshake, list(other.messages))[0]) if rng.random() < 0.1 \
        else b""
    for _ in range(rng.randint(0 if structural else 1, 3)):
        if rng.random() < 0.35:
            _tweak_header(rng, data, offsets)
        else:
            _mutate_bytes(rng, data, splice)
    return _split(rng, bytes(data))


def flv_input(rng: random.Random, tags: list[FlvTag]) -> list[tuple[int, int, bytes]]:
    """A short feed: (type, timestamp, body), sequence headers usually first."""
    heads = [t for t in tags if t.is_sequence_header]
    frames = [t for t in tags if not t.is_sequence_header and t.type_id in (8, 9)]
    picked = [t for t in heads if rng.random() < 0.8]
    picked += [rng.choice(frames) for _ in range(rng.randint(1, 5))] if frames else []
    if rng.random() < 0.2:
        rng.shuffle(picked)
    out = []
    for k, tag in enumerate(picked):
        body = bytearray(tag.body[:FLV_SEED_MAX])
        for _ in range(rng.randint(0, 3)):
            _mutate_bytes(rng, body, rng.choice(tags).body[:FLV_SEED_MAX])
        out.append((tag.type_id, tag.timestamp + k, bytes(body)))
    return out


# --------------------------------------------------------------------------- targets


def _publisher() -> Publisher:
    return Publisher("fuzz", "127.0.0.1:1", lambda _item: None, lambda _pub, _reason: None)


# How far into a session an input got, shallowest first.
_STAGES = ["bytes", "connect", "publish", "media"]


def run_rtmp(pieces: list[bytes], rng: random.Random) -> str:
    """Feed a session; returns the deepest stage reached. Raises only on a finding."""
    # Half the sessions as the server runs them (media in runs, to Publisher.on_media),
    # half with an event per message.
    conn = ServerConnection(batch_media=rng.random() < 0.5)
    publisher: Publisher | None = None
    stage = "bytes"
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not None:
                if isinstance(event, Connected):
                    stage = max(stage, "connect", key=_STAGES.index)
                elif isinstance(event, PublishRequested):
                    stage = max(stage, "publish", key=_STAGES.index)
                    if rng.random() < 0.1:
                        conn.reject_publish(event.stream_id, "fuzz")
                    else:
                        conn.accept_publish(event.stream_id)
                        publisher = _publisher()
                elif publisher is not None and isinstance(event, MediaReceived):
                    stage = "media"
                    publisher.on_media(event.frames)
                elif publisher is not None and isinstance(event, VideoData | AudioData):
                    stage = "media"
                    if isinstance(event, VideoData):
                        publisher.on_video(event.timestamp, event.payload)
                    else:
                        publisher.on_audio(event.timestamp, event.payload)
                elif publisher is not None and isinstance(event, Metadata):
                    publisher.on_metadata(event.values)
            conn.data_to_send()
    except RemoteProtocolError:
        return "protocol_error:" + stage
    return stage



def _allowed(call: Callable[[], Any], allowed: type[BaseException]) -> Any:
    try:
        return call()
    except allowed:
        return None


def run_flv(feed: list[tuple[int, int, bytes]], rng: random.Random) -> str:
    """Tags through the parse functions (their error allowed), then a Publisher (none)."""
    errors = 0
    publisher = _publisher()
    for type_id, timestamp, body in feed:
        if type_id == TAG_VIDEO:
            tag = _allowed(lambda b=body: parse_video_tag(b), FlvError)
            if tag is None:
                errors += 1
            elif tag.packet_type is VideoPacketType.SEQUENCE_START:
                parse = parse_hevc_config if tag.codec == "hevc" else parse_avc_config
                errors += _allowed(lambda d=tag.data, p=parse: p(d), FlvError) is None
            elif tag.packet_type is VideoPacketType.CODED_FRAMES:
                size = rng.choice((4, 4, 2, 1, 3))
                errors += _allowed(lambda d=tag.data, s=size: sum(1 for _ in iter_nal_units(d, s)),
                                   FlvError) is None
            publisher.on_video(timestamp, body)
        else:
            tag = _allowed(lambda b=body: parse_audio_tag(b), FlvError)
            if tag is None:
                errors += 1
            elif tag.packet_type is AudioPacketType.SEQUENCE_START and tag.codec == "aac":
                errors += _allowed(lambda d=tag.data: parse_asc(d), AacConfigError) is None
            publisher.on_audio(timestamp, body)
    return "protocol_error" if errors else "clean"


# --------------------------------------------------------------------------- driver


def _site(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(exc).__name__} at {where}"


def make_input(kind: str, seed: int, index: int, sessions: list[SessionSeed],
               tags: list[FlvTag]) -> Any:
    rng = random.Random(f"{seed}:{index}")
    return rtmp_input(rng, sessions) if kind == "rtmp" else flv_input(rng, tags)


def _decisions(seed: int, index: int) -> random.Random:
    """The choices made while an input runs (refuse a publish, NAL length size): apart
    from the input's own generator, so that a saved input replays the same way."""
    return random.Random(f"run:{seed}:{index}")


def kind_of(seed: int, index: int) -> str:
    return "flv" if random.Random(f"kind:{seed}:{index}").random() < FLV_SHARE else "rtmp"


def _save(out: Path, kind: str, seed: int, index: int, data: Any, exc: BaseException) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"finding-{kind}-seed{seed}-{index}.json"
    if kind == "rtmp":
        payload: Any = [piece.hex() for piece in data]
    else:
        payload = [[t, ts, body.hex()] for t, ts, body in data]
    path.write_text(json.dumps({
        "kind": kind, "seed": seed, "index": index, "input": payload,
        "error": _site(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }, indent=1))
    return path


def fuzz(count: int, seed: int, sessions: list[SessionSeed], tags: list[FlvTag], out: Path,
         progress: Callable[[str], None]) -> FuzzStats:
    stats = FuzzStats()
    wall = time.monotonic()
    logging.disable(logging.WARNING)  # the Publisher logs every bad tag: millions here
    last_report = time.monotonic()
    try:
        for index in range(count):
            kind = kind_of(seed, index)
            data = make_input(kind, seed, index, sessions, tags)
            rng = _decisions(seed, index)
            started = time.perf_counter()
            try:
                outcome = run_rtmp(data, rng) if kind == "rtmp" else run_flv(data, rng)
            except Exception as exc:  # a finding: anything but the protocol error
                site = _site(exc)
                stats.findings[site] += 1
                if stats.findings[site] == 1 and len(stats.saved) < MAX_SAVED:
                    path = _save(out, kind, seed, index, data, exc)
                    stats.saved.append(str(path))
                    progress(f"FINDING {site} (input {index}, {kind}) saved to {path}\n"
                             + "".join(traceback.format_exception(exc)))
                outcome = "finding"
            stats.seconds[kind] += time.perf_counter() - started
            stats.inputs[kind] += 1
            if outcome.startswith("protocol_error"):
                stats.protocol_errors[kind] += 1
            if kind == "rtmp":
                stats.reached[outcome.rsplit(":", 1)[-1]] += 1
            if time.monotonic() - last_report > PROGRESS_EVERY:
                last_report = time.monotonic()
                done = index + 1
                progress(f"{done}/{count} inputs, {done / sum(stats.seconds.values()):.0f}/s, "
                         f"findings {sum(stats.findings.values())}")
    finally:
        logging.disable(logging.NOTSET)
        stats.wall_seconds = time.monotonic() - wall
    return stats


def replay(path: Path) -> str:
    """Run a saved finding again: its outcome, or the original exception if it still fails."""
    data = json.loads(path.read_text())
    rng = _decisions(data["seed"], data["index"])
    if data["kind"] == "rtmp":
        return run_rtmp([bytes.fromhex(p) for p in data["input"]], rng)
    return run_flv([(t, ts, bytes.fromhex(b)) for t, ts, b in data["input"]], rng)


def summary(stats: FuzzStats) -> Iterator[str]:
    total = sum(stats.inputs.values())
    seconds = sum(stats.seconds.values()) or 1e-9
    yield (f"{total} inputs in {stats.wall_seconds:.1f} s: "
           f"{total / (stats.wall_seconds or 1e-9):.0f} inputs/s made and run "
           f"({total / seconds:.0f}/s counting the parsing only); "
           f"findings: {sum(stats.findings.values())}")
    for kind in sorted(stats.inputs):
        n = stats.inputs[kind]
        rate = n / (stats.seconds[kind] or 1e-9)
        yield (f"- {kind}: {n} inputs, {rate:.0f}/s, {stats.protocol_errors[kind]} ended in the "
               "protocol error")
    if stats.reached:
        yield "- rtmp sessions got as far as: " + ", ".join(
            f"{k} {v}" for k, v in sorted(stats.reached.items(), key=lambda kv: -kv[1]))
    for site, n in stats.findings.most_common():
        yield f"- FINDING: {site} x{n}"
    for path in stats.saved:
        yield f"- saved: {path}"
