"""Batch shards on several processes sharing one Postgres checkpointer and one Redis cache."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from langgraph_feedit.config import StoreConfig
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.stores import StoreError, open_stores, redact_url
from langgraph_feedit.testing import SimServer

from . import services
from .helpers import batch_cli, in_flight_at, read_lines, write_prompts


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with services.postgres() as url:
        yield url


@pytest.fixture(scope="module")
def rd() -> Iterator[str]:
    with services.redis() as url:
        yield url


def test_shards_share_postgres_and_redis_and_survive_a_kill(
    pg: str, rd: str, tmp_path: Path
) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 16, digits=2)
    with SimServer(seed=71, ttft=0.1, rate=200) as server:
        common = [
            "--input",
            str(inp),
            "--base-url",
            server.base_url,
            "--model",
            "m",
            "--drafts",
            "2",
            "--critiques",
            "1",
            "--concurrency",
            "2",
            "--checkpoint-url",
            pg,
            "--cache-url",
            rd,
            "--set",
            "roles.draft.seed=0",  # distinct drafts: twins would share calls
        ]
        # each shard keeps its own local folder: everything shared goes through the servers
        shard0 = subprocess.Popen(
            batch_cli(
                *common,
                "--shard",
                "0/2",
                "--output",
                str(tmp_path / "p0.jsonl"),
                "--store",
                str(tmp_path / "m0"),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        shard1 = subprocess.Popen(
            batch_cli(
                *common,
                "--shard",
                "1/2",
                "--output",
                str(tmp_path / "p1.jsonl"),
                "--store",
                str(tmp_path / "m1"),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # kill shard 1 mid-run, while shard 0 goes on
        deadline = time.monotonic() + 120
        while server.call_count < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(shard1.pid, signal.SIGKILL)
        shard1.wait(timeout=30)
        _, err = shard0.communicate(timeout=300)
        assert shard0.returncode == 0, err
        for _ in range(200):
            if server.in_flight == 0:
                break
            time.sleep(0.05)
        cut_off = in_flight_at(server, killed_at)
        before = server.call_count
        assert before < 16 * 10

        # a third process, on another machine's folder, finishes shard 1's prompts
        third = subprocess.run(
            batch_cli(
                *common,
                "--shard",
                "1/2",
                "--output",
                str(tmp_path / "p1.jsonl"),
                "--store",
                str(tmp_path / "m2"),
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert third.returncode == 0, third.stderr
        # (each of the three processes probed the judge endpoint for logprobs once)
        assert server.call_count <= 16 * 10 + cut_off + 3
        assert server.call_count > before

        # the shared cache serves samples bought by the other shards: a run with a narrower
        # width (new threads, same calls) on a fresh local folder makes no call
        calls = server.call_count
        whole = subprocess.run(
            [
                *batch_cli(
                    *common,
                    "--output",
                    str(tmp_path / "all.jsonl"),
                    "--store",
                    str(tmp_path / "m3"),
                ),
                "--drafts",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert whole.returncode == 0, whole.stderr
        assert "0 already done" in whole.stderr and "16 answered" in whole.stderr
        # but the probe of the judge endpoint for logprobs, which a process's first run makes
        # beside its drafts before it can know they all come from the cache
        assert server.call_count == calls + 1
    ids = sorted(
        str(r["id"]) for part in ("p0", "p1") for r in read_lines(tmp_path / f"{part}.jsonl")
    )
    assert ids == [f"q{i:02d}" for i in range(16)]
    assert all(r["status"] == "ok" for r in read_lines(tmp_path / "all.jsonl"))


async def test_unreachable_servers_are_named(tmp_path: Path) -> None:
    port = services.free_port()
    with pytest.raises(StoreError, match=rf"127\.0\.0\.1:{port}"):
        async with open_stores(StoreConfig(cache_url=f"redis://127.0.0.1:{port}/0"), path=tmp_path):
            pass
    url = f"postgresql://feedit:s3cret@127.0.0.1:{port}/x"
    with pytest.raises(StoreError) as info:
        async with open_stores(StoreConfig(checkpoint_url=url), path=tmp_path):
            pass
    assert f"127.0.0.1:{port}" in str(info.value) and "s3cret" not in str(info.value)
    with pytest.raises(ConfigError, match="postgresql://"):
        async with open_stores(StoreConfig(checkpoint_url="mysql://x"), path=tmp_path):
            pass


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


async def test_shards_starting_together_set_up_a_fresh_database_once(
    pg: str, tmp_path: Path
) -> None:
    import asyncio

    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(pg, autocommit=True) as conn:
        await conn.execute("CREATE DATABASE fresh_setup")
    url = pg.rsplit("/", 1)[0] + "/fresh_setup"

    async def shard(i: int) -> None:
        async with open_stores(StoreConfig(checkpoint_url=url), path=tmp_path / str(i)) as (
            saver,
            _,
        ):
            assert saver is not None

    # the migrations race (duplicate types) or deadlock (indexes built CONCURRENTLY) unless
    # they are serialised
    await asyncio.wait_for(asyncio.gather(*(shard(i) for i in range(3))), timeout=60)


def test_nul_and_control_characters_run_on_postgres_and_redis(
    pg: str, rd: str, tmp_path: Path
) -> None:
    """Postgres text and ``jsonb`` hold no NUL character, and the checkpointer puts the thread
    id in both; any string JSON can escape must still run (and resume) on every backend."""
    import json

    lines = [
        {"uid": "nul\u0000id", "prompt": "a NUL in the id"},
        {"uid": "ctl\u0001\u001f\u007f\u0085", "prompt": "control characters in the id"},
        {"id": "in-text", "messages": [{"role": "user", "content": "a\u0000b\u0001c"}]},
        {"uid": "in-extra", "prompt": "x", "category": "\u0000"},
    ]
    inp = tmp_path / "q.jsonl"
    inp.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with SimServer(seed=72) as server:
        common = ["--input", str(inp), "--base-url", server.base_url, "--model", "m"]
        common += ["--drafts", "1", "--critiques", "0", "--store", str(tmp_path / "local")]
        common += ["--checkpoint-url", pg, "--cache-url", rd, "--on-error", "skip"]
        first = subprocess.run(
            batch_cli(*common, "--output", str(tmp_path / "a.jsonl")),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.returncode == 0, first.stderr
        calls = server.call_count
        again = subprocess.run(
            batch_cli(*common, "--output", str(tmp_path / "b.jsonl")),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert again.returncode == 0, again.stderr
        assert server.call_count == calls  # every thread was found again
    records = read_lines(tmp_path / "a.jsonl")
    assert [r["id"] for r in records] == [str(line.get("uid", line.get("id"))) for line in lines]
    assert all(r["status"] == "ok" for r in records)
    assert read_lines(tmp_path / "b.jsonl") == records
