"""Ways in: a one-line async helper, a chat model, an LCEL runnable, and a node for an agent.

Example:
    ```python
    from langgraph_feedit import afeedit, feedit_runnable

    result = await afeedit("Explain CRDTs briefly.", preset="feedback-edit", drafts=2)
    print(result.answer, result.trace.usage["total"])

    chain = prompt_template | feedit_runnable(preset="best-of-n") | StrOutputParser()
    ```
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnableMap,
    RunnablePassthrough,
)
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, ConfigDict, PrivateAttr

from langgraph_feedit.config import FeeditConfig
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.graph import create_feedit_graph
from langgraph_feedit.overrides import FLAT_KEYS, bound_answers, set_path
from langgraph_feedit.state import Trace

__all__ = [
    "ChatFeedit",
    "FeeditResult",
    "afeedit",
    "answer_schema",
    "feedit_node",
    "feedit_runnable",
    "to_messages",
]

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
    models: Mapping[str, Any] | None = None,
) -> FeeditResult:
    """Run the graph once on a prompt or conversation and return the result.

    Raises:
        ConfigError: a bad configuration or argument.
        NoCandidateError: every branch failed (the error lists why).
    """
    graph = create_feedit_graph(config, preset=preset, models=models).compile()
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
    models: Mapping[str, Any] | None = None,
) -> Runnable[Any, AIMessage]:
    """An LCEL runnable: a string, prompt value or messages in, the selected ``AIMessage`` out.

    Composes with ``|`` (``prompt | feedit_runnable() | StrOutputParser()``) and supports
    ``invoke``, ``batch``, ``stream`` and their async twins like any runnable (a stream
    yields the selected message once it is chosen).
    """
    compiled = graph or create_feedit_graph(config, preset=preset, models=models).compile()

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
    models: Mapping[str, Any] | None = None,
) -> RunnableLambda[Any, dict[str, list[AnyMessage]]]:
    """A node for a parent graph with a ``messages`` key (``MessagesState``): it runs feedit
    on the conversation so far and appends the selected answer. Keys of the feedit state do
    not leak into the parent's."""
    compiled = graph or create_feedit_graph(config, preset=preset, models=models).compile()

    def run(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        out = compiled.invoke({"messages": list(state[messages_key])}, config)
        return {messages_key: [out["messages"][-1]]}

    async def arun(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        out = await compiled.ainvoke({"messages": list(state[messages_key])}, config)
        return {messages_key: [out["messages"][-1]]}

    return RunnableLambda(run, afunc=arun, name="feedit")


# -- feedit as a chat model ---------------------------------------------------------------------

_TOOLS_REFUSED = (
    "ChatFeedit does not call tools: its answer is chosen among free-text candidates, and a "
    "tool call is no candidate a judge can score. Let a tool-calling chat model run the agent's "
    "tool loop and make feedit its final answer step: a StateGraph whose last node is "
    "feedit_node(...) after the tools (see examples/tool_agent.py), or "
    "create_react_agent(model=ChatFeedit(...), tools=[]) where no tools are needed"
)


class ChatFeedit(BaseChatModel):
    """feedit as a LangChain chat model: each call runs the draft-critique-edit-judge tree and
    returns the selected answer, so it goes wherever LangChain takes a chat model.

    - LCEL (``prompt | ChatFeedit(...) | StrOutputParser()``), ``invoke``/``ainvoke``,
      ``batch``/``abatch``, callbacks (the tree's calls are child runs of the ChatFeedit run).
    - ``.bind(max_tokens=..., stop=...)``: bounds every call that produces a candidate, drafts
      and edits, so the answer respects the limit whichever candidate wins, and its
      ``finish_reason`` (``response_metadata``) is the selected call's own: ``length`` when
      the limit cut it off.
    - ``.with_structured_output(schema)``: every draft and edit is constrained by the schema
      (``response_format`` json_schema); a candidate that is not JSON is no candidate, the judge
      scores the rest, and the selected answer is parsed. Where a role's server or chat model
      cannot constrain output by a schema, the call fails with a :class:`ConfigError` saying so.
    - ``.stream``/``.astream``: the selected answer, as one chunk once the judge has chosen
      (nothing is the answer before then). Progress and the tokens of every call come from the
      graph's own streams (``create_feedit_graph``), or from ``astream_events`` here.
    - ``usage_metadata`` of the answer: every call of the tree, all roles.
    - ``bind_tools`` is refused with an error naming the supported pattern: a tool-using agent
      whose final answer step is :func:`feedit_node`.

    Args (fields):
        config: a :class:`FeeditConfig`, a file path, or ``None`` (defaults and ``FEEDIT_*``).
        preset: a preset's name (``feedback-edit``...).
        models: chat models by role, as :func:`create_feedit_graph` takes them.
        context: per-run settings laid over the configuration (``{"drafts": 4}``).

    Example:
        ```python
        from langchain_openai import ChatOpenAI
        from langgraph_feedit import ChatFeedit

        model = ChatOpenAI(model="gpt-4o-mini")
        llm = ChatFeedit(preset="feedback-edit", models={"default": model})
        print(llm.bind(max_tokens=200).invoke("Explain CRDTs briefly.").content)
        ```
    """

    config: Any = None
    preset: str | None = None
    models: dict[str, Any] | None = None
    context: dict[str, Any] | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _graph: Any = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        # Built now: a bad configuration, preset or model fails where the model is made.
        self._graph = create_feedit_graph(
            self.config, preset=self.preset, models=self.models
        ).compile()

    @property
    def _llm_type(self) -> str:
        return "feedit"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        config = self.config
        shown = str(config) if isinstance(config, str | Path) else type(config).__name__
        return {"preset": self.preset, "config": shown, "context": self.context}

    def _run_context(self, stop: list[str] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(k for k in kwargs if k not in _CALL_KEYS and not k.startswith("ls_"))
        if unknown:
            raise ConfigError(
                f"ChatFeedit takes max_tokens and stop per call (.bind(...)), not "
                f"{', '.join(unknown)}: tree settings go in its context "
                '(ChatFeedit(context={"drafts": 4}))',
                key=unknown[0],
            )
        ctx = bound_answers(self.context or {}, max_tokens=kwargs.get("max_tokens"), stop=stop)
        if kwargs.get("answer_schema") is not None:
            ctx["answer_schema"] = kwargs["answer_schema"]
        return ctx

    def _call_config(self, run_manager: Any) -> RunnableConfig:
        """The tree's runs are children of this chat-model run (as a chain's steps are)."""
        if run_manager is None:
            return {}
        is_async = isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        manager = (AsyncCallbackManager if is_async else CallbackManager)(
            handlers=[], parent_run_id=run_manager.run_id
        )
        manager.set_handlers(run_manager.inheritable_handlers)
        manager.add_tags(run_manager.inheritable_tags)
        manager.add_metadata(run_manager.inheritable_metadata)
        return {"callbacks": manager}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        context = self._run_context(stop, kwargs)
        out = self._graph.invoke(
            {"messages": list(messages)}, self._call_config(run_manager), context=context
        )
        return _chat_result(_answer(out))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        context = self._run_context(stop, kwargs)
        out = await self._graph.ainvoke(
            {"messages": list(messages)}, self._call_config(run_manager), context=context
        )
        return _chat_result(_answer(out))

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Refused: see the class's documentation for the supported pattern.

        Raises:
            ConfigError: always, naming the pattern that works.
        """
        raise ConfigError(_TOOLS_REFUSED)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """This chat model with every answer constrained by ``schema`` (a pydantic model, a
        TypedDict or a JSON schema) and the selected answer parsed into it.

        Raises:
            ConfigError: a ``method`` other than ``json_schema`` (feedit calls no tools).
        """
        method = kwargs.pop("method", "json_schema")
        kwargs.pop("strict", None)
        if method != "json_schema" or kwargs:
            raise ConfigError(
                "ChatFeedit's structured output constrains answers by a JSON schema "
                "(method='json_schema'): tool calling and other methods are not offered"
            )
        pydantic_schema = isinstance(schema, type) and issubclass(schema, BaseModel)
        parser: Runnable[Any, Any]
        if pydantic_schema:
            parser = PydanticOutputParser(pydantic_object=cast(type[BaseModel], schema))
        else:
            parser = JsonOutputParser()
        llm = self.bind(answer_schema=answer_schema(schema))
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        none = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([none], exception_key="parsing_error")


_CALL_KEYS = frozenset({"max_tokens", "answer_schema"})


def answer_schema(schema: Mapping[str, Any] | type) -> dict[str, Any]:
    """``{"name", "schema"}`` (the ``response_format`` json_schema body) of a pydantic model,
    a TypedDict, or a JSON schema (given whole, or already in that shape)."""
    if isinstance(schema, Mapping):
        if "name" in schema and "schema" in schema:
            return dict(schema)
        js = dict(schema)
    elif isinstance(schema, type) and issubclass(schema, BaseModel):
        js = schema.model_json_schema()
    else:
        js = convert_to_json_schema(schema)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(js.get("title") or "answer"))[:64]
    return {"name": name, "schema": js}


def _chat_result(message: AIMessage) -> ChatResult:
    usage: Mapping[str, Any] = message.usage_metadata or {}
    return ChatResult(
        generations=[ChatGeneration(message=message)],
        llm_output={
            "token_usage": {
                "prompt_tokens": usage.get("input_tokens", 0),
                "completion_tokens": usage.get("output_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
            "model_name": "feedit",
        },
    )
