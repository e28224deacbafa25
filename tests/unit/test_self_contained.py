"""The repository stands alone: nothing it runs or documents reads a path outside it.

A bare `git clone` + `make test` on a machine with nothing beside the clone must
pass, so no code, test, benchmark, doc or build file may name the steering folder
beside the repo, a sibling checkout, or an absolute path of the machine it was written on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".sh", ".js", ".html", ".json"}
CHECKED_NAMES = {"Makefile", "run"}
# What a path outside the repository looks like in text: a climb out of it, or an
# absolute path under a place only the author's machine has. System paths
# (/usr, /proc, /tmp, /dev, /etc, /bin) are fine: every machine has them.
OUTSIDE = re.compile(
    r"""(?x)
      \.\./shared\b                                   # the steering folder beside the repo
    | (?<![\w.])/(?:work|root|home|mnt|srv|opt|Users)/  # an absolute path on one machine
    """
)
# Files that must name such paths to test for them.
EXEMPT = {"tests/unit/test_self_contained.py"}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
        names = [name for name in out.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                 and ".venv" not in p.parts and ".git" not in p.parts]
    return [ROOT / name for name in names]


def checked_files() -> list[Path]:
    return [
        path for path in tracked_files()
        if (path.suffix in CHECKED_SUFFIXES or path.name in CHECKED_NAMES)
        and str(path.relative_to(ROOT)) not in EXEMPT
        and path.is_file()
    ]


def outside_references(text: str) -> list[str]:
    return [match.group(0) for match in OUTSIDE.finditer(text)]


def test_the_pattern_catches_what_broke_a_bare_clone() -> None:
    # Spelled in pieces, so that this file does not itself name such a path.
    beside, absolute = "../" + "shared/fixtures", "/work" + "/shared/fixtures/obs.bin"
    assert outside_references(f'SHARED = ROOT.parents[2] / "shared"  # {beside}')
    assert outside_references(f'OBS = Path("{absolute}")')
    assert outside_references("see `/home/me/captures/x.txt`")
    assert not outside_references('Path("/proc/self/stat"), "/usr/bin/chromium", "/tmp/x"')
    assert not outside_references("tests/captures/obs29_publish_decoded.txt")


def test_the_repository_names_no_path_outside_itself() -> None:
    files = checked_files()
    assert len(files) > 50, "expected to read the repository's own files"
    offenders = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            found = outside_references(line)
            if found:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {found[0]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


@pytest.mark.parametrize("name", ["obs29_publish_c2s.bin", "obs29_publish_s2c.bin"])
def test_the_captures_the_tests_replay_are_in_the_repository(name: str) -> None:
    from tests.fixtures import CAPTURES

    assert CAPTURES.is_relative_to(ROOT)
    assert (CAPTURES / name).stat().st_size > 1000
