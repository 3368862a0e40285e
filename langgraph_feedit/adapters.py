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
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.overrides import FLAT_KEYS, set_path
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
    out: dict[str, Any] = {}
    given = {"drafts": drafts, "critiques": critiques, "edits": edits, "rounds": rounds}
    for flat, value in given.items():
        if value is not None:
            set_path(out, FLAT_KEYS[flat], value)
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
    ``invoke``, ``batch``, ``stream`` and their async twins like any runnable (a stream
    yields the selected message once it is chosen).
    """
    compiled = graph or create_feedit_graph(config, preset=preset).compile()

    # The graph is invoked whole (not streamed through the chain): its output is one message,
    # known only once the judge has chosen. Callbacks, ``astream_events`` and the graph's
    # own streams still see every call inside, since the run's config is passed on.
    def run(value: Any, config: RunnableConfig) -> AIMessage:
        return _answer(compiled.invoke({"messages": to_messages(value)}, config))

    async def arun(value: Any, config: RunnableConfig) -> AIMessage:
        return _answer(await compiled.ainvoke({"messages": to_messages(value)}, config))

    return RunnableLambda(run, afunc=arun, name="feedit")


def _answer(out: Mapping[str, Any]) -> AIMessage:
    message = out["messages"][-1]
    if not isinstance(message, AIMessage):  # pragma: no cover - the graph always appends one
        raise TypeError(f"the graph's last message is a {type(message).__name__}")
    return message


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

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        out = compiled.invoke({"messages": list(state[messages_key])}, config)
        return {messages_key: [out["messages"][-1]]}

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        out = await compiled.ainvoke({"messages": list(state[messages_key])}, config)
        return {messages_key: [out["messages"][-1]]}

    return RunnableLambda(run, afunc=arun, name="feedit")
