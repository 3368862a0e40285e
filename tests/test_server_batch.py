"""``feedit batch --server``: a dataset on a real ``langgraph dev`` server on 127.0.0.1, serving
graphs/langgraph.json with the simulated server as every role's endpoint, behind a key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.cli import main
from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.testing import Fault, SimServer

from .services import free_port

pytest.importorskip("langgraph_sdk", reason="needs langgraph-sdk (the 'test' extra)")

from langgraph_feedit.server_batch import ServerOptions, run_server_batch

pytestmark = pytest.mark.langgraph_dev

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "graphs"
DEPLOY_KEY_VAR = "FEEDIT_TEST_DEPLOY_KEY"
DEPLOY_KEY = "lg-deploy-key-0123456789"

# The deployment's own check of the key a client sends (LangGraph's custom auth).
AUTH = f'''
import hmac, os
from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(headers: dict) -> str:
    sent = headers.get(b"x-api-key", b"").decode()
    if not hmac.compare_digest(sent, os.environ["{DEPLOY_KEY_VAR}"]):
        raise Auth.exceptions.HTTPException(status_code=401, detail="bad key")
    return "batch"
'''


def _deployment(folder: Path) -> Path:
    """A langgraph.json serving the project's graphs behind a key, in ``folder`` (the dev
    server keeps its state in ``folder/.langgraph_api``, apart from other servers)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "auth.py").write_text(AUTH)
    served = json.loads((GRAPHS / "langgraph.json").read_text())
    config = {
        "dependencies": [str(ROOT)],
        "graphs": {
            name: str(GRAPHS / target.removeprefix("./"))
            for name, target in served["graphs"].items()
        },
        "auth": {"path": str(folder / "auth.py") + ":auth"},
        "env": served.get("env", {}),
    }
    (folder / "langgraph.json").write_text(json.dumps(config))
    return folder


