"""The seams LangChain and LangGraph users touch first: events at any width, callbacks (the
LangSmith view), token streaming, sync calls, LCEL streaming, run names."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import LLMResult
from langchain_core.tracers.base import AsyncBaseTracer
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run
from langgraph.graph import END, START, MessagesState, StateGraph

from langgraph_feedit import create_feedit_graph, feedit_node, feedit_runnable
from langgraph_feedit.errors import NoCandidateError
from langgraph_feedit.testing import Fault, SimServer

from .helpers import sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=5) as server:
        yield server


def _graph(sim: SimServer, **width: int) -> Any:
    w = {"drafts": 3, "critiques": 2, "edits": 1, **width}
    # Seeded drafts and critiques differ (identical ones would share their calls).
    roles = {"draft": {"seed": 0}, "critique": {"seed": 0}}
    config = sim_config(sim.base_url, width=w, roles=roles)
    return create_feedit_graph(config, preset="feedback-edit")


QUESTION = {"messages": [("user", "Explain CRDTs briefly.")]}


async def test_astream_events_at_width(sim: SimServer) -> None:
    graph = _graph(sim).compile()
    kinds: dict[str, int] = {}
    final: Any = None
    async for event in graph.astream_events(QUESTION, version="v2"):
        kinds[event["event"]] = kinds.get(event["event"], 0) + 1
        if event["event"] == "on_chain_end" and event["name"] == "feedit":
            final = event["data"]["output"]
    # 3 drafts + 6 critiques + 6 edits + 9 judge calls, each a chat-model run, streamed; and
    # the judge endpoint's logprobs probe, a judge call of its own beside the drafts.
    assert kinds["on_chat_model_start"] == 24 + 1
    assert kinds["on_chat_model_end"] == 24 + 1
    assert kinds["on_chat_model_stream"] >= 24
    assert final is not None and isinstance(final["messages"][-1], AIMessage)


async def test_astream_events_on_runnable_and_agent_node(sim: SimServer) -> None:
    runnable = feedit_runnable(_graph(sim).compile())
    ends = [
        e
        async for e in runnable.astream_events("Explain CRDTs.", version="v2")
        if e["event"] == "on_chat_model_end"
    ]
    assert len(ends) == 24 + 1  # and the judge endpoint's logprobs probe

    parent = StateGraph(MessagesState)
    parent.add_node("feedit", feedit_node(_graph(sim, drafts=2).compile()))
    parent.add_edge(START, "feedit")
    parent.add_edge("feedit", END)
    agent = parent.compile()
    starts = [
        e
        async for e in agent.astream_events(QUESTION, version="v2")
        if e["event"] == "on_chat_model_start"
    ]
    assert len(starts) == 2 + 4 + 4 + 6  # the endpoint's logprobs are known by now: no probe


async def test_every_call_is_a_chat_model_run(sim: SimServer) -> None:
    """langchain-core's own run collector sees one LLM run per call, with the tree node, role
    and model in its metadata and the tokens in its output, nested under the graph's run."""
    collector = RunCollectorCallbackHandler()
    graph = _graph(sim, drafts=2, critiques=1).compile()
    out = await graph.ainvoke(QUESTION, {"callbacks": [collector]})
    runs: list[Run] = []

    def walk(run: Run) -> None:
        runs.append(run)
        for child in run.child_runs:
            walk(child)

    for root in collector.traced_runs:
        walk(root)
    llm = [r for r in runs if r.run_type == "llm"]
    trace = out["trace"]
    calls = trace["usage"]["total"]["calls"]
    assert len(llm) == calls == 2 + 2 + 2 + 4 + 1  # and the judge endpoint's logprobs probe
    ids = {
        r.extra["metadata"]["feedit_id"]
        for r in llm
        if r.extra["metadata"]["feedit_role"] != "judge"
    }
    assert ids == {n["id"] for n in trace["nodes"]}
    for r in llm:
        meta = r.extra["metadata"]
        assert meta["ls_model_name"] == "sim-model"
        assert meta["feedit_endpoint"] == sim.base_url.rstrip("/")
        assert "feedit" in r.tags and f"feedit:{meta['feedit_role']}" in r.tags
        usage = r.outputs["generations"][0][0]["message"]["kwargs"]["usage_metadata"]
        assert usage["output_tokens"] > 0
        assert r.parent_run_id is not None  # nested under the node that made it
    tokens = sum(
        r.outputs["generations"][0][0]["message"]["kwargs"]["usage_metadata"]["total_tokens"]
        for r in llm
    )
    total = trace["usage"]["total"]
    assert tokens == total["prompt_tokens"] + total["completion_tokens"]


