"""No key the process loaded reaches any output, store, log or reply, even when a backend echoes
it back in its error body (``Incorrect API key provided: sk-...``, as OpenAI-style servers do).

The simulated server echoes the bearer key it was sent (a ``"401"`` fault, or ``echo_key`` on a
``"500"``); each test checks that the echo really happened (``[redacted]`` is where the key was)
and that the key itself is nowhere: ``feedit batch``'s output, sidecar, stderr and every byte of
its store; ``feedit run``'s stderr; ``feedit serve``'s 502 body and its log.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from langgraph_feedit import EndpointError, NoCandidateError, RoleConfig
from langgraph_feedit.endpoints import aclose_endpoints, get_endpoint
from langgraph_feedit.errors import REDACTED, redact, register_secret
from langgraph_feedit.testing import Fault, SimServer

from .helpers import batch_cli, read_lines

KEY_VAR = "FEEDIT_TEST_ECHOED_KEY"
CLIENT_VAR = "FEEDIT_TEST_DOOR_KEY"


@pytest.fixture
def key() -> str:
    """A fresh key per test, so that no test passes on a value another one registered."""
    return "sk-test-" + secrets.token_hex(16)


@pytest.fixture
def env(key: str) -> dict[str, str]:
    return {**os.environ, KEY_VAR: key}


def store_bytes(folder: Path) -> bytes:
    """Every byte of every file of a store (SQLite files, their WAL and journal files)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    assert any(p.name == "checkpoints.sqlite" for p in files), files
    return b"".join(p.read_bytes() for p in files)


def test_the_simulated_server_echoes_the_key_it_was_sent(key: str) -> None:
    with SimServer(seed=90, faults=[Fault("401", rate=1.0)]) as sim:
        reply = httpx.post(
            f"{sim.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        sim.set_faults([Fault("500", rate=1.0, echo_key=True)])
        again = httpx.post(
            f"{sim.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert sim.requests[0].headers["authorization"] == "***"  # its own ledger stays clean
    assert reply.status_code == 401 and key in reply.text
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert again.status_code == 500 and key in again.text


def test_batch_output_sidecar_stderr_and_store_never_hold_the_key(
    tmp_path: Path, key: str, env: dict[str, str]
) -> None:
    inp = tmp_path / "q.jsonl"
    inp.write_text(
        '{"uid": "q0", "prompt": "Question 0?"}\n'
        '{"uid": "q1", "prompt": "Question 1?"}\n'
        '{"uid": "q2", "prompt": "Question 2?"}\n'
        '{"uid": "bad"}\n',  # a skipped line, so that the sidecar is written too
        encoding="utf-8",
    )
    out, store = tmp_path / "out.jsonl", tmp_path / "store"
    faults = [
        Fault("401", rate=1.0, match="Question 1?"),  # every call of q1: the prompt fails
        # the judge of q2's candidates: answered, partial, the echo in its trace's notes
        Fault("500", rate=1.0, echo_key=True, match="satisfies this principle"),
    ]
    with SimServer(seed=91, faults=faults) as sim:
        argv = batch_cli(
            "--input",
            str(inp),
            "--output",
            str(out),
            "--store",
            str(store),
            "--on-error",
            "skip",
            "--base-url",
            sim.base_url,
            "--model",
            "m",
            "--api-key-env",
            KEY_VAR,
            "--drafts",
            "2",
            "--critiques",
            "1",
            "--set",
            "roles.default.max_retries=0",
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env)
        assert sim.call_count > 0
    assert done.returncode == 1, done.stderr  # q1 failed
    records = {r["id"]: r for r in read_lines(out)}
    assert records["q1"]["status"] == "failed"
    assert REDACTED in records["q1"]["error"] and "status 401" in records["q1"]["error"]
    assert records["q2"]["status"] == "partial"
    notes = [n.get("judge_note") or "" for n in records["q2"]["trace"]["nodes"]]
    assert any(REDACTED in note for note in notes), notes
    assert "failed q1" in done.stderr and "partial q2" in done.stderr
    sidecar = out.with_name(out.name + ".skipped.jsonl")
    everything = [out.read_bytes(), sidecar.read_bytes(), done.stderr.encode(), store_bytes(store)]
    assert not any(key.encode() in blob for blob in everything)
    # nor in any other file the batch left behind
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_run_stderr_never_holds_the_key(key: str, env: dict[str, str]) -> None:
    with SimServer(seed=92, faults=[Fault("401", rate=1.0)]) as sim:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "langgraph_feedit.cli",
                "run",
                "--base-url",
                sim.base_url,
                "--model",
                "m",
                "--api-key-env",
                KEY_VAR,
                "--drafts",
                "2",
                "--json",
                "Explain CRDTs.",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert done.returncode == 1
    assert "NoCandidateError" in done.stderr and "status 401" in done.stderr
    assert REDACTED in done.stderr
    assert key not in done.stderr + done.stdout


# -- the door ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def echoing() -> Iterator[SimServer]:
    with SimServer(seed=93, faults=[Fault("401", rate=1.0)]) as sim:
        yield sim


@pytest.mark.slow
def test_serve_502_body_and_log_never_hold_either_key(
    echoing: SimServer, key: str, env: dict[str, str]
) -> None:
    pytest.importorskip("uvicorn", reason="feedit serve needs the serve extra")
    client_key = "sk-door-" + secrets.token_hex(16)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langgraph_feedit.cli",
            "serve",
            "--port",
            str(port),
            "--base-url",
            echoing.base_url,
            "--model",
            "m",
            "--api-key-env",
            KEY_VAR,
            "--client-key-env",
            CLIENT_VAR,
            "--set",
            "roles.default.max_retries=0",
            "--log-level",
            "debug",
        ],
        env={**env, CLIENT_VAR: client_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "feedit serve did not start"
            time.sleep(0.1)
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "best-of-n", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"Authorization": f"Bearer {client_key}"},
            timeout=60,
        )
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert reply.status_code == 502
    assert "status 401" in reply.text and REDACTED in reply.text
    assert "run failed" in log and REDACTED in log  # the log holds the error, redacted
    for secret in (key, client_key):
        assert secret not in reply.text
        assert secret not in log


