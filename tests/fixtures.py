"""Paths to the shared real-client captures (../shared/fixtures beside the repo)."""

from __future__ import annotations

from pathlib import Path

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
OBS_C2S = SHARED_FIXTURES / "obs29_publish_c2s.bin"
OBS_S2C = SHARED_FIXTURES / "obs29_publish_s2c.bin"
OBS_KEY = "obscap179535978919830"
