"""LangChain chat models as roles, and feedit as a chat model (``ChatFeedit``), against the
simulated server: ChatOpenAI per role, langchain-core's fake chat models, ``init_chat_model``
strings, ChatFeedit in LCEL, bound by ``max_tokens`` and ``stop``, with structured output and
in ``create_react_agent``; the door bounding edits as well as drafts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai import OpenAI
from pydantic import BaseModel

from langgraph_feedit import ChatFeedit, ConfigError, FeeditConfig, create_feedit_graph
from langgraph_feedit.runs import endpoint_identity
from langgraph_feedit.serve import build_app, serve_in_thread
from langgraph_feedit.testing import SimServer

from .helpers import sim_config

USER = "Explain CRDTs briefly."

# One event loop for the module: langchain-openai shares one pooled async HTTP client per base
# URL across the process, and a pool opened on an earlier test's (closed) loop cannot be used.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=23) as server:
        yield server


def no_endpoints() -> FeeditConfig:
    """A configuration with no base URL: a call that does not go through a chat model given
    would start the embedded server, and fail the test for want of a model file."""
    return FeeditConfig.load(env={}, overrides={"embedded_model": "/nonexistent/model.gguf"})


def chat_openai(sim: SimServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=sim.base_url, api_key="sk-test-unused", model="sim-model", max_retries=0, **kwargs
    )


def bodies(sim: SimServer) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests]


# -- chat models as roles -----------------------------------------------------------------------


async def test_chat_openai_per_role_backs_every_role(sim: SimServer) -> None:
    sim.reset_stats()
    models = {
        "draft": chat_openai(sim, temperature=0.9),
        "critique": chat_openai(sim),
        "edit": chat_openai(sim),
        "judge": chat_openai(sim, temperature=0.0),
    }
    graph = create_feedit_graph(no_endpoints(), preset="feedback-edit", models=models).compile()
    out = await graph.ainvoke(
        {"messages": [("user", USER)]},
        context={"drafts": 2, "roles": {"draft": {"seed": 5}}},
    )
    trace = out["trace"]
    kinds = [n["kind"] for n in trace["nodes"]]
    assert kinds.count("draft") == 2 and kinds.count("edit") == 2
    # The judge read the logprobs ChatOpenAI returns (response_metadata["logprobs"]).
    scored = [n for n in trace["nodes"] if n["kind"] in ("draft", "edit")]
    assert {n.get("judge_path") for n in scored} == {"logprobs"}
    assert all(
        r.headers.get("user-agent", "").startswith("AsyncOpenAI/Python") for r in sim.requests
    )
    sent = bodies(sim)
    # Seeds where the model takes them: sample i of a seeded role is sent seed + i (the
    # other calls carry seeds of their own, derived from the run and the node).
    drafts = [b for b in sent if b["messages"] == [{"role": "user", "content": USER}]]
    assert sorted(b["seed"] for b in drafts) == [5, 6]
    assert all("seed" in b for b in sent)
    # Built-in role defaults are not forced on a chat model: it keeps its own temperature.
    assert {b["temperature"] for b in drafts} == {0.9}
    assert "max_completion_tokens" not in drafts[0] and "max_tokens" not in drafts[0]
    # Usage from usage_metadata, summed as for endpoints.
    usage = out["messages"][-1].usage_metadata
    assert (
        usage["total_tokens"]
        == trace["usage"]["total"]["prompt_tokens"] + (trace["usage"]["total"]["completion_tokens"])
    )
    assert trace["usage"]["total"]["calls"] == len(sim.requests)


async def test_a_chat_models_answer_is_streamed_once(sim: SimServer) -> None:
    """The final answer reuses the selected call's message id, for a chat model's own run as
    for an endpoint's: ``stream_mode="messages"`` does not send it a second time."""
    graph = create_feedit_graph(
        no_endpoints(), preset="best-of-n", models={"default": chat_openai(sim)}
    ).compile()
    seen: list[tuple[Any, Any]] = []
    async for _ns, (chunk, meta) in graph.astream(
        {"messages": [("user", USER)]},
        context={"drafts": 2},
        stream_mode="messages",
        subgraphs=True,
    ):
        seen.append((meta["feedit_role"], chunk.id))
    assert [role for role, _ in seen].count("answer") == 0
    drafted = {mid for role, mid in seen if role == "draft"}
    assert len(drafted) == 2 and all(m.startswith("lc_run--") for m in drafted)


