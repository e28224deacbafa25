"""`python -m benchmarks httpparse`: the hot path's request-head parser, httptools against a
minimal one of our own, per request head, in-process (median of passes).

Why the hot path (mediaserver.hot_http) parses with httptools: it is llhttp, the parser
aiohttp's own is built on, so it refuses what aiohttp refuses, and it is cheaper than the
least a Python parser must do (split the lines, find the colon, lower-case the name,
check it). Both are timed doing what the hot path needs: the method, the target, and
User-Agent, Accept-Encoding and If-None-Match, over a head as wrk sends it (one header)
and as a browser's hls.js sends it (fifteen).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit

import httptools

WRK_HEAD = b"GET /live/bench0/index.m3u8 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER_HEAD = (
    b"GET /live/bench0/index.m3u8 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: keep-alive\r\n"
    b'sec-ch-ua-platform: "Linux"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/'
    b"537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36\r\n"
    b'sec-ch-ua: "Chromium";v="120"\r\nsec-ch-ua-mobile: ?0\r\nAccept: */*\r\n'
    b"Origin: http://127.0.0.1:8080\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Dest: empty\r\nReferer: http://127.0.0.1:8080/\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b'If-None-Match: "abcdef0123456789abcdef01"\r\n\r\n')
_WANTED = {b"user-agent": 0, b"accept-encoding": 1, b"if-none-match": 2}


class _Callbacks:
    """What HotConnection keeps from httptools' callbacks."""

    __slots__ = ("complete", "parser", "url", "wanted")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.wanted: list[bytes | None] = [None, None, None]
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        slot = _WANTED.get(name.lower())
        if slot is not None and self.wanted[slot] is None:
            self.wanted[slot] = value

    def on_message_complete(self) -> None:
        self.complete = True


def with_httptools(callbacks: _Callbacks, head: bytes) -> tuple[bytes, bytes]:
    callbacks.wanted = [None, None, None]
    callbacks.complete = False
    callbacks.parser.feed_data(head)
    return callbacks.parser.get_method(), callbacks.url


def minimal(head: bytes) -> tuple[bytes, bytes] | None:
    """The least a Python parser must do; None where it would refuse the head."""
    lines = head[:head.find(b"\r\n\r\n")].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    wanted: list[bytes | None] = [None, None, None]
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
            return None
        slot = _WANTED.get(name.lower())
        if slot is not None and wanted[slot] is None:
            wanted[slot] = value.strip()
    return parts[0], parts[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks httpparse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=100_000, help="heads per pass")
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args(argv)
    callbacks = _Callbacks()
    print("| head | parser | µs per head (median of passes) |")
    print("|---|---|---:|")
    for label, head in (("wrk (1 header)", WRK_HEAD), ("browser (15 headers)", BROWSER_HEAD)):
        if with_httptools(callbacks, head) != minimal(head):
            print(f"the parsers disagree on the {label} head", file=sys.stderr)
            return 1
        for name, call in (("httptools", lambda h=head: with_httptools(callbacks, h)),
                           ("minimal Python", lambda h=head: minimal(h))):
            passes = timeit.repeat(call, number=args.number, repeat=args.passes)
            print(f"| {label} | {name} | {1e6 * statistics.median(passes) / args.number:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
