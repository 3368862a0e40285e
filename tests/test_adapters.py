"""Ways in: the one-line helper, an LCEL chain, a parent agent, streamed progress."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

from langgraph_feedit import afeedit, create_feedit_graph, feedit_node, feedit_runnable
from langgraph_feedit.testing import SimServer

from .helpers import sim_config


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=21) as server:
        yield server


async def test_one_line_helper(sim: SimServer) -> None:
    result = await afeedit("Explain CRDTs.", config=sim_config(sim.base_url), drafts=2)
    assert isinstance(result.message, AIMessage)
    assert result.answer == result.message.content
    assert len([n for n in result.trace.nodes if n.kind == "draft"]) == 2


async def test_lcel_chain_composes_with_pipes(sim: SimServer) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "Explain {x}.")])
    chain = prompt | feedit_runnable(config=sim_config(sim.base_url), preset="best-of-n")
    message = await chain.ainvoke({"x": "CRDTs"})
    assert isinstance(message, AIMessage) and message.content
    texts = await (chain | StrOutputParser()).abatch([{"x": "a"}, {"x": "b"}])
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
    body = sim.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_runnable_accepts_strings_and_messages(sim: SimServer) -> None:
    runnable = feedit_runnable(config=sim_config(sim.base_url), preset="single")
    a = await runnable.ainvoke("hello")
    b = await runnable.ainvoke([SystemMessage("s"), HumanMessage("hello")])
    assert isinstance(a, AIMessage) and isinstance(b, AIMessage)


async def test_node_inside_a_parent_messages_state_agent(sim: SimServer) -> None:
    def before(state: MessagesState) -> dict[str, Any]:
        return {"messages": [SystemMessage("You are a careful assistant.")]}

    parent = StateGraph(MessagesState)
    parent.add_node("before", before)
    parent.add_node("feedit", feedit_node(config=sim_config(sim.base_url, width={"drafts": 2})))
    parent.add_edge(START, "before")
    parent.add_edge("before", "feedit")
    parent.add_edge("feedit", END)
    out = await parent.compile().ainvoke({"messages": [HumanMessage("Explain CRDTs.")]})
    assert set(out) == {"messages"}
    assert [type(m) for m in out["messages"]] == [HumanMessage, SystemMessage, AIMessage]


async def test_compiled_graph_as_a_subgraph_node_with_shared_keys(sim: SimServer) -> None:
    feedit = create_feedit_graph(sim_config(sim.base_url, width={"drafts": 2})).compile()
    parent = StateGraph(MessagesState)
    parent.add_node("feedit", feedit)
    parent.add_edge(START, "feedit")
    parent.add_edge("feedit", END)
    out = await parent.compile().ainvoke({"messages": [HumanMessage("q")]})
    assert isinstance(out["messages"][-1], AIMessage)


async def test_progress_events_stream_from_inside_the_branches(sim: SimServer) -> None:
    graph = create_feedit_graph(
        sim_config(sim.base_url, width={"drafts": 2, "critiques": 1, "edits": 1})
    ).compile()
    events: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    async for namespace, mode, chunk in graph.astream(
        {"messages": [("user", "q")]}, stream_mode=["custom", "updates"], subgraphs=True
    ):
        if mode == "custom":
            events.append((namespace, chunk["feedit"]))
    kinds = {(e["event"], e.get("kind")) for _, e in events}
    assert {("started", "draft"), ("done", "critique"), ("done", "edit")} <= kinds
    assert any(e["event"] == "scored" for _, e in events)
    assert events[-1][1]["event"] == "finished"
    # edit events come from two levels of nested subgraphs
    edit_ns = [ns for ns, e in events if e.get("kind") == "edit"]
    assert edit_ns and all(len(ns) == 3 for ns in edit_ns)
    done = [e for _, e in events if e["event"] == "done"]
    assert len(done) == 2 + 2 + 2
    assert all(e["tokens"] > 0 for e in done)


async def test_second_turn_on_a_thread_starts_a_fresh_tree(sim: SimServer, tmp_path: Any) -> None:
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ckpt.sqlite")) as saver:
        graph = create_feedit_graph(sim_config(sim.base_url, width={"drafts": 2})).compile(
            checkpointer=saver
        )
        config = {"configurable": {"thread_id": "t1"}}
        first = await graph.ainvoke({"messages": [("user", "first")]}, config)
        second = await graph.ainvoke({"messages": [("user", "second")]}, config)
    assert len(second["messages"]) == 4
    assert len(second["trace"]["nodes"]) == len(first["trace"]["nodes"])
    assert second["trace"]["answer"] != first["trace"]["answer"]
