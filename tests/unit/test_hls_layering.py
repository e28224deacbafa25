"""The hls package keeps its place in the house: imports point inward only."""

from __future__ import annotations

import ast
from pathlib import Path

HLS = Path(__file__).resolve().parents[2] / "hls"
FORBIDDEN = ("mediaserver", "control_api", "rtmp")


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_hls_imports_no_outer_package() -> None:
    for path in HLS.glob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_only_the_muxer_imports_av() -> None:
    users = {p.name for p in HLS.glob("*.py") if any(n.split(".")[0] == "av" for n in imports(p))}
    assert users == {"muxer.py"}
