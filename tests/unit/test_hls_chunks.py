"""hls.chunks: a resource of several buffers, sliced without joining."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hls.chunks import Chunks


@given(st.lists(st.binary(max_size=20), max_size=6), st.integers(-5, 130), st.integers(-5, 130))
def test_slices_match_the_joined_bytes(parts: list[bytes], start: int, end: int) -> None:
    chunks = Chunks(parts)
    joined = b"".join(parts)
    assert len(chunks) == len(joined) and bytes(chunks) == joined
    assert bytes(chunks.slice(start, end)) == joined[max(start, 0):max(end, 0)]
