"""The channel-name rule, in the one place both the HLS routes and the control API read it.

`hls/` imports nothing outside itself, so the rule lives here and `control_api`
imports it. A name is also a URL path segment and a directory-like key: lowercase
letters, digits, '_' and '-', starting with a letter or digit, at most 64 long.
"""

from __future__ import annotations

import re

MAX_CHANNEL_NAME_LENGTH = 64
CHANNEL_NAME = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{MAX_CHANNEL_NAME_LENGTH - 1}}}")