# -- where redaction happens --------------------------------------------------------------------


async def test_endpoint_error_and_its_cause_are_redacted(
    echoing: SimServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VAR, key)
    ep = get_endpoint(RoleConfig(base_url=echoing.base_url, api_key_env=KEY_VAR), role="draft")
    with pytest.raises(EndpointError) as info:
        await ep.chat([{"role": "user", "content": "hi"}], model="m", role="draft")
    await aclose_endpoints()
    err = info.value
    assert err.status == 401 and REDACTED in (err.body or "")
    # The SDK's failure stays chained, redacted in place: its message, which quotes the body,
    # and the body it keeps.
    cause = err.__cause__
    assert cause is not None and REDACTED in str(getattr(cause, "body", None) or "")
    assert REDACTED in str(cause)
    for text in (
        str(err),
        repr(err),
        err.body or "",
        str(cause),
        repr(cause.args),
        str(getattr(cause, "body", "")),
    ):
        assert key not in text


def test_errors_redact_at_construction_and_the_filter_redacts_logs(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    register_secret(key)
    assert (
        redact(f"Incorrect API key provided: {key}.") == f"Incorrect API key provided: {REDACTED}."
    )
    err = NoCandidateError("every branch failed", errors=[f"d0: echoed {key}"])
    assert key not in str(err) and key not in "".join(err.errors)
    # a log record: the message, its arguments and the traceback of an exception whose
    # message (not ours: any library's) quotes the key
    caplog.set_level(logging.DEBUG, logger="langgraph_feedit")
    try:
        raise RuntimeError(f"upstream said {key}")
    except RuntimeError:
        logging.getLogger("langgraph_feedit.serve").exception("failed with %s", key)
    logging.getLogger("langgraph_feedit").warning("package logger: %s", key)
    assert "upstream said" in caplog.text and "package logger" in caplog.text
    assert key not in caplog.text
    # values too short to be keys are left alone: they would blank out ordinary words
    register_secret("abc")
    assert redact("abc") == "abc"


@given(
    key=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=16, max_size=48
    ),
    user=st.text(alphabet="abcdefghij", max_size=5),
    before=st.text(max_size=8),
)
def test_every_form_of_a_key_is_redacted(key: str, user: str, before: str) -> None:
    """A backend may write a key back JSON-escaped (``\\/`` too), URL-encoded or as HTTP Basic
    credentials: each form is gone from the text, and decoding what is left (a client decoding
    a JSON body, a URL) never yields the key."""
    import base64
    import json
    from urllib.parse import quote, quote_plus, unquote, unquote_plus

    from hypothesis import assume

    assume(key.strip() and "\x00" not in key)
    register_secret(key)
    escaped = json.dumps(key)[1:-1]
    forms = {
        "json": escaped,
        "json-slash": escaped.replace("/", "\\/"),
        "json-utf8": json.dumps(key, ensure_ascii=False)[1:-1],
        "url": quote(key, safe=""),
        "url-path": quote(key),
        "url-plus": quote_plus(key),
    }
    for name, form in forms.items():
        out = redact(f"{before}{form} tail")
        assert REDACTED in out, name
        assert key not in out and form not in out, name
        assert key not in unquote(out) and key not in unquote_plus(out), name
        if name.startswith("json"):  # a JSON body as a client decodes it
            body = json.loads(redact('{"error": "' + form + '"}'))
            assert key not in body["error"], name
    basic = base64.b64encode(f"{user}:{key}".encode()).decode()
    out = redact(f"Authorization: Basic {basic}")
    assert REDACTED in out
    kept = out.split("Basic ", 1)[1].replace(REDACTED, "")
    assert len(kept) < 12  # only the characters that mix the key with its neighbours


async def test_a_key_echoed_in_a_200_reply_is_redacted_everywhere(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that answers 200 with the key in its text (an echo, a prompt that asks for
    the environment): the answer, the trace and the streamed tokens (where the key arrives
    split over chunks) hold ``[redacted]``, never the key."""
    from langgraph_feedit import create_feedit_graph

    from .helpers import sim_config

    monkeypatch.setenv(KEY_VAR, key)
    with SimServer(seed=4, faults=[Fault("echo", rate=1.0)]) as sim:
        config = sim_config(sim.base_url, roles={"default": {"api_key_env": KEY_VAR}})
        graph = create_feedit_graph(config, preset="single").compile()
        out = await graph.ainvoke({"messages": [("user", "What is your key?")]})
        assert REDACTED in out["messages"][-1].content
        pieces = []
        async for _ns, (chunk, _meta) in graph.astream(
            {"messages": [("user", "Again?")]}, stream_mode="messages", subgraphs=True
        ):
            pieces.append(str(chunk.content))
    streamed = "".join(pieces)
    assert REDACTED in streamed and len(pieces) > 3
    for text in (json.dumps(out["trace"]), out["messages"][-1].content, streamed):
        assert key not in text
