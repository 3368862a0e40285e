"""graphs/ through a real `langgraph dev` server on 127.0.0.1, driven with the SDK client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from langgraph_feedit.testing import Fault, SimServer

from .services import free_port

pytest.importorskip("langgraph_sdk", reason="needs langgraph-sdk (the 'test' extra)")
from langgraph_sdk import get_client

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
SERVER_KEY_VAR = "FEEDIT_TEST_SERVER_KEY"

pytestmark = pytest.mark.langgraph_dev


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=91, ttft=0.01) as server:
        yield server


@pytest.fixture(scope="module")
def server(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent))
    if cli is None:
        pytest.skip("needs langgraph-cli[inmem] (the 'test' extra)")
    port = free_port()
    log = (tmp_path_factory.mktemp("langgraph-dev") / "dev.log").open("w")
    env = {
        **os.environ,
        "FEEDIT_ROLES__DEFAULT__BASE_URL": sim.base_url,
        "FEEDIT_ROLES__DEFAULT__MODEL": "sim-model",
        "FEEDIT_ROLES__DEFAULT__MAX_RETRIES": "0",
        # The operator's key: no client may have it sent anywhere else.
        "FEEDIT_ROLES__DEFAULT__API_KEY_ENV": SERVER_KEY_VAR,
        SERVER_KEY_VAR: "sk-operator-server-0123456789",
        # Seeded drafts differ (identical ones would share their judge and critique calls).
        "FEEDIT_ROLES__DRAFT__SEED": "0",
        "LANGSMITH_TRACING": "false",
    }
    proc = subprocess.Popen(
        [cli, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=GRAPHS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited: {Path(log.name).read_text()[-3000:]}")
            time.sleep(0.3)
        else:
            raise RuntimeError("langgraph dev did not answer /ok in 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(GRAPHS / ".langgraph_api", ignore_errors=True)
    assert proc.poll() is not None


QUESTION = {"messages": [{"role": "user", "content": "Explain CRDTs."}]}


async def test_plain_run_with_run_time_settings(server: str, sim: SimServer) -> None:
    client = get_client(url=server)
    assistants = await client.assistants.search()
    assert {a["graph_id"] for a in assistants} >= {
        "feedback-edit",
        "best-of-n",
        "self-refine",
        "beam",
        "single",
    }
    before = sim.call_count
    out: Any = await client.runs.wait(
        None, "feedback-edit", input=QUESTION, context={"width": {"drafts": 2}}
    )
    trace = out["trace"]
    assert [n["kind"] for n in trace["nodes"]].count("draft") == 2
    assert out["messages"][-1]["type"] == "ai"
    assert out["messages"][-1]["content"] == trace["answer"]
    # and the judge endpoint's logprobs probe, made by the server's first run
    assert sim.call_count - before == 2 * 5 + 1


async def test_streamed_run_with_progress_from_inside_the_branches(server: str) -> None:
    client = get_client(url=server)
    events: list[tuple[str, Any]] = []
    # a question of its own: calls served from the call cache run no node, so emit no progress
    async for part in client.runs.stream(
        None,
        "feedback-edit",
        input={"messages": [{"role": "user", "content": "Explain vector clocks."}]},
        context={"width": {"drafts": 2, "critiques": 1, "edits": 1}},
        stream_mode=["custom", "updates"],
        stream_subgraphs=True,
    ):
        events.append((part.event, part.data))
    custom = [data["feedit"] for event, data in events if event.startswith("custom")]
    namespaces = {event for event, _ in events if event.startswith("custom|")}
    assert {e["event"] for e in custom} >= {"started", "done", "scored", "round", "finished"}
    assert any(e.get("kind") == "edit" and e["event"] == "done" for e in custom)
    assert any("edit_branch" in ns for ns in namespaces), namespaces  # nested subgraph events
    assert any(event.startswith("updates") for event, _ in events)


async def test_thread_resumes_after_a_failure(server: str, sim: SimServer) -> None:
    client = get_client(url=server)
    thread = await client.threads.create()
    context = {
        "width": {"drafts": 3, "critiques": 1, "edits": 1},
        "roles": {"judge": {"kind": "pairwise"}},
    }
    sim.set_faults([Fault("500", rate=1.0, match="[Response A]")])  # the judge is down
    try:
        run = await client.runs.create(
            thread["thread_id"], "feedback-edit", input=QUESTION, context=context
        )
        await client.runs.join(thread["thread_id"], run["run_id"])
        status = (await client.runs.get(thread["thread_id"], run["run_id"]))["status"]
        assert status == "error"
    finally:
        sim.set_faults([])
    branch_calls = [r for r in sim.requests if "[Response A]" not in json.dumps(r.body)]
    out: Any = await client.runs.wait(thread["thread_id"], "feedback-edit", input=None)
    assert out["trace"]["selected"]
    again = [r for r in sim.requests if "[Response A]" not in json.dumps(r.body)]
    assert len(again) == len(branch_calls)  # the tree was not bought twice
    state = await client.threads.get_state(thread["thread_id"])
    assert state["values"]["trace"]["judge"] == "pairwise"


async def test_clients_cannot_redirect_calls_or_keys(server: str, sim: SimServer) -> None:
    """A client's context may not point calls elsewhere or pick a key variable: the run fails
    saying which key is refused, and the listener it named hears nothing."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    client = get_client(url=server)
    thread = await client.threads.create()
    context = {
        "roles": {"draft": {"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": "PATH"}}
    }
    run = await client.runs.create(thread["thread_id"], "single", input=QUESTION, context=context)
    result = await client.runs.join(thread["thread_id"], run["run_id"])
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "error"
    error = json.dumps(result)
    assert "cannot be set per run" in error and "roles.draft." in error
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()
    # sampling and width stay the client's to choose
    out: Any = await client.runs.wait(
        None,
        "single",
        input=QUESTION,
        context={"roles": {"draft": {"temperature": 0.2}}, "width": {"drafts": 1}},
    )
    assert out["trace"]["selected"] == "d0"


