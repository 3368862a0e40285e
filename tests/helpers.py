"""Shared helpers for tests: configurations pointing every role at a simulated server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from langgraph_feedit import FeeditConfig
from langgraph_feedit.config import deep_merge
from langgraph_feedit.endpoints import PROBE_MESSAGES
from langgraph_feedit.testing import SimServer


def is_probe(body: dict[str, Any]) -> bool:
    """Whether a request is the judge endpoint's logprobs probe, which a run with a principle
    judge makes beside its drafts, once per endpoint (``Endpoint.discover_logprobs``)."""
    return body.get("messages") == PROBE_MESSAGES


def sim_config(base_url: str, **overrides: Any) -> FeeditConfig:
    """Every role on ``base_url`` with fast retries; ``overrides`` is a nested mapping."""
    data: dict[str, Any] = {
        "roles": {
            "default": {
                "base_url": base_url,
                "model": "sim-model",
                "max_retries": 2,
                "backoff": 0.01,
                "timeout": 10.0,
                "max_concurrency": 64,
            }
        }
    }
    return FeeditConfig.load(env={}, overrides=deep_merge(data, overrides))


def in_flight_at(server: SimServer, moment: float, grace: float = 1.0) -> int:
    """Calls in flight when a client was killed at ``moment``: those the kill cut off, and
    those whose reply had been sent in the ``grace`` seconds before it (the client may have had
    it on the wire, or in hand but not yet written to its store)."""
    return sum(
        1
        for r in server.requests
        if r.disconnected or (r.ended is not None and moment - grace <= r.ended <= moment)
    )


def batch_cli(*args: str) -> list[str]:
    """The command line of ``feedit batch`` in a subprocess, without the progress display."""
    return [sys.executable, "-m", "langgraph_feedit.cli", "batch", "--no-progress", *args]


def write_prompts(path: Path, n: int, *, digits: int = 3) -> Path:
    """An Arena-Hard style question file of ``n`` prompts with ids ``q000``, ``q001``, ..."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            record = {"uid": f"q{i:0{digits}d}", "category": "test", "prompt": f"Question {i}?"}
            f.write(json.dumps(record) + "\n")
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def json_texts() -> Any:
    """A Hypothesis strategy of JSON texts as a lenient parser (Python's ``json``) reads them:
    ``NaN`` and ``Infinity``, numbers that overflow a float, integers of thousands of digits or
    past 64 bits, strings escaping NUL, control characters and lone surrogates, and nesting
    from shallow to deeper than the parser's recursion limit."""
    from hypothesis import strategies as st

    numbers = st.one_of(
        st.integers().map(str),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.integers(4000, 5000).map(lambda n: "9" * n),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-2e308", "1e-400", "-0"]),
    )
    strings = st.text(st.characters(codec=None, exclude_categories=()), max_size=8).map(json.dumps)
    scalars = st.one_of(numbers, strings, st.sampled_from(["null", "true", "false"]))

    def containers(children: Any) -> Any:
        arrays = st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]")
        pairs = st.lists(st.tuples(strings, children), max_size=3)
        objects = pairs.map(lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}")
        return arrays | objects

    shallow = st.recursive(scalars, containers, max_leaves=12)
    deep = st.tuples(shallow, st.integers(100, 1200), st.booleans()).map(
        lambda t: ("[" * t[1] + t[0] + "]" * t[1]) if t[2] else ('{"a":' * t[1] + t[0] + "}" * t[1])
    )
    return st.one_of(shallow, deep)
