"""What ``feedit serve`` adds over the graph in-process, and how it holds 200 streaming clients.

Three processes, so that none shares an interpreter lock with another: a ``SimServer`` backend
(5 ms to the first token, 16 tokens at 1,000 tokens/s, jitter 0.1, unlimited slots), the app
(``build_app`` under uvicorn, its default loop and HTTP parser, the start-up heap frozen as
``feedit serve`` does), and this script, which is the client and, for the in-process figures,
runs the same compiled graph itself. Every request is the ``feedback-edit`` preset with 2 drafts
x 1 critique x 1 edit and the LLM judge: 10 backend calls, 5 of them on the critical path. Both
sides run on uvloop when it is installed.

(a) ``sequential``: ``--requests`` requests one at a time each way, alternating in-process
    (``graph.ainvoke``) and served (``AsyncOpenAI.chat.completions.create`` against the app) on
    the same prompt, so both send the very same backend requests, whose simulated service times
    are seeded by the request body and so are equal too. Reported: median and p99 of each side,
    the difference of those, and the median and p99 of the paired differences (served minus
    in-process, prompt by prompt): the latency the door adds, client library included.
(b) ``concurrent_streaming``: ``--clients`` streaming requests at once (``stream=True``,
    official client), each on its own prompt: how many complete with the whole answer, p50 and
    p99 of the time to the first progress chunk and to the end of the stream, and the wall time
    of the lot. Then, under ``in_process``, the same prompts at once through the graph's own
    ``astream`` with the stream modes the app uses, in this process; and under ``raw_http``, the
    same streams to the app through plain ``httpx``, which leaves out the OpenAI SDK's own work
    on the client side (it shares these cores). The app's process CPU time is reported for the
    sequential phase (per request) and the official clients' streams. With the backend this
    fast, the app's single event loop is the bottleneck (one core), so the runs advance in
    lockstep and every first progress event waits for all the runs' starts.

(c) ``langgraph_dev``: the same ``--clients`` streams through ``langgraph dev`` (the in-memory
    LangGraph Server, started here on ``graphs/``, backed by the same simulated server) with
    the ``langgraph-sdk`` client, ``stream_mode="custom"`` with subgraphs: completions, p50/p99
    to the first progress event and to the end, and wall time. Skipped (``null``) when
    ``langgraph-cli[inmem]`` is not installed or with ``--skip-langgraph-dev``.

Prints one JSON line to stdout; progress goes to stderr.

Usage: ``python bench/serve.py [--requests 200] [--clients 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

from langgraph_feedit import FeeditConfig, create_feedit_graph
from langgraph_feedit.serve import build_app, serve_in_thread

PRESET = "feedback-edit"
WIDTH = {"drafts": 2, "critiques": 1, "edits": 1}
SIM = {"ttft": 0.005, "rate": 1000.0, "mean_tokens": 16, "jitter": 0.1}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_config(sim_url: str, max_concurrency: int) -> FeeditConfig:
    """Every role on the simulated server; the same settings in-process and behind the door."""
    default = {
        "base_url": sim_url,
        "model": "sim-model",
        "max_concurrency": max_concurrency,
        "timeout": 120.0,
        "max_retries": 2,
        "backoff": 0.05,
    }
    return FeeditConfig.load(env={}, overrides={"roles": {"default": default}})


def conversation(i: int) -> list[Any]:
    return [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": f"Question {i}: explain replicated state machines."},
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating between the two nearest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values) * 1000, 2),
        "p90": round(percentile(values, 90) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
    }


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (Linux ``/proc``), or ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- processes ----------------------------------------------------------------------------------


def start_json_child(cmd: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise SystemExit(f"{cmd[2]} did not start (exit status {proc.returncode})")
    return proc, str(json.loads(line)["base_url"])


def start_sim() -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "langgraph_feedit.testing", "--seed", "3"]
    for key, value in SIM.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return start_json_child(cmd)


def start_door(sim_url: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, __file__, "--door", sim_url]
    cmd += ["--max-concurrency", str(args.max_concurrency)]
    return start_json_child(cmd)


def run_door(sim_url: str, max_concurrency: int) -> int:
    """The app's process: serve until SIGTERM, after printing ``{"base_url": ...}``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    app = build_app(bench_config(sim_url, max_concurrency))
    # As `feedit serve` does (run_serve): long-lived startup objects out of the collector's way.
    gc.collect()
    gc.freeze()
    with serve_in_thread(app) as url:
        print(json.dumps({"base_url": url}), flush=True)
        stop.wait()
    return 0


GRAPHS = Path(__file__).resolve().parent.parent / "graphs"


