"""HLS output: MediaPackets in, playlists and MPEG-TS / fMP4 segments out; no sockets.

- ``hls.media``: the input contract (``TrackConfig``, ``MediaPacket``).
- ``hls.segmenter``: ``Segmenter``, one per channel: cut rules, window, periods.
- ``hls.playlist``: ``MediaPlaylist``, a pure model with ``render()`` (TS) and
  ``render_ll()`` (LL-HLS).
- ``hls.muxer``: packets → MPEG-TS with PyAV (the only module importing ``av``).
- ``hls.tsjit``: the TS form of a segment, muxed when first wanted (``hls.frames``:
  its frames, held once); ``hls.continuity``: TS counters across segment files.
- ``hls.cmaf`` and ``hls.fmp4``: the LL-HLS rendition: parts cut beside the TS
  segments, written as fMP4 by our own box writer.
- ``hls.store``: what each channel keeps fetchable, by name, and what it weighs.
- ``hls.directives``: LL-HLS delivery directives (blocking reload, delta updates).
- ``hls.http``: ``add_hls_routes`` for aiohttp; ``hls.waiters``: blocked requests.
- ``hls.versions``: a playlist as served (body, ETag, gzip), made once per change;
  ``hls.hot``: the hot URLs' answers as bytes for the wire (``hls.wire``: their heads).
- ``hls.aac``: the one AudioSpecificConfig reader; ``hls.names``: the channel-name rule.

Nothing is imported here, so ``hls.media`` stays cheap for the ingest side.
"""
