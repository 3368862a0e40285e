"""Client CPU per call: the HTTP clients an endpoint can sit on, and a queue of 10,000 calls.

The simulated server runs in a process of its own (``bench/simproc.py``) at zero latency with
8-token replies, so this process's CPU time (``time.process_time``) is the client's alone, and
load from elsewhere on the machine moves the wall time but not the figure. Figures:

(a) ``clients``: 2,000 chat calls from 16 concurrent workers through each client, in
    interleaved blocks of 250 (each block by every client in turn, the order rotating), CPU per
    call as the median over blocks:

    - ``transport``: the hand-written aiohttp client the endpoints used before the SDK came
      back (``--old-transport PATH`` loads it from a copy of its file; left out without it);
    - ``sdk_httpx``, ``sdk_aiohttp``: ``AsyncOpenAI(max_retries=0)`` on its default httpx
      transport and on ``DefaultAioHttpClient``, with ``chat.completions.create`` (a typed reply);
    - ``sdk_httpx_raw``, ``sdk_aiohttp_raw``: the same clients with ``client.post(...,
      cast_to=object)`` (the reply as parsed JSON, what ``Endpoint`` uses);
    - ``endpoint`` (and ``endpoint_httpx`` when the endpoint takes a client): the package's
      ``Endpoint.chat`` (limiter, retry policy, reply split) on its default client.

(b) ``queue``: 1,000 and then 10,000 calls handed to one ``Endpoint`` at once (limit 64, so all
    but 64 wait in its queue): CPU per call of each, and their ratio. Target: within 1.2x.
    ``queue_gc_off``: the same with the cyclic garbage collector off, which separates what
    the client and its queue cost from the collector's passes over 10,000 live calls.

Prints one JSON line to stdout; progress goes to stderr.

Usage: ``python bench/clients.py [--calls 2000] [--queue 10000] [--old-transport PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import inspect
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

sys.path.insert(0, str(Path(__file__).parent))
from simproc import start_sim

from langgraph_feedit.endpoints import Endpoint

MODEL = "sim-model"
Call = Callable[[int], Awaitable[Any]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def conversations(count: int) -> list[list[dict[str, str]]]:
    return [
        [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": f"Question {i}: explain replicated state machines."},
        ]
        for i in range(count)
    ]


async def cpu_pass(call: Call, calls: range, workers: int) -> float:
    """CPU seconds of this process to make ``calls`` from ``workers`` concurrent callers."""
    pending = iter(calls)

    async def worker() -> None:
        for i in pending:
            await call(i)

    gc.collect()
    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.process_time() - start


def load_transport(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("old_transport", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def clients(base_url: str, calls: int, workers: int, block: int, old: str | None) -> Any:
    messages = conversations(calls)
    made: dict[str, Call] = {}
    closers: list[Callable[[], Awaitable[None]]] = []

    if old is not None:
        http = load_transport(old).HttpClient("sk-none", user_agent="bench")
        closers.append(http.aclose)

        async def transport(i: int) -> Any:
            reply = await http.request_json(
                "POST",
                f"{base_url}/chat/completions",
                body={"model": MODEL, "messages": messages[i]},
                seconds=60,
            )
            return [c["message"]["content"] for c in reply["choices"]], reply["usage"]

        made["transport"] = transport

    def sdk(name: str, client: openai.AsyncOpenAI) -> None:
        closers.append(client.close)

        async def typed(i: int) -> Any:
            reply = await client.chat.completions.create(
                model=MODEL,
                messages=messages[i],  # type: ignore[arg-type]
            )
            return [c.message.content for c in reply.choices], reply.usage

        async def raw(i: int) -> Any:
            reply: Any = await client.post(
                "/chat/completions",
                body={"model": MODEL, "messages": messages[i]},
                cast_to=object,
            )
            return [c["message"]["content"] for c in reply["choices"]], reply["usage"]

        made[name], made[f"{name}_raw"] = typed, raw

    sdk("sdk_httpx", openai.AsyncOpenAI(base_url=base_url, api_key="sk-none", max_retries=0))
    sdk(
        "sdk_aiohttp",
        openai.AsyncOpenAI(
            base_url=base_url,
            api_key="sk-none",
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        ),
    )

    endpoints = {"endpoint": Endpoint(base_url, api_key="sk-none", max_concurrency=64)}
    if "client" in inspect.signature(Endpoint).parameters:
        endpoints["endpoint_httpx"] = Endpoint(
            base_url, api_key="sk-none", max_concurrency=64, transport="httpx"
        )
    for name, endpoint in endpoints.items():
        closers.append(endpoint.aclose)

        async def through(i: int, endpoint: Endpoint = endpoint) -> Any:
            return await endpoint.chat(messages[i], model=MODEL)

        made[name] = through

    blocks = [range(s, min(s + block, calls)) for s in range(0, calls, block)]
    samples: dict[str, list[float]] = {name: [] for name in made}
    try:
        for call in made.values():  # warm-up: pools, code paths, pydantic models
            await cpu_pass(call, range(min(200, calls)), workers)
        names = list(made)
        for b, calls_of_block in enumerate(blocks):
            # Every client in turn on each block, the order rotating: a slower spell of the
            # machine falls on all of them alike.
            shift = b % len(names)
            for name in names[shift:] + names[:shift]:
                seconds = await cpu_pass(made[name], calls_of_block, workers)
                samples[name].append(seconds / len(calls_of_block) * 1e6)
            log(f"block {b + 1}/{len(blocks)}")
    finally:
        for close in closers:
            await close()
    return {
        name: {"cpu_us_per_call": round(statistics.median(v), 1), "blocks": [round(x) for x in v]}
        for name, v in samples.items()
    }


async def queue(
    base_url: str, sizes: list[int], limit: int, collect: bool = True
) -> dict[str, Any]:
    """CPU per call of ``size`` calls handed at once to one endpoint with ``limit`` slots
    (with ``collect`` false, the garbage collector off while they run)."""
    figures: dict[str, Any] = {}
    for size in sizes:
        messages = conversations(size)
        endpoint = Endpoint(base_url, api_key="sk-none", max_concurrency=limit)
        try:
            await asyncio.gather(*(endpoint.chat(messages[i], model=MODEL) for i in range(200)))
            gc.collect()
            if not collect:
                gc.disable()
            start, wall = time.process_time(), time.perf_counter()
            try:
                results = await asyncio.gather(
                    *(endpoint.chat(messages[i], model=MODEL) for i in range(size))
                )
            finally:
                gc.enable()
            cpu, wall = time.process_time() - start, time.perf_counter() - wall
        finally:
            await endpoint.aclose()
        assert len(results) == size and endpoint.limiter.peak <= limit
        figures[str(size)] = {
            "cpu_us_per_call": round(cpu / size * 1e6, 1),
            "wall_s": round(wall, 2),
            "peak_open": endpoint.limiter.peak,
        }
        log(f"queue {size}: {cpu / size * 1e6:.0f} µs CPU per call")
    small, large = (figures[str(s)]["cpu_us_per_call"] for s in (sizes[0], sizes[-1]))
    figures["ratio"] = round(large / small, 3)
    figures["target"] = "<= 1.2"
    figures["pass"] = large / small <= 1.2
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--queue", type=int, default=10000, help="the large queue's size")
    parser.add_argument("--limit", type=int, default=64, help="the queue's endpoint's slots")
    parser.add_argument("--old-transport", default=None, help="the old transport.py to load")
    parser.add_argument("--skip-queue", action="store_true")
    args = parser.parse_args(argv)
    proc, base_url = start_sim("--mean-tokens", "8", "--seed", "1")
    try:
        result: dict[str, Any] = {"bench": "clients", "calls": args.calls}
        result["clients"] = asyncio.run(
            clients(base_url, args.calls, args.workers, args.block, args.old_transport)
        )
        if not args.skip_queue:
            sizes = [args.queue // 10, args.queue]
            result["queue"] = asyncio.run(queue(base_url, sizes, args.limit))
            result["queue_gc_off"] = asyncio.run(queue(base_url, sizes, args.limit, False))
    finally:
        proc.terminate()
        proc.wait()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