async def test_thread_state_cannot_redirect_calls_or_keys(server: str, sim: SimServer) -> None:
    """Thread state is client-writable: a run spec rewritten with ``update_state``, or sent to
    a branch with a ``Command``, may not point calls at another host with the operator's key.
    The state shows no endpoint or key variable to begin with."""
    import copy
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    host = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    client = get_client(url=server)
    thread = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread, "best-of-n", input=QUESTION, context={"width": {"drafts": 2}})
    values = (await client.threads.get_state(thread))["values"]
    shown = json.dumps(values["feedit_spec"])
    for name in (sim.base_url, SERVER_KEY_VAR, "api_key_env", "base_url", "sim-model"):
        assert name not in shown
    forged = copy.deepcopy(values["feedit_spec"])
    forged["roles"]["draft"].update(base_url=host, api_key_env=SERVER_KEY_VAR)

    async def refused(**kwargs: Any) -> str:
        run = await client.runs.create(thread, "best-of-n", **kwargs)
        result = json.dumps(await client.runs.join(thread, run["run_id"]))
        assert (await client.runs.get(thread, run["run_id"]))["status"] == "error"
        # A thread keeps its failed tasks: a later run retries them first and may fail on them.
        assert "cannot be set per run" in result or "other endpoints" in result
        return result

    before = sim.call_count
    # the digest of another endpoint in place of the operator's
    other = copy.deepcopy(values["feedit_spec"])
    other["endpoints"]["draft"] = "0" * 24
    goto = {"node": "draft_branch", "input": {"spec": other, "index": 0, "round": 0}}
    assert "other endpoints" in await refused(command={"goto": goto})
    goto = {"node": "draft_branch", "input": {"spec": forged, "index": 0, "round": 0}}
    await refused(command={"goto": goto})
    from langgraph_sdk.errors import BadRequestError

    # Written as ``start``: refused by the write itself (its edge finds no run of this graph).
    with pytest.raises(BadRequestError, match="not started by this graph"):
        await client.threads.update_state(
            thread, {"feedit_spec": {**forged, "key": "forged"}}, as_node="start"
        )
    # Written as a branch: the next run's ``select`` rebuilds the spec and refuses it.
    await client.threads.update_state(
        thread, {"feedit_spec": {**forged, "key": "forged"}}, as_node="draft_branch"
    )
    await refused(input=None)
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()
    assert sim.call_count == before  # and no call went to the operator's endpoint either


