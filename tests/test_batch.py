"""Batch runs: resume after kill -9, faults at scale, reuse, bad input, shards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_feedit import InputError, UserError
from langgraph_feedit.batch import (
    EXIT_PARTIAL,
    BatchOptions,
    missing_nodes,
    parse_shard,
    run_batch,
    select_prompts,
)
from langgraph_feedit.inputs import read_prompts
from langgraph_feedit.testing import Fault, SimServer

from .helpers import batch_cli, in_flight_at, read_lines, sim_config, write_prompts

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT / "tests" / "data" / "arena" / "arena-hard-v0.1" / "question.jsonl"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=61) as server:
        yield server


async def batch(
    sim: SimServer, tmp_path: Path, inp: Path, out: str = "out.jsonl", **kw: Any
) -> tuple[Any, Path]:
    overrides = kw.pop("overrides", {})
    on_record = kw.pop("on_record", None)
    overrides.setdefault("width", {"drafts": 2, "critiques": 1, "edits": 1})
    # Seeded drafts differ (identical ones would share their judge and critique calls).
    overrides.setdefault("roles", {}).setdefault("draft", {"seed": 0})
    options = BatchOptions(
        input=inp, output=tmp_path / out, store=tmp_path / "store", progress=False, **kw
    )
    summary = await run_batch(sim_config(sim.base_url, **overrides), options, on_record=on_record)
    return summary, options.output


# -- resume ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_nine_then_rerun_completes_without_repeating_calls(tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 30)
    args = [
        "--input",
        str(inp),
        "--drafts",
        "2",
        "--critiques",
        "1",
        "--model",
        "m",
        "--concurrency",
        "4",
        # Seeded drafts differ (identical ones would share their judge and critique calls).
        "--set",
        "roles.draft.seed=0",
    ]
    with SimServer(seed=62, ttft=0.05, rate=400) as server:
        base = ["--base-url", server.base_url]
        # the uninterrupted reference run, in its own store
        ref = subprocess.run(
            batch_cli(
                *args,
                *base,
                "--output",
                str(tmp_path / "ref.jsonl"),
                "--store",
                str(tmp_path / "ref-store"),
            ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ref.returncode == 0, ref.stderr
        reference_calls = server.call_count
        server.reset_stats()

        out = tmp_path / "out.jsonl"
        store = tmp_path / "store"
        proc = subprocess.Popen(
            batch_cli(*args, *base, "--output", str(out), "--store", str(store)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while server.call_count < reference_calls // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for _ in range(200):  # let the server see every dropped connection
            if server.in_flight == 0:
                break
            time.sleep(0.05)
        cut_off = in_flight_at(server, killed_at)
        first_calls = server.call_count
        assert 0 < first_calls < reference_calls

        rerun = subprocess.run(
            batch_cli(*args, *base, "--output", str(out), "--store", str(store)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rerun.returncode == 0, rerun.stderr
        total_calls = server.call_count
    records = read_lines(out)
    assert [r["id"] for r in records] == [f"q{i:03d}" for i in range(30)]
    assert all(r["status"] == "ok" and r["answer"] for r in records)
    assert total_calls <= reference_calls + cut_off, (total_calls, reference_calls, cut_off)
    assert total_calls > first_calls  # the rerun did the rest
    # The rerun's summary counts what the server saw it make; what the killed run had made
    # (checkpointed or cached) counts as reused, in the summary and in the traces.
    made = re.search(r"(\d+) calls made \((\d+) reused", rerun.stderr)
    assert made is not None, rerun.stderr
    assert int(made.group(1)) == total_calls - first_calls
    assert int(made.group(2)) > 0
    reused_nodes = sum(1 for r in records for n in r["trace"]["nodes"] if n["reused"])
    assert reused_nodes > 0


async def test_rerun_of_a_finished_batch_makes_no_call(sim: SimServer, tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 5)
    first, out = await batch(sim, tmp_path, inp)
    calls = sim.call_count
    second, _ = await batch(sim, tmp_path, inp)
    assert sim.call_count == calls
    assert second.resumed_done == 5 and second.calls == 0
    assert first.calls == calls
    assert len(read_lines(out)) == 5


# -- faults at scale ------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_hundred_prompts_with_faults(tmp_path: Path) -> None:
    faults = [
        Fault("500", rate=0.04),
        Fault("429", rate=0.04, retry_after=0.01),
        Fault("drop", rate=0.03),
        Fault("malformed", rate=0.03),
        Fault("slow", rate=0.02, slow_s=3.0),
    ]
    inp = write_prompts(tmp_path / "q.jsonl", 200)
    with SimServer(seed=63, faults=faults) as server:
        summary, out = await batch(
            server,
            tmp_path,
            inp,
            concurrency=32,
            overrides={
                "width": {"drafts": 2, "critiques": 1, "edits": 1},
                "roles": {"default": {"max_retries": 1, "timeout": 0.5}},
            },
        )
        assert server.in_flight == 0
    records = read_lines(out)
    ids = [r["id"] for r in records]
    assert ids == [f"q{i:03d}" for i in range(200)]  # no duplicate, none missing, in order
    for r in records:
        assert r["status"] in ("ok", "partial", "failed")
        if r["status"] == "failed":
            assert r["error"]
        elif r["status"] == "ok":  # an answer said to be whole has no failed call in its tree
            assert not missing_nodes(r["trace"]), r["id"]
        else:
            assert r["missing"] == missing_nodes(r["trace"]) and r["answer"]
    assert summary.answered + len(summary.partial) + len(summary.failed) == 200
    # with one retry most transient faults are absorbed; some branches fail, are recorded in
    # the traces, and make their prompts partial
    assert summary.partial and summary.exit_code == (1 if summary.failed else 3)
    assert [pid for pid, _ in summary.partial] == [
        r["id"] for r in records if r["status"] == "partial"
    ]


async def test_a_prompt_whose_branches_all_fail_is_recorded_then_retried(
    sim: SimServer, tmp_path: Path
) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 4)
    sim.set_faults([Fault("500", rate=1.0, match="Question 2?")])
    overrides = {"roles": {"default": {"max_retries": 0}}}
    summary, out = await batch(sim, tmp_path, inp, overrides=overrides)
    records = read_lines(out)
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "ok"]
    assert "status 500" in records[2]["error"]
    assert [pid for pid, _ in summary.failed] == ["q002"]
    calls = sim.call_count
    sim.set_faults([])
    summary, out = await batch(sim, tmp_path, inp, overrides=overrides)
    assert [r["status"] for r in read_lines(out)] == ["ok"] * 4
    assert summary.resumed_done == 3
    assert sim.call_count - calls == 2 * 5  # only the failed prompt's calls


# -- partial answers ------------------------------------------------------------------------

JUDGE_TEXT = "satisfies this principle"  # in every request of the default (principle) judge
EDIT_TEXT = "Feedback on your response:"  # in every edit request


def subtree_calls(node_id: str, critiques: int, edits: int) -> int:
    """Calls a node's failure left unmade in a one-round tree with a one-call judge: its own call,
    and every call of the branches hanging off it."""
    kind = node_id.rsplit(".", 1)[-1][0]
    edit_calls = 2  # the edit and its judge
    critique_calls = 1 + edits * edit_calls
    if kind == "e":
        return edit_calls
    if kind == "c":
        return critique_calls
    return 2 + critiques * critique_calls  # a draft, its judge, its critique branches


async def test_partial_prompts_are_recorded_and_a_rerun_makes_exactly_the_missing_calls(
    sim: SimServer, tmp_path: Path
) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 6)
    # three judge calls and two edits fail once each, anywhere in the batch
    sim.set_faults(
        [Fault("500", first=3, match=JUDGE_TEXT), Fault("500", first=2, match=EDIT_TEXT)]
    )
    overrides = {"roles": {"default": {"max_retries": 0}}}
    first, out = await batch(sim, tmp_path, inp, overrides=overrides)
    records = read_lines(out)
    partial = [r for r in records if r["status"] == "partial"]
    missing = [node for r in partial for node in r["missing"]]
    nodes = [n for r in partial for n in r["trace"]["nodes"] if n["id"] in r["missing"]]
    failed_edits = [n for n in nodes if n["error"]]
    unscored = [n for n in nodes if not n["error"]]
    assert len(missing) == 5, missing
    assert len(failed_edits) == 2 and all(n["kind"] == "edit" for n in failed_edits)
    assert len(unscored) == 3 and all(n["judge_note"].startswith("not scored") for n in unscored)
    assert all(r["status"] == "ok" for r in records if r not in partial)
    assert [pid for pid, _ in first.partial] == [r["id"] for r in partial]
    assert first.answered == 6 - len(partial) and first.exit_code == EXIT_PARTIAL
    assert any("partial" in line for line in first.lines())
    expected = 0
    for r in partial:
        for node_id in r["missing"]:
            node = next(n for n in r["trace"]["nodes"] if n["id"] == node_id)
            # an unscored candidate misses one judge call; a failed node its whole subtree
            expected += 1 if node.get("error") is None else subtree_calls(node_id, 1, 1)
    assert expected == 3 + 2 * 2

    sim.set_faults([])
    calls = sim.call_count
    second, out = await batch(sim, tmp_path, inp, overrides=overrides)
    assert sim.call_count - calls == expected  # only the calls that had failed
    assert [r["status"] for r in read_lines(out)] == ["ok"] * 6
    assert not second.partial and second.exit_code == 0
    assert second.resumed_done == 6 - len(partial)
    assert second.calls == expected
    # and now all is whole: a third run makes no call at all
    third, _ = await batch(sim, tmp_path, inp, overrides=overrides)
    assert sim.call_count - calls == expected and third.resumed_done == 6


# -- the output file ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_rerun_killed_midway_leaves_the_previous_output_whole(tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 24)
    out, store = tmp_path / "out.jsonl", tmp_path / "store"
    with SimServer(seed=66, ttft=0.05, rate=400) as server:
        common = ["--input", str(inp), "--output", str(out), "--store", str(store)]
        common += ["--base-url", server.base_url, "--model", "m", "--concurrency", "2"]
        done = subprocess.run(
            batch_cli(*common, "--drafts", "1", "--critiques", "0"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        before = out.read_bytes()
        assert len(read_lines(out)) == 24
        calls = server.call_count
        # a wider rerun (new calls for every prompt), killed once it has written some lines
        proc = subprocess.Popen(
            batch_cli(*common, "--drafts", "2", "--critiques", "1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tmp = out.with_name(f".{out.name}.{proc.pid}.tmp")  # the process's own
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if tmp.exists() and tmp.read_bytes().count(b"\n") >= 4:
                break
            if out.read_bytes() != before:  # rewritten in place: no use waiting
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert server.call_count > calls
    assert out.read_bytes() == before  # whole, as the last finished run wrote it
    lines = tmp.read_bytes().split(b"\n")
    assert 4 <= len(lines) - 1 < 24  # the killed run's own prefix, beside it
    for line in lines[:-1]:
        json.loads(line)


async def test_a_failing_batch_leaves_the_previous_output_whole(
    sim: SimServer, tmp_path: Path
) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 6)
    _, out = await batch(sim, tmp_path, inp)
    before = out.read_bytes()
    seen: list[str] = []

    class Interrupted(Exception):
        pass

    def stop_after_two(record: dict[str, Any]) -> None:
        seen.append(record["id"])
        if len(seen) == 2:
            raise Interrupted  # anything that ends the batch midway

    with pytest.raises(Interrupted):
        await batch(sim, tmp_path, inp, fresh=True, on_record=stop_after_two)
    assert out.read_bytes() == before
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.parametrize("limit", [0, -1])
async def test_limit_below_one_is_refused_and_truncates_nothing(
    sim: SimServer, tmp_path: Path, limit: int
) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 3)
    _, out = await batch(sim, tmp_path, inp)
    before, calls = out.read_bytes(), sim.call_count
    with pytest.raises(UserError, match=f"--limit must be at least 1, got {limit}"):
        await batch(sim, tmp_path, inp, limit=limit)
    assert out.read_bytes() == before and sim.call_count == calls


async def test_output_that_is_the_input_is_refused(sim: SimServer, tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 3)
    before = inp.read_bytes()
    # the same file under another spelling, and through a link
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    for same in (tmp_path / "sub" / ".." / "q.jsonl", link):
        options = BatchOptions(input=inp, output=same, store=tmp_path / "s", progress=False)
        with pytest.raises(UserError, match="is the input file"):
            await run_batch(sim_config(sim.base_url), options)
    assert inp.read_bytes() == before and sim.call_count == 0


# -- reuse ----------------------------------------------------------------------------------


async def test_sweep_reuse_across_batches(sim: SimServer, tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 3)
    seeded = {"draft": {"seed": 3}}

    async def run(drafts: int) -> Any:
        overrides = {"width": {"drafts": drafts, "critiques": 1, "edits": 1}, "roles": seeded}
        return (await batch(sim, tmp_path, inp, out=f"d{drafts}.jsonl", overrides=overrides))[0]

    await run(4)
    probe = 1  # the judge endpoint's logprobs probe, made by the first batch on this loop only
    assert sim.call_count == 3 * 4 * 5 + probe
    more = await run(8)
    assert sim.call_count == 3 * 8 * 5 + probe  # only the new drafts' branches
    assert more.reused_calls == 3 * 4 * 5
    fewer = await run(2)
    assert sim.call_count == 3 * 8 * 5 + probe  # nothing new at all
    assert fewer.calls == 0


async def test_fresh_draws_new_samples(sim: SimServer, tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 2)
    await batch(sim, tmp_path, inp)
    calls = sim.call_count - 1  # the judge endpoint's logprobs probe, made once on this loop
    await batch(sim, tmp_path, inp, fresh=True)
    assert sim.call_count == 2 * calls + 1


# -- bad input ------------------------------------------------------------------------------

BAD_LINES = [
    (b'{"uid": "a", "prompt": "fine"}', None),
    (b'{"uid": "b", "prompt": ', "not valid JSON"),
    (b'{"uid": "c"}', "missing field"),
    (b'{"prompt": "no id"}', "missing field 'uid'"),
    (b'{"uid": "d", "prompt": "   "}', "empty prompt"),
    (b'{"uid": "e", "prompt": "caf\xe9"}', "not UTF-8: byte 0xe9"),
    (b'["a list"]', "must be a JSON object"),
    (b'{"id": "f", "messages": []}', "non-empty list"),
    (b'{"id": "g", "messages": [{"role": "wizard", "content": "x"}]}', "unknown role"),
    (b'{"uid": "a", "prompt": "again"}', "duplicate id 'a' (first on line 1)"),
]


def test_each_bad_input_kind_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in BAD_LINES) + b"\n")
    prompts, errors = read_prompts(path)
    assert [p.id for p in prompts] == ["a"]
    expected = [(n, msg) for n, (_, msg) in enumerate(BAD_LINES, start=1) if msg]
    assert len(errors) == len(expected)
    for err, (line, msg) in zip(errors, expected, strict=True):
        assert err.line == line and err.path == str(path)
        assert str(err).startswith(f"{path}:{line}: ")
        assert msg in str(err), (line, str(err))


async def test_on_error_stop_runs_nothing(sim: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"uid": "a", "prompt": "fine"}\n{"uid": "b", "prompt": \n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not valid JSON"):
        await batch(sim, tmp_path, path)
    assert sim.call_count == 0


async def test_on_error_skip_goes_on_and_lists_the_lines(sim: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"uid": "a", "prompt": "fine"}\n{"uid": "b"}\n{"uid": "c", "prompt": "ok"}\n'
    )
    summary, out = await batch(sim, tmp_path, path, on_error="skip")
    assert [r["id"] for r in read_lines(out)] == ["a", "c"]
    assert [e.line for e in summary.skipped] == [2]
    sidecar = read_lines(out.with_name(out.name + ".skipped.jsonl"))
    assert sidecar[0]["line"] == 2 and "missing field" in sidecar[0]["error"]
    assert any("skipped" in line for line in summary.lines())


def test_text_and_messages_inputs(tmp_path: Path) -> None:
    text = tmp_path / "prompts.txt"
    text.write_text("What is 2+2?\n\nName a colour.\n", encoding="utf-8")
    prompts, errors = read_prompts(text)
    assert not errors and [p.id for p in prompts] == ["1", "3"]
    assert prompts[1].messages == [{"role": "user", "content": "Name a colour."}]
    conv = tmp_path / "conv.jsonl"
    conv.write_text(
        json.dumps(
            {
                "id": "x",
                "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            }
        )
        + "\n"
    )
    prompts, errors = read_prompts(conv)
    assert not errors and prompts[0].messages[0] == {"role": "system", "content": "S"}


def test_arena_hard_question_file_reads_as_is() -> None:
    prompts, errors = read_prompts(QUESTIONS)
    assert not errors and len(prompts) == 6
    assert prompts[0].extra["category"] == "arena-hard-v0.1"


def test_shard_and_limit_selection() -> None:
    from langgraph_feedit.inputs import Prompt

    prompts = [Prompt(id=str(i), messages=[], line=i) for i in range(10)]
    assert [p.id for p in select_prompts(prompts, shard=(1, 3), limit=None)] == ["1", "4", "7"]
    assert [p.id for p in select_prompts(prompts, shard=(0, 2), limit=5)] == ["0", "2", "4"]
    union = sorted(
        p.id for i in range(4) for p in select_prompts(prompts, shard=(i, 4), limit=None)
    )
    assert union == sorted(p.id for p in prompts)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


# -- shards sharing one store ---------------------------------------------------------------


@pytest.mark.slow
def test_two_shards_write_one_sqlite_store_at_once(tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 24)
    store = tmp_path / "store"
    with SimServer(seed=64, ttft=0.01) as server:
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
            "--store",
            str(store),
        ]
        procs = [
            subprocess.Popen(
                batch_cli(
                    *common, "--shard", f"{i}/2", "--output", str(tmp_path / f"part{i}.jsonl")
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        calls = server.call_count
        parts = [read_lines(tmp_path / f"part{i}.jsonl") for i in range(2)]
        assert sorted(r["id"] for part in parts for r in part) == [f"q{i:03d}" for i in range(24)]
        assert all(r["status"] == "ok" for part in parts for r in part)
        # both shards' work is in the shared store: a whole run now makes no call
        whole = subprocess.run(
            batch_cli(*common, "--output", str(tmp_path / "all.jsonl")),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert whole.returncode == 0, whole.stderr
        assert server.call_count == calls
    assert len(read_lines(tmp_path / "all.jsonl")) == 24


# -- progress -------------------------------------------------------------------------------


@pytest.mark.slow
def test_progress_bar_on_a_terminal_and_lines_otherwise(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    inp = write_prompts(tmp_path / "q.jsonl", 6)
    with SimServer(seed=65) as server:
        common = [
            "--input",
            str(inp),
            "--base-url",
            server.base_url,
            "--model",
            "m",
            "--drafts",
            "1",
            "--critiques",
            "0",
            "--store",
            str(tmp_path / "s"),
        ]
        argv = [
            a
            for a in batch_cli(*common, "--output", str(tmp_path / "a.jsonl"))
            if a != "--no-progress"
        ]
        plain = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0
        assert "batch: 6/6 done, 0 failed" in plain.stderr
        assert "6 prompt(s): 6 answered" in plain.stderr

        leader, follower = pty.openpty()
        # a real terminal has a size; a fresh pty reports 0 columns
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        argv = [
            a
            for a in batch_cli(*common, "--output", str(tmp_path / "b.jsonl"), "--fresh")
            if a != "--no-progress"
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
        os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "6/6" in screen and "prompt" in screen and "failed=0" in screen
    assert "batch: " not in screen  # the bar, not the line-oriented form


@pytest.mark.slow
def test_the_call_cache_opens_while_another_process_holds_its_file(tmp_path: Path) -> None:
    from langgraph_feedit.config import StoreConfig
    from langgraph_feedit.stores import open_stores

    # another process holds the cache file locked for longer than SQLite's 5 s busy wait, as a
    # shard starting at the same moment can while it switches the file to WAL mode
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, time; c = sqlite3.connect(r'%s', isolation_level=None); "
            "c.execute('create table if not exists t(x)'); c.execute('BEGIN EXCLUSIVE'); "
            "print('locked', flush=True); time.sleep(6.5); c.execute('COMMIT')"
            % (tmp_path / "cache.sqlite"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

    async def open_them() -> None:
        async with open_stores(StoreConfig(), path=tmp_path) as (saver, cache):
            assert cache is not None and saver is not None

    asyncio.run(open_them())
    assert holder.wait(timeout=30) == 0


# -- the files a batch writes ---------------------------------------------------------------


def test_a_second_batch_on_the_same_output_says_so_and_exits_2(tmp_path: Path) -> None:
    inp = write_prompts(tmp_path / "q.jsonl", 12)
    out = tmp_path / "out.jsonl"
    with SimServer(seed=67, ttft=1.0) as server:  # the first batch lasts 6 s or more
        common = ["--input", str(inp), "--output", str(out), "--base-url", server.base_url]
        common += ["--model", "m", "--drafts", "1", "--critiques", "0", "--concurrency", "2"]
        first = subprocess.Popen(
            batch_cli(*common, "--store", str(tmp_path / "s1")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.call_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(
            batch_cli(*common, "--store", str(tmp_path / "s2")),
            capture_output=True,
            text=True,
            timeout=300,
        )
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert "another feedit batch" in second.stderr and str(out) in second.stderr
    assert "Traceback" not in second.stderr
    assert [r["id"] for r in read_lines(out)] == [f"q{i:03d}" for i in range(12)]
    assert not list(tmp_path.glob(".out.jsonl*.tmp"))


async def test_files_that_would_overwrite_the_input_or_the_store_are_refused(
    sim: SimServer, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    await batch(sim, tmp_path, write_prompts(tmp_path / "warm.jsonl", 1))  # the store exists
    calls = sim.call_count
    traces = tmp_path / "traces"
    traces.mkdir()
    cases: list[tuple[Path, dict[str, Any], str]] = [
        # the input is the output's skipped-lines file
        (tmp_path / "out.jsonl.skipped.jsonl", {}, "skipped-lines file"),
        # the input is where a prompt's trace would go
        (traces / "q000.json", {"traces": traces}, "trace"),
        # the output lies in the store folder
        (tmp_path / "q.jsonl", {"output": store / "checkpoints.sqlite"}, "store"),
        (tmp_path / "q.jsonl", {"output": store / "answers.jsonl"}, "store"),
        (tmp_path / "q.jsonl", {"traces": store}, "store"),
    ]
    for inp, options, said in cases:
        write_prompts(inp, 2)
        before = inp.read_bytes()
        kept = {p: p.read_bytes() for p in store.iterdir() if p.is_file()}
        output = options.pop("output", tmp_path / "out.jsonl")
        with pytest.raises(UserError, match=said):
            await run_batch(
                sim_config(sim.base_url),
                BatchOptions(input=inp, output=output, store=store, progress=False, **options),
            )
        assert inp.read_bytes() == before, said
        assert {p: p.read_bytes() for p in store.iterdir() if p.is_file()} == kept
    assert sim.call_count == calls


def _with_a_small_disk(folder: Path, size: str, argv: list[str]) -> list[str]:
    """``argv`` run with an empty tmpfs of ``size`` mounted on ``folder`` in a mount namespace
    of its own: a real full disk, gone when the process ends, and no root needed where user
    namespaces are allowed."""
    shell = ["sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"']
    return ["unshare", "--user", "--map-root-user", "--mount", *shell, str(folder), *argv]


def _mounts_allowed() -> str | None:
    """Why a test cannot mount a filesystem of its own here, or ``None``."""
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no unshare(1) to give the test a filesystem of its own: {exc}"
    if probe.returncode != 0:
        return f"user and mount namespaces are not allowed here: {probe.stderr.strip()}"
    return None


def test_a_full_disk_is_one_line_naming_the_store_and_the_output_stays(tmp_path: Path) -> None:
    reason = _mounts_allowed()
    if reason is not None:
        pytest.skip(reason)
    inp = write_prompts(tmp_path / "q.jsonl", 20)
    out, store = tmp_path / "out.jsonl", tmp_path / "store"
    with SimServer(seed=68) as server:
        common = ["--input", str(inp), "--output", str(out), "--store", str(store)]
        common += ["--base-url", server.base_url, "--model", "m", "--drafts", "2"]
        first = subprocess.run(batch_cli(*common), capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        before = out.read_bytes()
        # --fresh: every call is made again, and written to the store
        argv = batch_cli(*common, "--fresh")
        failed = subprocess.run(
            _with_a_small_disk(store, "160k", argv),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert failed.returncode == 1, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("feedit: StoreError: ") and "database or disk is full" in lines[0]
    assert str(store / "cache.sqlite") in lines[0] or str(store / "checkpoints.sqlite") in lines[0]
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".out.jsonl*.tmp"))


# -- progress on a log ------------------------------------------------------------------------


async def test_progress_on_a_log_is_a_line_per_step_with_the_summarys_tokens(
    tmp_path: Path,
) -> None:
    import io

    inp = write_prompts(tmp_path / "q.jsonl", 3)
    config = {"width": {"drafts": 1, "critiques": 0}}
    with SimServer(seed=69, ttft=2.2) as server:
        log = io.StringIO()  # not a terminal
        options = BatchOptions(
            input=inp, output=tmp_path / "a.jsonl", store=tmp_path / "s", concurrency=1
        )
        summary = await run_batch(sim_config(server.base_url, **config), options, stream=log)
        lines = log.getvalue().splitlines()
        # a line as each tenth of the batch is done (here each prompt), none while waiting
        assert [line.split(",")[0] for line in lines] == [f"batch: {k}/3 done" for k in (1, 2, 3)]
        assert not any("nan" in line for line in lines)
        assert f" {summary.tokens} tokens" in lines[-1] and summary.tokens > 0

        # with an interval, a line at least that often, saying what it cannot know yet
        log = io.StringIO()
        options.output, options.fresh, options.limit = tmp_path / "b.jsonl", True, 1
        options.progress_interval = 0.5
        await run_batch(sim_config(server.base_url, **config), options, stream=log)
        options.progress_interval = 0.0
        with pytest.raises(UserError, match="--progress-interval must be above 0"):
            await run_batch(sim_config(server.base_url, **config), options, stream=log)
    lines = log.getvalue().splitlines()
    waiting = [line for line in lines if line.startswith("batch: 0/1 done")]
    assert len(waiting) >= 3 and all("ETA unknown" in line for line in waiting), lines
    assert lines[-1].startswith("batch: 1/1 done") and "nan" not in log.getvalue()
