"""A simulated OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

Tests and benchmarks need a backend that behaves like a real one on the wire (HTTP, SSE, status
codes, dropped connections, queueing under load) yet answers quickly, deterministically and
without a model. ``SimServer`` is that backend: real aiohttp over loopback, in its own thread and
event loop so that sync tests, async tests (whose loop is separate) and subprocesses all reach it.

Replies are pseudo-words drawn from an RNG seeded by the server seed, the request's messages and
sampling settings, its ``seed`` field and the choice index, so the same request always gets the same
text and a different request (an edit of a draft) gets different text. One word is one token.
Two content hooks let parsers be tested: a last user message containing "Rate the response" or
"score" gets a final line ``Score: X`` (X in 1..10), and one containing "Evaluate the response"
starts with ``The response is {not|slightly|partially|mostly|perfectly} helpful.``; an
Arena-Hard judge prompt (``<|The Start of Assistant A's Answer|>``) ends with a verdict such as
``[[A>B]]`` that prefers the longer answer (strongly when it is 1.5 times as long).
An edit call (a last user turn mentioning feedback, after an assistant turn) of a
conversation whose first user turn holds ``sim-edit:preamble``, ``sim-edit:commentary``,
``sim-edit:non-answer`` or ``sim-edit:verdict`` is answered as a misbehaving edit model does:
with a preamble, a closing note, a reply to the editor, or a critique's verdict.
A principle judge's prompt ("... satisfies this principle: P. Only answer Yes or No.") is
answered Yes or No, with ``logprobs`` (when asked) whose Yes-minus-No margin grows with the
judged answer's length; a rating prompt sent with a ``response_format`` it accepts
(``response_formats``) is answered as a JSON object ``{"reason", "score"}``, and one it does
not accept is refused with ``refusal_status`` naming ``response_format``. With ``reasoning``
the server thinks before it answers (in ``<think>`` tags in ``content``, or in a separate
field), its thinking starting with ``THINK_MARK``, unless a request switches thinking off.

Example::

    with SimServer(seed=1, ttft=0.01, rate=500, capacity=4) as sim:
        client = OpenAI(base_url=sim.base_url, api_key="x")
        client.chat.completions.create(model="sim-model", messages=[...])
        assert sim.call_count == 1

From another process: ``python -m langgraph_feedit.testing --port 0 --ttft 0.05 --rate 200`` prints
one JSON line ``{"base_url": ...}`` and serves until SIGTERM or SIGINT; ``GET /_sim/stats`` reports
its counters.
"""

from __future__ import annotations

from langgraph_feedit.testing._cli import main
from langgraph_feedit.testing._faults import Fault

# Importable for annotations as before, yet left out of ``__all__`` as before.
from langgraph_feedit.testing._faults import FaultKind as FaultKind
from langgraph_feedit.testing._ledger import RecordedRequest
from langgraph_feedit.testing._replies import THINK_MARK
from langgraph_feedit.testing._server import SimServer

__all__ = ["THINK_MARK", "Fault", "RecordedRequest", "SimServer", "main"]