async def test_context_keys_are_checked_as_in_process(server: str, sim: SimServer) -> None:
    """An unknown context key fails the run naming it (the server used to drop it silently);
    the short names (``drafts``) count, as in the door."""
    client = get_client(url=server)
    thread = (await client.threads.create())["thread_id"]
    run = await client.runs.create(
        thread, "best-of-n", input=QUESTION, context={"widht": {"drafts": 2}}
    )
    result = await client.runs.join(thread, run["run_id"])
    assert "widht" in json.dumps(result)
    out: Any = await client.runs.wait(
        None,
        "best-of-n",
        input={"messages": [{"role": "user", "content": "Name a prime."}]},
        context={"drafts": 3},
    )
    assert [n["kind"] for n in out["trace"]["nodes"]] == ["draft"] * 3


async def test_a_repeated_question_draws_new_samples(server: str, sim: SimServer) -> None:
    """Serving keeps no call cache unless the operator sets one (``FEEDIT_SERVE_CACHE``): a
    chat UI's "regenerate" makes the calls again, and streams their tokens again."""
    client = get_client(url=server)
    question = {"messages": [{"role": "user", "content": "Name a colour."}]}
    counts = []
    for _ in range(2):
        before = sim.call_count
        await client.runs.wait(None, "best-of-n", input=question, context={"drafts": 2})
        counts.append(sim.call_count - before)
    assert counts == [2 + 2, 2 + 2]  # two drafts and two scores, each time


async def test_failed_run_says_why_and_resumes(server: str, sim: SimServer) -> None:
    """Every branch fails (the backend is down): the client is told why; once the backend is
    back, resuming the thread makes exactly the failed calls and finishes."""
    client = get_client(url=server)
    thread = await client.threads.create()
    question = {"messages": [{"role": "user", "content": "Explain gossip protocols."}]}
    sim.set_faults([Fault("500", rate=1.0)])
    try:
        run = await client.runs.create(
            thread["thread_id"], "best-of-n", input=question, context={"width": {"drafts": 3}}
        )
        result = await client.runs.join(thread["thread_id"], run["run_id"])
    finally:
        sim.set_faults([])
    error = json.dumps(result)
    assert "no candidate answer" in error and "An internal error occurred" not in error
    assert "d0:" in error and "500" in error
    before = sim.call_count
    out: Any = await client.runs.wait(thread["thread_id"], "best-of-n", input=None)
    assert out["trace"]["selected"] in {"d0", "d1", "d2"}
    # three drafts again, then the judge's three scores
    assert sim.call_count - before == 3 + 3
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == []


async def test_events_stream_at_width(server: str) -> None:
    """LangGraph Server's ``events`` mode at width 2 (it failed with InvalidUpdateError)."""
    client = get_client(url=server)
    kinds: dict[str, int] = {}
    async for part in client.runs.stream(
        None,
        "feedback-edit",
        input={"messages": [{"role": "user", "content": "Explain Lamport clocks."}]},
        context={"width": {"drafts": 2, "critiques": 1, "edits": 1}},
        stream_mode="events",
    ):
        if part.event == "error":
            raise AssertionError(part.data)
        if part.event == "events":
            kinds[part.data["event"]] = kinds.get(part.data["event"], 0) + 1
    # 2 drafts, 2 critiques, 2 edits and 4 judge ratings, each a chat-model run
    assert kinds.get("on_chat_model_end") == 10
    assert kinds.get("on_chat_model_stream", 0) >= 10
