"""LangChain chat models as roles: any ``BaseChatModel`` drafts, critiques, edits or judges.

A role is backed by a chat model when the operator gives one in Python
(``create_feedit_graph(config, models={"draft": ChatOpenAI(...), "default": ...})``) or names
one as ``"provider:model"`` (``models={"judge": "openai:gpt-4o-mini"}``, or
``roles.<role>.chat_model`` in a file), which LangChain's ``init_chat_model`` makes.

:class:`ChatModelRole` stands where an :class:`~langgraph_feedit.endpoints.Endpoint` stands
for a role: :meth:`ChatModelRole.chat` takes the same arguments and returns the same
:class:`~langgraph_feedit.chatapi.ChatResult`, so nodes and judges do not tell them apart.
What differs, and why:

- The call is the model's own run (``model.ainvoke`` with the node's configuration): LangChain
  callbacks, LangSmith and LangGraph's ``messages`` stream see the model report itself, and
  feedit adds its role, node and round to that run's metadata and tags instead of reporting
  the call a second time.
- Sampling settings are sent as call arguments only where the model has a field of that name
  (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``logprobs``/``top_logprobs``,
  ``extra_body``): a setting a model does not take is left out, not sent to fail. Only the
  settings the configuration or the run gives are sent; the model's own apply otherwise.
- The model's client retries as it was built to (``ChatOpenAI(max_retries=...)``); a failure
  that reaches feedit is final for that call and ends its branch as an endpoint's does.
- The reply goes through the same split as an endpoint's (:func:`~langgraph_feedit.chatapi.
  read_choices`): thinking in ``reasoning_content`` or in ``reasoning``/``thinking`` content
  blocks, or a ``<think>`` block at the start of the text, is kept off the answer.
- Logprobs come from ``response_metadata["logprobs"]`` (what ``ChatOpenAI(logprobs=True)``
  returns); a model that returns none gets the rating judge, as an endpoint would.
- A JSON schema is asked through ``with_structured_output(method="json_schema")``; a model
  without it is called without one (the result says so), as an endpoint that refuses
  ``response_format``.
- Calls to one model object share one concurrency limit per event loop (the role's
  ``max_concurrency``, the smallest where roles share a model).

A model given by the operator is the operator's: a run's context or thread state cannot choose
or replace it, and its identity (:func:`model_identity`: its class and parameters, never its
key) is part of the role's endpoint digest, so the call cache and the check of a resumed
state cover it. Making a model of a ``"provider:model"`` string and naming what a model is are
in :mod:`langgraph_feedit.chatmodel_specs` (re-exported here); this module calls it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableConfig

from langgraph_feedit.chatapi import (
    DEFAULT_THINK_TAGS,
    ChatResult,
    IncompleteReply,
    JsonMode,
    read_choices,
    why_no_answer,
)
from langgraph_feedit.chatmodel_specs import ModelSpec, model_identity, model_name, resolve_model
from langgraph_feedit.errors import (
    ConfigError,
    EndpointError,
    EndpointTimeout,
    FeeditError,
    redact,
)
from langgraph_feedit.usage import Usage

__all__ = [
    "ChatModelRole",
    "ModelSpec",
    "chat_model_role",
    "model_identity",
    "resolve_model",
]


class ChatModelRole:
    """A chat model as a role's backend: :class:`~langgraph_feedit.endpoints.Endpoint`'s
    interface for nodes and judges, over ``model.ainvoke``. Get one with
    :func:`chat_model_role`, so every run on a loop shares its concurrency limit."""

    def __init__(self, model: BaseChatModel, *, max_concurrency: int = 16) -> None:
        self.model = model
        self.name = model_name(model)
        self.base_url = f"chat-model:{type(model).__name__}"
        """What the trace and errors show where an endpoint shows its URL."""
        self.limit = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        fields = type(model).model_fields
        self._fields = frozenset(fields) | frozenset(
            f.alias for f in fields.values() if f.alias is not None
        )
        self.json_modes: list[JsonMode] = ["json_schema"]
        """``json_schema`` until the model turns out not to take a schema."""
        self.json_mode_known = False
        self.logprobs_supported: bool | None = None
        """Whether the model returns logprobs: unknown until tried."""
        self.yes_no_unanswered = False
        """As :attr:`Endpoint.yes_no_unanswered`: the principle judge rates instead."""
        self.n_supported: bool | None = False
        self._structured: dict[str, Runnable[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"ChatModelRole({type(self.model).__name__}, model={self.name!r})"

    def label(self, model: str | None) -> str:
        return f"{type(self.model).__name__} (model {model or self.name})"

    def takes(self, field: str) -> bool:
        """Whether the model has a setting of this name (so a call may pass it)."""
        return field in self._fields

    async def default_model(self) -> str:
        return self.name

    async def reward(self, *args: Any, **kwargs: Any) -> tuple[float, Usage]:
        raise ConfigError(
            "the reward judge scores through a reward model's pooling endpoint, which a chat "
            "model does not have: give the judge role a base_url, or choose roles.judge.kind "
            "'principle' or 'llm'",
            key="roles.judge.kind",
        )

    def _schema_runnable(
        self, json_schema: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> Runnable[Any, Any] | None:
        """The model constrained by ``json_schema`` (LangChain's ``with_structured_output``,
        which keeps the raw reply), with this call's ``settings`` as the model's own (the
        structured runnable passes no call arguments to the model)."""
        key = json.dumps([json_schema, settings], sort_keys=True, default=str)
        found = self._structured.get(key)
        if found is None:
            model = self.model.model_copy(update=dict(settings)) if settings else self.model
            try:
                found = model.with_structured_output(
                    dict(json_schema), method="json_schema", include_raw=True
                )
            except (NotImplementedError, TypeError, ValueError):
                # A model without structured output is called without a schema, as an
                # endpoint that refuses response_format.
                self.json_modes = []
                self.json_mode_known = True
                return None
            if len(self._structured) >= 64:  # seeds differ per call: keep a few, not all
                self._structured.clear()
            self._structured[key] = found
        return found

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        role: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        top_logprobs: int | None = None,
        json_schema: Mapping[str, Any] | None = None,
        think_tags: tuple[str, str] = DEFAULT_THINK_TAGS,
        answer_required: bool = True,
        config: RunnableConfig | None = None,
    ) -> ChatResult:
        """One reply of the model to ``messages`` (OpenAI-shaped dicts), as an endpoint's.

        Raises:
            EndpointError: the model's call failed (after its own retries), or its reply is
                no answer; ``EndpointTimeout`` where the model's client timed out.
        """
        kwargs: dict[str, Any] = {}
        for name, value in (
            ("temperature", temperature),
            ("top_p", top_p),
            ("max_tokens", max_tokens),
            ("seed", seed),
        ):
            if value is not None and self.takes(name):
                kwargs[name] = value
        if extra_body and self.takes("extra_body"):
            kwargs["extra_body"] = {**(getattr(self.model, "extra_body", None) or {}), **extra_body}
        asks_logprobs = top_logprobs is not None
        if asks_logprobs and self.takes("logprobs") and self.takes("top_logprobs"):
            kwargs.update(logprobs=True, top_logprobs=top_logprobs)
        structured = None
        if json_schema is not None and self.json_modes:
            structured = self._schema_runnable(json_schema, kwargs)
        lc_messages = convert_to_messages([dict(m) for m in messages])
        stop_list = list(stop) if stop else None
        async with self._slots:
            try:
                if structured is not None:
                    out = await structured.ainvoke(lc_messages, config, stop=stop_list)
                    message = out["raw"]
                    self.json_mode_known = True
                else:
                    message = await self.model.ainvoke(
                        lc_messages, config, stop=stop_list, **kwargs
                    )
            except (FeeditError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if structured is not None and "response_format" in str(exc):
                    # The server refused the schema: call as an endpoint does, without one.
                    self.json_modes = []
                    self.json_mode_known = True
                    return await self.chat(
                        messages,
                        model=model,
                        role=role,
                        temperature=temperature,
                        top_p=top_p,
                        max_tokens=max_tokens,
                        seed=seed,
                        stop=stop,
                        extra_body=extra_body,
                        top_logprobs=top_logprobs,
                        json_schema=None,
                        think_tags=think_tags,
                        answer_required=answer_required,
                        config=config,
                    )
                raise self._failure(exc, role) from exc
        result = self._result(message, think_tags, role)
        if structured is not None:
            result = _with_json_mode(result, "json_schema")
        if asks_logprobs:
            self.logprobs_supported = any(lp is not None for lp in result.logprobs)
        if answer_required:
            try:
                why_no_answer(result.incomplete)
            except IncompleteReply as exc:
                raise EndpointError(
                    str(exc), endpoint=self.label(result.model), role=role, status=200
                ) from exc
        return result

    def _result(self, message: Any, tags: tuple[str, str], role: str | None) -> ChatResult:
        """The model's reply as an endpoint's: one choice, split into thinking and answer by
        the same reading (:func:`~langgraph_feedit.chatapi.read_choices`)."""
        if not isinstance(message, BaseMessage):
            raise EndpointError(
                f"the chat model returned a {type(message).__name__}, not a message",
                endpoint=self.label(None),
                role=role,
            )
        meta = dict(message.response_metadata or {})
        text, thought = _text_and_reasoning(message)
        reply: dict[str, Any] = {
            "choices": [
                {
                    "index": 0,
                    "message": {"content": text, "reasoning_content": thought},
                    "finish_reason": _finish_reason(meta),
                    "logprobs": meta.get("logprobs"),
                }
            ],
            "usage": _openai_usage(getattr(message, "usage_metadata", None)),
        }
        choices = read_choices(reply, tags)
        if choices is None:  # pragma: no cover - one choice is always there
            raise EndpointError("the reply has no answer", endpoint=self.label(None), role=role)
        name = meta.get("model_name") or meta.get("model") or self.name
        return ChatResult(
            texts=choices.texts,
            usage=choices.usage,
            model=str(name),
            finish_reasons=choices.reasons,
            logprobs=choices.logprobs,
            reasonings=choices.reasonings,
            incomplete=choices.incomplete,
        )

    def _failure(self, exc: Exception, role: str | None) -> EndpointError:
        """The package's error for a call the model's client gave up on (its message redacted:
        a provider may echo the key it was sent)."""
        said = redact(f"{type(exc).__name__}: {exc}")[:500]
        if "timeout" in type(exc).__name__.lower() or isinstance(exc, TimeoutError):
            return EndpointTimeout(said, endpoint=self.label(None), role=role, retryable=True)
        status = getattr(exc, "status_code", None)
        return EndpointError(
            said,
            endpoint=self.label(None),
            role=role,
            status=status if isinstance(status, int) else None,
            retryable=False,
        )


def _with_json_mode(result: ChatResult, mode: JsonMode) -> ChatResult:
    import dataclasses

    return dataclasses.replace(result, json_mode=mode)


def _text_and_reasoning(message: BaseMessage) -> tuple[str, str | None]:
    """A message's answer text and its thinking, wherever a provider puts them:
    ``reasoning_content`` in ``additional_kwargs`` (DeepSeek, vLLM through some clients), or
    ``reasoning``/``thinking`` content blocks (LangChain's standard blocks, Anthropic)."""
    texts: list[str] = []
    thoughts: list[str] = []
    field = message.additional_kwargs.get("reasoning_content")
    if isinstance(field, str) and field:
        thoughts.append(field)
    content = message.content
    if isinstance(content, str):
        texts.append(content)
    else:
        for block in content:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, dict):
                kind = block.get("type")
                if kind == "text" and isinstance(block.get("text"), str):
                    texts.append(block["text"])
                elif kind in ("reasoning", "thinking"):
                    said = block.get("reasoning") or block.get("thinking")
                    if isinstance(said, str) and said:
                        thoughts.append(said)
    return "".join(texts), "\n\n".join(thoughts) or None


