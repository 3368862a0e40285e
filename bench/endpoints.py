"""Client overhead of ``Endpoint.chat`` against the bare OpenAI client, and the embedded endpoint.

(a) The same 2,000 chat calls go to a zero-latency ``SimServer`` (no time to first token, infinite
decode rate, 8-token replies) through ``langgraph_feedit.endpoints.Endpoint.chat`` and through a
bare ``openai.AsyncOpenAI`` (``max_retries=0``), one call at a time and from 16 concurrent
workers. With nothing to wait for, each pass is pure client and server CPU, so the difference
per call is what our layer (limiter, tenacity, parameter handling, result parsing) adds on top
of the SDK. Each pass of the 2,000 calls is sent in blocks of 250, each block by both clients
back to back (which goes first alternates), so both sample the same stretches of a machine whose
speed drifts; the server's request log and prefix cache are reset before every block, so both
clients meet the same server state. Per-call times are medians over the repetitions' passes;
the overhead (ours - bare) and the ratio are medians over the paired blocks, since load from
elsewhere on the machine moves both clients together within a block but not across blocks.

The server runs in a thread of this process, so it shares the CPU (and the GIL) with whichever
client is being measured; both clients see that equally, so the difference and the ratio hold
even though absolute per-call times are higher than against an out-of-process server.

(b) The embedded endpoint's decode speed over HTTP against llama-cpp-python in-process, from
``bench/endpoints_embedded.py`` run as a child process (it loads the model, which must not share
this process or its cores with the passes above); its JSON line is folded in under
``"embedded"``. ``--skip-embedded`` leaves it out.

(c) ``cpu``: ``bench/clients.py`` run as a child process (its server in a process of its own):
client CPU per call of the hand-written transport the endpoints used before the SDK
(``--old-transport PATH``), the SDK on httpx and on aiohttp, typed and as plain JSON, and
``Endpoint.chat`` on each; and 1,000 against 10,000 queued calls. ``--skip-cpu`` leaves it out.

Prints one JSON line to stdout; progress goes to stderr.

Usage: ``python bench/endpoints.py [--calls 2000] [--workers 16] [--repeats 5] [--skip-embedded]
[--skip-cpu] [--old-transport PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai

from langgraph_feedit.endpoints import Endpoint
from langgraph_feedit.testing import SimServer

MODEL = "sim-model"
EMBEDDED_SCRIPT = Path(__file__).with_name("endpoints_embedded.py")
CLIENTS_SCRIPT = Path(__file__).with_name("clients.py")

Call = Callable[[int], Awaitable[Any]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def conversations(count: int) -> list[list[dict[str, str]]]:
    # Distinct requests, as a real workload has; both clients send exactly this list.
    return [
        [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": f"Question {i}: explain replicated state machines."},
        ]
        for i in range(count)
    ]


async def timed_pass(call: Call, calls: range, workers: int) -> float:
    """Seconds to make ``calls`` with ``workers`` concurrent callers."""
    pending = iter(calls)

    async def worker() -> None:
        # One shared iterator: each worker takes the next call as soon as it is free.
        for i in pending:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - start


async def measure(
    sim: SimServer, calls: int, workers: int, repeats: int, block: int
) -> dict[str, dict[str, Any]]:
    messages = conversations(calls)
    # The limiter is set above the worker count so it never queues: only its cost is measured.
    ours = Endpoint(sim.base_url, api_key="sk-none", max_concurrency=max(64, workers))
    bare = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-none", max_retries=0)

    async def ours_call(i: int) -> Any:
        return await ours.chat(messages[i], model=MODEL)

    async def bare_call(i: int) -> Any:
        reply = await bare.chat.completions.create(
            model=MODEL,
            messages=messages[i],  # type: ignore[arg-type]
        )
        # Read what Endpoint.chat reads, so both sides do the same work with the reply.
        return [c.message.content for c in reply.choices], reply.usage

    clients: dict[str, Call] = {"ours": ours_call, "bare": bare_call}
    modes = {"sequential": 1, "concurrent": workers}
    blocks = [range(start, min(start + block, calls)) for start in range(0, calls, block)]
    try:
        # Warm both clients' connection pools and code paths before anything is timed.
        for call in clients.values():
            await timed_pass(call, range(min(200, calls)), workers)
        times: dict[str, dict[str, list[float]]] = {
            mode: {name: [] for name in clients} for mode in modes
        }
        # Per block: (ours, bare) seconds per call, measured back to back.
        pairs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for rep in range(repeats):
            for mode, width in modes.items():
                total = dict.fromkeys(clients, 0.0)
                # The machine's speed drifts by tens of percent over seconds, so each pass of
                # the 2,000 calls is made of short blocks, each sent by both clients back to
                # back, first one then the other, so both sample the same stretches of time.
                for b, calls_of_block in enumerate(blocks):
                    order = list(clients) if (rep + b) % 2 == 0 else list(reversed(clients))
                    block_s: dict[str, float] = {}
                    for name in order:
                        # The same server state for both: an empty log and prefix cache, and
                        # no garbage of the other client left for this one to collect.
                        sim.reset_stats()
                        gc.collect()
                        block_s[name] = await timed_pass(clients[name], calls_of_block, width)
                        total[name] += block_s[name]
                        failed = [r for r in sim.requests if r.status != 200]
                        if sim.call_count != len(calls_of_block) or failed:
                            raise RuntimeError(
                                f"{name}/{mode}: {sim.call_count} requests, {len(failed)} failed"
                            )
                    n = len(calls_of_block)
                    pairs[mode].append((block_s["ours"] / n, block_s["bare"] / n))
                for name, seconds in total.items():
                    times[mode][name].append(seconds)
                    log(
                        f"rep {rep + 1}/{repeats} {mode:10} {name}: {seconds / calls * 1e6:8.1f} µs"
                    )
    finally:
        await ours.aclose()
        await bare.close()
    result: dict[str, dict[str, Any]] = {}
    for mode, per_client in times.items():
        ours_us = statistics.median(per_client["ours"]) / calls * 1e6
        bare_us = statistics.median(per_client["bare"]) / calls * 1e6
        # Other load on the machine moves both clients' times together within a block but
        # not across blocks, so the overhead and ratio are medians over the paired blocks;
        # the difference of the two pass medians is given beside them.
        overhead = statistics.median(o - b for o, b in pairs[mode]) * 1e6
        ratio = statistics.median(o / b for o, b in pairs[mode])
        result[mode] = {
            "workers": modes[mode],
            "ours_us_per_call": round(ours_us, 1),
            "bare_us_per_call": round(bare_us, 1),
            "overhead_us_per_call": round(overhead, 1),
            "ratio": round(ratio, 3),
            "difference_of_medians_us": round(ours_us - bare_us, 1),
            "blocks": len(pairs[mode]),
            "ours_runs_s": [round(t, 3) for t in per_client["ours"]],
            "bare_runs_s": [round(t, 3) for t in per_client["bare"]],
        }
    return result


def embedded() -> dict[str, Any]:
    """The JSON line of ``bench/endpoints_embedded.py``, run as a child process."""
    log("embedded: running bench/endpoints_embedded.py")
    done = subprocess.run(
        [sys.executable, str(EMBEDDED_SCRIPT)], capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"error": f"exit status {done.returncode}", "stderr_tail": tail}
    figures: dict[str, Any] = json.loads(lines[-1])
    figures.pop("bench", None)
    return figures


def cpu(old_transport: str | None) -> dict[str, Any]:
    """The JSON line of ``bench/clients.py``, run as a child process."""
    log("cpu: running bench/clients.py")
    extra = ["--old-transport", old_transport] if old_transport else []
    done = subprocess.run(
        [sys.executable, str(CLIENTS_SCRIPT), *extra], capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"exit status {done.returncode}", "stderr_tail": done.stderr[-500:]}
    figures: dict[str, Any] = json.loads(lines[-1])
    figures.pop("bench", None)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per pass")
    parser.add_argument("--workers", type=int, default=16, help="concurrent callers")
    parser.add_argument("--repeats", type=int, default=5, help="passes per client and mode")
    parser.add_argument("--block", type=int, default=250, help="calls per interleaved block")
    parser.add_argument("--mean-tokens", type=int, default=8, help="reply length in tokens")
    parser.add_argument("--skip-embedded", action="store_true", help="leave out (b)")
    parser.add_argument("--skip-cpu", action="store_true", help="leave out (c)")
    parser.add_argument("--old-transport", default=None, help="(c): the old transport.py")
    args = parser.parse_args(argv)

    with SimServer(seed=1, ttft=0.0, rate=float("inf"), mean_tokens=args.mean_tokens) as sim:
        client = asyncio.run(measure(sim, args.calls, args.workers, args.repeats, args.block))
    result: dict[str, Any] = {
        "bench": "endpoints",
        "calls": args.calls,
        "repeats": args.repeats,
        "mean_tokens": args.mean_tokens,
        "client": client,
        "note": (
            "SimServer runs in a thread of the benchmark process, sharing its CPU and GIL with "
            "the client under test; both clients see that equally, so the overhead and ratio "
            "hold while absolute per-call times are higher than against a separate server"
        ),
    }
    if not args.skip_embedded:
        result["embedded"] = embedded()
    if not args.skip_cpu:
        result["cpu"] = cpu(args.old_transport)
    print(json.dumps(result), flush=True)
    return 1 if "error" in result.get("embedded", {}) else 0


if __name__ == "__main__":
    sys.exit(main())
