"""Whether compiled twins of hot-path modules may be used: one switch for every package.

Each compiled module (a Cython `.pyx` built by `pip install`: rtmp._chunk_reader,
mediaserver._coded_frames, hls._fmp4, hls._plain_frames) has a pure-Python twin that is
the reference.
Setting MEDIASERVER_NO_EXTENSIONS to anything but "" or "0" runs the pure twins
everywhere (tests of that path, debugging, profiling at the Python level); so does a
build without the extensions.
"""

from __future__ import annotations

import os

NO_EXTENSIONS_ENV = "MEDIASERVER_NO_EXTENSIONS"


def extensions_wanted() -> bool:
    return os.environ.get(NO_EXTENSIONS_ENV, "") in ("", "0")
