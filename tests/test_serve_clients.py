"""The clients people point at an OpenAI-compatible server, against the real door (uvicorn on
127.0.0.1, the simulated server behind it), each used the way its own documentation teaches:
the official Python client's streaming loop, langchain-openai's ``ChatOpenAI``, litellm, and
the official Node client when node and its ``openai`` package are on the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from openai import OpenAI

from langgraph_feedit import Trace
from langgraph_feedit.serve import build_app, serve_in_thread
from langgraph_feedit.testing import SimServer

from .helpers import sim_config

NODE_DIR = Path(__file__).resolve().parent / "node"
QUESTION = "Explain CRDTs briefly."


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(seed=17) as server:
        yield server


@pytest.fixture(scope="module")
def url(sim: SimServer) -> Iterator[str]:
    # Seeded drafts, and a cache key that fixes every other call's seed: each client's run of
    # the same request draws the same samples, so their answers can be compared.
    config = sim_config(
        sim.base_url, width={"drafts": 2}, roles={"draft": {"seed": 0}}, cache_key="clients"
    )
    with serve_in_thread(build_app(config)) as base_url:
        yield base_url


def expected_answer(url: str, model: str) -> str:
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}]
    )
    return reply.choices[0].message.content or ""


# -- the official Python client ---------------------------------------------------------------


@pytest.mark.parametrize("progress", [None, True])
@pytest.mark.parametrize("model", ["single", "feedback-edit"])
def test_documented_streaming_loop(url: str, model: str, progress: bool | None) -> None:
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)
    extra = {} if progress is None else {"feedit": {"progress": progress}}
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        extra_body=extra,
    )
    text = ""
    finish = None
    # As in the client's README: no guard on `choices`.
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == expected_answer(url, model)
    assert finish == "stop"


# -- langchain-openai -------------------------------------------------------------------------


def chat_model(url: str, model: str = "best-of-n", **kw: Any) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=url, api_key="unused", model=model, max_retries=0, **kw)


def test_langchain_chat_openai_invoke_and_usage(url: str, sim: SimServer) -> None:
    conversation: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    # The same request through the official client, with the trace (langchain-openai keeps no
    # field it does not know): the simulated backend answers a request the same way each time.
    direct = OpenAI(base_url=url, api_key="unused", max_retries=0).chat.completions.create(
        model="best-of-n", messages=conversation, extra_body={"feedit": {"trace": True}}
    )
    trace = Trace.model_validate((direct.model_extra or {})["feedit_trace"])
    sim.reset_stats()
    reply = chat_model(url).invoke([("system", "Be brief."), ("user", QUESTION)])
    assert reply.content == trace.answer
    total = trace.usage["total"]
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] == total["prompt_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] == total["completion_tokens"] > 0
    assert sim.call_count == total["calls"] == 4  # two drafts and their judge calls
    assert reply.response_metadata["finish_reason"] == "stop"


def test_langchain_chat_openai_stream_and_batch(url: str) -> None:
    llm = chat_model(url, stream_usage=True)
    chunks = list(llm.stream(QUESTION))
    assert chunks and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    assert whole.content == expected_answer(url, "best-of-n")
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0
    answers = llm.batch([QUESTION, "Name a prime above 100."])
    assert answers[0].content == whole.content
    assert all(a.content and a.usage_metadata for a in answers)


async def test_langchain_chat_openai_async_stream(url: str) -> None:
    llm = chat_model(url, model="single")
    text = "".join([str(c.content) async for c in llm.astream(QUESTION)])
    assert text == expected_answer(url, "single")


# -- litellm ----------------------------------------------------------------------------------

# Run in a child process: litellm reads its settings at import, and the child records every
# connection it opens, to show that none leaves 127.0.0.1.
_LITELLM = textwrap.dedent(
    """
    import json, socket, sys

    outside = []

    def audit(event, args):
        if event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost"):
                outside.append(host)
        elif event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "localhost", "::1"):
            outside.append(str(args[0]))

    sys.addaudithook(audit)
    import litellm

    url, model, question = sys.argv[1:4]
    messages = [{"role": "user", "content": question}]
    plain = litellm.completion(
        model="openai/" + model, api_base=url, api_key="unused", messages=messages
    )
    text = ""
    finish = None
    for chunk in litellm.completion(
        model="openai/" + model, api_base=url, api_key="unused", messages=messages, stream=True
    ):
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    print(json.dumps({
        "plain": plain.choices[0].message.content,
        "usage": plain.usage.completion_tokens,
        "stream": text,
        "finish": finish,
        "outside": outside,
    }))
    """
)


@pytest.mark.slow
def test_litellm_completion_and_stream_stay_offline(url: str, tmp_path: Path) -> None:
    pytest.importorskip("litellm", reason="needs litellm (the 'test' extra)")
    env = {
        **os.environ,
        # litellm fetches its model price list from the network at import unless told not to.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LITELLM, url, "feedback-edit", QUESTION],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["outside"] == []
    expected = expected_answer(url, "feedback-edit")
    assert out["plain"] == out["stream"] == expected
    assert out["usage"] > 0 and out["finish"] == "stop"


# -- the official Node client -----------------------------------------------------------------


@pytest.mark.npm
def test_node_client_streaming_loop(url: str) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the Node client's check needs it")
    modules = Path(os.environ.get("FEEDIT_NODE_MODULES", NODE_DIR / "node_modules"))
    if not (modules / "openai" / "package.json").exists():
        pytest.skip(
            f"the openai npm package is not in {modules}: run `npm install --prefix tests/node` "
            "once (it needs the npm registry; the test itself does not)"
        )
    script = NODE_DIR / "stream.mjs"
    if modules != NODE_DIR / "node_modules":
        # ES modules resolve packages from the script's folder: run a copy beside the modules.
        script = Path(shutil.copy(script, modules.parent / "feedit-stream.mjs"))
    proc = subprocess.run(
        [node, str(script), url, "feedback-edit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"text": expected_answer(url, "feedback-edit"), "finish": "stop"}
