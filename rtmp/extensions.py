"""The compiled-twins switch (MEDIASERVER_NO_EXTENSIONS), kept in hls.extensions so that
hls, which imports no outer package, reads the same one."""

from __future__ import annotations

from hls.extensions import NO_EXTENSIONS_ENV, extensions_wanted

__all__ = ["NO_EXTENSIONS_ENV", "extensions_wanted"]
