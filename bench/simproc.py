"""The simulated OpenAI-compatible server in a process of its own, for the benchmarks.

In its own process it does not share the benchmark's interpreter lock, so the figures measure
the client side, not a server competing with it for the same core.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
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


def sim_stats(base_url: str) -> dict[str, Any]:
    """The server's counters (``GET /_sim/stats``): calls, in flight, busy slot-seconds."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_sim/stats", timeout=10) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data
