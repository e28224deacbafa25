"""The spill-write benchmark runs through the server's own SpillDirectory and leaves
nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import spillwrite


def test_it_reports_both_phases_and_cleans_up(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert spillwrite.main(["--dir", str(tmp_path), "--segments", "12", "--live", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["filling", "steady"]
    for line, count in zip(lines, (4, 12), strict=True):
        user, system = map(float, re.findall(r"([\d.]+) ms", line))
        assert user >= 0 and system >= 0 and f"({count} segments, 4 kept" in line
    assert list(tmp_path.iterdir()) == []
