"""The simulated OpenAI-compatible server in a process of its own, for the benchmarks.

In its own process it does not share the benchmark's interpreter lock, so the figures measure
the client side, not a server competing with it for the same core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any


def start_sim(*options: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m langgraph_feedit.testing OPTIONS``; returns the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "langgraph_feedit.testing", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, str(json.loads(proc.stdout.readline())["base_url"])


def sim_stats(base_url: str, ended_within: float | None = None) -> dict[str, Any]:
    """The server's counters (``GET /_sim/stats``): calls, in flight, busy slot-seconds; with
    ``ended_within``, the requests answered in that many seconds before (``ended_recently``)."""
    query = f"?ended_within={ended_within}" if ended_within is not None else ""
    url = base_url.removesuffix("/v1") + "/_sim/stats" + query
    with urllib.request.urlopen(url, timeout=10) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


def batch_cmd(base_url: str, work: Path, name: str, *tree: str) -> list[str]:
    """``feedit batch`` over ``work/q.jsonl`` into ``work/NAME.jsonl`` with the store
    ``work/store-NAME``, on the simulated server at ``base_url``; ``tree`` sets the rest."""
    return [
        sys.executable,
        "-m",
        "langgraph_feedit.cli",
        "batch",
        "--no-progress",
        "--input",
        str(work / "q.jsonl"),
        "--output",
        str(work / f"{name}.jsonl"),
        "--store",
        str(work / f"store-{name}"),
        "--base-url",
        base_url,
        "--model",
        "m",
        *tree,
    ]