async def test_fake_chat_models_with_thinking_and_the_rating_judge() -> None:
    draft = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content=[
                        {"type": "reasoning", "reasoning": "They want two lines."},
                        {"type": "text", "text": "Answer one."},
                    ]
                ),
                AIMessage(content="<think>hmm</think>Answer two."),
            ]
        )
    )
    judge = FakeListChatModel(responses=["Fine.\nScore: 3", "Better.\nScore: 9"])
    graph = create_feedit_graph(
        no_endpoints(), preset="best-of-n", models={"draft": draft, "judge": judge}
    ).compile()
    out = await graph.ainvoke({"messages": [("user", "q")]}, context={"drafts": 2})
    nodes = {n["id"]: n for n in out["trace"]["nodes"]}
    # Thinking kept off the answer, wherever the model put it.
    assert nodes["d0"]["text"] == "Answer one." and nodes["d0"]["reasoning"] == (
        "They want two lines."
    )
    assert nodes["d1"]["text"] == "Answer two." and nodes["d1"]["reasoning"] == "hmm"
    # No logprobs from a fake model: the principle judge rated instead.
    assert {nodes[i]["judge_path"] for i in ("d0", "d1")} == {"text"}
    assert out["messages"][-1].content in ("Answer one.", "Answer two.")
    assert nodes["d1"]["score"] > nodes["d0"]["score"]  # rated 9 against 3


