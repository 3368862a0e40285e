"""A run's tree as a few lines of text, for the terminal (``feedit run`` prints it to stderr).

One line per node, in tree order and indented by depth: a ``>`` on the selected candidate,
the id, the kind, the judge's score (or why there is none), the tokens its call spent, and
the first words of its text. Enough to see why an answer was chosen without opening the
trace page.
"""

from __future__ import annotations

from langgraph_feedit import nodeid
from langgraph_feedit.state import Trace, TraceNode

__all__ = ["tree_lines"]


def _tokens(node: TraceNode) -> int:
    return int(node.usage.get("prompt_tokens", 0)) + int(node.usage.get("completion_tokens", 0))


def _words(text: str | None, width: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: max(0, width - 3)].rstrip() + "..."


def _status(node: TraceNode) -> str:
    if node.error and node.failure == "not_an_answer":
        return f"rejected: {node.error.removeprefix('not an answer: ')}"
    if node.error:
        return f"failed ({node.failure or 'error'})"
    if node.kind == "critique":
        if node.effective is False:
            return "no change asked"
        return f"verdict {node.verdict}" if node.verdict else "no verdict"
    if node.duplicate_of:
        return f"= {node.duplicate_of}"
    return "unscored" if node.score is None else f"score {node.score:.3f}"


def tree_lines(trace: Trace, *, width: int = 100) -> list[str]:
    """The tree of ``trace``, one line per node (``width``: the line's length, about).

    Example:
        >>> from langgraph_feedit.state import Trace, TraceNode
        >>> t = Trace(nodes=[TraceNode(id="d0", kind="draft", role="draft", text="Hi.",
        ...     score=0.5)], selected="d0")
        >>> tree_lines(t)[0]
        '> d0  draft  score 0.500  0 tok  Hi.'
    """
    lines: list[str] = []
    for node in trace.nodes:
        depth = len(nodeid.parse(node.id)) - 1
        mark = ">" if node.id == trace.selected else " "
        head = f"{mark} {'  ' * depth}{node.id}  {node.kind}  {_status(node)}  {_tokens(node)} tok"
        text = _words(node.text if node.text is not None else node.error, width - len(head) - 2)
        lines.append(f"{head}  {text}" if text else head)
    return lines
