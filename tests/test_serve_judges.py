"""Judges one plugs in, through the door (``feedit serve``, called with the official ``openai``
client) and ``feedit batch``: a function given as an import path in the operator's
configuration, the verifier, and a weighted combination of both. What the door lets a client
choose of them: the judge kind, never the function, the questions file or the weights."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from langgraph_feedit import Trace
from langgraph_feedit.serve import build_app, serve_in_thread
from langgraph_feedit.testing import SimServer

from .helpers import batch_cli, read_lines, sim_config

ROOT = Path(__file__).resolve().parent.parent
FEWEST_WORDS = f"{__name__}:fewest_words"
NO_COMMA = {
    "key": 1,
    "prompt": "Say hi. Do not use any commas.",
    "instruction_id_list": ["punctuation:no_comma"],
    "kwargs": [{}],
}


def fewest_words(conversation: list[dict[str, Any]], candidate: str) -> float:
    """The operator's judge: the shorter the better."""
    return -float(len(candidate.split()))


def words(text: str | None) -> float:
    return -float(len((text or "").split()))


def no_comma(text: str | None) -> float:
    return 0.0 if "," in (text or "") else 1.0


def questions(tmp_path: Path) -> str:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(NO_COMMA) + "\n", encoding="utf-8")
    return str(path)


@contextmanager
def door(judge: dict[str, Any]) -> Iterator[tuple[SimServer, OpenAI]]:
    """The simulated backend, and the door serving on it with the operator's ``judge``."""
    with SimServer(seed=9, mean_tokens=12, sd_tokens=6.0) as sim:
        config = sim_config(sim.base_url, width={"drafts": 3}, roles={"judge": judge})
        with serve_in_thread(build_app(config)) as url:
            yield sim, OpenAI(base_url=url, api_key="unused", max_retries=0)


def ask(client: OpenAI, prompt: str = "Explain CRDTs.", **feedit: Any) -> tuple[str, Trace]:
    """A best-of-n completion through the door, its answer and its trace (``feedit_trace``)."""
    reply = client.chat.completions.create(
        model="best-of-n",
        messages=[{"role": "user", "content": prompt}],
        extra_body={"feedit": {"trace": True, **feedit}},
    )
    extra = reply.model_extra or {}
    return reply.choices[0].message.content or "", Trace.model_validate(extra["feedit_trace"])


def model_judged(sim: SimServer) -> int:
    """Requests a model judge made (a principle question or a rating)."""
    return sum(
        "satisfies this principle" in json.dumps(r.body) or "response_format" in r.body
        for r in sim.requests
    )


def test_the_door_judges_with_the_operators_import_path_function() -> None:
    with door({"kind": "function", "function": FEWEST_WORDS}) as (sim, client):
        answer, trace = ask(client)
        assert model_judged(sim) == 0
    cands = trace.candidates()
    assert trace.judge == "function" and len(cands) == 3
    assert all(n.score == words(n.text) for n in cands)
    best = max(cands, key=lambda n: n.score or 0.0)
    assert trace.selected == best.id and answer == best.text
    assert trace.usage["judge"]["calls"] == 0


def test_the_door_judges_with_the_verifier(tmp_path: Path) -> None:
    with door({"kind": "verify", "questions": questions(tmp_path)}) as (sim, client):
        answer, trace = ask(client, NO_COMMA["prompt"])
        assert model_judged(sim) == 0
    cands = trace.candidates()
    assert trace.judge == "verify"
    assert [n.score for n in cands] == [no_comma(n.text) for n in cands]
    assert no_comma(answer) == max(no_comma(n.text) for n in cands)


def test_the_door_judges_with_a_weighted_combination(tmp_path: Path) -> None:
    judge = {
        "kind": "combined",
        "function": FEWEST_WORDS,
        "questions": questions(tmp_path),
        "combine": [{"kind": "verify", "weight": 10.0}, {"kind": "function", "weight": 0.5}],
    }
    with door(judge) as (_, client):
        answer, trace = ask(client, NO_COMMA["prompt"])
    assert trace.judge == "combined"
    for n in trace.candidates():
        assert n.judge_parts == {"verify": no_comma(n.text), "function": words(n.text)}
        assert n.score == pytest.approx(10.0 * no_comma(n.text) + 0.5 * words(n.text))
    best = max(trace.candidates(), key=lambda n: n.score or 0.0)
    assert answer == best.text


def test_a_client_picks_the_kind_but_never_the_function_it_runs(tmp_path: Path) -> None:
    judge = {"function": FEWEST_WORDS, "questions": questions(tmp_path)}
    with door(judge) as (sim, client):
        # The kind is a choice of method: the function is still the operator's.
        _, trace = ask(client, judge="function")
        assert trace.judge == "function"
        assert all(n.score == words(n.text) for n in trace.candidates())
        sim.reset_stats()
        for role, key, value in (
            ("judge", "function", "os:getcwd"),
            ("default", "function", "os:getcwd"),
            ("judge", "questions", "/etc/passwd"),
            ("judge", "combine", [{"kind": "function", "weight": -1.0}]),
        ):
            with pytest.raises(openai.BadRequestError) as refused:
                ask(client, roles={role: {key: value}})
            assert refused.value.status_code == 400
            error = (refused.value.body or {}) if isinstance(refused.value.body, dict) else {}
            assert error.get("param") == f"feedit.roles.{role}.{key}", refused.value.body
            if isinstance(value, str):
                assert value not in str(refused.value.body)  # a caller's value is not echoed
        assert sim.call_count == 0  # refused before any call


def test_a_client_cannot_pick_a_kind_the_operator_did_not_equip() -> None:
    with door({}) as (sim, client):
        with pytest.raises(openai.BadRequestError) as refused:
            ask(client, judge="function")
        assert "roles.judge.function" in str(refused.value.body)
        assert sim.call_count == 0


def test_feedit_batch_judges_with_an_import_path_function(tmp_path: Path) -> None:
    prompts = tmp_path / "in.jsonl"
    prompts.write_text(
        "".join(json.dumps({"uid": f"q{i}", "prompt": f"Question {i}?"}) + "\n" for i in range(2))
    )
    config = tmp_path / "feedit.toml"
    config.write_text(
        f'[roles.judge]\nkind = "function"\nfunction = "{FEWEST_WORDS}"\n[width]\ndrafts = 3\n'
    )
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # where the function's module is imported from
    with SimServer(seed=9, mean_tokens=12, sd_tokens=6.0) as sim:
        args = ["--config", str(config), "--preset", "best-of-n", "--base-url", sim.base_url]
        done = subprocess.run(
            batch_cli(*args, "--input", str(prompts), "--output", str(out)),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert model_judged(sim) == 0
    records = read_lines(out)
    assert len(records) == 2
    for record in records:
        trace = Trace.model_validate(record["trace"])
        assert trace.judge == "function"
        assert all(n.score == words(n.text) for n in trace.candidates())
        assert trace.answer == max(trace.candidates(), key=lambda n: n.score or 0.0).text
