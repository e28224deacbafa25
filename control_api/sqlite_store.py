"""The embedded default store: one SQLite file, driven from a single worker thread.

sqlite3 blocks, so every statement runs on a dedicated one-thread executor; that keeps
the event loop free and serialises access to the one connection without locks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from control_api.keys import (
    hash_stream_key,
    hashes_match,
    new_stream_key,
    usable_key,
    validate_channel_name,
)
from control_api.online import OnlineTable
from control_api.store import (
    Channel,
    ChannelExists,
    ChannelNotFound,
    StoreError,
    StoreUnavailable,
)

T = TypeVar("T")

# How long a statement waits for another process's write lock (a `channel add` from the
# shell while the server runs) before giving up with "database is locked".
BUSY_TIMEOUT_MS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    name           TEXT PRIMARY KEY,
    key_hash       TEXT NOT NULL UNIQUE,
    created_at     REAL NOT NULL,
    key_rotated_at REAL NOT NULL
)
"""


class SQLiteStore:
    """ChannelStore on a local SQLite file (WAL mode); online state lives in memory."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._online = OnlineTable()
        self._closed = False
        try:
            self._conn = self._executor.submit(self._connect).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self._path)!r})"

    def _connect(self) -> sqlite3.Connection:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            with conn:
                conn.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self._path}: {exc}") from exc
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._conn)
        except sqlite3.IntegrityError as exc:
            # Only a SHA-256 collision between two fresh keys could get here.
            raise StoreError(f"SQLite store {self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self._path}: {exc}") from exc

    async def create_channel(self, name: str) -> str:
        validate_channel_name(name)
        key = new_stream_key()
        key_hash = hash_stream_key(key)

        def insert(conn: sqlite3.Connection) -> int:
            now = time.time()
            with conn:
                cur = conn.execute(
                    "INSERT INTO channels (name, key_hash, created_at, key_rotated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                    (name, key_hash, now, now),
                )
                return cur.rowcount

        if await self._run(insert) == 0:
            raise ChannelExists(f"channel {name!r} already exists")
        return key

    async def get_channel(self, name: str) -> Channel | None:
        def select(conn: sqlite3.Connection) -> tuple[str, float, float] | None:
            row: tuple[str, float, float] | None = conn.execute(
                "SELECT name, created_at, key_rotated_at FROM channels WHERE name = ?", (name,)
            ).fetchone()
            return row

        row = await self._run(select)
        return None if row is None else Channel(*row)

    async def list_channels(self) -> list[Channel]:
        def select(conn: sqlite3.Connection) -> list[tuple[str, float, float]]:
            return conn.execute(
                "SELECT name, created_at, key_rotated_at FROM channels ORDER BY name"
            ).fetchall()

        return [Channel(*row) for row in await self._run(select)]

    async def rotate_key(self, name: str) -> str:
        key = new_stream_key()
        key_hash = hash_stream_key(key)

        def update(conn: sqlite3.Connection) -> int:
            with conn:
                cur = conn.execute(
                    "UPDATE channels SET key_hash = ?, key_rotated_at = ? WHERE name = ?",
                    (key_hash, time.time(), name),
                )
                return cur.rowcount

        if await self._run(update) == 0:
            raise ChannelNotFound(f"channel {name!r} does not exist")
        return key

    async def delete_channel(self, name: str) -> bool:
        def delete(conn: sqlite3.Connection) -> int:
            with conn:
                return conn.execute("DELETE FROM channels WHERE name = ?", (name,)).rowcount

        deleted = await self._run(delete) > 0
        if deleted:
            self._online.mark_offline(name)
        return deleted

    async def channel_for_key(self, stream_key: str) -> str | None:
        key = usable_key(stream_key)
        if key is None:
            return None
        key_hash = hash_stream_key(key)

        def select(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row: tuple[str, str] | None = conn.execute(
                "SELECT name, key_hash FROM channels WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            return row

        row = await self._run(select)
        if row is None or not hashes_match(key_hash, row[1]):
            return None
        return row[0]

    async def mark_online(self, name: str, node: str, ttl_seconds: float) -> None:
        self._online.mark_online(name, node, ttl_seconds)

    async def mark_offline(self, name: str) -> None:
        self._online.mark_offline(name)

    async def online_channels(self) -> set[str]:
        return self._online.online()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)