def start_langgraph_dev(sim_url: str, max_concurrency: int) -> tuple[subprocess.Popen[str], str]:
    """``langgraph dev`` on ``graphs/`` with every role on the simulated server."""
    cli = Path(sys.executable).parent / "langgraph"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "FEEDIT_ROLES__DEFAULT__BASE_URL": sim_url,
        "FEEDIT_ROLES__DEFAULT__MODEL": "sim-model",
        "FEEDIT_ROLES__DEFAULT__MAX_CONCURRENCY": str(max_concurrency),
        "LANGSMITH_TRACING": "false",
    }
    proc = subprocess.Popen(
        [
            str(cli),
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
        ],
        cwd=GRAPHS,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop(proc)
    raise SystemExit("langgraph dev did not start")


async def langgraph_dev_streams(url: str, clients: int) -> dict[str, Any]:
    from langgraph_sdk.client import LangGraphClient

    # The SDK's default client has a 5 s pool timeout and httpx's 100-connection pool: with 200
    # streams at once, half would time out waiting for a connection, measuring the client.
    client = LangGraphClient(
        httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(300.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )
    )

    async def one(i: int) -> tuple[float, float]:
        started = time.perf_counter()
        first: float | None = None
        answered = False
        async for part in client.runs.stream(
            None,
            PRESET,
            input={"messages": conversation(200_000 + i)},
            context={"width": WIDTH},
            stream_mode=["custom", "values"],
            stream_subgraphs=True,
        ):
            if part.event.startswith("custom") and first is None:
                first = time.perf_counter() - started
            elif part.event == "values" and isinstance(part.data, dict) and part.data.get("trace"):
                answered = True
        if first is None or not answered:
            raise RuntimeError(f"langgraph dev stream {i} ended without progress or answer")
        return first, time.perf_counter() - started

    return await concurrent_streams(one, clients)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- measurements -------------------------------------------------------------------------------


async def sequential(
    inproc: Callable[[int], Awaitable[str]],
    served: Callable[[int], Awaitable[str]],
    requests: int,
) -> dict[str, Any]:
    for i in range(10):  # warm both paths (connection pools, first-call imports) untimed
        await inproc(-1 - i)
        await served(-1 - i)
    ours: list[float] = []
    theirs: list[float] = []
    same = 0
    for i in range(requests):
        # Alternate which side goes first, so drift in the machine's speed favours neither.
        order = (inproc, served) if i % 2 == 0 else (served, inproc)
        answers: dict[Any, str] = {}
        for call in order:
            started = time.perf_counter()
            answers[call] = await call(i)
            (ours if call is inproc else theirs).append(time.perf_counter() - started)
        same += answers[inproc] == answers[served]
        if (i + 1) % 50 == 0:
            log(f"sequential {i + 1}/{requests}")
    paired = [s - o for s, o in zip(theirs, ours, strict=True)]
    in_ms, out_ms = summary_ms(ours), summary_ms(theirs)
    return {
        "requests": requests,
        "same_answers": same,
        "in_process_ms": in_ms,
        "served_ms": out_ms,
        "added_ms": {k: round(out_ms[k] - in_ms[k], 2) for k in in_ms},
        "added_paired_ms": summary_ms(paired),
    }


async def served_stream(client: AsyncOpenAI, i: int) -> tuple[float, float]:
    """Seconds to the first progress chunk and to the end of one streamed request."""
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    finish = None
    stream = await client.chat.completions.create(
        model=PRESET,
        messages=conversation(100_000 + i),
        # Structured progress chunks (by default progress goes out as SSE comments, which
        # the client skips), so the time to the first one can be read here.
        extra_body={"feedit": {**WIDTH, "progress": True}},
        stream=True,
    )
    async for chunk in stream:
        if first is None and chunk.model_extra and "feedit" in chunk.model_extra:
            first = time.perf_counter() - started
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    if first is None or finish != "stop" or not "".join(parts):
        raise RuntimeError(f"stream {i} ended without progress, answer or stop")
    return first, time.perf_counter() - started


async def raw_stream(http: httpx.AsyncClient, door_url: str, i: int) -> tuple[float, float]:
    """As :func:`served_stream`, over plain HTTP: what the app costs without the SDK's own."""
    body = {
        "model": PRESET,
        "messages": conversation(100_000 + i),
        "feedit": WIDTH,
        "stream": True,
    }
    started = time.perf_counter()
    first: float | None = None
    done = False
    async with http.stream("POST", f"{door_url}/chat/completions", json=body) as reply:
        async for line in reply.aiter_lines():
            # Progress goes out as SSE comments (``: feedit {...}``) by default.
            if first is None and line.startswith(": feedit"):
                first = time.perf_counter() - started
            done = done or line == "data: [DONE]"
    if first is None or not done:
        raise RuntimeError(f"raw stream {i} ended without progress or [DONE]")
    return first, time.perf_counter() - started


async def concurrent_streams(
    one: Callable[[int], Awaitable[tuple[float, float]]], clients: int
) -> dict[str, Any]:
    started = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(clients)), return_exceptions=True)
    wall = time.perf_counter() - started
    done = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    for exc in failed[:3]:
        log(f"stream failed: {type(exc).__name__}: {exc}")
    return {
        "clients": clients,
        "completed": len(done),
        "first_progress_ms": summary_ms([d[0] for d in done]) if done else None,
        "complete_ms": summary_ms([d[1] for d in done]) if done else None,
        "wall_s": round(wall, 3),
    }


