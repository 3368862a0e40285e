"""Ways in: a one-line async helper, an LCEL runnable, and a node for a parent agent.

Example:
    ```python
    from langgraph_feedit import afeedit, feedit_runnable

    result = await afeedit("Explain CRDTs briefly.", preset="feedback-edit", drafts=2)
    print(result.answer, result.trace.usage["total"])

    chain = prompt_template | feedit_runnable(preset="best-of-n") | StrOutputParser()
    ```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableLambda

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.state import Trace

__all__ = ["FeeditResult", "afeedit", "feedit_node", "feedit_runnable", "to_messages"]

Conversation = str | Sequence[BaseMessage | Mapping[str, Any] | tuple[str, str]] | PromptValue


@dataclass(frozen=True, slots=True)
class FeeditResult:
    """What one run produced: the selected answer as a message, its text and the trace."""

    message: AIMessage
    trace: Trace

    @property
    def answer(self) -> str:
        return self.trace.answer or ""


def to_messages(value: Conversation | Mapping[str, Any]) -> list[Any]:
    """A conversation from a string, a prompt value, messages or ``{"messages": [...]}``."""
    if isinstance(value, str):
        return [("user", value)]
    if isinstance(value, PromptValue):
        return list(value.to_messages())
    if isinstance(value, Mapping):
        if "messages" in value:
            return list(value["messages"])
        return [dict(value)]
    return list(value)


def _overrides(
    drafts: int | None, critiques: int | None, edits: int | None, rounds: int | None
) -> dict[str, Any]:
    width = {k: v for k, v in (("drafts", drafts), ("critiques", critiques), ("edits", edits))}
    out: dict[str, Any] = {"width": {k: v for k, v in width.items() if v is not None}}
    if rounds is not None:
        out["depth"] = {"max_rounds": rounds}
    return out


async def afeedit(
    conversation: Conversation,
    *,
    config: FeeditConfig | str | Path | None = None,
    preset: str | None = None,
    drafts: int | None = None,
    critiques: int | None = None,
    edits: int | None = None,
    rounds: int | None = None,
    context: Mapping[str, Any] | None = None,
) -> FeeditResult:
    """Run the graph once on a prompt or conversation and return the result.

    Raises:
        ConfigError: a bad configuration or argument.
        NoCandidateError: every branch failed (the error lists why).
    """
    graph = create_feedit_graph(config, preset=preset).compile()
    ctx: dict[str, Any] = _overrides(drafts, critiques, edits, rounds)
    if context:
        from langgraph_feedit.config import deep_merge

        ctx = deep_merge(ctx, context)
    out = await graph.ainvoke({"messages": to_messages(conversation)}, context=ctx)
    return FeeditResult(message=out["messages"][-1], trace=Trace.model_validate(out["trace"]))


def feedit_runnable(
    graph: Runnable[Any, Any] | None = None,
    *,
    config: FeeditConfig | str | Path | None = None,
    preset: str | None = None,
) -> Runnable[Any, AIMessage]:
    """An LCEL runnable: a string, prompt value or messages in, the selected ``AIMessage`` out.

    Composes with ``|`` (``prompt | feedit_runnable() | StrOutputParser()``) and supports
    ``ainvoke``, ``abatch`` and ``astream`` like any runnable.
    """
    compiled = graph or create_feedit_graph(config, preset=preset).compile()

    def to_input(value: Any) -> dict[str, Any]:
        return {"messages": to_messages(value)}

    def to_output(out: Mapping[str, Any]) -> AIMessage:
        message = out["messages"][-1]
        assert isinstance(message, AIMessage)
        return message

    chain = RunnableLambda(to_input) | compiled | RunnableLambda(to_output)
    return chain.with_config(run_name="feedit")


def feedit_node(
    graph: Runnable[Any, Any] | None = None,
    *,
    config: FeeditConfig | str | Path | None = None,
    preset: str | None = None,
    messages_key: str = "messages",
) -> RunnableLambda[Any, dict[str, list[AnyMessage]]]:
    """A node for a parent graph with a ``messages`` key (``MessagesState``): it runs feedit
    on the conversation so far and appends the selected answer. Keys of the feedit state do
    not leak into the parent's."""
    compiled = graph or create_feedit_graph(config, preset=preset).compile()

    async def run(state: Mapping[str, Any]) -> dict[str, list[AnyMessage]]:
        out = await compiled.ainvoke({"messages": list(state[messages_key])})
        return {messages_key: [out["messages"][-1]]}

    return RunnableLambda(run, name="feedit")
