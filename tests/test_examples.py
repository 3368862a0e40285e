"""Every example runs: against the simulated server, and the quick start on the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from langgraph_feedit.testing import SimServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Each example runs in its own interpreter: a few seconds apiece.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=31) as server:
        yield server


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def sim_env(sim: SimServer) -> dict[str, str]:
    return {
        "FEEDIT_ROLES__DEFAULT__BASE_URL": sim.base_url,
        "FEEDIT_ROLES__DEFAULT__MODEL": "sim-model",
        # Seeded drafts differ: the server answers identical requests alike, and identical
        # drafts would share their judge, critique and edit calls.
        "FEEDIT_ROLES__DRAFT__SEED": "0",
    }


def test_agent_example(sim: SimServer) -> None:
    before = sim.call_count
    out = run_example("agent.py", "Plan a trip.", env=sim_env(sim))
    assert out.strip()
    # feedback-edit: 4 drafts x (draft, judge, c, e, judge), and the judge endpoint's logprobs
    # probe (the example is a process of its own: its first contact with the endpoint)
    assert sim.call_count - before == 4 * 5 + 1


def test_tool_agent_example(sim: SimServer) -> None:
    before = sim.call_count
    lines = run_example("tool_agent.py", "API versioning", env=sim_env(sim)).splitlines()
    assert lines[0] == "TOOLS: lookup" and "".join(lines[1:]).strip()
    # The tool's result reached feedit's calls, and the answer is feedit's (feedback-edit).
    assert sim.call_count - before == 4 * 5 + 1  # and the judge endpoint's logprobs probe
    assert any("Notes on API versioning" in str(r.body["messages"]) for r in sim.requests)


def test_lcel_chain_example(sim: SimServer) -> None:
    out = run_example("lcel_chain.py", "CRDTs", "Raft", env=sim_env(sim))
    assert "## CRDTs" in out and "## Raft" in out


def test_stream_progress_example(sim: SimServer) -> None:
    lines = run_example("stream_progress.py", "q", env=sim_env(sim)).splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert {e["event"] for e in events} >= {"started", "done", "scored", "round", "finished"}
    assert lines[-1].startswith("ANSWER:")


def test_stream_tokens_example(sim: SimServer) -> None:
    lines = run_example("stream_tokens.py", "q", env=sim_env(sim)).splitlines()
    # two drafts, two critiques, two edits and four judge ratings, each with its token count,
    # and the judge endpoint's logprobs probe (a judge call of its own, beside the drafts)
    assert sum(1 for line in lines if line.endswith(" tokens")) == 10 + 1
    streamed = next(line for line in lines if line.startswith("STREAMED:"))
    assert "d0 (draft)" in streamed and "d0.c0.e0 (edit)" in streamed
    assert lines[-1].startswith("ANSWER:") and len(lines[-1]) > len("ANSWER: ")


@pytest.mark.embedded
def test_quickstart_on_the_embedded_model() -> None:
    pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra")
    out = run_example("quickstart.py", "Name a primary colour.")
    assert out.strip()


def test_batch_example_resumes_for_free(sim: SimServer, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Name a colour.\nName a fruit.\n")
    answers = tmp_path / "answers.jsonl"
    before = sim.call_count
    out = run_example("batch_run.py", str(prompts), str(answers), env=sim_env(sim))
    assert "2 prompt(s): 2 answered (0 already done)" in out
    # two drafts and their scores per prompt, and the judge endpoint's logprobs probe
    assert sim.call_count - before == 2 * 2 * 2 + 1
    again = run_example("batch_run.py", str(prompts), str(answers), env=sim_env(sim))
    assert "(2 already done)" in again
    assert sim.call_count - before == 8 + 1  # no run: no call, and no probe
