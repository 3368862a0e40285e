"""The simulated OpenAI-compatible server, driven over real HTTP by the official clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from langgraph_feedit.testing import Fault, SimServer

ROOT = Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=7, mean_tokens=12) as server:
        yield server


@pytest.fixture
async def client(sim: SimServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-secret", max_retries=0) as c:
        yield c


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[tuple[SimServer, openai.AsyncOpenAI]]:
    """A server with these settings and a client of it that never retries."""
    async with (
        SimServer(**settings) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c,
    ):
        yield server, c


def root_url(sim: SimServer) -> str:
    return sim.base_url.removesuffix("/v1")


async def ask(client: openai.AsyncOpenAI, messages: list[dict[str, str]], **kw: Any) -> Any:
    return await client.chat.completions.create(model="sim-model", messages=messages, **kw)  # type: ignore[arg-type]


async def wait_for(condition: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- replies ---------------------------------------------------------------------------------


async def test_same_request_same_reply_and_different_requests_differ(
    client: openai.AsyncOpenAI,
) -> None:
    first = (await ask(client, USER)).choices[0].message.content
    again = (await ask(client, USER)).choices[0].message.content
    edited = [{"role": "user", "content": "Write a short poem about the hills."}]
    other = (await ask(client, edited)).choices[0].message.content
    seeded = (await ask(client, USER, seed=123)).choices[0].message.content
    hotter = (await ask(client, USER, temperature=1.3)).choices[0].message.content
    assert first == again
    assert len({first, other, seeded, hotter}) == 4


async def test_text_is_fixed_by_server_seed_across_instances() -> None:
    texts = []
    for seed in (1, 1, 2):
        async with serving(seed=seed) as (_, c):
            texts.append((await ask(c, USER)).choices[0].message.content)
    assert texts[0] == texts[1] != texts[2]


async def test_n_choices_differ_and_usage_counts_words(client: openai.AsyncOpenAI) -> None:
    reply = await ask(client, USER, n=3)
    contents = [c.message.content for c in reply.choices]
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len(set(contents)) == 3
    assert reply.usage.completion_tokens == sum(len(c.split()) for c in contents) == 36
    # 7 words plus 3 per message
    assert reply.usage.prompt_tokens == 10
    assert reply.usage.total_tokens == 46
    assert all(c.finish_reason == "stop" for c in reply.choices)


async def test_max_tokens_caps_the_reply(client: openai.AsyncOpenAI) -> None:
    full = (await ask(client, USER)).choices[0]
    capped = (await ask(client, USER, max_tokens=5)).choices[0]
    newer = (await ask(client, USER, max_completion_tokens=4)).choices[0]
    assert capped.finish_reason == newer.finish_reason == "length"
    assert len(capped.message.content.split()) == 5
    assert full.message.content.startswith(capped.message.content)
    assert len(newer.message.content.split()) == 4


async def test_length_distribution_respects_min_tokens() -> None:
    async with serving(mean_tokens=6, sd_tokens=10, min_tokens=3) as (_, c):
        reply = await ask(c, USER, n=12)
    lengths = [len(choice.message.content.split()) for choice in reply.choices]
    assert min(lengths) >= 3
    assert len(set(lengths)) > 2


async def test_prefix_cache_reports_cached_tokens(client: openai.AsyncOpenAI) -> None:
    system = {"role": "system", "content": "You are a careful editor of short English poems."}
    first = await ask(client, [system, *USER])
    follow = [system, *USER, {"role": "assistant", "content": "Waves."}, USER[0]]
    second = await ask(client, follow)
    fresh = await ask(client, [{"role": "user", "content": "Unrelated words entirely."}])
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    # <system> + 9 words + <user> + 7 words were seen by the first request
    assert second.usage.prompt_tokens_details.cached_tokens == 18
    assert fresh.usage.prompt_tokens_details.cached_tokens == 0


async def test_rating_and_evaluation_hooks(client: openai.AsyncOpenAI) -> None:
    rate = [{"role": "user", "content": "Rate the response from 1 to 10.\n\nResponse: waves"}]
    scores = [c.message.content for c in (await ask(client, rate, n=6)).choices]
    values = []
    for text in scores:
        match = re.search(r"\nScore: (\d+)$", text)
        assert match is not None, text
        values.append(int(match.group(1)))
    assert all(1 <= v <= 10 for v in values)
    assert values == [
        int(re.findall(r"\d+$", c.message.content)[0])
        for c in (await ask(client, rate, n=6)).choices
    ]
    judge = [{"role": "user", "content": "Evaluate the response below.\n\nResponse: waves"}]
    verdict = (await ask(client, judge)).choices[0].message.content
    assert re.match(
        r"The response is (not|slightly|partially|mostly|perfectly) helpful\. \S", verdict
    )


async def test_streaming_matches_the_plain_reply(client: openai.AsyncOpenAI) -> None:
    plain = await ask(client, USER, n=2)
    stream = await ask(client, USER, n=2, stream=True, stream_options={"include_usage": True})
    parts: dict[int, list[str]] = {0: [], 1: []}
    finishes: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        for choice in chunk.choices:
            parts[choice.index].append(choice.delta.content or "")
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert ["".join(parts[i]) for i in (0, 1)] == [c.message.content for c in plain.choices]
    assert finishes == {0: "stop", 1: "stop"}
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens


async def test_stream_without_usage_ends_with_done(sim: SimServer) -> None:
    body = {"model": "m", "messages": USER, "stream": True}
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"{sim.base_url}/chat/completions", json=body)
    events = [line for line in reply.text.split("\n\n") if line]
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all("usage" not in c and c["object"] == "chat.completion.chunk" for c in chunks)


async def test_n_rejected_or_ignored() -> None:
    async with serving(reject_n=True) as (_, rejecting), serving(ignore_n=True) as (_, ignoring):
        with pytest.raises(openai.BadRequestError) as caught:
            await ask(rejecting, USER, n=2)
        assert len((await ask(rejecting, USER)).choices) == 1
        assert len((await ask(ignoring, USER, n=4)).choices) == 1
    assert caught.value.status_code == 400
    assert "n" in str(caught.value.body) and "n=2" in caught.value.message


async def test_bad_requests_get_openai_shaped_400(sim: SimServer) -> None:
    async with httpx.AsyncClient() as http:
        not_json = await http.post(f"{sim.base_url}/chat/completions", content=b"{nope")
        no_messages = await http.post(f"{sim.base_url}/chat/completions", json={"model": "m"})
    assert not_json.status_code == no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    assert [r.status for r in sim.requests] == [400, 400]


# -- timing and concurrency -------------------------------------------------------------------


async def test_latency_follows_ttft_and_rate() -> None:
    async with serving(ttft=0.1, rate=100, mean_tokens=10) as (_, c):
        start = time.monotonic()
        await ask(c, USER)
        elapsed = time.monotonic() - start
    assert 0.19 <= elapsed < 0.6


async def test_streaming_paces_first_token_and_decode() -> None:
    async with serving(ttft=0.1, rate=50, mean_tokens=10) as (_, c):
        start = time.monotonic()
        stream = await ask(c, USER, stream=True)
        arrivals = [
            time.monotonic() - start async for chunk in stream if chunk.choices[0].delta.content
        ]
    assert len(arrivals) == 10
    assert 0.09 <= arrivals[0] < 0.3
    assert 0.28 <= arrivals[-1] < 0.8


async def test_jitter_is_seeded_by_the_request() -> None:
    async with serving(ttft=0.1, jitter=0.6, seed=5) as (server, c):
        for text in ["a", "b", "c", "a"]:
            await ask(c, [{"role": "user", "content": text}])
        took = [r.ended - r.started for r in server.requests if r.ended is not None]
    assert abs(took[0] - took[3]) < 0.03
    assert max(took[:3]) - min(took[:3]) > 0.05


async def test_capacity_queues_requests_in_order() -> None:
    async with serving(capacity=2, latency_fn=lambda body: 0.2) as (server, c):
        start = time.monotonic()
        await asyncio.gather(*(ask(c, [{"role": "user", "content": f"q{i}"}]) for i in range(6)))
        wall = time.monotonic() - start
        records = server.requests
    assert server.peak_concurrency == 2
    assert server.peak_in_flight == 6
    assert 0.58 <= wall < 1.2
    t0 = min(r.started for r in records)
    for r in records:
        assert r.ended is not None
        assert abs((r.ended - t0) - 0.2 * (r.index // 2 + 1)) < 0.1


async def test_client_disconnect_is_noticed() -> None:
    async with serving(latency_fn=lambda body: 5.0) as (server, c):
        task = asyncio.create_task(ask(c, USER))
        await wait_for(lambda: server.in_flight == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: server.in_flight == 0)
        assert server.disconnects == 1
        assert server.requests[0].disconnected
        assert server.requests[0].status is None


# -- faults ----------------------------------------------------------------------------------


async def test_500_and_429_as_the_client_sees_them(
    sim: SimServer, client: openai.AsyncOpenAI
) -> None:
    sim.set_faults([Fault("500", first=1), Fault("429", first=1, retry_after=0.25)])
    with pytest.raises(openai.InternalServerError) as server_error:
        await ask(client, USER)
    with pytest.raises(openai.RateLimitError) as limited:
        await ask(client, USER)
    ok = await ask(client, USER)
    assert server_error.value.status_code == 500
    assert isinstance(server_error.value.body, dict) and "message" in server_error.value.body
    assert limited.value.response.headers["retry-after"] == "0.25"
    assert ok.choices[0].message.content
    assert [r.fault for r in sim.requests] == ["500", "429", None]


async def test_drop_is_a_connection_error(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.set_faults([Fault("drop", first=1)])
    with pytest.raises(openai.APIConnectionError):
        await ask(client, USER)
    await wait_for(lambda: sim.in_flight == 0)
    assert sim.requests[0].fault == "drop"
    assert sim.disconnects == 0


async def test_malformed_body_fails_to_parse(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    sim.set_faults([Fault("malformed", first=1)])
    with pytest.raises(ValueError):
        await ask(client, USER)
    assert sim.requests[0].status == 200


async def test_slow_reply_trips_the_client_timeout(sim: SimServer) -> None:
    sim.set_faults([Fault("slow", first=1, slow_s=10)])
    async with openai.AsyncOpenAI(
        base_url=sim.base_url, api_key="k", max_retries=0, timeout=0.3
    ) as c:
        with pytest.raises(openai.APITimeoutError):
            await ask(c, USER)
    await wait_for(lambda: sim.disconnects == 1)
    assert sim.requests[0].fault == "slow"


async def test_fault_rate_is_deterministic_and_match_filters() -> None:
    async def pattern() -> list[str | None]:
        async with serving(seed=3, faults=[Fault("500", rate=0.5, match="target")]) as (sim, c):
            for i in range(20):
                text = f"{'target' if i % 2 else 'plain'} {i}"
                with contextlib.suppress(openai.InternalServerError):
                    await ask(c, [{"role": "user", "content": text}])
            return [r.fault for r in sim.requests]

    first, second = await pattern(), await pattern()
    assert first == second
    assert all(f is None for f in first[0::2])
    assert 2 <= sum(f == "500" for f in first[1::2]) <= 9


def test_sync_use_recording_and_reset() -> None:
    with SimServer(faults=[Fault("500", first=1)]) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="sk-secret", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError):
                c.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
            c.chat.completions.create(model="m", messages=USER)  # type: ignore[arg-type]
        records = server.requests
        assert server.call_count == 2
        assert records[0].headers["authorization"] == "***"
        assert "sk-secret" not in repr(records)
        assert records[1].body["messages"] == USER
        assert records[1].completion_tokens == 64
        assert [r.status for r in records] == [500, 200]
        server.reset_stats()
        assert server.call_count == 0 and server.peak_in_flight == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{root_url(server)}/health")


# -- pooling, models, stats, CLI --------------------------------------------------------------


async def test_pooling_chat_and_prompt_forms(sim: SimServer) -> None:
    chat = {
        "model": "sim-model",
        "messages": [*USER, {"role": "assistant", "content": "Grey waves roll."}],
    }
    async with httpx.AsyncClient() as http:
        one = (await http.post(f"{root_url(sim)}/pooling", json=chat)).json()
        again = (await http.post(f"{sim.base_url}/pooling", json=chat)).json()
        prompt = await http.post(
            f"{root_url(sim)}/pooling", json={"input": ["a b", "Grey waves roll."]}
        )
        empty = await http.post(f"{root_url(sim)}/pooling", json={"model": "m"})
    assert one["object"] == "list" and one["model"] == "sim-model"
    assert one["id"].startswith("pool-") and isinstance(one["created"], int)
    assert one["usage"]["prompt_tokens"] == one["usage"]["total_tokens"] > 0
    [item] = one["data"]
    assert item["index"] == 0 and item["object"] == "pooling"
    assert -10 <= item["data"][0] <= 10
    assert again["data"] == one["data"]
    by_prompt = prompt.json()["data"]
    assert [d["index"] for d in by_prompt] == [0, 1]
    # the score depends only on the scored text
    assert by_prompt[1]["data"] == item["data"] != by_prompt[0]["data"]
    assert empty.status_code == 400
    assert sim.call_count == 4


async def test_models_health_and_stats(sim: SimServer, client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    await ask(client, USER)
    async with httpx.AsyncClient() as http:
        health = await http.get(f"{root_url(sim)}/health")
        stats = (await http.get(f"{root_url(sim)}/_sim/stats")).json()
    assert [m.id for m in models.data] == ["sim-model"]
    assert health.status_code == 200
    assert stats.pop("busy_s") >= 0.0
    assert stats == {
        "call_count": 1,
        "in_flight": 0,
        "peak_concurrency": 1,
        "peak_in_flight": 1,
        "disconnects": 0,
    }


def test_cli_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "langgraph_feedit.testing", "--port", "0", "--seed", "3"]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None
        try:
            line: list[str] = []
            reader = threading.Thread(target=lambda: line.append(stdout.readline()))
            reader.start()
            reader.join(timeout=15)
            assert line, "the CLI printed no base_url"
            base_url = json.loads(line[0])["base_url"]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
            root = base_url.removesuffix("/v1")
            assert httpx.get(f"{root}/health").status_code == 200
            reply = httpx.post(
                f"{base_url}/chat/completions", json={"model": "m", "messages": USER}
            )
            assert reply.json()["usage"]["completion_tokens"] == 64
            assert httpx.get(f"{root}/_sim/stats").json()["call_count"] == 1
        finally:
            proc.terminate()
            code = proc.wait(timeout=10)
        assert code == 0
        assert "Traceback" not in stderr.read()


def test_cli_fixed_latency() -> None:
    """``--latency S``: every request takes S seconds, whatever its length; a negative one is
    refused with a message naming the flag, and no traceback."""
    refused = subprocess.run(
        [sys.executable, "-m", "langgraph_feedit.testing", "--latency", "-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--latency" in refused.stderr and "Traceback" not in refused.stderr
    command = [sys.executable, "-m", "langgraph_feedit.testing", "--latency", "0.4"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            base_url = json.loads(proc.stdout.readline())["base_url"]
            for tokens in (1, 200):
                body = {"model": "m", "messages": USER, "max_tokens": tokens}
                start = time.perf_counter()
                reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=30)
                took = time.perf_counter() - start
                assert reply.status_code == 200
                assert 0.4 <= took < 1.4, (tokens, took)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SimServer(capacity=0)
    with pytest.raises(ValueError, match="rate"):
        Fault("500", rate=2.0)
    with pytest.raises(ValueError, match="kind"):
        Fault("teapot")  # type: ignore[arg-type]