async def test_init_chat_model_strings(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unused")
    sim.reset_stats()
    graph = create_feedit_graph(
        no_endpoints(), preset="single", models={"default": "openai:sim-model"}
    ).compile()
    out = await graph.ainvoke({"messages": [("user", "q")]})
    assert out["messages"][-1].content and len(sim.requests) == 1
    assert sim.requests[0].body["model"] == "sim-model"  # not "openai:sim-model"
    # The same from a file's roles.<role>.chat_model, with the role's base_url handed over.
    monkeypatch.delenv("OPENAI_BASE_URL")
    config = FeeditConfig.load(
        env={},
        overrides={
            "roles": {"default": {"chat_model": "openai:sim-model", "base_url": sim.base_url}}
        },
    )
    out = (
        await create_feedit_graph(config, preset="single")
        .compile()
        .ainvoke({"messages": [("user", "q2")]})
    )
    assert out["messages"][-1].content and len(sim.requests) == 2


async def test_init_chat_model_names_the_missing_package() -> None:
    pytest.importorskip(
        "langchain", reason="init_chat_model needs langchain (the chatmodels extra)"
    )
    try:
        import langchain_anthropic  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - depends on what is installed
        pytest.skip("langchain-anthropic is installed here: nothing is missing")
    with pytest.raises(ConfigError, match="langchain-anthropic"):
        create_feedit_graph(no_endpoints(), models={"judge": "anthropic:claude-sonnet-4-5"})
    with pytest.raises(ConfigError, match="provider:model"):
        create_feedit_graph(no_endpoints(), models={"judge": "gpt-4o"})
    with pytest.raises(ConfigError, match="unknown role"):
        create_feedit_graph(no_endpoints(), models={"drafter": "openai:x"})


async def test_a_chat_model_given_is_the_operators(sim: SimServer) -> None:
    model = chat_openai(sim)
    graph = create_feedit_graph(
        no_endpoints(), preset="single", models={"default": model}, context_allow=()
    ).compile()
    # A run's context may not name a chat model, nor send the role elsewhere.
    for context in (
        {"roles": {"draft": {"chat_model": "openai:gpt-4o"}}},
        {"roles": {"draft": {"base_url": "http://127.0.0.1:9/v1"}}},
    ):
        with pytest.raises(ConfigError, match="cannot be set per run"):
            await graph.ainvoke({"messages": [("user", "q")]}, context=context)
    # The model's identity is in the role's digest: the cache key and the state check see a
    # model with other parameters or another server as another destination.
    rc = no_endpoints().role("draft")
    same = endpoint_identity(rc, None, chat_openai(sim))
    assert same == endpoint_identity(rc, None, model)
    assert same != endpoint_identity(rc, None, chat_openai(sim, temperature=0.1))
    other = ChatOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", model="sim-model")
    assert same != endpoint_identity(rc, None, other)
    assert same != endpoint_identity(rc, None)


class Recorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.starts.append({"tags": tags or [], "metadata": metadata or {}, "id": serialized})


async def test_a_chat_models_call_is_reported_once_with_its_place_in_the_tree(
    sim: SimServer,
) -> None:
    sim.reset_stats()
    recorder = Recorder()
    graph = create_feedit_graph(
        no_endpoints(), preset="feedback-edit", models={"default": chat_openai(sim)}
    ).compile()
    await graph.ainvoke(
        {"messages": [("user", "q")]}, {"callbacks": [recorder]}, context={"drafts": 1}
    )
    # One chat-model run per call, the model's own (ChatOpenAI's), never a second one.
    assert len(recorder.starts) == len(sim.requests) == 5  # draft, critique, edit, 2 judges
    assert all(s["id"]["id"][-1] == "ChatOpenAI" for s in recorder.starts)
    roles = sorted(s["metadata"]["feedit_role"] for s in recorder.starts)
    assert roles == ["critique", "draft", "edit", "judge", "judge"]
    assert all("feedit" in s["tags"] for s in recorder.starts)


async def test_a_deadline_cancels_a_chat_models_call() -> None:
    from langgraph_feedit import NoCandidateError

    with SimServer(seed=1, ttft=5.0) as slow:
        graph = create_feedit_graph(
            no_endpoints(), preset="single", models={"default": chat_openai(slow)}
        ).compile()
        started = time.monotonic()
        with pytest.raises(NoCandidateError) as caught:
            await graph.ainvoke({"messages": [("user", "q")]}, context={"deadline": 0.3})
        # The call was cancelled at the deadline, not awaited for the server's 5 s.
        assert time.monotonic() - started < 2.5
        assert caught.value.timed_out and len(slow.requests) == 1


async def test_per_role_concurrency_limits_a_chat_model() -> None:
    with SimServer(seed=2, ttft=0.05) as server:
        config = FeeditConfig.load(env={}, overrides={"roles": {"draft": {"max_concurrency": 1}}})
        graph = create_feedit_graph(
            config, preset="best-of-n", models={"default": chat_openai(server)}
        ).compile()
        await graph.ainvoke(
            {"messages": [("user", "q")]}, context={"drafts": 4, "judge": "consensus"}
        )
        assert len(server.requests) == 4 and server.peak_in_flight == 1


# -- ChatFeedit ---------------------------------------------------------------------------------


@pytest.fixture
def llm(sim: SimServer) -> ChatFeedit:
    sim.reset_stats()
    # Seeded drafts differ, so each has its own critique and edit (identical ones share).
    context = {"drafts": 2, "roles": {"draft": {"seed": 1}}}
    return ChatFeedit(config=sim_config(sim.base_url), preset="feedback-edit", context=context)


async def test_chat_feedit_in_lcel(llm: ChatFeedit, sim: SimServer) -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "Explain {x}.")])
    chain = prompt | llm | StrOutputParser()
    texts = await chain.abatch([{"x": "CRDTs"}, {"x": "Raft"}])
    assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
    message = await (prompt | llm).ainvoke({"x": "Paxos"})
    assert message.usage_metadata and message.usage_metadata["total_tokens"] > 0
    assert message.response_metadata["feedit"]["selected"]
    chunks = [c async for c in llm.astream("q")]
    assert "".join(str(c.content) for c in chunks)
    assert llm.invoke("q").content  # sync too


