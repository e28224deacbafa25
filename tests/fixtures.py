"""Paths to the real-client captures the tests replay (tests/captures, inside the repo)."""

from __future__ import annotations

from pathlib import Path

CAPTURES = Path(__file__).resolve().parent / "captures"
OBS_C2S = CAPTURES / "obs29_publish_c2s.bin"
OBS_S2C = CAPTURES / "obs29_publish_s2c.bin"
OBS_KEY = "obscap179535978919830"