async def measure(sim_url: str, door_url: str, door_pid: int, args: argparse.Namespace) -> Any:
    graph = create_feedit_graph(bench_config(sim_url, args.max_concurrency), preset=PRESET)
    compiled = graph.compile()
    client = AsyncOpenAI(base_url=door_url, api_key="unused", max_retries=0, timeout=300.0)

    async def inproc(i: int) -> str:
        out = await compiled.ainvoke({"messages": conversation(i)}, context={"width": WIDTH})
        return str(out["messages"][-1].content)

    async def served(i: int) -> str:
        reply = await client.chat.completions.create(
            model=PRESET, messages=conversation(i), extra_body={"feedit": WIDTH}
        )
        return reply.choices[0].message.content or ""

    async def inproc_stream(i: int) -> tuple[float, float]:
        # What the app runs for a streaming request, without the app: the same stream modes.
        started = time.perf_counter()
        first: float | None = None
        final: Any = None
        async for namespace, mode, data in compiled.astream(
            {"messages": conversation(100_000 + i)},
            context={"width": WIDTH},
            stream_mode=["custom", "values"],
            subgraphs=True,
        ):
            if mode == "custom" and first is None:
                first = time.perf_counter() - started
            elif mode == "values" and not namespace:
                final = data
        if first is None or final is None or not final["messages"][-1].content:
            raise RuntimeError(f"in-process stream {i} ended without progress or answer")
        return first, time.perf_counter() - started

    try:
        cpu0 = cpu_seconds(door_pid)
        seq = await sequential(inproc, served, args.requests)
        cpu1 = cpu_seconds(door_pid)
        log(f"sequential: {json.dumps(seq)}")
        conc = await concurrent_streams(lambda i: served_stream(client, i), args.clients)
        cpu2 = cpu_seconds(door_pid)
        log(f"concurrent: {json.dumps(conc)}")
        conc["in_process"] = await concurrent_streams(inproc_stream, args.clients)
        log(f"concurrent in-process: {json.dumps(conc['in_process'])}")
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=300.0, limits=limits) as http:
            conc["raw_http"] = await concurrent_streams(
                lambda i: raw_stream(http, door_url, i), args.clients
            )
        log(f"concurrent raw HTTP: {json.dumps(conc['raw_http'])}")
    finally:
        await client.close()
    if cpu0 is not None and cpu1 is not None and cpu2 is not None:
        seq["door_cpu_ms_per_request"] = round((cpu1 - cpu0) / (args.requests + 10) * 1000, 2)
        conc["door_cpu_s"] = round(cpu2 - cpu1, 2)
    return seq, conc


def run_async(main: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main), "asyncio"  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main), "uvloop"  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="sequential requests each way")
    parser.add_argument("--clients", type=int, default=200, help="concurrent streaming clients")
    parser.add_argument(
        "--max-concurrency", type=int, default=256, help="calls in flight to the backend"
    )
    parser.add_argument(
        "--skip-langgraph-dev", action="store_true", help="leave out the langgraph dev figures"
    )
    parser.add_argument("--door", metavar="SIM_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.door:
        return run_door(args.door, args.max_concurrency)
    sim, sim_url = start_sim()
    try:
        door, door_url = start_door(sim_url, args)
        try:
            (seq, conc), loop = run_async(measure(sim_url, door_url, door.pid, args))
        finally:
            stop(door)
        dev: Any = None
        has_cli = (Path(sys.executable).parent / "langgraph").exists()
        if has_cli and not args.skip_langgraph_dev:
            server, dev_url = start_langgraph_dev(sim_url, args.max_concurrency)
            try:
                dev, _ = run_async(langgraph_dev_streams(dev_url, args.clients))
                log(f"langgraph dev: {json.dumps(dev)}")
            finally:
                stop(server)
    finally:
        stop(sim)
    result = {
        "bench": "serve",
        "cores": os.cpu_count(),
        "loop": loop,
        "backend": {"sim": SIM, "process": "separate"},
        "preset": PRESET,
        "feedit": WIDTH,
        "calls_per_request": 10,
        "sequential": seq,
        "concurrent_streaming": conc,
        "langgraph_dev": dev,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