class _LangSmithShaped(AsyncBaseTracer):
    """A tracer shaped like LangSmith's: it persists whole root runs (offline)."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    async def _persist_run(self, run: Run) -> None:
        self.roots.append(run)


async def test_langsmith_shaped_tracer_sees_the_tree(sim: SimServer) -> None:
    tracer = _LangSmithShaped()
    await _graph(sim, drafts=2, critiques=1).compile().ainvoke(QUESTION, {"callbacks": [tracer]})
    (root,) = tracer.roots
    names: list[str] = []

    def walk(run: Run) -> None:
        names.append(run.name)
        for child in run.child_runs:
            walk(child)

    walk(root)
    assert root.name == "feedit"
    assert names.count("feedit:draft") == 2
    assert names.count("feedit:judge") == 4 + 1  # and the judge endpoint's logprobs probe
    # Each node is one run, as LangGraph makes of a plain node function (not a node run with
    # a second one of the same name inside it), and each call's parent is the node that made it.
    assert names.count("draft") == 2 and names.count("critique") == 2
    assert names.count("edit") == 2 and names.count("judge") == 4
    assert names.count("start") == names.count("select") == names.count("finish") == 1

    def parents(run: Run, parent: Run | None = None) -> Iterator[tuple[Run, Run | None]]:
        yield run, parent
        for child in run.child_runs:
            yield from parents(child, run)

    made_by = {
        (run.name, parent.name if parent else None)
        for run, parent in parents(root)
        if run.run_type == "llm"
    }
    # each call under its node; the logprobs probe under the node that makes it
    expected = {(f"feedit:{r}", r) for r in ("draft", "critique", "edit", "judge")}
    assert made_by == expected | {("feedit:judge", "discover")}


class _Errors(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.ends: list[LLMResult] = []

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.errors.append(error)

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        self.ends.append(response)


async def test_failed_call_reports_llm_error() -> None:
    with SimServer(seed=1, faults=[Fault("500", rate=1.0)]) as server:
        handler = _Errors()
        graph = create_feedit_graph(sim_config(server.base_url), preset="single").compile()
        with pytest.raises(NoCandidateError):
            await graph.ainvoke(QUESTION, {"callbacks": [handler]})
        assert handler.errors and not handler.ends


async def test_messages_mode_streams_real_tokens(sim: SimServer) -> None:
    graph = _graph(sim, drafts=2, critiques=1).compile()
    chunks: dict[str, list[str]] = {}
    async for _ns, (message, meta) in graph.astream(
        QUESTION, stream_mode="messages", subgraphs=True
    ):
        if isinstance(message, AIMessageChunk):
            chunks.setdefault(meta["feedit_id"] + "/" + meta["feedit_role"], []).append(
                str(message.content)
            )
    # every draft, critique and edit streamed, each in several pieces; the principle judge
    # streams its one Yes/No token
    drafts = [k for k in chunks if k.endswith("/draft")]
    assert sorted(drafts) == ["d0/draft", "d1/draft"]
    assert all(len(v) > 1 for k, v in chunks.items() if not k.endswith("/judge"))
    # (one token, though it may come in two pieces: an end that could begin a registered key
    # is held back until the next piece or the end of the reply)
    # (and so does the judge endpoint's logprobs probe, one token too)
    judged = [len("".join(v).split()) for k, v in chunks.items() if k.endswith("/judge")]
    assert judged == [1] * (4 + 1)


async def test_readme_messages_snippet_sees_the_answer_once(sim: SimServer) -> None:
    """The README's ``stream_mode="messages"`` loop, as written there, runs to the end (the run's
    answer used to come last without feedit's metadata: ``KeyError: 'feedit_id'``), and the
    answer is not sent a second time after its own call's tokens."""
    graph = _graph(sim, drafts=2, critiques=1).compile()
    inputs = QUESTION
    seen: list[tuple[Any, Any, Any]] = []
    async for _ns, (chunk, meta) in graph.astream(inputs, stream_mode="messages", subgraphs=True):
        seen.append((meta["feedit_id"], meta["feedit_role"], chunk.content))
    out = await graph.ainvoke(QUESTION)
    selected = out["trace"]["selected"]
    whole = [s for s in seen if s[1] == "answer"]
    assert whole == []  # the selected call streamed it already
    assert any(s[0] == selected for s in seen)
    # without subgraphs the answer is the one message, with the same keys
    async for _chunk, meta in graph.astream(inputs, stream_mode="messages"):
        assert meta["feedit_role"] == "answer" and "feedit_id" in meta