def _start(folder: Path, sim: SimServer, port: int) -> subprocess.Popen[bytes]:
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("needs langgraph-cli[inmem] (the 'test' extra)")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FEEDIT_ROLES__DEFAULT__BASE_URL": sim.base_url,
        "FEEDIT_ROLES__DEFAULT__MODEL": "sim-model",
        "FEEDIT_ROLES__DEFAULT__MAX_RETRIES": "0",
        # Seeded drafts, the same seed as the local batch's, so both get the same answers.
        "FEEDIT_ROLES__DRAFT__SEED": "0",
        DEPLOY_KEY_VAR: DEPLOY_KEY,
        "LANGSMITH_TRACING": "false",
    }
    log = (folder / "dev.log").open("ab")
    proc = subprocess.Popen(
        [
            *(cli, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser"),
            *("--no-reload", "--n-jobs-per-worker", "16"),
        ],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/ok", timeout=1).status_code == 200:
                return proc
        if proc.poll() is not None:
            raise RuntimeError(f"langgraph dev exited: {(folder / 'dev.log').read_text()[-3000:]}")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("langgraph dev did not answer /ok in 90 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=91, ttft=0.01) as server:
        yield server


@pytest.fixture(scope="module")
def server(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = _start(_deployment(tmp_path_factory.mktemp("deployment")), sim, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture
def deploy_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(DEPLOY_KEY_VAR, DEPLOY_KEY)
    return DEPLOY_KEY_VAR


def _questions(path: Path, tag: str, n: int) -> Path:
    lines = [
        json.dumps({"id": f"{tag}-{i}", "messages": [{"role": "user", "content": f"{tag} {i}?"}]})
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "langgraph_feedit.cli", "batch", "--no-progress", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), DEPLOY_KEY_VAR: DEPLOY_KEY}


_COUNTED = ("calls", "prompt_tokens", "completion_tokens")


async def test_fifty_prompts_equal_the_local_batch(
    server: str, sim: SimServer, tmp_path: Path, deploy_key: str
) -> None:
    """The same seeds give the same answers, trees and output format on the server as here."""
    questions = _questions(tmp_path / "q.jsonl", "same", 50)
    width = {"drafts": 2, "critiques": 1, "edits": 1}
    before = sim.call_count
    remote = await run_server_batch(
        BatchOptions(input=questions, output=tmp_path / "remote.jsonl", progress=False),
        ServerOptions(
            url=server,
            assistant="feedback-edit",
            # One cache key on both sides: every call's seed derives from it (and the node),
            # so the server's runs draw the same samples as the local ones.
            context={"width": width, "cache_key": "equal"},
            key_env=deploy_key,
        ),
    )
    assert remote.exit_code == 0 and remote.answered == 50
    assert remote.calls == sim.call_count - before > 0
    config = FeeditConfig.model_validate(
        {
            "preset": "feedback-edit",
            "width": width,
            "cache_key": "equal",
            "roles": {
                "default": {"base_url": sim.base_url, "model": "sim-model", "max_retries": 0},
                "draft": {"seed": 0},
            },
        }
    )
    local = await run_batch(
        config,
        BatchOptions(
            input=questions, output=tmp_path / "local.jsonl", store=tmp_path / "s", progress=False
        ),
    )
    assert local.exit_code == 0 and local.calls == remote.calls
    here, there = _read(tmp_path / "local.jsonl"), _read(tmp_path / "remote.jsonl")
    assert [r["id"] for r in there] == [f"same-{i}" for i in range(50)]  # input order
    assert [set(r) for r in there] == [set(r) for r in here]  # one output format
    deltas: list[dict[str, int]] = []
    for a, b in zip(here, there, strict=True):
        assert (a["answer"], a["selected"], a["status"]) == (
            b["answer"],
            b["selected"],
            b["status"],
        )
        assert [n["id"] for n in a["trace"]["nodes"]] == [n["id"] for n in b["trace"]["nodes"]]
        # the same calls and tokens; the simulated prompt cache's hits depend on call order
        if {**a["usage"], "cached_tokens": 0} != {**b["usage"], "cached_tokens": 0}:
            deltas.append({k: a["usage"][k] - b["usage"][k] for k in _COUNTED})
    # ... but for the judge endpoint's logprobs probe, which each process sends once and the
    # run that sent it pays for: whichever run starts first on each side, maybe not the same.
    assert deltas == [] or (
        len(deltas) == 2
        and deltas[0] == {k: -v for k, v in deltas[1].items()}
        and abs(deltas[0]["calls"]) == 1
    ), deltas


def test_a_client_killed_at_half_loses_no_answer_and_pays_no_call_twice(
    server: str, sim: SimServer, tmp_path: Path
) -> None:
    """SIGKILL the command once half the calls are made, run it again: every answer once, in
    order, and exactly the calls of one run (the server's threads keep the finished ones, and
    its runs go on without the client)."""
    n, per_prompt = 40, 2 + 2  # best-of-n: two drafts, two scores
    out = tmp_path / "answers.jsonl"
    cmd = _cli(
        "--input",
        str(_questions(tmp_path / "q.jsonl", "kill", n)),
        "--output",
        str(out),
        "--server",
        server,
        "--server-key-env",
        DEPLOY_KEY_VAR,
        "--preset",
        "best-of-n",
        "--drafts",
        "2",
        "--concurrency",
        "4",
    )
    before = sim.call_count
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while sim.call_count - before < n * per_prompt // 2:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # killed before its output was whole
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = _read(out)
    assert [r["id"] for r in records] == [f"kill-{i}" for i in range(n)]
    assert all(r["status"] == "ok" and r["answer"] for r in records)
    assert sim.call_count - before == n * per_prompt  # no finished call made twice
    read_back = re.search(r"\((\d+) already done\)", done.stderr)
    assert read_back and int(read_back.group(1)) > 0, done.stderr


async def test_failed_runs_are_resumed_by_the_rerun(
    server: str, sim: SimServer, tmp_path: Path, deploy_key: str
) -> None:
    """Runs that fail on a backend fault are written as failed (exit 1); the rerun resumes
    their threads and finishes them, reading the others back with no call."""
    questions = _questions(tmp_path / "q.jsonl", "fault", 6)
    options = BatchOptions(input=questions, output=tmp_path / "a.jsonl", progress=False)
    server_options = ServerOptions(
        url=server, assistant="best-of-n", context={"drafts": 3}, key_env=deploy_key
    )
    # Every call about prompts 1 and 4 fails: their every draft fails, so their runs fail.
    sim.set_faults(
        [Fault("500", rate=1.0, match="fault 1?"), Fault("500", rate=1.0, match="fault 4?")]
    )
    try:
        first = await run_server_batch(options, server_options)
    finally:
        sim.set_faults([])
    assert first.exit_code == 1
    assert [pid for pid, _ in first.failed] == ["fault-1", "fault-4"]
    assert "no candidate answer" in first.failed[0][1]
    lines = _read(tmp_path / "a.jsonl")
    assert [r["status"] for r in lines] == ["ok", "failed", "ok", "ok", "failed", "ok"]
    before = sim.call_count
    second = await run_server_batch(options, server_options)
    assert second.exit_code == 0 and second.answered == 6 and second.resumed_done == 4
    assert sim.call_count - before == 2 * (3 + 3)  # the two prompts' drafts and scores only
    assert [r["status"] for r in _read(tmp_path / "a.jsonl")] == ["ok"] * 6


def test_what_the_server_does_not_know_is_one_line_before_any_run(
    server: str,
    sim: SimServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    questions = str(_questions(tmp_path / "q.jsonl", "bad", 3))
    out = tmp_path / "a.jsonl"
    monkeypatch.setenv(DEPLOY_KEY_VAR, DEPLOY_KEY)
    monkeypatch.setenv("WRONG_KEY", "lg-not-the-key-000")
    nowhere = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["--server", nowhere, "--server-key-env", DEPLOY_KEY_VAR], "cannot be reached"),
        (["--server", server, "--server-key-env", "WRONG_KEY"], "refused the key in $WRONG_KEY"),
        (["--server", server], "refused no key"),
        (
            ["--server", server, "--server-key-env", DEPLOY_KEY_VAR, "--assistant", "nope"],
            "no such assistant or graph; it serves beam, best-of-n, feedback-edit",
        ),
        (["--server", sim.base_url.removesuffix("/v1")], "is not a LangGraph server"),
        (
            ["--server", server, "--server-key-env", DEPLOY_KEY_VAR, "--base-url", "http://x/v1"],
            "'roles.default.base_url' cannot be set per run",
        ),
        (["--server", server, "--store", str(tmp_path / "s")], "--store does not go with --server"),
    ]
    before = sim.call_count
    for args, expected in cases:
        assert main(["batch", "--input", questions, "--output", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert expected in err, err
        assert len(err.strip().splitlines()) == 1, err
        assert "lg-not-the-key" not in err and DEPLOY_KEY not in err
    assert not out.exists() and sim.call_count == before
    threads = httpx.post(
        f"{server}/threads/search", json={"limit": 100}, headers={"x-api-key": DEPLOY_KEY}
    ).json()
    assert not [
        t for t in threads if (t.get("metadata") or {}).get("feedit_prompt", "").startswith("bad-")
    ]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_a_server_restarted_mid_batch_loses_no_answer(
    sim: SimServer, tmp_path: Path, deploy_key: str, how: signal.Signals
) -> None:
    """``langgraph dev`` stopped half way through (SIGTERM: it finishes or cancels its runs and
    saves its threads; SIGKILL: a crash, which loses what it saved in the last seconds) and
    started again in the same folder, from its saved state in ``.langgraph_api``: the client
    waits through the outage, reads back the threads the server kept, runs again the ones it
    lost, and writes every answer once. (A deployment on Postgres loses no thread; the dev
    server is the harsher case.)"""
    folder = _deployment(tmp_path / "deployment")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    n = 30
    proc = _start(folder, sim, port)
    try:
        before = sim.call_count
        batch = asyncio.create_task(
            run_server_batch(
                BatchOptions(
                    input=_questions(tmp_path / "q.jsonl", "restart", n),
                    output=tmp_path / "a.jsonl",
                    concurrency=4,
                    progress=False,
                ),
                ServerOptions(
                    url=url,
                    assistant="best-of-n",
                    context={"drafts": 2},
                    key_env=deploy_key,
                    wait_s=120,
                ),
            )
        )
        while sim.call_count - before < n * 4 // 2:
            assert not batch.done(), batch
            await asyncio.sleep(0.01)
        proc.send_signal(how)
        await asyncio.to_thread(_stop, proc)
        stopped_at = sim.call_count - before
        proc = await asyncio.to_thread(_start, folder, sim, port)
        summary = await asyncio.wait_for(batch, 300)
    finally:
        _stop(proc)
    assert summary.exit_code == 0 and summary.answered == n
    records = _read(tmp_path / "a.jsonl")
    assert [r["id"] for r in records] == [f"restart-{i}" for i in range(n)]
    assert all(r["status"] == "ok" and r["answer"] for r in records)
    assert stopped_at < n * 4  # the server really went away mid-batch
    if how == signal.SIGTERM:
        # It kept every thread: no call made twice; each server process probed the judge
        # endpoint for logprobs once.
        assert sim.call_count - before == n * 4 + 2
