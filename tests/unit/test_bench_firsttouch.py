"""The first-touch benchmark reports every case per GB and leaves no file behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import firsttouch

CASES = ["anonymous, fresh", "anonymous, again", "file, new pages", "file, overwrite",
         "file, after unlink"]


def test_it_reports_each_case_and_cleans_up(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert firsttouch.main(["--megabytes", "4", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == CASES
    for line in lines:
        wall, system = map(float, re.findall(r"([\d.]+) s (?:wall|system)", line))
        assert wall > 0 and system >= 0 and "(4 MB)" in line
    assert list(tmp_path.iterdir()) == []


def test_the_files_really_hold_what_was_written(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    real_write = firsttouch._write_file

    def checked(path: Path, size: int, block: bytes) -> None:
        real_write(path, size, block)
        assert path.stat().st_size == size
        assert path.read_bytes()[-len(block):] == block
        written.append(path.name)

    monkeypatch.setattr(firsttouch, "_write_file", checked)
    results = firsttouch.measure(2 * firsttouch.BLOCK, tmp_path)
    assert list(results) == CASES
    assert written == ["first", "first", "second"]
    assert list(tmp_path.iterdir()) == []


def test_a_size_below_one_megabyte_is_refused() -> None:
    with pytest.raises(SystemExit):
        firsttouch.main(["--megabytes", "0"])
