"""What the numbers were measured on: a result without its machine and versions is noise."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The packages that make up the server under test ("ours").
SERVER_PACKAGES = ("mediaserver", "rtmp", "hls", "control_api")


def _first_line(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else "?"
    return "?"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    av_libs = "?"
    with contextlib.suppress(Exception):
        import av

        av_libs = ", ".join(f"{k} {'.'.join(map(str, v))}"
                            for k, v in sorted(av.library_versions.items())
                            if k in ("libavcodec", "libavformat"))
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "av": f"{_version('av')} ({av_libs})",
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
        "numpy": _version("numpy"),
        "ffmpeg": re.sub(r"\s*Copyright.*", "", _first_line(["ffmpeg", "-version"])),
        "nginx": nginx_version(),
    }


def nginx_version() -> str:
    nginx = _first_line(["nginx", "-v"]).replace("nginx version: ", "")
    return f"{nginx}, libnginx-mod-rtmp {_version_of_deb('libnginx-mod-rtmp')}"


def _version_of_deb(package: str) -> str:
    line = _first_line(["dpkg-query", "-W", "-f=${Version}", package])
    return line if line and "no packages" not in line else "not installed"


def server_source() -> str:
    """Which code our server runs: git commit, uncommitted changes, and a digest of the files.

    Taken when each server process starts, because the tree can change during a run; two
    results with the same digest ran the same Python code.
    """
    digest = hashlib.sha256()
    for package in SERVER_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    commit = _git("rev-parse", "--short", "HEAD")
    changed = _git("status", "--porcelain", "--", *SERVER_PACKAGES)
    dirty = f" + {len(changed.splitlines())} uncommitted" if changed else ""
    return f"{commit}{dirty}, source {digest.hexdigest()[:12]}"


def _git(*args: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10)
        if done.returncode == 0:
            return done.stdout.strip()
    return "?"