# Providers' stop reasons in OpenAI's words, so ``finish_reason`` means one thing everywhere.
_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "STOP": "stop"}


def _finish_reason(meta: Mapping[str, Any]) -> str:
    for key in ("finish_reason", "stop_reason", "done_reason"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            return _REASONS.get(value, value)
    # A model that says nothing (a fake, some local wrappers) answered whole.
    return "stop"


def _openai_usage(usage: Any) -> dict[str, Any] | None:
    """A message's ``usage_metadata`` in the shape of an OpenAI reply's ``usage``."""
    if not isinstance(usage, Mapping):
        return None
    out: dict[str, Any] = {
        "prompt_tokens": int(usage.get("input_tokens") or 0),
        "completion_tokens": int(usage.get("output_tokens") or 0),
    }
    cached = (usage.get("input_token_details") or {}).get("cache_read")
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": int(cached)}
    reasoning = (usage.get("output_token_details") or {}).get("reasoning")
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": int(reasoning)}
    return out


# -- one role backend per model and event loop ---------------------------------------------------

_roles: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, ChatModelRole]]
_roles = weakref.WeakKeyDictionary()
_roles_lock = threading.Lock()


def chat_model_role(model: BaseChatModel, *, max_concurrency: int | None = None) -> ChatModelRole:
    """The shared :class:`ChatModelRole` of ``model`` on the running event loop: every run on
    the loop that calls this model object shares its limit (the smallest asked for)."""
    loop = asyncio.get_running_loop()
    limit = max_concurrency or 16
    with _roles_lock:
        per_loop = _roles.setdefault(loop, {})
        found = per_loop.get(id(model))
        if found is None or found.model is not model:
            found = per_loop[id(model)] = ChatModelRole(model, max_concurrency=limit)
        elif limit < found.limit:
            # A semaphore cannot shrink in place; new calls queue on the smaller one.
            found.limit = limit
            found._slots = asyncio.Semaphore(limit)
    return found
