"""Ready graphs for LangGraph Server / Studio, one per preset.

Each is built from the configuration in the file named by ``FEEDIT_CONFIG`` (if set) and the
``FEEDIT_*`` environment variables; per-run settings come through the run's ``context``
(``{"width": {"drafts": 8}, "depth": {"max_rounds": 2}}``). The server compiles them and
supplies its own checkpointer, which is also what keeps a failed thread's finished calls: a
resumed thread makes only the calls that failed.

A served question asked again (a chat UI's "regenerate") draws new samples: no call cache by
default. An operator who wants repeated questions answered from memory (a demo, a fixed
evaluation) sets ``FEEDIT_SERVE_CACHE=memory``: one in-memory call cache shared by the presets;
a run's context ``cache_key`` then draws new samples for that run.

Any client of the server sends the run's context, so it is untrusted input: it may set width,
depth, budget and role sampling, never where calls go or which key they carry. An operator
who wants clients to choose more names the dotted keys in ``FEEDIT_CONTEXT_ALLOW``
(comma-separated, ``*`` for any role: ``roles.*.model``).
"""

import os

from langgraph.cache.memory import InMemoryCache

from langgraph_feedit import create_feedit_graph

_CACHES = {"": None, "none": None, "memory": InMemoryCache}
_kind = os.environ.get("FEEDIT_SERVE_CACHE", "").strip().lower()
if _kind not in _CACHES:
    raise ValueError(f"FEEDIT_SERVE_CACHE must be 'memory' or 'none', not {_kind!r}")
_cache_type = _CACHES[_kind]
cache: InMemoryCache | None = _cache_type() if _cache_type is not None else None
allow = tuple(k.strip() for k in os.environ.get("FEEDIT_CONTEXT_ALLOW", "").split(",") if k.strip())


def _graph(preset: str):  # type: ignore[no-untyped-def]
    return create_feedit_graph(preset=preset, name=preset, cache=cache, context_allow=allow)


single = _graph("single")
best_of_n = _graph("best-of-n")
feedback_edit = _graph("feedback-edit")
self_refine = _graph("self-refine")
beam = _graph("beam")
