"""Reasoning models end to end: every reply split once into thinking and answer, only answers
passed on, the thinking kept where users look for it, thinking switched per role, judges that
never score blind, and replies that are answers only when they are complete.

Every test runs against the simulated server playing a reasoning model in one of the forms
real servers send: thinking in ``<think>`` tags in ``content`` (no reasoning parser), or in a
``reasoning_content`` or ``reasoning`` field (vLLM, SGLang, llama.cpp, Ollama).
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessageChunk
from langgraph.cache.memory import InMemoryCache
from openai import APIError, OpenAI

from langgraph_feedit import NoCandidateError, Trace, create_feedit_graph
from langgraph_feedit.batch import BatchOptions, run_batch
from langgraph_feedit.calls import RoleCaller
from langgraph_feedit.chatapi import ReasoningSplitter, split_reply
from langgraph_feedit.config import ThinkingConfig, deep_merge
from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.errors import EndpointError
from langgraph_feedit.exports import export_arena_answers
from langgraph_feedit.serve import build_app, serve_in_thread
from langgraph_feedit.testing import THINK_MARK, Fault, SimServer
from langgraph_feedit.view import trace_page

from .helpers import is_probe, read_lines, sim_config

QUESTION = [("user", "Explain CRDTs briefly.")]
FORMS = {
    "tags": {"reasoning": "tags"},
    "reasoning_content": {"reasoning": "field", "reasoning_field": "reasoning_content"},
    "reasoning": {"reasoning": "field", "reasoning_field": "reasoning"},
}


def feedback_edit(base_url: str, **overrides: Any) -> Any:
    settings = {"width": {"drafts": 2, "critiques": 1, "edits": 1}, "roles": {"draft": {"seed": 0}}}
    config = sim_config(base_url, **deep_merge(settings, overrides))
    return create_feedit_graph(config, preset="feedback-edit").compile()


def bodies(sim: SimServer) -> list[str]:
    return [json.dumps(r.body) for r in sim.requests]


# -- the one split --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "answer", "reasoning", "unclosed"),
    [
        ({"content": "Plain."}, "Plain.", None, False),
        ({"content": "<think>\nhm</think>\n\nFour."}, "Four.", "hm", False),
        ({"content": "  <think>hm</think>Four."}, "Four.", "hm", False),
        ({"content": "<think>still going"}, "", "still going", True),
        ({"content": "Four.", "reasoning_content": "hm"}, "Four.", "hm", False),
        ({"content": "Four.", "reasoning": "hm"}, "Four.", "hm", False),
        ({"content": None, "reasoning_content": "hm"}, "", "hm", False),
        ({"content": "Say <think> later."}, "Say <think> later.", None, False),
    ],
)
def test_split_reply(message: dict[str, Any], answer: str, reasoning: str | None, unclosed: bool):
    split = split_reply(message)
    assert (split.answer, split.reasoning, split.unclosed) == (answer, reasoning, unclosed)


def test_split_reply_with_tags_of_a_template_that_opens_the_block() -> None:
    split = split_reply({"content": "hm, four</think>\n\nFour."}, ("", "</think>"))
    assert (split.answer, split.reasoning) == ("Four.", "hm, four")
    assert split_reply({"content": "<t>hm</t>Four."}, ("<t>", "</t>")).answer == "Four."


@given(
    text=st.sampled_from(
        [
            "<think>\nOkay, let me see.\n</think>\n\nThe answer is <b>4</b>.",
            "No thinking here </think> at all.",
            "<think>cut off while thi",
            "<thin",
            "   <think>a</think>b",
            "<think></think>x",
            "<think>a</think>\n\n The tag </think> stays in the answer.",
        ]
    ),
    seed=st.integers(0, 10_000),
)
def test_the_stream_splitter_agrees_with_the_whole_split(text: str, seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 6))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    splitter = ReasoningSplitter()
    streamed_thought, streamed_answer = "", ""
    for piece in pieces:
        thought, said = splitter.feed({"content": piece})
        streamed_thought += thought
        streamed_answer += said
    whole = split_reply({"content": text})
    ended = splitter.finish()
    assert (ended.answer, ended.reasoning, ended.unclosed) == (
        whole.answer,
        whole.reasoning,
        whole.unclosed,
    )
    assert THINK_MARK not in streamed_answer
    if not whole.unclosed and text.lstrip().startswith("<think>"):
        assert streamed_answer == whole.answer  # what went out as it came is the answer


# -- a feedback-edit run in every form --------------------------------------------------------


@pytest.mark.parametrize("form", list(FORMS))
async def test_feedback_edit_passes_on_answers_only_and_keeps_the_thinking(form: str) -> None:
    with SimServer(seed=3, **FORMS[form]) as sim:
        graph = feedback_edit(sim.base_url)
        with pytest.warns(RuntimeWarning, match="not Yes or No"):
            out = await graph.ainvoke({"messages": QUESTION})
        trace = Trace.model_validate(out["trace"])
        # No prompt of any critique, edit or judge call carries a draft's thinking.
        sent = bodies(sim)
        assert len(sent) >= 10 and not any(THINK_MARK in b for b in sent)
        message = out["messages"][-1]
        assert THINK_MARK not in message.content and "<think>" not in message.content
        assert message.content == trace.answer
        # The thinking is kept: on every node, and on the answer's message as LangChain's.
        assert all(THINK_MARK in (n.reasoning or "") for n in trace.nodes)
        assert all(n.text and THINK_MARK not in n.text for n in trace.nodes)
        assert THINK_MARK in message.additional_kwargs["reasoning_content"]
        assert message.content_blocks[0]["type"] == "reasoning"
        # The principle judge thought instead of saying Yes or No: every candidate was rated.
        candidates = trace.candidates()
        assert candidates and all(n.judge_path in ("json_schema", "text") for n in candidates)
        assert all("no Yes or No" in (n.judge_note or "") for n in candidates)
        assert len({n.score for n in candidates}) > 1
        page = trace_page(out["trace"])
        assert '<details class="thinking">' in page and THINK_MARK in page
        total = trace.usage["total"]
        if form == "tags":  # a server without a reasoning parser counts nothing apart
            assert total["reasoning_reported"] == 0
            assert "not reported" in page
        else:
            assert total["reasoning_reported"] == total["calls"]
            assert 0 < total["reasoning_tokens"] < total["completion_tokens"]


async def test_a_judge_with_thinking_off_scores_from_logprobs() -> None:
    with SimServer(seed=3, reasoning="tags") as sim:
        graph = feedback_edit(sim.base_url, roles={"judge": {"thinking": {"think": False}}})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = await graph.ainvoke({"messages": QUESTION})
        trace = Trace.model_validate(out["trace"])
        assert all(n.judge_path == "logprobs" for n in trace.candidates())
        judged = [
            r.body for r in sim.requests if r.body.get("max_tokens") == 1 and not is_probe(r.body)
        ]
        assert judged and all(
            b["chat_template_kwargs"] == {"enable_thinking": False} for b in judged
        )
        drafts = [r.body for r in sim.requests if "chat_template_kwargs" not in r.body]
        assert drafts  # the other roles keep their default: they think


@pytest.mark.parametrize("form", list(FORMS))
async def test_thinking_cut_off_by_max_tokens_is_no_answer_and_not_retried(form: str) -> None:
    with SimServer(seed=3, think_unclosed=True, **FORMS[form]) as sim:
        graph = feedback_edit(sim.base_url, width={"drafts": 2, "critiques": 0})
        with pytest.raises(NoCandidateError) as failed:
            await graph.ainvoke({"messages": QUESTION})
        assert all("still thinking" in e for e in failed.value.errors)
        # Each draft once (asking again would run out again), and the judge endpoint's probe.
        assert len([r for r in sim.requests if not is_probe(r.body)]) == 2
        assert sim.call_count == 2 + 1


@pytest.mark.parametrize(
    ("thinking", "check"),
    [
        ({"think": False}, lambda b: b["chat_template_kwargs"] == {"enable_thinking": False}),
        ({"effort": "low"}, lambda b: b["reasoning_effort"] == "low"),
        (
            {"think": True, "switch": "system_prompt"},
            lambda b: b["messages"][0] == {"role": "system", "content": "detailed thinking on"},
        ),
        (
            {"think": False, "switch": "no_think"},
            lambda b: b["messages"][-1]["content"].endswith(" /no_think"),
        ),
    ],
)
async def test_each_switch_tells_the_server(thinking: dict[str, Any], check: Any) -> None:
    with SimServer(seed=1, reasoning="tags") as sim:
        config = sim_config(sim.base_url, roles={"draft": {"thinking": thinking}})
        result = await RoleCaller.for_config(config).complete(
            "draft", [{"role": "user", "content": "Hi?"}]
        )
        assert check(sim.requests[-1].body)
        assert bool(result.reasonings[0]) == (thinking.get("think") is not False)


def test_a_switch_that_cannot_turn_thinking_off_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot turn thinking off"):
        ThinkingConfig(think=False, switch="reasoning_effort")


# -- streams: LangChain's messages mode and the door --------------------------------------------


@pytest.mark.parametrize("form", ["tags", "reasoning_content"])
async def test_messages_mode_marks_reasoning_chunks(form: str) -> None:
    with SimServer(seed=5, **FORMS[form]) as sim:
        config = sim_config(sim.base_url, width={"drafts": 1, "critiques": 0})
        graph = create_feedit_graph(config).compile()
        chunks = [
            piece
            async for _, (piece, _) in graph.astream(
                {"messages": QUESTION}, stream_mode="messages", subgraphs=True
            )
            if isinstance(piece, AIMessageChunk)
        ]
        thinking = "".join(c.additional_kwargs.get("reasoning_content", "") for c in chunks)
        text = "".join(c.content for c in chunks if isinstance(c.content, str))
        assert THINK_MARK in thinking
        assert text and THINK_MARK not in text and "<think>" not in text


@pytest.fixture(scope="module", params=["tags", "reasoning_content"])
def door(request: pytest.FixtureRequest) -> Iterator[tuple[str, SimServer]]:
    with SimServer(seed=11, **FORMS[request.param]) as sim:
        app = build_app(sim_config(sim.base_url, roles={"judge": {"thinking": {"think": False}}}))
        with serve_in_thread(app) as url:
            yield url, sim


def test_the_door_answers_with_reasoning_content_apart(door: tuple[str, SimServer]) -> None:
    url, _ = door
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="feedback-edit", messages=[{"role": "user", "content": "Hi?"}]
    )
    message = reply.choices[0].message
    assert message.content and THINK_MARK not in message.content
    assert THINK_MARK in (message.model_extra or {})["reasoning_content"]
    assert reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", ["single", "feedback-edit"])
def test_the_door_streams_reasoning_content_deltas(door: tuple[str, SimServer], model: str):
    url, sim = door
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, thinking, usage = "", "", None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            thinking += (chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
    assert text and THINK_MARK not in text and "<think>" not in text
    assert THINK_MARK in thinking
    assert usage is not None
    details = usage.completion_tokens_details
    if sim.reasoning == "field":
        assert details is not None and (details.reasoning_tokens or 0) > 0
    else:
        assert details is None  # not counted by the server: not made up either


# -- batch and Arena-Hard export ----------------------------------------------------------------


async def test_batch_answers_hold_no_thinking_and_the_export_keeps_it_as_thought(
    tmp_path: Path,
) -> None:
    inp = tmp_path / "q.jsonl"
    inp.write_text("".join(json.dumps({"uid": f"u{i}", "prompt": f"P{i}"}) + "\n" for i in (0, 1)))
    options = BatchOptions(
        input=inp, output=tmp_path / "a.jsonl", store=tmp_path / "s", progress=False
    )
    with SimServer(seed=9, reasoning="field") as sim:
        config = sim_config(
            sim.base_url,
            width={"drafts": 2, "critiques": 1, "edits": 1},
            roles={"judge": {"thinking": {"think": False}}},
        )
        summary = await run_batch(config, options)
    assert "of them thinking" in summary.lines()[0]
    assert summary.reasoning_tokens > 0
    for record in read_lines(options.output):
        assert THINK_MARK not in record["answer"]
    written, missing = export_arena_answers(options.output, tmp_path / "m.jsonl")
    assert (written, missing) == (2, [])
    for row in read_lines(tmp_path / "m.jsonl"):
        content = row["messages"][-1]["content"]
        assert THINK_MARK in content["thought"] and THINK_MARK not in content["answer"]


# -- a reply is an answer only when it is complete ------------------------------------------------


def endpoint(sim: SimServer, retries: int = 2) -> Endpoint:
    return Endpoint(sim.base_url, api_key="k", max_retries=retries, backoff=0.0)


async def sink(piece: str) -> None:
    pass


async def test_a_stream_cut_before_its_final_chunk_is_retried() -> None:
    with SimServer(seed=2, faults=[Fault("truncated", first=1)]) as sim:
        result = await endpoint(sim).chat([{"role": "user", "content": "Hi?"}], on_token=sink)
        assert sim.call_count == 2
        assert result.finish_reasons == ["stop"] and "Half an answer" not in result.texts[0]


async def test_a_stream_cut_every_time_fails_instead_of_answering() -> None:
    with SimServer(seed=2, faults=[Fault("truncated", first=9)]) as sim:
        with pytest.raises(EndpointError, match="without"):
            await endpoint(sim).chat([{"role": "user", "content": "Hi?"}], on_token=sink)
        assert sim.call_count == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_an_empty_reply_is_retried(stream: bool) -> None:
    with SimServer(seed=2, faults=[Fault("empty", first=1)]) as sim:
        result = await endpoint(sim).chat(
            [{"role": "user", "content": "Hi?"}], on_token=sink if stream else None
        )
        assert sim.call_count == 2 and result.texts[0]


async def test_an_empty_reply_is_never_cached_as_an_answer() -> None:
    cache: InMemoryCache[Any] = InMemoryCache()
    with SimServer(seed=2, faults=[Fault("empty", first=3)]) as sim:
        config = sim_config(sim.base_url, width={"drafts": 1, "critiques": 0})
        graph = create_feedit_graph(config, cache=cache).compile()
        with pytest.raises(NoCandidateError, match="empty"):
            await graph.ainvoke({"messages": QUESTION})
        assert sim.call_count == 3  # the first try and two retries, all empty
        out = await graph.ainvoke({"messages": QUESTION})
        assert sim.call_count == 4 and out["messages"][-1].content


def test_the_door_never_invents_a_finish_reason_for_a_cut_stream() -> None:
    with (
        SimServer(seed=2, faults=[Fault("truncated", first=99)]) as sim,
        serve_in_thread(build_app(sim_config(sim.base_url))) as url,
    ):
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="single", messages=[{"role": "user", "content": "Hi?"}], stream=True
        )
        reasons = []
        with pytest.raises(APIError):
            for chunk in stream:
                reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
        assert reasons == []


def test_feedit_run_prints_the_answer_alone(capsys: Any) -> None:
    from langgraph_feedit.cli import main

    with SimServer(seed=4, reasoning="tags") as sim:
        code = main(
            ["run", "--base-url", sim.base_url, "--model", "sim-model", "--preset", "single", "Hi?"]
        )
    out = capsys.readouterr().out
    assert code == 0 and out.strip()
    assert THINK_MARK not in out and "<think>" not in out