class _CountingPool(concurrent.futures.ThreadPoolExecutor):
    submitted: list[str]

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(getattr(fn, "__name__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


async def test_async_run_never_leaves_the_event_loop(sim: SimServer) -> None:
    """Routers and fan-out edges are plain functions, which LangGraph would run on a worker
    thread in an async run: an async run of the whole tree hands nothing to the loop's pool."""
    pool = _CountingPool(max_workers=4)
    pool.submitted = []
    asyncio.get_running_loop().set_default_executor(pool)
    out = await _graph(sim, drafts=2, critiques=1).compile().ainvoke(QUESTION)
    assert out["trace"]["usage"]["total"]["calls"] == 2 + 2 + 2 + 4 + 1  # and the probe
    # The OpenAI SDK reads the platform for its headers once per client, on a worker thread
    # (it may read files): a client's first request, never a call's.
    assert [f for f in pool.submitted if "get_platform" not in f] == []
    # First requests made at once may each read it: the two drafts and the judge endpoint's
    # logprobs probe beside them.
    assert len(pool.submitted) <= 2 + 1


def test_sync_invoke_and_stream(sim: SimServer) -> None:
    graph = _graph(sim, drafts=2, critiques=1).compile()
    out = graph.invoke(QUESTION)
    assert isinstance(out["messages"][-1], AIMessage)
    assert len(out["trace"]["nodes"]) == 2 + 2 + 2
    events = [
        chunk
        for _ns, mode, chunk in graph.stream(
            QUESTION, stream_mode=["custom", "updates"], subgraphs=True
        )
        if mode == "custom"
    ]
    assert sum(1 for e in events if e["feedit"]["event"] == "done") == 6


def test_sync_runnable_and_agent_node(sim: SimServer) -> None:
    runnable = feedit_runnable(_graph(sim, drafts=2, critiques=1).compile())
    assert isinstance(runnable.invoke("Explain CRDTs."), AIMessage)
    assert len(runnable.batch(["a?", "b?"])) == 2
    streamed = list(runnable.stream("Explain CRDTs."))
    assert streamed and isinstance(streamed[-1], AIMessage)

    parent = StateGraph(MessagesState)
    parent.add_node("feedit", feedit_node(_graph(sim, drafts=2).compile()))
    parent.add_edge(START, "feedit")
    parent.add_edge("feedit", END)
    out = parent.compile().invoke(QUESTION)
    assert out["messages"][-1].name == "feedit"


def test_sync_callbacks(sim: SimServer) -> None:
    class Counter(BaseCallbackHandler):
        starts = 0

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            Counter.starts += 1

    _graph(sim, drafts=2, critiques=1).compile().invoke(QUESTION, {"callbacks": [Counter()]})
    assert Counter.starts == 2 + 2 + 2 + 4


async def test_runnable_astream(sim: SimServer) -> None:
    runnable = feedit_runnable(_graph(sim, drafts=2, critiques=1).compile())
    chunks = [c async for c in runnable.astream("Explain CRDTs.")]
    assert chunks and isinstance(chunks[-1], AIMessage) and chunks[-1].content


def test_compiled_graph_keeps_its_name(sim: SimServer) -> None:
    graph = create_feedit_graph(sim_config(sim.base_url), name="my-feedit").compile()
    assert graph.name == "my-feedit"
    assert create_feedit_graph(sim_config(sim.base_url)).compile().name == "feedit"


async def test_no_listener_no_streaming(sim: SimServer) -> None:
    """With nobody listening the endpoint is not asked to stream."""
    before = len(sim.requests)
    await _graph(sim, drafts=2, critiques=0).compile().ainvoke(QUESTION)
    bodies = [r.body for r in sim.requests[before:]]
    assert bodies and not any(b.get("stream") for b in bodies)
    await asyncio.sleep(0)


def test_public_names_resolve_and_the_cli_starts_light() -> None:
    import subprocess
    import sys

    import langgraph_feedit

    for name in langgraph_feedit.__all__:
        assert getattr(langgraph_feedit, name) is not None
    # `feedit --version` and `--help` load neither LangGraph nor pydantic's models
    code = (
        "import sys, langgraph_feedit.cli as c\n"
        "c.build_parser().format_help()\n"
        "heavy = [m for m in ('langgraph', 'langchain_core', 'openai', 'langgraph_feedit.config')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
