"""The fuzzer runs in CI: a short deterministic run over the OBS capture must find
nothing, and a crash planted in a parser must be found, saved and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fuzz
from benchmarks.fuzzseeds import obs_seed, session_tags
from rtmp.flv import parse_audio_tag

CI_INPUTS = 2000


@pytest.fixture(scope="module")
def seeds() -> tuple[list[fuzz.SessionSeed], list]:
    session = obs_seed()
    return [session], session_tags(session)


def test_obs_seed_is_a_whole_publish_session(seeds) -> None:
    (session,), tags = seeds
    assert len(session.handshake) == fuzz.HANDSHAKE_BYTES
    data, offsets = fuzz.encode(session.handshake, list(session.messages))
    assert len(offsets) == len(session.messages)
    # Unmutated, the re-chunked session publishes and carries media to the Publisher.
    assert fuzz.run_rtmp([bytes(data)], fuzz._decisions(0, 1)) == "media"
    assert {t.type_id for t in tags} == {8, 9} and any(t.is_sequence_header for t in tags)


def test_short_fuzz_finds_nothing_and_reaches_media(seeds, tmp_path: Path) -> None:
    sessions, tags = seeds
    stats = fuzz.fuzz(CI_INPUTS, 7, sessions, tags, tmp_path, lambda _m: None)
    assert sum(stats.inputs.values()) == CI_INPUTS
    assert not stats.findings, list(fuzz.summary(stats))
    # Not hollow: mutations break things, yet many sessions still get to media.
    assert stats.protocol_errors["rtmp"] > 0 and stats.protocol_errors["flv"] > 0
    assert stats.reached["media"] > CI_INPUTS // 10
    assert not list(tmp_path.iterdir())


def test_inputs_are_deterministic(seeds) -> None:
    sessions, tags = seeds
    for index in range(20):
        kind = fuzz.kind_of(3, index)
        assert (fuzz.make_input(kind, 3, index, sessions, tags)
                == fuzz.make_input(kind, 3, index, sessions, tags))
    assert fuzz.make_input("rtmp", 3, 0, sessions, tags) != fuzz.make_input(
        "rtmp", 3, 1, sessions, tags)


def test_a_planted_crash_is_found_saved_and_replayed(seeds, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(body):
        if len(body) == 2:  # a planted bug: an IndexError on a 2-byte audio tag
            raise IndexError("planted")
        return parse_audio_tag(body)

    monkeypatch.setattr(fuzz, "parse_audio_tag", buggy)
    monkeypatch.setattr("mediaserver.publisher.parse_audio_tag", buggy)
    sessions, tags = seeds
    stats = fuzz.fuzz(CI_INPUTS, 7, sessions, tags, tmp_path, lambda _m: None)
    assert stats.findings and all(site.startswith("IndexError") for site in stats.findings)
    saved = [Path(p) for p in stats.saved]
    assert saved and all(p.exists() for p in saved)
    record = json.loads(saved[0].read_text())
    assert "planted" in record["traceback"] and record["input"]
    with pytest.raises(IndexError, match="planted"):
        fuzz.replay(saved[0])
    monkeypatch.undo()
    fuzz.replay(saved[0])  # fixed: the same input now runs without an exception
