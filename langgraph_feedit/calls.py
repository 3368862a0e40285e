"""Asking a role for a completion or a score, within the run's deadline and token budget.

This is the one seam between the graph and the endpoints: a node says "ask role R" and gets
text and usage back. :class:`RunBudget` is shared by every branch of one run (in the same
process): when the deadline passes or the token budget is spent, it cancels the calls in
flight, so their HTTP requests close and the servers see a disconnect, and refuses new ones.
:class:`RoleCaller` holds each role's resolved endpoint (or chat model) and settings. A run's
caller and budget are made by :class:`~langgraph_feedit.runs.ActiveRun`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig

from langgraph_feedit.chatapi import ChatResult
from langgraph_feedit.chatmodels import (
    ChatModelRole,
    chat_model_role,
    resolve_model,
)
from langgraph_feedit.config import (
    ROLE_NAMES,
    FeeditConfig,
    RoleConfig,
)
from langgraph_feedit.endpoints import (
    ClientSource,
    Endpoint,
    get_endpoint,
    role_clients,
)
from langgraph_feedit.errors import EndpointTimeout, FeeditError
from langgraph_feedit.state import CallFailure
from langgraph_feedit.tracing import CallInfo, call_run_id, traced_chat
from langgraph_feedit.usage import Usage

__all__ = [
    "Backend",
    "BudgetExhausted",
    "RoleCaller",
    "RunBudget",
    "call_seed",
    "failure_kind",
    "failure_text",
]

T = TypeVar("T")


class BudgetExhausted(FeeditError):
    """The run's deadline passed or its token budget is spent; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def failure_text(exc: BaseException) -> str:
    """What a failed call says in its trace node and progress event."""
    if isinstance(exc, BudgetExhausted):
        return f"stopped: {exc.reason} reached"
    return str(exc)


def failure_kind(exc: BaseException) -> CallFailure:
    """What kind of failure ended a call: ``deadline`` or ``budget`` (the run ran out),
    ``timeout`` (the endpoint never answered in time) or ``backend`` (it answered an error)."""
    if isinstance(exc, BudgetExhausted):
        return "deadline" if exc.reason == "deadline" else "budget"
    if isinstance(exc, EndpointTimeout):
        return "timeout"
    return "backend"