async def test_chat_feedit_bind_bounds_drafts_and_edits(llm: ChatFeedit, sim: SimServer) -> None:
    message = await llm.bind(max_tokens=5, stop=["\n\n"]).ainvoke(USER)
    sent = bodies(sim)
    answers = [b for b in sent if b["messages"][-1]["content"] == USER or _is_edit(b)]
    assert len(answers) == 4  # two drafts and two edits, every one bounded
    assert all(b["max_tokens"] == 5 and b["stop"] == ["\n\n"] for b in answers)
    assert len(str(message.content).split()) <= 5
    assert message.response_metadata["finish_reason"] == "length"
    critiques = [b for b in sent if b not in answers and "top_logprobs" not in b]
    assert critiques and all(b.get("max_tokens") != 5 for b in critiques)


def _is_edit(body: dict[str, Any]) -> bool:
    """An edit's request: the generic template asks it after the feedback."""
    return str(body["messages"][-1]["content"]).startswith("Feedback on your response")


class Rating(BaseModel):
    reason: str
    score: int


async def test_chat_feedit_with_structured_output(llm: ChatFeedit, sim: SimServer) -> None:
    rated = await llm.with_structured_output(Rating).ainvoke("Give a reason and a score.")
    assert isinstance(rated, Rating) and 1 <= rated.score <= 10
    formatted = [b for b in bodies(sim) if "response_format" in b]
    assert {b["response_format"]["json_schema"]["name"] for b in formatted} >= {"Rating"}
    # Drafts and edits alike were constrained.
    constrained = [b for b in formatted if b["response_format"]["json_schema"]["name"] == "Rating"]
    assert len(constrained) == 4
    raw = await llm.with_structured_output(Rating, include_raw=True).ainvoke("A score, please.")
    assert isinstance(raw["raw"], AIMessage) and isinstance(raw["parsed"], Rating)


async def test_structured_output_that_cannot_be_honoured_says_so() -> None:
    llm = ChatFeedit(
        config=no_endpoints(),
        preset="single",
        models={"default": FakeListChatModel(responses=["not json"])},
    )
    with pytest.raises(ConfigError, match="structured output cannot be honoured"):
        await llm.with_structured_output(Rating).ainvoke("q")


# The brief's form: langgraph.prebuilt's agent (deprecated for langchain.agents' since V1.0).
@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
async def test_chat_feedit_in_create_react_agent(llm: ChatFeedit) -> None:
    from langgraph.prebuilt import create_react_agent

    agent = create_react_agent(model=llm, tools=[])
    out = await agent.ainvoke({"messages": [("user", USER)]})
    assert isinstance(out["messages"][-1], AIMessage) and out["messages"][-1].content

    @tool
    def lookup(term: str) -> str:
        """Look a term up."""
        return term

    with pytest.raises(ConfigError, match="feedit_node"):
        create_react_agent(model=llm, tools=[lookup])


# -- the door -----------------------------------------------------------------------------------


async def test_the_door_bounds_edits_by_max_tokens(sim: SimServer) -> None:
    with serve_in_thread(build_app(sim_config(sim.base_url))) as url:
        sim.reset_stats()
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="feedback-edit",
            messages=[{"role": "user", "content": USER}],
            max_tokens=5,
            seed=1,  # drafts that differ, so each has its own edit
            extra_body={"feedit": {"drafts": 2}},
        )
    sent = bodies(sim)
    edits = [b for b in sent if _is_edit(b)]
    assert len(edits) == 2 and all(b["max_tokens"] == 5 for b in edits)
    assert reply.usage is not None
    answer = reply.choices[0].message.content or ""
    assert len(answer.split()) <= 5
    assert reply.choices[0].finish_reason == "length"
