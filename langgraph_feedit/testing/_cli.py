"""The command line of the simulated server: settings as flags, faults as JSON, serve until told."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence
from types import FrameType

from langgraph_feedit.testing._faults import Fault
from langgraph_feedit.testing._server import SimServer


def main(argv: Sequence[str] | None = None) -> int:
    """Serve from the command line until SIGTERM or SIGINT, after printing ``{"base_url": ...}``."""
    parser = argparse.ArgumentParser(
        prog="python -m langgraph_feedit.testing",
        description="A simulated OpenAI-compatible server on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=float("inf"), help="tokens per second")
    parser.add_argument("--jitter", type=float, default=0.0, help="relative sd of latency")
    parser.add_argument("--mean-tokens", type=int, default=64)
    parser.add_argument("--sd-tokens", type=float, default=0.0)
    parser.add_argument("--min-tokens", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=None, help="serving slots; others queue")
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        help="every request takes exactly this many seconds (overrides --ttft and --rate)",
    )
    parser.add_argument("--model", default="sim-model")
    parser.add_argument("--reject-n", action="store_true", help="answer n>1 with 400")
    parser.add_argument("--ignore-n", action="store_true", help="answer n>1 with one choice")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a Fault as JSON, e.g. \'{"kind": "500", "rate": 0.1}\'; repeatable',
    )
    args = parser.parse_args(argv)
    settings = vars(args)
    try:
        faults = [Fault(**json.loads(spec)) for spec in settings.pop("fault")]
        latency = settings.pop("latency")
        if latency is not None and latency < 0:
            raise ValueError(f"--latency must be >= 0, not {latency}")
        fixed = None if latency is None else (lambda body: latency)
        server = SimServer(faults=faults, latency_fn=fixed, **settings)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with server:
        print(json.dumps({"base_url": server.base_url}), flush=True)
        while not stop.wait(1.0):
            pass
    return 0
