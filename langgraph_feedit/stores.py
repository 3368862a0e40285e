"""Checkpointers and call caches for batch runs: SQLite files by default, or Postgres and
Redis shared by many machines. All of them are LangGraph's own.

A server that cannot be reached is an error naming it (with any password hidden) before a
single prompt runs: Redis's cache would otherwise fail silently and quietly buy every call
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langgraph.cache.base import BaseCache
from langgraph.checkpoint.base import BaseCheckpointSaver

from langgraph_feedit.config import StoreConfig
from langgraph_feedit.errors import ConfigError, StoreError

__all__ = ["StoreError", "open_stores", "redact_url"]


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@contextlib.asynccontextmanager
async def open_stores(
    store: StoreConfig, *, path: Path | None = None
) -> AsyncIterator[tuple[BaseCheckpointSaver[Any], BaseCache[Any]]]:
    """The checkpointer and call cache a batch uses, open for the duration of the block."""
    folder = Path(path or store.path)
    async with contextlib.AsyncExitStack() as stack:
        if store.checkpoint_url:
            saver = await stack.enter_async_context(_postgres(store.checkpoint_url))
        else:
            import aiosqlite

            _ensure(folder)
            try:
                conn = await stack.enter_async_context(
                    aiosqlite.connect(folder / "checkpoints.sqlite", timeout=60.0)
                )
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot open the checkpoints {folder / 'checkpoints.sqlite'}: {exc}"
                ) from None
            saver = _sqlite_saver(conn, folder / "checkpoints.sqlite")
        if store.cache_url:
            cache: BaseCache[Any] = _redis(store.cache_url)
        else:
            _ensure(folder)
            cache = await _sqlite_cache(folder / "cache.sqlite")
        yield saver, cache


@contextlib.contextmanager
def _named(what: str) -> Iterator[None]:
    """SQLite's own errors (a full disk, a read-only file) as one line naming the file: the
    batch stops on them, with the previous output kept."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from None


def _sqlite_saver(conn: Any, path: Path) -> BaseCheckpointSaver[Any]:
    """LangGraph's ``AsyncSqliteSaver`` on ``conn``, its failures :class:`StoreError` naming
    ``path`` (the calls a run makes on its checkpointer)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    class NamedSqliteSaver(AsyncSqliteSaver):
        async def setup(self) -> None:
            with _named(f"cannot set up the checkpoints {path}"):
                await super().setup()

        async def aget_tuple(self, config: Any) -> Any:
            with _named(f"cannot read the checkpoints {path}"):
                return await super().aget_tuple(config)

        async def aget_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
            with _named(f"cannot read the checkpoints {path}"):
                return await super().aget_delta_channel_history(config=config, channels=channels)

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            with _named(f"cannot write the checkpoints {path}"):
                return await super().aput(config, checkpoint, metadata, new_versions)

        async def aput_writes(
            self, config: Any, writes: Any, task_id: str, task_path: str = ""
        ) -> None:
            with _named(f"cannot write the checkpoints {path}"):
                await super().aput_writes(config, writes, task_id, task_path)

    return NamedSqliteSaver(conn)


async def _try_lock(conn: Any) -> bool:
    row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (_SETUP_LOCK,))).fetchone()
    return bool(row and row[0])


_SETUP_LOCK = 0x6665656469  # "feedi": any constant shared by every feedit process


def _local_sqlite_cache(path: Path) -> BaseCache[Any]:
    """LangGraph's ``SqliteCache``, tuned for one machine's batch.

    - ``synchronous=NORMAL``: in WAL mode a commit is then durable against the process dying
      (``kill -9``: the WAL is in the operating system's hands) though not against the machine
      losing power, and costs no ``fsync``. A power cut loses at most the last calls, which a
      rerun makes again; every commit paying an ``fsync`` cost more than the call it records.
    - Reads and writes on the event loop's own thread: each is one indexed statement on a
      local file (tens of microseconds), where ``asyncio.to_thread`` paid a thread hop and a
      wait for the interpreter lock for each of the two per call. A writer from another shard
      of the same store holds the lock only for its commit.
    """
    from langgraph.cache.sqlite import SqliteCache

    class LocalSqliteCache(SqliteCache[Any]):
        async def aget(self, keys: Any) -> Any:
            with _named(f"cannot read the call cache {path}"):
                return self.get(keys)

        async def aset(self, mapping: Any) -> None:
            with _named(f"cannot write the call cache {path}"):
                self.set(mapping)

    cache = LocalSqliteCache(path=str(path))
    cache._conn.execute("PRAGMA synchronous=NORMAL")
    return cache


async def _sqlite_cache(path: Path) -> BaseCache[Any]:
    """The SQLite call cache, opened even while another process opens the same file.

    Opening switches the file to WAL mode, and SQLite answers "database is locked" at once,
    without waiting, when another process is doing the same: shards that start together on
    one store would fail. Retry for a while instead.
    """
    for attempt in range(100):
        try:
            return _local_sqlite_cache(path)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise StoreError(f"cannot open the call cache {path}: {exc}") from exc
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")  # pragma: no cover


def _ensure(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(
            f"the store {folder} (--store, store.path) is a file, or lies under one: "
            "give a folder for the checkpoint and cache files",
            key="store.path",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot create the store folder {folder} (--store, store.path): {exc.strerror}",
            key="store.path",
        ) from None


@contextlib.asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "store.checkpoint_url must be a postgresql:// URL", key="store.checkpoint_url"
        )
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection, OperationalError
    except ImportError:
        raise ConfigError(
            "store.checkpoint_url needs the Postgres extra: "
            "pip install 'langgraph-feedit[postgres]'",
            key="store.checkpoint_url",
        ) from None
    try:
        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            # Shards often start together on a fresh database, and the saver's migrations
            # (CREATE TABLE IF NOT EXISTS) race: one process's creation makes the other's fail.
            # A session advisory lock runs them one process at a time.
            async with await AsyncConnection.connect(url, autocommit=True) as lock:
                # Poll rather than block in pg_advisory_lock: the migrations create indexes
                # CONCURRENTLY, which wait for every open statement, a blocked lock call
                # included, and that would deadlock.
                # The holder is another process, so there is no event to wait on: poll.
                while not await _try_lock(lock):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                try:
                    await saver.setup()
                finally:
                    await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
            yield saver
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StoreError(
            f"cannot reach the checkpoint database {redact_url(url)}: {reason}"
        ) from None


def _redis(url: str) -> BaseCache[Any]:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("store.cache_url must be a redis:// URL", key="store.cache_url")
    try:
        import redis
        from langgraph.cache.redis import RedisCache
    except ImportError:
        raise ConfigError(
            "store.cache_url needs the Redis extra: pip install 'langgraph-feedit[redis]'",
            key="store.cache_url",
        ) from None
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StoreError(f"cannot reach the cache server {redact_url(url)}: {exc}") from None
    return RedisCache(client, prefix="feedit:cache:")
