"""The simulated OpenAI-compatible server in a process of its own, for the benchmarks.

In its own process it does not share the benchmark's interpreter lock, so the figures measure
the client side, not a server competing with it for the same core.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def kill_after(
    base_url: str,
    cmd: list[str],
    calls: int,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``cmd``, SIGKILL it once the simulated server has taken ``calls`` more calls,
    and return the calls in flight at the kill, as the kill -9 test counts them: requests the
    kill cut off, and replies sent in the second before it (the client may have had them on
    the wire, or in hand but not yet stored)."""
    before = sim_stats(base_url)["call_count"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while sim_stats(base_url)["call_count"] - before < calls:
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(cmd[:4])}: it ended before the kill")
        time.sleep(0.005)
    disconnects = sim_stats(base_url)["disconnects"]
    os.kill(proc.pid, signal.SIGKILL)
    answered = sim_stats(base_url, ended_within=1.0)["ended_recently"]
    proc.wait()
    time.sleep(0.3)
    return int(answered + sim_stats(base_url)["disconnects"] - disconnects)