class RunBudget:
    """The deadline and token budget of one attempt at a run, shared by all its branches."""

    def __init__(self, *, deadline_s: float | None, max_tokens: int | None) -> None:
        self.deadline_at = None if deadline_s is None else time.time() + deadline_s
        self.max_tokens = max_tokens
        self.spent = 0
        self.reason: str | None = None
        self._event: asyncio.Event | None = None

    @property
    def limited(self) -> bool:
        return self.deadline_at is not None or self.max_tokens is not None

    @property
    def exhausted(self) -> bool:
        if self.reason is None and self.deadline_at is not None and time.time() >= self.deadline_at:
            self._exhaust("deadline")
        return self.reason is not None

    def _exhaust(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        if self._event is not None:
            self._event.set()

    def charge(self, usage: Usage) -> None:
        self.spent += usage.total_tokens
        if self.max_tokens is not None and self.spent >= self.max_tokens:
            self._exhaust("budget")

    async def run(self, call: Awaitable[T]) -> T:
        """Await ``call`` unless the deadline or budget runs out first; then cancel it.

        Raises:
            BudgetExhausted: the run ran out before or while the call was made.
        """
        if self.exhausted:
            _close(call)
            raise BudgetExhausted(self.reason or "budget")
        if not self.limited:
            return await call
        if self._event is None:
            self._event = asyncio.Event()
        task = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self._event.wait())
        timeout = None if self.deadline_at is None else max(0.0, self.deadline_at - time.time())
        try:
            done, _ = await asyncio.wait(
                {task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            self._exhaust("deadline" if not done else (self.reason or "budget"))
            raise BudgetExhausted(self.reason or "deadline")
        finally:
            for t in (task, stop):
                if not t.done():
                    t.cancel()
            # Wait for the cancelled request to unwind, so its connection is really closed.
            await asyncio.gather(task, stop, return_exceptions=True)


def _close(call: Awaitable[Any]) -> None:
    close = getattr(call, "close", None)
    if close is not None:
        close()


Backend = Endpoint | ChatModelRole
"""What a role calls: an OpenAI-compatible endpoint, or a LangChain chat model."""


def call_seed(
    fixed: int | None, run_key: str | None, info: CallInfo | None, index: int
) -> int | None:
    """The seed one call sends: ``fixed + index`` when the role sets a seed (the samples
    repeat, by request); else one derived from the run's seed key, the call's node and
    kind, and its sample index, so every call of a tree draws its own sample, a resumed run
    draws the same ones again, and another run (or cache key) draws new ones. ``None``
    without a run key (a caller outside a graph run)."""
    if fixed is not None:
        return fixed + index
    if run_key is None:
        return None
    node = "" if info is None else f"{info.kind}:{info.node_id}"
    digest = hashlib.blake2b(f"{run_key}\0{node}\0{index}".encode(), digest_size=4).digest()
    # 31 bits: every backend takes a non-negative int32 (llama.cpp's is a uint32).
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class RoleCaller:
    """Calls on behalf of one run: each role's endpoint (or chat model), resolved once, and
    its settings.

    Build one from typed settings (``RoleCaller(roles)``, or :meth:`for_config`); the graph's
    nodes get theirs from :meth:`Operator.run`. ``models`` holds the chat models the operator
    gave per role (see :mod:`langgraph_feedit.chatmodels`); they take precedence over the
    role's settings of where calls go.
    """

    def __init__(
        self,
        roles: Mapping[str, RoleConfig],
        *,
        embedded_model: str | None = None,
        budget: RunBudget | None = None,
        models: Mapping[str, BaseChatModel] | None = None,
        seed_key: str | None = None,
        clients: Mapping[str, ClientSource] | None = None,
    ) -> None:
        self.roles = dict(roles)
        self.embedded_model = embedded_model
        self.clients = role_clients(clients, list(self.roles))
        """The operator's own clients, per role (see :func:`.endpoints.get_endpoint`)."""
        self.budget = budget or RunBudget(deadline_s=None, max_tokens=None)
        self.models = dict(models or {})
        self._endpoints: dict[tuple[str, int], tuple[Backend, str | None]] = {}
        self.seed_key = seed_key
        """Derives each call's seed where the role sets none (see :func:`call_seed`)."""

    @classmethod
    def for_config(cls, config: FeeditConfig) -> RoleCaller:
        """A caller for every role of ``config`` (no deadline or token budget)."""
        return cls({r: config.role(r) for r in ROLE_NAMES}, embedded_model=config.embedded_model)

    def settings(self, role: str) -> RoleConfig:
        return self.roles[role]

    def chat_model(self, role: str) -> BaseChatModel | None:
        """The chat model ``role`` calls, or ``None`` where it calls an endpoint."""
        model = self.models.get(role)
        if model is not None:
            return model
        rc = self.roles[role]
        if rc.chat_model is None:
            return None
        api_key = rc.api_key(role) if rc.api_key_env else None
        return resolve_model(rc.chat_model, role=role, base_url=rc.base_url, api_key=api_key)

    async def _endpoint(self, role: str) -> tuple[Backend, str | None, RoleConfig]:
        rc = self.roles[role]
        # Endpoints belong to one event loop (see endpoints.py): resolve once per loop.
        key = (role, id(asyncio.get_running_loop()))
        found = self._endpoints.get(key)
        if found is None:
            chat = self.chat_model(role)
            if chat is not None:
                backend = chat_model_role(chat, max_concurrency=rc.max_concurrency)
                found = (backend, backend.name)
            elif role in self.clients:
                found = (get_endpoint(rc, role=role, client=self.clients[role]), rc.model)
            elif rc.base_url:
                found = (get_endpoint(rc, role=role), rc.model)
            else:
                from langgraph_feedit.embedded import EmbeddedSettings, get_embedded_server

                path = rc.embedded_model or self.embedded_model
                settings = EmbeddedSettings(model_path=Path(path) if path else None)
                server = await asyncio.to_thread(get_embedded_server, settings)
                found = (get_endpoint(rc, role=role, base_url=server.base_url), server.model)
            self._endpoints[key] = found
        return found[0], found[1], rc

    async def endpoint(self, role: str) -> Backend:
        """The endpoint or chat model ``role`` calls (what it has been found to support lives
        there)."""
        return (await self._endpoint(role))[0]

    async def model_name(self, role: str) -> str:
        endpoint, model, _ = await self._endpoint(role)
        return model or await endpoint.default_model()

    async def complete(
        self,
        role: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        index: int = 0,
        config: RunnableConfig | None = None,
        info: CallInfo | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_logprobs: int | None = None,
        json_schema: Mapping[str, Any] | None = None,
        think: bool | None = None,
        answer_required: bool = True,
    ) -> ChatResult:
        """One completion by ``role``, seeded by :func:`call_seed` (``info`` names the node).

        With ``config`` (a node's run configuration), the call is reported to its LangChain
        callbacks as a chat-model run, streamed from the endpoint when a handler listens.
        ``max_tokens`` and ``temperature`` replace the role's for this call (a principle
        judge reads one token at temperature 0); ``top_logprobs`` and ``json_schema`` are
        passed to :meth:`Endpoint.chat`, and so is ``answer_required``. The role's thinking
        setting is sent the way it names (``think`` replaces its ``think`` for this call),
        and its tags split each reply into thinking and answer.
        """
        endpoint, model, rc = await self._endpoint(role)
        if max_tokens is not None or temperature is not None:
            rc = rc.model_copy(
                update={
                    "max_tokens": rc.max_tokens if max_tokens is None else max_tokens,
                    "temperature": rc.temperature if temperature is None else temperature,
                }
            )

        thinking = rc.thinking_settings()
        sent, extra_body = thinking.apply(messages, rc.extra_body, think=think)

        # What every backend is asked; an endpoint streams besides, a chat model is given the
        # run configuration to report its own run with.
        asked: dict[str, Any] = {
            "model": model,
            "role": role,
            "temperature": rc.temperature,
            "top_p": rc.top_p,
            "max_tokens": rc.max_tokens,
            "seed": call_seed(rc.seed, self.seed_key, info, index),
            "stop": rc.stop,
            "extra_body": extra_body,
            "top_logprobs": top_logprobs,
            "json_schema": json_schema,
            "think_tags": thinking.tags,
            "answer_required": answer_required,
        }
        if isinstance(endpoint, ChatModelRole):
            # The chat model reports its own run to the callbacks (LangSmith, the messages
            # stream): feedit adds where in the tree it belongs, and reports nothing twice.
            run_config = None if config is None else _model_run(config, info, role)
            result = await self.budget.run(endpoint.chat(sent, **asked, config=run_config))
            self.budget.charge(result.usage)
            return result

        def request(on_token: Any, on_reasoning: Any = None) -> Awaitable[ChatResult]:
            return self.budget.run(
                endpoint.chat(sent, **asked, on_token=on_token, on_reasoning=on_reasoning)
            )

        if config is None:
            result = await request(None)
        else:
            result = await traced_chat(
                config,
                info or CallInfo(role=role),
                messages,
                request,
                model=model,
                endpoint=endpoint.base_url,
                settings=rc,
            )
        self.budget.charge(result.usage)
        return result

    async def reward(self, messages: Sequence[Mapping[str, Any]]) -> tuple[float, Usage, str]:
        """A reward model's score of the conversation's last (assistant) turn."""
        endpoint, model, _ = await self._endpoint("judge")
        score, usage = await self.budget.run(endpoint.reward(messages, model=model))
        self.budget.charge(usage)
        return score, usage, model or await endpoint.default_model()


def _model_run(config: RunnableConfig, info: CallInfo | None, role: str) -> RunnableConfig:
    """The configuration a chat model's call runs with: the node's callbacks, and the role,
    tree node and round in its metadata and tags (as :func:`traced_chat` shows an
    endpoint's call)."""
    info = info or CallInfo(role=role)
    metadata = {
        "feedit_role": info.role,
        "feedit_id": info.node_id,
        "feedit_kind": info.kind,
        "feedit_round": info.round,
    }
    tags = ["feedit", f"feedit:{info.role}"]
    if info.kind and info.kind != info.role:
        tags.append(f"feedit:{info.kind}")
    out: RunnableConfig = {
        "callbacks": config.get("callbacks"),
        "tags": [*(config.get("tags") or []), *tags],
        "metadata": {
            **(config.get("metadata") or {}),
            **{k: v for k, v in metadata.items() if v is not None},
        },
        "run_name": f"feedit:{info.role}",
    }
    if (run_id := call_run_id(info)) is not None:
        out["run_id"] = run_id  # its message's id is then the one the final answer reuses
    if "configurable" in config:
        out["configurable"] = config["configurable"]
    return out
