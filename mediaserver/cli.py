"""`mediaserver serve` and `mediaserver channel add|list|rotate|remove`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from control_api.keys import InvalidChannelName, validate_channel_name
from control_api.store import ChannelExists, ChannelNotFound, StoreError, open_store

from .config import Config, ConfigError, add_arguments, load_config
from .logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediaserver",
        description="Live-streaming media server: RTMP in, HLS out, with a control API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server",
                                description="Run the RTMP + HTTP server.")
    add_arguments(serve)
    channel = commands.add_parser("channel", help="manage channels and stream keys",
                                  description="Manage channels in the configured store.")
    channel.add_argument("action", choices=["add", "list", "rotate", "remove"])
    channel.add_argument("name", nargs="?", help="channel name (not for list)")
    channel.add_argument("--json", action="store_true", help="machine-readable output")
    add_arguments(channel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = vars(args)
    try:
        config = load_config(flags, config_file=args.config)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.command == "serve":
        from .workers.supervisor import refusal

        if (problem := refusal(config)) is not None:
            parser.error(problem)
    # A supervisor never muxes: it leaves FFmpeg's libraries unloaded.
    supervisor = args.command == "serve" and config.workers > 1
    rate_limit = configure_logging(config.log_level, libav=not supervisor)
    try:
        if args.command == "serve":
            return serve(config)
        return asyncio.run(channel_command(config, args.action, args.name, args.json))
    finally:
        rate_limit.flush()


# ---- serve ------------------------------------------------------------------------------


def serve(config: Config) -> int:
    if config.workers > 1:
        from .workers.supervisor import Supervisor

        return Supervisor(config).run()
    from .app import MediaServer
    from .first_start import banner
    from .lifecycle import run_loop, serve_until_stopped

    def announce(server: MediaServer) -> None:
        assert server.urls is not None
        print(banner(server.urls, server.first_start, server.token, config.data_dir),
              flush=True)

    return run_loop(serve_until_stopped(lambda: MediaServer(config), announce))


# ---- channel ----------------------------------------------------------------------------


async def channel_command(config: Config, action: str, name: str | None, as_json: bool) -> int:
    from .first_start import public_urls

    urls = public_urls(config, config.rtmp[1], config.http[1])
    if action != "list":
        if not name:
            print(f"mediaserver channel {action}: a channel NAME is required", file=sys.stderr)
            return 2
        try:
            validate_channel_name(name)
        except InvalidChannelName as exc:
            print(f"mediaserver channel {action}: {exc}", file=sys.stderr)
            return 2
    store = open_store(config.store, config.data_dir)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        result: Any
        if action == "add":
            key = await store.create_channel(name)  # type: ignore[arg-type]
            result = urls.credentials(name, key)  # type: ignore[arg-type]
        elif action == "rotate":
            key = await store.rotate_key(name)  # type: ignore[arg-type]
            result = urls.credentials(name, key)  # type: ignore[arg-type]
        elif action == "remove":
            if not await store.delete_channel(name):  # type: ignore[arg-type]
                raise ChannelNotFound(name)
            result = {"name": name, "removed": True}
        else:
            channels = await store.list_channels()
            result = [
                {"name": c.name, "created_at": c.created_at, "key_rotated_at": c.key_rotated_at,
                 "playback_url": urls.playback_url(c.name)}
                for c in channels
            ]
    except ChannelExists:
        print(f"channel {name!r} already exists", file=sys.stderr)
        return 1
    except ChannelNotFound:
        print(f"no channel named {name!r}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"store error: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    print(json.dumps(result) if as_json else _human(action, result))
    return 0


def _human(action: str, result: Any) -> str:
    if action == "list":
        if not result:
            return "no channels"
        return "\n".join(f"{c['name']:<24} {c['playback_url']}" for c in result)
    if action == "remove":
        return f"removed channel {result['name']}"
    return (
        f"channel     : {result['name']}\n"
        f"server      : {result['rtmp_url']}\n"
        f"stream key  : {result['stream_key']}   (shown once; keep it secret)\n"
        f"playback    : {result['playback_url']}"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
