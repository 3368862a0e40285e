"""Ready graphs for LangGraph Server / Studio, one per preset.

Each is built from the configuration in the file named by ``FEEDIT_CONFIG`` (if set) and the
``FEEDIT_*`` environment variables; per-run settings come through the run's ``context``
(``{"width": {"drafts": 8}, "depth": {"max_rounds": 2}}``). The server compiles them and
supplies its own checkpointer.
"""

from langgraph_feedit import create_feedit_graph

single = create_feedit_graph(preset="single", name="single")
best_of_n = create_feedit_graph(preset="best-of-n", name="best-of-n")
feedback_edit = create_feedit_graph(preset="feedback-edit", name="feedback-edit")
self_refine = create_feedit_graph(preset="self-refine", name="self-refine")
beam = create_feedit_graph(preset="beam", name="beam")
