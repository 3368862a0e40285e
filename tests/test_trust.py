"""Nothing a client can write chooses where a call goes or which key it carries.

A graph served to clients (``context_allow`` set, as ``graphs/presets.py`` builds them) keeps
its run spec in thread state, and thread state is client-writable: ``update_state`` writes any
key as if a node had, and a ``Command`` sends any payload to a branch. These tests forge both
ways in-process (``tests/test_langgraph_server.py`` does the same through ``langgraph dev``
and the SDK), with a second simulated server standing for the attacker's host.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command, Send

from langgraph_feedit import ConfigError, create_feedit_graph
from langgraph_feedit.config import SAMPLING_FIELDS, RoleConfig
from langgraph_feedit.runs import SPEC_SECTIONS, endpoint_identity
from langgraph_feedit.testing import SimServer

from .helpers import sim_config

QUESTION = {"messages": [("user", "Explain CRDTs.")]}
KEY_VAR = "FEEDIT_TEST_OPERATOR_KEY"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(seed=37) as server:
        yield server


@pytest.fixture
def attacker() -> Iterator[SimServer]:
    with SimServer(seed=5) as server:
        yield server


@pytest.fixture
def served(sim: SimServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A best-of-n graph as a server holds it: operator key, untrusted context, a checkpointer."""
    monkeypatch.setenv(KEY_VAR, "sk-operator-0123456789")
    config = sim_config(
        sim.base_url,
        width={"drafts": 2},
        roles={"default": {"api_key_env": KEY_VAR}, "draft": {"seed": 0}},
    )
    graph = create_feedit_graph(config, preset="best-of-n", context_allow=())
    return graph.compile(checkpointer=InMemorySaver())


async def _finished_thread(graph: Any, thread: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = {"configurable": {"thread_id": thread}}
    await graph.ainvoke(QUESTION, cfg)
    state = await graph.aget_state(cfg)
    return cfg, dict(state.values)


async def test_thread_state_names_no_endpoint_model_or_key_variable(
    served: Any, sim: SimServer
) -> None:
    _, values = await _finished_thread(served, "plain")
    spec = values["feedit_spec"]
    text = json.dumps(spec)
    for secret_ish in (sim.base_url, "127.0.0.1", KEY_VAR, "api_key_env", "base_url", "sim-model"):
        assert secret_ish not in text
    assert set(spec["endpoints"]) == {"draft", "critique", "edit", "judge"}
    assert spec["roles"]["draft"]["seed"] == 0
    allowed = {*SAMPLING_FIELDS, "template"}
    assert all(set(settings) <= allowed for r, settings in spec["roles"].items() if r != "judge")
    assert set(spec["roles"]["judge"]) <= {*allowed, "kind"}
    # Besides the run's own key, start and conversation: what a run may tune, and the digests.
    assert set(spec) <= {"key", "started", "conversation", "endpoints", "roles", "trivial"} | {
        *SPEC_SECTIONS
    }


def _forgeries(spec: dict[str, Any], attacker: SimServer) -> list[tuple[str, dict[str, Any]]]:
    """Ways a client could rewrite a finished thread's spec to send calls to its own host."""
    url = attacker.base_url
    listed = json.loads(json.dumps(spec))
    listed["roles"]["draft"].update(base_url=url, api_key_env=KEY_VAR)
    # The digest the package would compute for the attacker's endpoint, from its public code.
    digest = json.loads(json.dumps(spec))
    digest["endpoints"]["draft"] = endpoint_identity(RoleConfig(base_url=url), None)
    # An older shape of the spec, which carried every role's settings.
    old = json.loads(json.dumps(spec))
    old["roles"] = {
        r: {"base_url": url, "api_key_env": KEY_VAR, "model": "x"} for r in spec["roles"]
    }
    old["embedded_model"] = None
    return [("listed", listed), ("digest", digest), ("old", old)]


async def test_update_state_cannot_redirect_calls(
    served: Any, sim: SimServer, attacker: SimServer
) -> None:
    cfg, values = await _finished_thread(served, "forged")
    for name, forged in _forgeries(values["feedit_spec"], attacker):
        forged["key"] = f"forged-{name}"
        before = sim.call_count
        # Refused when the write runs ``start``'s edge (no run of this graph has that key);
        # as ``select`` (whose edge resolves nothing) when the next run rebuilds the spec.
        with pytest.raises(ConfigError, match="not started by this graph"):
            await served.aupdate_state(cfg, {"feedit_spec": forged}, as_node="start")
        await served.aupdate_state(
            cfg, {"feedit_spec": forged, "feedit_stopped": None}, as_node="draft_branch"
        )
        with pytest.raises(ConfigError, match=r"cannot be set per run|other endpoints") as err:
            await served.ainvoke(None, cfg)
        assert "thread's state" in str(err.value), name
        assert attacker.call_count == 0, name
        assert sim.call_count == before, name


async def test_a_command_cannot_send_a_forged_branch(
    served: Any, sim: SimServer, attacker: SimServer
) -> None:
    cfg, values = await _finished_thread(served, "command")
    for name, forged in _forgeries(values["feedit_spec"], attacker):
        forged["key"] = f"sent-{name}"
        send = Send("draft_branch", {"spec": forged, "index": 0, "round": 0})
        with pytest.raises(ConfigError):
            await served.ainvoke(Command(goto=send), cfg)
        assert attacker.call_count == 0, name


async def test_forged_width_is_checked_like_a_context(served: Any, attacker: SimServer) -> None:
    """What state may tune, it may tune only within the configuration's own bounds."""
    cfg, values = await _finished_thread(served, "width")
    forged = json.loads(json.dumps(values["feedit_spec"]))
    forged.update(key="huge", drafts=10**9)
    send = Send("draft_branch", {"spec": forged, "index": 0, "round": 0})
    with pytest.raises(ConfigError) as err:
        await served.ainvoke(Command(goto=send), cfg)
    assert "width.drafts" in str(err.value)


async def test_a_resumed_thread_still_runs_on_the_operators_endpoints(
    sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The honest path of the same mechanism: a run whose state was written by this graph
    resumes in a fresh process view (nothing remembered) with the run's own settings."""
    from langgraph_feedit import runs
    from langgraph_feedit.testing import Fault

    config = sim_config(
        sim.base_url,
        width={"drafts": 2},
        roles={"judge": {"kind": "pairwise"}, "draft": {"seed": 0}},
    )
    graph = create_feedit_graph(config, preset="best-of-n", context_allow=()).compile(
        checkpointer=InMemorySaver()
    )
    cfg = {"configurable": {"thread_id": "resume"}}
    sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])  # the pairwise judge fails
    try:
        with pytest.raises(Exception, match="500"):
            await graph.ainvoke(QUESTION, cfg, context={"roles": {"draft": {"temperature": 0.3}}})
    finally:
        sim.set_faults([])
    runs._active.clear()  # as a new process would find it
    out = await graph.ainvoke(None, cfg)
    assert out["trace"]["selected"] in {"d0", "d1"}
    assert out["trace"]["judge"] == "pairwise"
    draft_bodies = [r.body for r in sim.requests if "[Response A]" not in json.dumps(r.body)]
    assert draft_bodies and all(b.get("temperature") == 0.3 for b in draft_bodies)


