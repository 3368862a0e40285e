"""``feedit serve`` over real HTTP: the official OpenAI clients against the app on 127.0.0.1,
backed by the simulated server. Covers answers, whole conversations, per-request settings, usage,
streaming, authentication, limits, error shapes, backend failures and client disconnects."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from openai import AsyncOpenAI, OpenAI

from langgraph_feedit import PRESETS, ConfigError, Trace, create_feedit_graph
from langgraph_feedit.commands.serve import add_parser
from langgraph_feedit.serve import (
    build_app,
    config_from_args,
    run_serve,
    serve_in_thread,
)
from langgraph_feedit.testing import Fault, SimServer

from .helpers import is_probe, json_texts, sim_config

SERVE_KEY = "sk-serve-secret-7f3a9c"
WRONG_KEY = "sk-wrong-guess-41d2"
BACKEND_KEY = "sk-backend-secret-c0ffee"
USER: list[Any] = [{"role": "user", "content": "Explain CRDTs briefly."}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=7) as server:
        yield server


@pytest.fixture(scope="module")
def url(sim: SimServer) -> Iterator[str]:
    # A cache key fixes the seeds every call derives (from it and the conversation), so the
    # same request draws the same samples here as in a graph run in-process.
    with serve_in_thread(build_app(sim_config(sim.base_url, cache_key="serve"))) as base_url:
        yield base_url


@pytest.fixture
def client(url: str, sim: SimServer) -> OpenAI:
    sim.reset_stats()
    return OpenAI(base_url=url, api_key="unused", max_retries=0)


@contextmanager
def door(sim: SimServer, **options: Any) -> Iterator[tuple[SimServer, str]]:
    """``sim`` started, and the app serving on it: the backend and the door of one test (with
    a fixed cache key: the same request draws the same samples, whichever run)."""
    with sim:
        config = sim_config(sim.base_url, cache_key="serve")
        with serve_in_thread(build_app(config, **options)) as url:
            yield sim, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def error_of(reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def _image_part(value: bytes) -> bytes:
    """A request body whose user message carries an image part holding ``value`` (JSON text)."""
    return (
        b'{"model": "single", "messages": [{"role": "user", "content": [{"type": "text", '
        b'"text": "hi"}, {"type": "image_url", "image_url": ' + value + b"}]}]}"
    )


# -- answers ------------------------------------------------------------------------------------


def test_models_lists_every_preset(client: OpenAI) -> None:
    assert [m.id for m in client.models.list()] == list(PRESETS)
    assert client.models.retrieve("beam").id == "beam"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_answer_is_the_graphs_selected_candidate(client: OpenAI, sim: SimServer) -> None:
    reply = client.chat.completions.create(
        model="best-of-n", messages=USER, extra_body={"feedit": {"trace": True}}
    )
    trace = Trace.model_validate((reply.model_extra or {})["feedit_trace"])
    assert reply.object == "chat.completion" and reply.model == "best-of-n"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == trace.answer
    assert trace.selected is not None and len([n for n in trace.nodes if n.kind == "draft"]) == 4
    # The door adds nothing: the graph run in-process on the same backend picks the same answer.
    config = sim_config(sim.base_url, cache_key="serve")
    graph = create_feedit_graph(config, preset="best-of-n").compile()
    out = asyncio.run(graph.ainvoke({"messages": USER}))
    assert out["messages"][-1].content == trace.answer


def test_whole_conversation_reaches_the_backend(client: OpenAI, sim: SimServer) -> None:
    conversation: list[Any] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a CRDT."},
        {"role": "assistant", "content": "A G-Counter."},
        {"role": "user", "content": "And one for sets?"},
    ]
    reply = client.chat.completions.create(model="single", messages=conversation)
    assert reply.choices[0].message.content
    assert sim.call_count == 1
    assert sim.requests[0].body["messages"] == conversation


def test_sampling_fields_apply_to_the_draft_role_and_bounds_to_edits(
    client: OpenAI, sim: SimServer
) -> None:
    client.chat.completions.create(
        model="feedback-edit",
        messages=USER,
        temperature=0.3,
        top_p=0.9,
        max_tokens=20,
        seed=11,
        extra_body={"feedit": {"drafts": 2}},
    )
    drafts = [r.body for r in sim.requests if r.body["messages"] == USER]
    others = [r.body for r in sim.requests if r.body["messages"] != USER]
    assert len(drafts) == 2 and others
    assert {(d["temperature"], d["top_p"], d["max_tokens"]) for d in drafts} == {(0.3, 0.9, 20)}
    assert sorted(d["seed"] for d in drafts) == [11, 12]  # sample i of a seeded role: seed + i
    # max_tokens bounds the answer: edits too; temperature, top_p and seed stay with drafts.
    edits = [o for o in others if o["messages"][-1]["content"].startswith("Feedback on your")]
    assert len(edits) == 2 and all(e["max_tokens"] == 20 for e in edits)
    # the request's seed is the drafts' (the other calls carry seeds derived from the run)
    assert all(o["temperature"] != 0.3 and o.get("seed") not in (11, 12) for o in others)
    assert all(o.get("max_tokens") != 20 for o in others if o not in edits)


@pytest.mark.parametrize(
    "feedit",
    [
        {"drafts": 3, "judge": "consensus"},
        {"width": {"drafts": 3}, "roles": {"judge": {"kind": "consensus"}}},
    ],
    ids=["flat", "nested"],
)
def test_extra_body_sets_the_tree(client: OpenAI, sim: SimServer, feedit: dict[str, Any]) -> None:
    client.chat.completions.create(model="best-of-n", messages=USER, extra_body={"feedit": feedit})
    # Three drafts, and no judge call: the consensus judge needs no model.
    assert sim.call_count == 3
    assert all(r.body["messages"] == USER for r in sim.requests)


def test_usage_sums_every_call_of_the_tree(client: OpenAI, sim: SimServer) -> None:
    reply = client.chat.completions.create(
        model="feedback-edit",
        messages=USER,
        extra_body={"feedit": {"drafts": 2, "critiques": 2, "trace": True}},
    )
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    total = Trace.model_validate((reply.model_extra or {})["feedit_trace"]).usage["total"]
    # Every call of the tree, each counted once: two drafts (each its own seeded sample) with
    # their judges, critiques, edits and the edits' judges.
    assert total["calls"] == sim.call_count >= 2 + 2 + 4 + 4 + 4
    assert usage.completion_tokens == sum(r.completion_tokens for r in sim.requests)
    assert usage.prompt_tokens == total["prompt_tokens"]
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == total["cached_tokens"] > 0


# -- streaming ----------------------------------------------------------------------------------


def test_stream_sends_progress_chunks_on_request_then_the_answer(client: OpenAI) -> None:
    request: dict[str, Any] = {
        "model": "feedback-edit",
        "messages": USER,
        "extra_body": {"feedit": {"drafts": 2, "progress": True}},
    }
    expected = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    progress = [c for c in chunks if c.model_extra and "feedit" in c.model_extra]
    events = {c.model_extra["feedit"]["event"] for c in progress if c.model_extra}
    assert {"started", "done", "scored", "finished"} <= events
    # A progress chunk still holds one choice, with nothing in it: the plain streaming loop
    # (`chunk.choices[0].delta.content`) reads None and goes on.
    for c in progress:
        assert len(c.choices) == 1 and c.choices[0].delta.content is None
        assert c.choices[0].finish_reason is None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # Only the closing usage chunk has no choice, as OpenAI sends it.
    assert [c for c in chunks if not c.choices] == chunks[-1:]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_stream_progress_is_sse_comments_by_default(url: str) -> None:
    body = {"model": "feedback-edit", "messages": USER, "stream": True, "feedit": {"drafts": 2}}
    with httpx.stream("POST", f"{url}/chat/completions", json=body) as reply:
        lines = [line for line in reply.iter_lines() if line]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    # Every data chunk is a chat.completion.chunk with a choice; progress is only in comments.
    assert all(c["object"] == "chat.completion.chunk" and len(c["choices"]) == 1 for c in chunks)
    assert not any("feedit" in c for c in chunks)
    comments = [line for line in lines if line.startswith(": feedit ")]
    events = {json.loads(line.removeprefix(": feedit "))["event"] for line in comments}
    assert {"started", "done", "scored", "finished"} <= events
    assert len(lines) == len(data) + len(comments)  # nothing else on the wire


def test_stream_keeps_alive_and_carries_the_trace_on_request() -> None:
    with door(SimServer(seed=12, ttft=0.3), keepalive_s=0.05) as (_, url):
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        body = feedit(trace=True, progress=False)
        with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}) as r:
            raw = [line for line in r.iter_lines() if line]
        chunks = list(
            client.chat.completions.create(
                model="single", messages=USER, stream=True, extra_body=body
            )
        )
    # SSE comments while the backend thinks: proxies keep the stream open, clients skip them.
    assert ": keep-alive" in raw and raw[-1] == "data: [DONE]"
    assert not any(c.model_extra and "feedit" in c.model_extra for c in chunks)
    ending = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(ending) == 1 and ending[0].model_extra
    trace = Trace.model_validate(ending[0].model_extra["feedit_trace"])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == trace.answer


@pytest.mark.slow
def test_single_streams_the_endpoints_tokens_as_they_come() -> None:
    # 40 tokens at 20 a second after 0.1 s: the reply takes 2 s, its first token 0.1 s.
    backend = SimServer(seed=15, ttft=0.1, rate=20, mean_tokens=40, min_tokens=40)
    with door(backend) as (sim, url):
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        expected = client.chat.completions.create(model="single", messages=USER)
        started = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        for chunk in client.chat.completions.create(model="single", messages=USER, stream=True):
            if chunk.choices[0].delta.content:
                first = first or time.monotonic() - started
                pieces.append(chunk.choices[0].delta.content)
        wall = time.monotonic() - started
        assert sim.requests[-1].body.get("stream") is True  # the door asked the backend to stream
    assert "".join(pieces) == expected.choices[0].message.content
    assert first is not None and wall > 1.8
    assert first < wall / 3, (first, wall)  # the backend's first token, not the whole reply
    assert len(pieces) >= 20  # token by token, not one chunk at the end


async def test_async_clients_concurrently(url: str) -> None:
    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)

    async def plain(i: int) -> str:
        messages: list[Any] = [{"role": "user", "content": f"Question {i}?"}]
        reply = await client.chat.completions.create(model="best-of-n", messages=messages)
        return reply.choices[0].message.content or ""

    async def streamed(i: int) -> str:
        messages: list[Any] = [{"role": "user", "content": f"Question {i}?"}]
        stream = await client.chat.completions.create(
            model="best-of-n", messages=messages, stream=True
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    try:
        plain_answers = await asyncio.gather(*(plain(i) for i in range(8)))
        streamed_answers = await asyncio.gather(*(streamed(i) for i in range(8)))
    finally:
        await client.close()
    assert plain_answers == streamed_answers
    assert all(plain_answers) and len(set(plain_answers)) == 8


# -- authentication -----------------------------------------------------------------------------


def test_auth_and_keys_never_leak(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Every log of the process at debug level: the app's, uvicorn's, and the OpenAI SDK's that
    # the app calls its backends with.
    caplog.set_level(logging.DEBUG, logger="langgraph_feedit")
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    caplog.set_level(logging.DEBUG, logger="openai")
    caplog.set_level(logging.DEBUG, logger="httpx")
    monkeypatch.setenv("FEEDIT_TEST_SERVE_KEY", SERVE_KEY)
    monkeypatch.setenv("FEEDIT_TEST_BACKEND_KEY", BACKEND_KEY)
    config = sim_config(sim.base_url, roles={"default": {"api_key_env": "FEEDIT_TEST_BACKEND_KEY"}})
    texts: list[str] = []
    with serve_in_thread(build_app(config, api_key_env="FEEDIT_TEST_SERVE_KEY")) as url:
        chat = f"{url}/chat/completions"
        body = {"model": "single", "messages": USER, "feedit": {"trace": True}}
        missing = httpx.post(chat, json=body)
        wrong = httpx.post(chat, json=body, headers={"Authorization": f"Bearer {WRONG_KEY}"})
        basic = httpx.post(chat, json=body, headers={"Authorization": f"Basic {SERVE_KEY}"})
        models = httpx.get(f"{url}/models")
        for reply in (missing, wrong, basic, models):
            assert reply.status_code == 401
            assert error_of(reply)["code"] == "invalid_api_key"
            assert reply.headers["www-authenticate"] == "Bearer"
            texts.append(reply.text)
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=url, api_key=WRONG_KEY, max_retries=0).models.list()
        good = OpenAI(base_url=url, api_key=SERVE_KEY, max_retries=0)
        answer = good.chat.completions.create(
            model="single", messages=USER, extra_body={"feedit": {"trace": True}}
        )
        texts.append(json.dumps(answer.to_dict()))
        assert [m.id for m in good.models.list()] == list(PRESETS)
        # A backend failure's message names the endpoint, never its key.
        sim.set_faults([Fault("500", rate=1.0)])
        try:
            failed = httpx.post(chat, json=body, headers={"Authorization": f"Bearer {SERVE_KEY}"})
        finally:
            sim.set_faults([])
        assert failed.status_code == 502
        texts.append(failed.text)
    texts.append(caplog.text)
    assert "run failed" in caplog.text  # the log was captured, and holds no key
    for text in texts:
        for secret in (SERVE_KEY, WRONG_KEY, BACKEND_KEY):
            assert secret not in text


def test_auth_needs_its_variable_set(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEEDIT_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="FEEDIT_TEST_UNSET_KEY"):
        build_app(sim_config(sim.base_url), api_key_env="FEEDIT_TEST_UNSET_KEY")


# -- limits and malformed requests ---------------------------------------------------------------


def test_body_size_limit(sim: SimServer) -> None:
    big = {"model": "single", "messages": [{"role": "user", "content": "x" * 5000}]}
    with serve_in_thread(build_app(sim_config(sim.base_url), max_body_bytes=2000)) as url:
        declared = httpx.post(f"{url}/chat/completions", json=big)

        def chunks() -> Iterator[bytes]:
            data = json.dumps(big).encode()
            for i in range(0, len(data), 500):
                yield data[i : i + 500]

        chunked = httpx.post(f"{url}/chat/completions", content=chunks())
        small = httpx.post(f"{url}/chat/completions", json={"model": "single", "messages": USER})
    for reply in (declared, chunked):
        assert reply.status_code == 413
        assert error_of(reply)["code"] == "request_too_large"
    assert small.status_code == 200


def chat(**fields: Any) -> dict[str, Any]:
    """A request body: one user turn to ``single``, with ``fields`` added or replaced."""
    return {"model": "single", "messages": USER, **fields}


def feedit(**settings: Any) -> dict[str, Any]:
    return chat(feedit=settings)


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b"{not json", 400, None, "invalid_json"),
        (b"[1, 2]", 400, None, "invalid_json"),
        (b"[" * 100_000, 400, None, "invalid_json"),
        ({"model": "single"}, 400, "messages", "missing_required_parameter"),
        (chat(messages=[]), 400, "messages", None),
        ({"messages": USER}, 400, "model", "missing_required_parameter"),
        (chat(model="gpt-4o"), 404, "model", "model_not_found"),
        (chat(messages=[{"role": "tool", "content": "x"}]), 400, "messages[0].role", None),
        (chat(messages=[{"role": "user"}]), 400, "messages[0].content", None),
        (chat(n=2), 400, "n", None),
        (chat(tools=[{"type": "function"}]), 400, "tools", "unsupported_parameter"),
        (chat(frobnicate=1), 400, "frobnicate", "unknown_parameter"),
        (chat(temperature=5), 400, "temperature", None),
        (chat(max_completion_tokens=0), 400, "max_completion_tokens", None),
        (feedit(roles={"draft": {"top_p": 2}}), 400, "feedit.roles.draft.top_p", None),
        (chat(stream="yes"), 400, "stream", None),
        (feedit(dafts=2), 400, "feedit.dafts", "unknown_parameter"),
        (feedit(width={"dafts": 2}), 400, "feedit.width.dafts", "unknown_parameter"),
        (feedit(drafts=0), 400, "feedit.width.drafts", None),
        (feedit(drafts=2, width={"drafts": 3}), 400, "feedit.drafts", None),
        (chat(max_tokens=5, max_completion_tokens=6), 400, "max_completion_tokens", None),
        (
            feedit(roles={"draft": {"temprature": 1}}),
            400,
            "feedit.roles.draft.temprature",
            "unknown_parameter",
        ),
        (
            chat(model="feedback-edit", feedit={"drafts": 64, "critiques": 4}),
            400,
            "feedit",
            "fanout_too_large",
        ),
    ],
)
def test_bad_requests_are_openai_shaped(
    url: str, body: Any, status: int, param: str | None, code: str | None
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = httpx.post(f"{url}/chat/completions", content=content)
    assert reply.status_code == status, reply.text
    error = error_of(reply)
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert param.rsplit(".", 1)[-1].split("[")[0] in error["message"]


@pytest.mark.parametrize(
    ("role", "key", "value"),
    [
        ("draft", "base_url", "http://attacker.example/v1"),
        ("judge", "api_key_env", "HOME"),
        ("default", "max_concurrency", 10_000),
        ("edit", "template", "/etc/feedit/templates.toml"),
    ],
)
def test_endpoints_keys_and_limits_stay_with_the_server(
    url: str, role: str, key: str, value: Any
) -> None:
    # A client choosing base_url and api_key_env could have the server send any of its
    # environment variables to a host of the client's choice.
    reply = httpx.post(f"{url}/chat/completions", json=feedit(roles={role: {key: value}}))
    assert reply.status_code == 400
    assert error_of(reply)["param"] == f"feedit.roles.{role}.{key}"


def test_fields_that_ask_for_nothing_are_accepted(url: str, sim: SimServer) -> None:
    sim.reset_stats()
    body = chat(
        user="u-1",
        metadata={"run": "x"},
        n=1,
        logprobs=False,
        tools=[],
        tool_choice="none",
        response_format={"type": "text"},
        stream_options=None,
    )
    reply = httpx.post(f"{url}/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    # None of them reaches the backend: the draft request is the conversation, sampled as set.
    # (every call carries a seed of its own, derived from the run and the node)
    assert set(sim.requests[0].body) <= {"model", "messages", "temperature", "max_tokens", "seed"}


def test_unknown_routes_are_openai_shaped(url: str) -> None:
    assert error_of(httpx.post(f"{url}/completions", json={}))["message"].startswith("Unknown")
    assert httpx.get(f"{url}/chat/completions").status_code == 405


@pytest.mark.parametrize(
    ("content", "param", "said"),
    [
        (
            chat(messages=[USER[0], {"role": "tool", "content": "r", "tool_call_id": "c1"}]),
            "messages[1].role",
            "tool messages are not supported",
        ),
        (
            chat(messages=[{"role": "assistant", "content": 42}, *USER]),
            "messages[0].content",
            "string or a list",
        ),
        (
            chat(messages=[{"role": "system", "content": ["x"]}, *USER]),
            "messages[0].content[0]",
            "content part",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": 7}]}]),
            "messages[0].content[0].text",
            "must be a string",
        ),
        # The escape arrives as JSON text: json.dumps would refuse to write the lone half.
        (
            b'{"model": "single", "messages": [{"role": "user", "content": "a\\ud800"}]}',
            "messages[0].content",
            "unpaired UTF-16 surrogate",
        ),
        (b'{"model": "single", "messages": [], "user": "\\udfff"}', "user", "surrogate"),
        # Python's json reads these; no backend or JSON reader elsewhere does.
        (_image_part(b'{"url": NaN}'), None, "NaN is not a JSON number"),
        (_image_part(b"[" * 250 + b"]" * 250), None, "nested deeper than"),
        (_image_part(b'{"url": "x", "n": ' + b"9" * 5000 + b"}"), None, "5000 digits"),
        (feedit(drafts=True), "feedit.width.drafts", "valid integer (sent as 'feedit.drafts')"),
        (feedit(width={"edits": "2"}), "feedit.width.edits", "valid integer"),
        (chat(seed=True), "seed", "valid integer"),
        (chat(n=True), "n", "valid integer"),
        (feedit(trace="yes"), "feedit.trace", "true or false"),
        (chat(stop=[1]), "stop[0]", "valid string"),
        (chat(stream_options={"include_usage": 1}), "stream_options.include_usage", "boolean"),
        (chat(stream_options={"x": 1}), "stream_options.x", "Unrecognized"),
    ],
)
def test_valid_looking_requests_are_400_not_500(
    url: str, content: Any, param: str, said: str
) -> None:
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    reply = httpx.post(
        f"{url}/chat/completions", content=data, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    error = error_of(reply)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert said in error["message"]
    assert "\\ud800" not in reply.text and "udfff" not in reply.text  # never the value


def test_only_json_bodies_are_read(url: str) -> None:
    data = json.dumps(chat()).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        reply = httpx.post(
            f"{url}/chat/completions", content=data, headers={"Content-Type": content_type}
        )
        assert reply.status_code == 415, content_type
        assert error_of(reply)["code"] == "unsupported_media_type"
    for content_type in ("application/json", "application/json; charset=utf-8", None):
        headers = {"Content-Type": content_type} if content_type else {}
        reply = httpx.post(f"{url}/chat/completions", content=data, headers=headers)
        assert reply.status_code == 200, (content_type, reply.text)


@pytest.mark.parametrize("stop", ["\n", ["\n", "END"]])
def test_stop_is_a_string_or_a_list(client: OpenAI, sim: SimServer, stop: Any) -> None:
    client.chat.completions.create(model="single", messages=USER, stop=stop)
    assert sim.requests[0].body["stop"] == (stop if isinstance(stop, list) else [stop])


def test_n_choices_are_the_n_best_candidates(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="best-of-n",
        messages=USER,
        n=3,
        extra_body={"feedit": {"drafts": 4, "trace": True}},
    )
    trace = Trace.model_validate((reply.model_extra or {})["feedit_trace"])
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert reply.choices[0].message.content == trace.answer
    ranked = sorted(
        (n for n in trace.nodes if n.is_candidate and n.id != trace.selected),
        key=lambda n: (n.score is None, -(n.score or 0.0)),
    )
    assert [c.message.content for c in reply.choices[1:]] == [n.text for n in ranked[:2]]
    stream = client.chat.completions.create(
        model="best-of-n", messages=USER, n=3, stream=True, extra_body={"feedit": {"drafts": 4}}
    )
    texts = ["", "", ""]
    ends: dict[int, str | None] = {}
    for chunk in stream:
        choice = chunk.choices[0]
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            ends[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in reply.choices]
    assert ends == {0: "stop", 1: "stop", 2: "stop"}


def test_n_above_the_drafts_is_refused(url: str) -> None:
    reply = httpx.post(f"{url}/chat/completions", json=chat(model="best-of-n", n=5))
    assert reply.status_code == 400
    assert error_of(reply)["param"] == "n" and "drafts" in error_of(reply)["message"]


def test_finish_reason_is_the_selected_candidates(client: OpenAI, sim: SimServer) -> None:
    cut = client.chat.completions.create(
        model="single", messages=USER, max_tokens=2, extra_body={"feedit": {"trace": True}}
    )
    assert sim.requests[0].body["max_tokens"] == 2
    assert cut.choices[0].finish_reason == "length"
    streamed = list(
        client.chat.completions.create(model="single", messages=USER, max_tokens=2, stream=True)
    )
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "length"
    whole = client.chat.completions.create(model="single", messages=USER)
    assert whole.choices[0].finish_reason == "stop"


# -- the per-run policy -------------------------------------------------------------------------


def test_untrusted_overrides_policy() -> None:
    from langgraph_feedit.overrides import (
        FLAT_KEYS,
        check_allow_patterns,
        check_untrusted_overrides,
        expand_flat,
        set_path,
    )

    fine: dict[str, Any] = {
        "preset": "beam",
        "width": {"drafts": 4, "critiques": 2, "edits": 1},
        "depth": {"max_rounds": 2, "beam": 2, "stop_score": 9, "skip_perfect": True},
        "budget": {"deadline_s": 30, "max_tokens": 5000},
        "roles": {
            "draft": {"temperature": 1, "top_p": 0.9, "max_tokens": 64, "seed": 3, "stop": ["x"]},
            "critique": {"template": "nemotron"},
            "judge": {"kind": "pairwise"},
        },
    }
    check_untrusted_overrides(fine)
    # it keys the call cache only: a client draws new samples where the operator keeps one
    check_untrusted_overrides({"cache_key": "again"})
    refused = {
        "roles.draft.base_url": {"roles": {"draft": {"base_url": "http://attacker/v1"}}},
        "roles.default.api_key_env": {"roles": {"default": {"api_key_env": "HOME"}}},
        "roles.judge.model": {"roles": {"judge": {"model": "m"}}},
        "roles.edit.extra_body": {"roles": {"edit": {"extra_body": {"n": 100}}}},
        "roles.draft.max_concurrency": {"roles": {"draft": {"max_concurrency": 999}}},
        "roles.draft.timeout": {"roles": {"draft": {"timeout": 1e9}}},
        "roles.draft.max_retries": {"roles": {"draft": {"max_retries": 20}}},
        "roles.edit.template": {"roles": {"edit": {"template": "/etc/passwd"}}},
        "store": {"store": {"path": "/tmp/x"}},
        "embedded_model": {"embedded_model": "/x.gguf"},
        "width.drafts": {"width": {"drafts": True}},
        "depth.stop_score": {"depth": {"stop_score": "9"}},
        "width.dafts": {"width": {"dafts": 2}},
        "roles.evaluator": {"roles": {"evaluator": {"temperature": 0}}},
    }
    for key, overrides in refused.items():
        with pytest.raises(ConfigError) as caught:
            check_untrusted_overrides(overrides)
        assert caught.value.key == key, key
        assert "attacker" not in str(caught.value) and "passwd" not in str(caught.value)
    # The operator opens keys explicitly; nothing else opens with them.
    check_untrusted_overrides(refused["roles.draft.base_url"], allow=("roles.*.base_url",))
    check_untrusted_overrides(refused["roles.edit.template"], allow=("roles.edit.template",))
    with pytest.raises(ConfigError, match="api_key_env"):
        check_untrusted_overrides(refused["roles.default.api_key_env"], allow=("roles.*.base_url",))
    check_allow_patterns(("roles.*.model", "width.drafts"))
    with pytest.raises(ConfigError) as caught:
        check_allow_patterns(("roles.*.bse_url",))
    assert caught.value.key == "roles.*.bse_url"
    # One source for the aliases and the dotted writer.
    assert expand_flat({"drafts": 8, "rounds": 2, "judge": "consensus", "beam": None}) == {
        "width": {"drafts": 8},
        "depth": {"max_rounds": 2},
        "roles": {"judge": {"kind": "consensus"}},
    }
    assert set(FLAT_KEYS) >= {"drafts", "critiques", "edits", "rounds", "deadline"}
    data: dict[str, Any] = {"width": 3}
    with pytest.raises(ConfigError) as caught:
        set_path(data, "width.drafts", 2)
    assert caught.value.key == "width"
    set_path(data, "roles.draft.seed", 1)
    assert data["roles"] == {"draft": {"seed": 1}}


def test_an_operator_can_open_a_key_to_clients() -> None:
    with SimServer(seed=13) as sim, SimServer(seed=14) as other:
        app = build_app(sim_config(sim.base_url), allow_overrides=("roles.draft.base_url",))
        with serve_in_thread(app) as url:
            body = feedit(roles={"draft": {"base_url": other.base_url}})
            assert httpx.post(f"{url}/chat/completions", json=body).status_code == 200
            assert other.call_count == 1 and sim.call_count == 0
            body = feedit(roles={"draft": {"model": "x"}})
            reply = httpx.post(f"{url}/chat/completions", json=body)
            assert reply.status_code == 400
            assert error_of(reply)["param"] == "feedit.roles.draft.model"
    with pytest.raises(ConfigError, match="matches no per-run setting"):
        build_app(sim_config(sim.base_url), allow_overrides=("roles.*.bse_url",))


# -- backend failures ---------------------------------------------------------------------------


def test_backend_down_is_502_naming_role_and_endpoint() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with serve_in_thread(build_app(sim_config(dead))) as url:
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="best-of-n", messages=USER)
        assert caught.value.status_code == 502
        message = caught.value.message
        assert "role 'draft'" in message and dead in message and "d0, d1, d2, d3" in message
        # Streaming: the headers went out before the failure, so it arrives as an error event.
        with pytest.raises(openai.APIError, match="role 'draft'"):
            list(client.chat.completions.create(model="single", messages=USER, stream=True))


def test_backend_500s_are_502() -> None:
    with door(SimServer(seed=8, faults=[Fault("500", rate=1.0)])) as (sim, url):
        reply = httpx.post(f"{url}/chat/completions", json=chat())
    assert reply.status_code == 502
    error = error_of(reply)
    assert error["code"] == "backend_error" and error["type"] == "server_error"
    assert "status 500" in error["message"] and sim.base_url in error["message"]


def test_deadline_with_no_candidate_is_504() -> None:
    with door(SimServer(seed=9, ttft=5.0)) as (sim, url):
        body = {"model": "best-of-n", "messages": USER, "feedit": {"deadline": 0.3}}
        started = time.monotonic()
        reply = httpx.post(f"{url}/chat/completions", json=body)
        assert time.monotonic() - started < 3.0
        assert wait_for(lambda: sim.in_flight == 0)
    assert reply.status_code == 504
    assert error_of(reply)["code"] == "timeout"


# -- disconnects --------------------------------------------------------------------------------


def test_stream_disconnect_cancels_the_tree() -> None:
    with door(SimServer(seed=10, ttft=30.0)) as (sim, url):
        body = {"model": "feedback-edit", "messages": USER, "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=body) as reply:
            assert reply.status_code == 200
            # Held in a name: a line iterator that is dropped closes the connection at once.
            lines = reply.iter_lines()
            for line in lines:
                if line.startswith(": feedit "):
                    break
            assert json.loads(line.removeprefix(": feedit "))["event"] == "started"
            # Every draft waits on the backend, and so does the judge endpoint's probe.
            assert wait_for(lambda: sim.in_flight == 4 + 1)
        # Closing the stream must close them all, the probe with the run that waited on it.
        assert wait_for(lambda: sim.in_flight == 0)
        assert sim.call_count == sim.disconnects == 4 + 1


def test_plain_request_disconnect_cancels_the_tree() -> None:
    with door(SimServer(seed=11, ttft=30.0)) as (sim, url):
        body = json.dumps({"model": "best-of-n", "messages": USER, "feedit": {"drafts": 3}})
        host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
        # A raw socket, closed at a moment of the test's choosing: a client timeout would race
        # the run's start on a loaded machine.
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                (
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()
            )
            # Every draft waits on the backend, and so does the judge endpoint's probe.
            assert wait_for(lambda: sim.in_flight == 3 + 1)
        assert wait_for(lambda: sim.in_flight == 0)
        assert sim.call_count == sim.disconnects == 3 + 1


# -- command line -------------------------------------------------------------------------------


def test_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser(prog="feedit")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.client_key_env) == ("127.0.0.1", 8080, None)
    args = parser.parse_args(
        [
            "serve",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--api-key-env",
            "BACKEND_VAR",
            "--set",
            "width.drafts=6",
            "--set",
            "roles.judge.kind=consensus",
            "--client-key-env",
            "FEEDIT_TEST_UNSET_KEY",
        ]
    )
    config = config_from_args(args)
    assert config.width.drafts == 6 and config.role("judge").kind == "consensus"
    assert config.role("draft").base_url == "http://127.0.0.1:9/v1"
    assert config.role("draft").api_key_env == "BACKEND_VAR"
    monkeypatch.delenv("FEEDIT_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="FEEDIT_TEST_UNSET_KEY"):
        run_serve(args)  # refuses to start rather than serve without the key it was told to ask
    args = parser.parse_args(["serve", "--allow-override", "roles.*.mdoel"])
    with pytest.raises(ConfigError, match="matches no per-run setting"):
        run_serve(args)  # a typo in the allow-list opens nothing: say so before serving
    args = parser.parse_args(["serve", "--allow-override", "roles.*.model"])
    assert args.allow_override == ["roles.*.model"]


def test_model_names_mean_their_preset_whatever_the_file_sets() -> None:
    with SimServer(seed=8) as sim:
        config = sim_config(sim.base_url, width={"drafts": 3})
        with serve_in_thread(build_app(config)) as url:
            client = OpenAI(base_url=url, api_key="unused", max_retries=0)
            for model, drafts in (("single", 1), ("best-of-n", 3)):
                sim.reset_stats()
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "q"}]
                )
                draft_calls = [
                    r for r in sim.requests if len(r.body["messages"]) == 1 and not is_probe(r.body)
                ]
                assert len(draft_calls) == drafts, model


def test_the_door_checks_the_tree_it_runs_when_the_model_names_a_preset() -> None:
    """The request's checks and the graph resolve the model's preset the same way: over the
    file's widths. So ``single`` on a file with three drafts is one draft (passed through),
    and ``n=2`` of it is refused rather than answered with fewer choices."""
    from langgraph_feedit.serve.protocol import APIError, parse_chat_request

    config = sim_config("http://127.0.0.1:9/v1", width={"drafts": 3})

    def parse(**body: Any) -> Any:
        raw = json.dumps({"messages": [{"role": "user", "content": "q"}], **body}).encode()
        return parse_chat_request(raw, config=config, presets=PRESETS, max_fanout=1000)

    assert parse(model="single").passthrough
    assert not parse(model="best-of-n").passthrough
    with pytest.raises(APIError, match="'n' asks for 2 choices"):
        parse(model="single", n=2)
    assert parse(model="best-of-n", n=2).n == 2


# Where a value can sit in a request body.
BODY_SHAPES = [
    '{"model": "single", "messages": [{"role": "user", "content": [{"type": "text", "text": '
    '"hi"}, {"type": "image_url", "image_url": %s}]}]}',
    '{"model": "single", "messages": [{"role": "user", "content": "hi"}], "temperature": %s}',
    '{"model": "single", "messages": [{"role": "user", "content": "hi"}], "feedit": %s}',
    '{"model": "single", "messages": [{"role": "user", "content": "hi"}], "metadata": %s}',
    '{"model": "single", "messages": %s}',
    "%s",
]


@settings(max_examples=150)
@given(st.sampled_from(BODY_SHAPES), json_texts())
@example(BODY_SHAPES[0], '{"url": NaN}')
@example(BODY_SHAPES[1], "1e400")
@example(BODY_SHAPES[0], "[" * 300 + "]" * 300)
def test_any_json_body_is_a_request_or_a_400(shape: str, value: str) -> None:
    """The door's parser answers every body a lenient JSON parser reads with a checked request
    or an OpenAI-shaped error; what it accepts is strict JSON all through."""
    from langgraph_feedit.serve.protocol import APIError, parse_chat_request

    config = sim_config("http://127.0.0.1:9/v1")
    try:
        request = parse_chat_request(
            (shape % value).encode(), config=config, presets=PRESETS, max_fanout=1000
        )
    except APIError as exc:
        assert exc.status in (400, 404)
        return
    for part in (request.messages, request.context):
        assert json.loads(json.dumps(part, allow_nan=False)) == part
