"""The endpoint client against the simulated server over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from langgraph_feedit import EndpointError, EndpointTimeout, RoleConfig, get_endpoint
from langgraph_feedit.chatapi import ChatRequest
from langgraph_feedit.endpoints import Endpoint, _Limiter, aclose_endpoints, is_retryable
from langgraph_feedit.testing import Fault, SimServer

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Explain CRDTs."},
]


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=11) as server:
        yield server


def endpoint(sim: SimServer, **kw: object) -> Endpoint:
    options: dict[str, object] = {"api_key": "sk-none", "backoff": 0.01, "max_retries": 3}
    options.update(kw)
    return Endpoint(sim.base_url, **options)  # type: ignore[arg-type]


async def test_conversation_and_sampling_settings_are_forwarded(sim: SimServer) -> None:
    ep = endpoint(sim)
    result = await ep.chat(
        CONVERSATION,
        model="sim-model",
        temperature=0.3,
        top_p=0.9,
        max_tokens=17,
        seed=5,
        stop=["\n\n"],
        extra_body={"top_k": 20},
    )
    body = sim.requests[-1].body
    assert body["messages"] == CONVERSATION
    assert body["model"] == "sim-model"
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        0.3,
        0.9,
        17,
        5,
    )
    assert body["stop"] == ["\n\n"] and body["top_k"] == 20
    assert "n" not in body
    assert len(result.texts) == 1 and result.texts[0]
    assert result.model == "sim-model"


async def test_usage_parsed_with_cached_tokens(sim: SimServer) -> None:
    ep = endpoint(sim)
    first = await ep.chat(CONVERSATION, model="sim-model")
    second = await ep.chat(
        [*CONVERSATION, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}],
        model="sim-model",
    )
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.calls == 1
    assert first.usage.completion_tokens == sim.requests[0].completion_tokens
    assert second.usage.cached_tokens > 0  # the shared prefix was seen before


async def test_default_model_is_asked_of_the_server(sim: SimServer) -> None:
    ep = endpoint(sim)
    result = await ep.chat(CONVERSATION)
    assert result.model == "sim-model"
    assert sim.requests[-1].body["model"] == "sim-model"


async def test_n_in_one_request_where_supported(sim: SimServer) -> None:
    ep = endpoint(sim)
    result = await ep.chat(CONVERSATION, model="m", n=3, use_n=True)
    assert len(result.texts) == 3 and len(set(result.texts)) == 3
    assert sim.call_count == 1 and sim.requests[0].body["n"] == 3
    assert ep.n_supported is True


async def test_n_ignored_by_the_server_is_made_up_with_single_calls() -> None:
    with SimServer(seed=12, ignore_n=True) as server:
        ep = endpoint(server)
        result = await ep.chat(CONVERSATION, model="m", n=3, use_n=True, seed=1)
        assert len(result.texts) == 3
        assert server.call_count == 3  # one n=3 request answered with one choice, then 2 singles
        assert ep.n_supported is False
        seeds = [r.body.get("seed") for r in server.requests[1:]]
        assert sorted(seeds) == [2, 3]
        assert result.usage.calls == 3


async def test_n_rejected_by_the_server_falls_back_to_parallel_calls() -> None:
    with SimServer(seed=13, reject_n=True, ttft=0.1) as server:
        ep = endpoint(server)
        result = await ep.chat(CONVERSATION, model="m", n=4, use_n=True)
        assert len(result.texts) == 4
        assert server.requests[0].status == 400
        assert server.call_count == 5
        assert server.peak_concurrency == 4  # the fallback calls ran in parallel
        assert ep.n_supported is False
        await ep.chat(CONVERSATION, model="m", n=2, use_n=True)
        assert server.call_count == 7  # no second try of n > 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault("500", first=2),
        Fault("429", first=2, retry_after=0.01),
        Fault("drop", first=2),
        Fault("malformed", first=2),
    ],
    ids=["500", "429", "drop", "malformed"],
)
async def test_transient_faults_are_retried(sim: SimServer, fault: Fault) -> None:
    sim.set_faults([fault])
    result = await endpoint(sim).chat(CONVERSATION, model="m")
    assert result.texts[0]
    assert sim.call_count == 3
    assert [r.fault for r in sim.requests] == [fault.kind, fault.kind, None]


async def test_retry_after_is_honoured(sim: SimServer) -> None:
    sim.set_faults([Fault("429", first=1, retry_after=0.5)])
    started = time.monotonic()
    await endpoint(sim, backoff=0.0).chat(CONVERSATION, model="m")
    assert time.monotonic() - started >= 0.5
    gap = sim.requests[1].started - sim.requests[0].started
    assert gap >= 0.5


async def test_persistent_failure_names_endpoint_status_and_body_never_the_key(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIM_SECRET_KEY", "sk-very-secret-123")
    sim.set_faults([Fault("500", rate=1.0)])
    config = RoleConfig(
        base_url=sim.base_url, api_key_env="SIM_SECRET_KEY", max_retries=2, backoff=0.01
    )
    ep = get_endpoint(config, role="draft")
    with pytest.raises(EndpointError) as info:
        await ep.chat(CONVERSATION, model="m", role="draft")
    err = info.value
    assert err.status == 500 and err.endpoint.startswith(sim.base_url)
    assert err.body and "error" in err.body
    assert err.role == "draft" and err.retryable
    assert sim.call_count == 3
    assert "sk-very-secret-123" not in repr(err) + str(err) + (err.body or "")
    assert sim.requests[0].headers.get("authorization") == "***"
    await aclose_endpoints()


async def test_bad_request_is_not_retried() -> None:
    with SimServer(seed=14, reject_n=True) as server:
        ep = endpoint(server)
        with pytest.raises(EndpointError) as info:
            await ep._complete(ChatRequest(CONVERSATION, "m", "draft"), n=2, seed=None)
        assert info.value.status == 400 and not info.value.retryable
        assert server.call_count == 1


async def test_timeout_is_retried_then_surfaced(sim: SimServer) -> None:
    sim.set_faults([Fault("slow", rate=1.0, slow_s=5.0)])
    ep = endpoint(sim, timeout=0.2, max_retries=1)
    with pytest.raises(EndpointTimeout) as info:
        await ep.chat(CONVERSATION, model="m")
    assert sim.call_count == 2
    assert "0.2" in str(info.value)


async def test_concurrency_limit_never_exceeded() -> None:
    with SimServer(seed=15, ttft=0.05) as server:
        ep = endpoint(server, max_concurrency=4)
        await asyncio.gather(*(ep.chat(CONVERSATION, model="m") for _ in range(20)))
        assert server.call_count == 20
        assert server.peak_concurrency == 4
        assert ep.limiter.peak == 4


async def test_limit_is_shared_by_every_run_on_the_loop(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTHER_KEY_VAR", "sk-other")
    a = get_endpoint(RoleConfig(base_url=sim.base_url, max_concurrency=8))
    b = get_endpoint(RoleConfig(base_url=sim.base_url + "/", max_concurrency=3))
    assert a is b
    assert a.limiter.limit == 3  # the smallest asked for applies
    other = get_endpoint(RoleConfig(base_url=sim.base_url, api_key_env="OTHER_KEY_VAR"))
    assert other is not a
    await aclose_endpoints()


async def test_cancellation_closes_the_request(sim: SimServer) -> None:
    sim.set_faults([Fault("slow", rate=1.0, slow_s=30.0)])
    ep = endpoint(sim)
    task = asyncio.create_task(ep.chat(CONVERSATION, model="m"))
    for _ in range(100):
        if sim.in_flight:
            break
        await asyncio.sleep(0.01)
    assert sim.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if sim.disconnects:
            break
        await asyncio.sleep(0.02)
    assert sim.disconnects == 1
    assert sim.in_flight == 0
    assert sim.requests[0].disconnected


async def test_reward_uses_the_pooling_api(sim: SimServer) -> None:
    ep = endpoint(sim)
    conversation = [*CONVERSATION, {"role": "assistant", "content": "A CRDT is ..."}]
    score, usage = await ep.reward(conversation, model="rm")
    again, _ = await ep.reward(conversation, model="rm")
    assert score == again
    assert isinstance(score, float)
    request = sim.requests[-1]
    assert request.path == "/pooling"
    assert request.body["messages"] == conversation and request.body["model"] == "rm"
    assert usage.calls == 1


async def test_connection_refused_is_an_endpoint_error() -> None:
    ep = Endpoint("http://127.0.0.1:9/v1", api_key="x", max_retries=1, backoff=0.01)
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1:9/v1.*connection"):
        await ep.chat(CONVERSATION, model="m")


def test_retryable_classification() -> None:
    err = EndpointError("x", endpoint="e", status=503, retryable=True)
    assert is_retryable(err)
    assert not is_retryable(ValueError("x"))


async def test_the_limiter_serves_waiters_in_order_and_passes_over_the_cancelled() -> None:
    limiter = _Limiter(1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with limiter:
            order.append(name)
            await release.wait()

    first = asyncio.create_task(hold("first"))
    await asyncio.sleep(0)
    queued = {n: asyncio.create_task(hold(n)) for n in ("a", "b", "c")}
    await asyncio.sleep(0)
    queued["a"].cancel()  # leaves while queued: its turn passes to the next
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, queued["b"], queued["c"])
    assert order == ["first", "b", "c"] and limiter.active == 0 and limiter.peak == 1
    assert queued["a"].cancelled()


async def test_endpoints_made_after_aclose_endpoints_stay_open() -> None:
    """``aclose_endpoints`` empties the loop's registry; an endpoint made after it works (the
    loop's shutdown hook was replaced, and the old one, collected, closed the new clients)."""
    import gc

    from langgraph_feedit.config import RoleConfig
    from langgraph_feedit.endpoints import aclose_endpoints, get_endpoint
    from langgraph_feedit.testing import SimServer

    with SimServer(seed=4) as sim:
        first = get_endpoint(RoleConfig(), base_url=sim.base_url)
        await first.chat([{"role": "user", "content": "hi"}], model="m")
        await aclose_endpoints()
        second = get_endpoint(RoleConfig(max_concurrency=3), base_url=sim.base_url)
        gc.collect()
        result = await second.chat([{"role": "user", "content": "again"}], model="m")
        await aclose_endpoints()
    assert result.texts[0] and second is not first
