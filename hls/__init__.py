"""HLS output: MediaPackets in, playlists and MPEG-TS segments out; no sockets.

- ``hls.media``: the input contract (``TrackConfig``, ``MediaPacket``).
- ``hls.segmenter``: ``Segmenter``, one per channel: cut rules, window, periods.
- ``hls.playlist``: ``MediaPlaylist``, a pure model with ``render()``.
- ``hls.muxer``: packets → MPEG-TS with PyAV (the only module importing ``av``).
- ``hls.http``: ``add_hls_routes`` for aiohttp.
- ``hls.aac``: the one AudioSpecificConfig reader; ``hls.names``: the channel-name rule.

Nothing is imported here, so ``hls.media`` stays cheap for the ingest side.
"""
