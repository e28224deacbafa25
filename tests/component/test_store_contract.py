"""One behavioural suite for every ChannelStore: SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from control_api.keys import MAX_STREAM_KEY_LENGTH, InvalidChannelName
from control_api.redis_store import RedisStore
from control_api.sqlite_store import SQLiteStore
from control_api.store import (
    SQLITE_FILENAME,
    ChannelExists,
    ChannelNotFound,
    ChannelStore,
    StoreUnavailable,
    open_store,
)
from tests.redis_server import REDIS_SERVER, RedisServer

POLL_DEADLINE = 5.0


@dataclass(frozen=True)
class Backend:
    store: ChannelStore
    raw_strings: Callable[[], Awaitable[list[str]]]  # everything the backend persisted


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


async def _sqlite_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    store = open_store(None, tmp_path)
    path = tmp_path / SQLITE_FILENAME

    async def raw_strings() -> list[str]:
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT * FROM channels").fetchall()
        return [str(value) for row in rows for value in row]

    yield Backend(store, raw_strings)
    await store.close()


async def _redis_backend(server: RedisServer) -> AsyncIterator[Backend]:
    server.flushall()
    store = open_store(server.url, Path("/nonexistent"))
    raw = aioredis.Redis.from_url(server.url, decode_responses=True)

    async def raw_strings() -> list[str]:
        found: list[Any] = []
        async for key in raw.scan_iter(count=1000):
            found.append(key)
            kind = await raw.type(key)
            if kind == "hash":
                for field, value in (await raw.hgetall(key)).items():
                    found += [field, value]
            elif kind == "set":
                found += list(await raw.smembers(key))
            elif kind == "string":
                found.append(await raw.get(key))
        return found

    yield Backend(store, raw_strings)
    await store.close()
    await raw.aclose()


@pytest.fixture(
    params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)],
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        async for backend in _sqlite_backend(tmp_path):
            yield backend
    else:
        async for backend in _redis_backend(request.getfixturevalue("redis_server")):
            yield backend


async def test_create_then_get(backend: Backend) -> None:
    before = time.time()
    key = await backend.store.create_channel("demo")
    channel = await backend.store.get_channel("demo")
    assert channel is not None
    assert channel.name == "demo"
    assert before - 1 <= channel.created_at <= time.time() + 1
    assert channel.key_rotated_at == channel.created_at
    assert await backend.store.channel_for_key(key) == "demo"
    assert key not in repr(channel)


async def test_get_unknown_is_none(backend: Backend) -> None:
    assert await backend.store.get_channel("nobody") is None


async def test_list_is_sorted_by_name(backend: Backend) -> None:
    assert await backend.store.list_channels() == []
    for name in ["zeta", "alpha", "mid-1"]:
        await backend.store.create_channel(name)
    assert [c.name for c in await backend.store.list_channels()] == ["alpha", "mid-1", "zeta"]


async def test_duplicate_name_is_refused(backend: Backend) -> None:
    key = await backend.store.create_channel("demo")
    with pytest.raises(ChannelExists):
        await backend.store.create_channel("demo")
    assert await backend.store.channel_for_key(key) == "demo"


async def test_concurrent_creates_of_one_name_have_one_winner(backend: Backend) -> None:
    results = await asyncio.gather(
        *(backend.store.create_channel("race") for _ in range(8)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, ChannelExists) for r in results if not isinstance(r, str))
    assert await backend.store.channel_for_key(winners[0]) == "race"


@pytest.mark.parametrize("name", ["", "Demo", "-x", "a" * 65, "a b", "a/b", "é"])
async def test_bad_names_are_refused(backend: Backend, name: str) -> None:
    with pytest.raises(InvalidChannelName):
        await backend.store.create_channel(name)
    assert await backend.store.list_channels() == []


async def test_key_with_query_string_is_accepted(backend: Backend) -> None:
    key = await backend.store.create_channel("demo")
    assert await backend.store.channel_for_key(f"{key}?foo=bar&x=1") == "demo"
    assert await backend.store.channel_for_key(f"{key}?") == "demo"


@pytest.mark.parametrize(
    "bogus", ["", "?foo=bar", "nope", "x" * (MAX_STREAM_KEY_LENGTH + 1), "\udcff"]
)
async def test_unknown_or_malformed_keys_match_nothing(backend: Backend, bogus: str) -> None:
    await backend.store.create_channel("demo")
    assert await backend.store.channel_for_key(bogus) is None


async def test_key_must_match_exactly(backend: Backend) -> None:
    key = await backend.store.create_channel("demo")
    assert await backend.store.channel_for_key(key[:-1]) is None
    assert await backend.store.channel_for_key(key + "x") is None
    assert await backend.store.channel_for_key(key.upper()) is None


async def test_rotate_kills_old_key_at_once(backend: Backend) -> None:
    old = await backend.store.create_channel("demo")
    created = await backend.store.get_channel("demo")
    new = await backend.store.rotate_key("demo")
    assert new != old
    assert await backend.store.channel_for_key(old) is None
    assert await backend.store.channel_for_key(new) == "demo"
    rotated = await backend.store.get_channel("demo")
    assert created is not None and rotated is not None
    assert rotated.created_at == created.created_at
    assert rotated.key_rotated_at >= created.key_rotated_at


async def test_rotate_unknown_channel(backend: Backend) -> None:
    with pytest.raises(ChannelNotFound):
        await backend.store.rotate_key("nobody")


async def test_delete(backend: Backend) -> None:
    key = await backend.store.create_channel("demo")
    other = await backend.store.create_channel("other")
    assert await backend.store.delete_channel("demo") is True
    assert await backend.store.get_channel("demo") is None
    assert await backend.store.channel_for_key(key) is None
    assert await backend.store.delete_channel("demo") is False
    assert [c.name for c in await backend.store.list_channels()] == ["other"]
    assert await backend.store.channel_for_key(other) == "other"
    # The name is free again, with a new key.
    again = await backend.store.create_channel("demo")
    assert again != key and await backend.store.channel_for_key(again) == "demo"


async def test_keys_are_stored_only_hashed(backend: Backend) -> None:
    first = await backend.store.create_channel("demo")
    rotated = await backend.store.rotate_key("demo")
    second = await backend.store.create_channel("other")
    stored = await backend.raw_strings()
    assert stored, "the backend should hold something"
    for key in (first, rotated, second):
        assert not any(key in value for value in stored)


async def test_online_marks(backend: Backend) -> None:
    assert await backend.store.online_channels() == set()
    await backend.store.mark_online("demo", "node-a", 30)
    await backend.store.mark_online("other", "node-b", 30)
    assert await backend.store.online_channels() == {"demo", "other"}
    await backend.store.mark_offline("demo")
    assert await backend.store.online_channels() == {"other"}
    await backend.store.mark_offline("never-online")


async def test_online_mark_lapses_after_ttl(backend: Backend) -> None:
    await backend.store.mark_online("demo", "node-a", 0.2)
    await backend.store.mark_online("steady", "node-a", 60)
    deadline = time.monotonic() + POLL_DEADLINE
    while "demo" in await backend.store.online_channels():
        assert time.monotonic() < deadline, "online mark never lapsed"
        await asyncio.sleep(0.05)
    assert await backend.store.online_channels() == {"steady"}


async def test_refreshing_online_mark_keeps_it(backend: Backend) -> None:
    await backend.store.mark_online("demo", "node-a", 0.3)
    await backend.store.mark_online("demo", "node-a", 60)
    await backend.store.mark_online("gone", "node-a", 0.01)
    deadline = time.monotonic() + POLL_DEADLINE
    while "gone" in await backend.store.online_channels():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert "demo" in await backend.store.online_channels()


async def test_invalid_ttl_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError):
        await backend.store.mark_online("demo", "node-a", 0)


async def test_deleting_a_channel_clears_its_online_mark(backend: Backend) -> None:
    await backend.store.create_channel("demo")
    await backend.store.mark_online("demo", "node-a", 60)
    await backend.store.delete_channel("demo")
    assert await backend.store.online_channels() == set()


async def test_ping(backend: Backend) -> None:
    await backend.store.ping()


# --- SQLite specifics --------------------------------------------------------------


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    key = await store.create_channel("demo")
    await store.close()
    reopened = open_store("sqlite://", tmp_path)
    try:
        assert await reopened.channel_for_key(key) == "demo"
    finally:
        await reopened.close()


async def test_sqlite_uses_wal_and_a_unique_hash_index(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    await store.create_channel("demo")
    await store.close()
    with sqlite3.connect(tmp_path / SQLITE_FILENAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = conn.execute("PRAGMA index_list(channels)").fetchall()
        unique_columns = {
            conn.execute(f"PRAGMA index_info({index[1]!r})").fetchone()[2]
            for index in indexes
            if index[2]
        }
    assert "key_hash" in unique_columns


async def test_sqlite_closed_store_reports_unavailable(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_sqlite_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot open SQLite store"):
        open_store(None, blocker / "sub")


# --- open_store URLs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        (None, SQLITE_FILENAME),
        ("sqlite://", SQLITE_FILENAME),
        ("sqlite:///", SQLITE_FILENAME),
        ("sqlite:///custom.db", "custom.db"),
        ("sqlite:///sub/dir/x.db", "sub/dir/x.db"),
    ],
)
async def test_open_store_sqlite_paths(tmp_path: Path, url: str | None, relative: str) -> None:
    store = open_store(url, tmp_path)
    try:
        assert isinstance(store, SQLiteStore)
        assert (tmp_path / relative).exists()
    finally:
        await store.close()


async def test_open_store_sqlite_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "abs.db"
    store = open_store(f"sqlite:///{target}", tmp_path / "data")
    try:
        assert target.exists()
    finally:
        await store.close()


async def test_open_store_redis_does_no_io_and_hides_password() -> None:
    store = open_store("redis://user:s3cret@127.0.0.1:1/2", Path("/nonexistent"))
    try:
        assert isinstance(store, RedisStore)
        assert "s3cret" not in repr(store)
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()
        assert "s3cret" not in str(caught.value)
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["postgres://x/y", "http://x", "nonsense"])
def test_open_store_unknown_scheme(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        open_store(url, tmp_path)
