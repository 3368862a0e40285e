"""Ready graphs for LangGraph Server / Studio, one per preset.

Each is built from the configuration in the file named by ``FEEDIT_CONFIG`` (if set) and the
``FEEDIT_*`` environment variables; per-run settings come through the run's ``context``
(``{"width": {"drafts": 8}, "depth": {"max_rounds": 2}}``). The server compiles them and
supplies its own checkpointer; the call cache (kept in memory, shared by the presets) is
ours, so resuming a failed thread or repeating a request does not buy the same call twice.

Any client of the server sends the run's context, so it is untrusted input: it may set width,
depth, budget and role sampling, never where calls go or which key they carry. An operator
who wants clients to choose more names the dotted keys in ``FEEDIT_CONTEXT_ALLOW``
(comma-separated, ``*`` for any role: ``roles.*.model``).
"""

import os

from langgraph.cache.memory import InMemoryCache

from langgraph_feedit import create_feedit_graph

cache: InMemoryCache = InMemoryCache()
allow = tuple(k.strip() for k in os.environ.get("FEEDIT_CONTEXT_ALLOW", "").split(",") if k.strip())


def _graph(preset: str):  # type: ignore[no-untyped-def]
    return create_feedit_graph(preset=preset, name=preset, cache=cache, context_allow=allow)


single = _graph("single")
best_of_n = _graph("best-of-n")
feedback_edit = _graph("feedback-edit")
self_refine = _graph("self-refine")
beam = _graph("beam")