async def test_context_keys_one_rule(sim: SimServer) -> None:
    """The short names work in a context as in the door; an unknown key is an error naming it
    (LangGraph Server passes the whole context on, since the schema lists no keys)."""
    from pydantic import TypeAdapter

    from langgraph_feedit.graph import FeeditContext

    assert "properties" not in TypeAdapter(FeeditContext).json_schema()
    graph = create_feedit_graph(sim_config(sim.base_url), context_allow=()).compile()
    out = await graph.ainvoke(QUESTION, context={"drafts": 3, "critiques": 0})
    assert [n["kind"] for n in out["trace"]["nodes"]] == ["draft"] * 3
    with pytest.raises(ConfigError, match="widht"):
        await graph.ainvoke(QUESTION, context={"widht": {"drafts": 2}})


async def test_a_forged_template_path_is_never_opened_by_the_call_cache(
    sim: SimServer, tmp_path: Any
) -> None:
    """A cached graph computes a branch's cache key before the branch checks its spec: the
    key must read no template file a forged spec names (nor fail on a malformed one)."""
    from langgraph.cache.memory import InMemoryCache

    secret = tmp_path / "operator-secrets.toml"
    secret.write_text('db_password = "hunter2"\n[deploy]\nhost = "x"\n', encoding="utf-8")
    cache = InMemoryCache()
    config = sim_config(sim.base_url, width={"drafts": 1, "critiques": 1, "edits": 1})
    graph = create_feedit_graph(config, preset="feedback-edit", context_allow=(), cache=cache)
    served = graph.compile(checkpointer=InMemorySaver(), cache=cache)
    cfg, values = await _finished_thread(served, "template")
    forged = json.loads(json.dumps(values["feedit_spec"]))
    forged["roles"]["critique"]["template"] = str(secret)
    parent = {"id": "d0", "text": "A draft."}
    for spec in (forged, {**forged, "roles": None}):
        send = Send("critique_branch", {"spec": spec, "parent": parent, "round": 1, "index": 0})
        with pytest.raises(ConfigError) as err:
            await served.ainvoke(Command(goto=send), cfg)
        said = str(err.value)
        assert "db_password" not in said and "deploy" not in said and str(secret) not in said
        assert "thread's state" in said
