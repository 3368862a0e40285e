"""Decode speed of the embedded endpoint over HTTP against llama-cpp-python in-process.

The embedded endpoint is a separate server process so that every role speaks the same OpenAI
wire protocol; this measures what that costs. Both sides run the same GGUF with the same threads,
context, prompt, seed and greedy sampling, one after the other (never together: they would share
the cores), and stream: speed is counted from the first generated token to the last, so prompt
processing and connection set-up are left out.

Prints one JSON line, e.g.::

    {"bench": "endpoints_embedded", "threads": 1, "http_tokens_per_s": 149.18,
     "inprocess_tokens_per_s": 163.84, "ratio": 0.911, ...}

Usage: ``python bench/endpoints_embedded.py [--threads N] [--repeats 3] [--max-tokens 128]``

``--threads`` defaults to what the embedded endpoint uses (one per core, less one); with every
core decoding, the server and its client steal time from the decode threads and the HTTP
figure swings widely, which ``--threads $(nproc)`` shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam

from langgraph_feedit.embedded import (
    EmbeddedServer,
    EmbeddedSettings,
    default_model_path,
    default_threads,
)

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are a creative writer who writes long, detailed stories."},
    {
        "role": "user",
        "content": "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    },
]
SEED = 1234


def _speed(deltas: Iterable[str | None]) -> tuple[float, int]:
    """Tokens per second from the first streamed token to the last, and the token count.

    llama-cpp-python streams one chunk per generated token (its text may be empty while a
    multi-byte character is incomplete), so chunks carrying ``content`` count tokens.
    """
    first = last = 0.0
    count = 0
    for content in deltas:
        if content is None:
            continue
        last = time.perf_counter()
        if count == 0:
            first = last
        count += 1
    if count < 2 or last <= first:
        raise RuntimeError(f"too few tokens streamed to time ({count})")
    return (count - 1) / (last - first), count


def _http_runs(model_path: Path, args: argparse.Namespace) -> list[tuple[float, int]]:
    settings = EmbeddedSettings(
        model_path=model_path,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads_batch,
    )
    with EmbeddedServer(settings) as server:
        client = OpenAI(base_url=server.base_url, api_key="sk-none", max_retries=0)

        def run(max_tokens: int) -> tuple[float, int]:
            stream = client.chat.completions.create(
                model=server.model,
                messages=MESSAGES,
                max_tokens=max_tokens,
                temperature=0,
                seed=SEED,
                stream=True,
            )
            return _speed(c.choices[0].delta.content for c in stream if c.choices)

        run(8)
        return [run(args.max_tokens) for _ in range(args.repeats)]


def _inprocess_runs(model_path: Path, args: argparse.Namespace) -> list[tuple[float, int]]:
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads_batch,
        seed=SEED,
        verbose=False,
    )

    def run(max_tokens: int) -> tuple[float, int]:
        # The two libraries declare equal message dicts with different TypedDicts.
        stream = cast(
            Iterator[dict[str, Any]],
            llm.create_chat_completion(
                messages=cast(Any, MESSAGES),
                max_tokens=max_tokens,
                temperature=0,
                seed=SEED,
                stream=True,
            ),
        )
        return _speed(c["choices"][0]["delta"].get("content") for c in stream if c["choices"])

    try:
        run(8)
        return [run(args.max_tokens) for _ in range(args.repeats)]
    finally:
        llm.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads(),
        help="decode threads, both sides (default: the embedded default, cores less one)",
    )
    parser.add_argument(
        "--threads-batch", type=int, default=os.cpu_count() or 1, help="prompt threads"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: SmolLM2)")
    args = parser.parse_args(argv)
    model_path: Path = args.model or default_model_path()

    http = _http_runs(model_path, args)
    inprocess = _inprocess_runs(model_path, args)
    http_speed = statistics.median(s for s, _ in http)
    inprocess_speed = statistics.median(s for s, _ in inprocess)
    result = {
        "bench": "endpoints_embedded",
        "model": model_path.name,
        "threads": args.threads,
        "threads_batch": args.threads_batch,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "http_tokens_per_s": round(http_speed, 2),
        "inprocess_tokens_per_s": round(inprocess_speed, 2),
        "ratio": round(http_speed / inprocess_speed, 3),
        "http_runs": [round(s, 2) for s, _ in http],
        "inprocess_runs": [round(s, 2) for s, _ in inprocess],
        "tokens": [n for _, n in http] + [n for _, n in inprocess],
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
