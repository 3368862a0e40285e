"""Ready graphs for LangGraph Server / Studio, one per preset.

Each is built from the configuration in the file named by ``FEEDIT_CONFIG`` (if set) and the
``FEEDIT_*`` environment variables; per-run settings come through the run's ``context``
(``{"width": {"drafts": 8}, "depth": {"max_rounds": 2}}``). The server compiles them and
supplies its own checkpointer; the call cache (kept in memory, shared by the presets) is
ours, so resuming a failed thread or repeating a request does not buy the same call twice.
"""

from langgraph.cache.memory import InMemoryCache

from langgraph_feedit import create_feedit_graph

cache: InMemoryCache = InMemoryCache()

single = create_feedit_graph(preset="single", name="single", cache=cache)
best_of_n = create_feedit_graph(preset="best-of-n", name="best-of-n", cache=cache)
feedback_edit = create_feedit_graph(preset="feedback-edit", name="feedback-edit", cache=cache)
self_refine = create_feedit_graph(preset="self-refine", name="self-refine", cache=cache)
beam = create_feedit_graph(preset="beam", name="beam", cache=cache)
