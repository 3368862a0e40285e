"""Asking a role for a completion or a score, within the run's deadline and token budget.

This is the one seam between the graph and the endpoints: a node says "ask role R" and gets
text and usage back. :class:`RunBudget` is shared by every branch of one run (in the same
process): when the deadline passes or the token budget is spent, it cancels the calls in
flight, so their HTTP requests close and the servers see a disconnect, and refuses new ones.

:func:`active_run` turns a run's plain :class:`~langgraph_feedit.state.RunSpec` into its typed,
process-local view once: the roles' :class:`RoleConfig` objects, the resolved endpoints, the
budget and the *attempt* id. An attempt is one process working on the run: the first
invocation, or a resume (``ainvoke(None, config)``, a batch rerun after a kill, a LangGraph
Server retry). Each attempt has its own deadline and token budget (a resumed run gets fresh
ones: the deadline bounds how long its caller waits), and calls made by an earlier attempt
count as reused, not bought.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig

from langgraph_feedit.chatapi import ChatResult
from langgraph_feedit.config import ROLE_NAMES, FeeditConfig, RoleConfig
from langgraph_feedit.endpoints import Endpoint, get_endpoint
from langgraph_feedit.errors import EndpointTimeout
from langgraph_feedit.state import RunSpec
from langgraph_feedit.tracing import CallInfo, traced_chat
from langgraph_feedit.twins import SharedCalls
from langgraph_feedit.usage import Usage

__all__ = [
    "ActiveRun",
    "BudgetExhausted",
    "RoleCaller",
    "RunBudget",
    "active_run",
    "call_seed",
    "failure_kind",
    "failure_text",
    "forget_run",
]

T = TypeVar("T")


class BudgetExhausted(Exception):
    """The run's deadline passed or its token budget is spent; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def failure_text(exc: BaseException) -> str:
    """What a failed call says in its trace node and progress event."""
    if isinstance(exc, BudgetExhausted):
        return f"stopped: {exc.reason} reached"
    return str(exc)


def failure_kind(exc: BaseException) -> str:
    """What kind of failure ended a call: ``deadline`` or ``budget`` (the run ran out),
    ``timeout`` (the endpoint never answered in time) or ``backend`` (it answered an error)."""
    if isinstance(exc, BudgetExhausted):
        return exc.reason
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
    """Calls on behalf of one run: each role's endpoint, resolved once, and its settings.

    Build one from typed settings (``RoleCaller(roles)``, or :meth:`for_config`); the graph's
    nodes get theirs from :func:`active_run`.
    """

    def __init__(
        self,
        roles: Mapping[str, RoleConfig],
        *,
        embedded_model: str | None = None,
        budget: RunBudget | None = None,
        seed_key: str | None = None,
    ) -> None:
        self.roles = dict(roles)
        self.embedded_model = embedded_model
        self.budget = budget or RunBudget(deadline_s=None, max_tokens=None)
        self.seed_key = seed_key
        """Derives each call's seed where the role sets none (see :func:`call_seed`)."""
        self._endpoints: dict[tuple[str, int], tuple[Endpoint, str | None]] = {}

    @classmethod
    def for_config(cls, config: FeeditConfig) -> RoleCaller:
        """A caller for every role of ``config`` (no deadline or token budget)."""
        return cls({r: config.role(r) for r in ROLE_NAMES}, embedded_model=config.embedded_model)

    def settings(self, role: str) -> RoleConfig:
        return self.roles[role]

    async def _endpoint(self, role: str) -> tuple[Endpoint, str | None, RoleConfig]:
        rc = self.roles[role]
        # Endpoints belong to one event loop (see endpoints.py): resolve once per loop.
        key = (role, id(asyncio.get_running_loop()))
        found = self._endpoints.get(key)
        if found is None:
            if rc.base_url:
                found = (get_endpoint(rc, role=role), rc.model)
            else:
                from langgraph_feedit.embedded import EmbeddedSettings, get_embedded_server

                path = rc.embedded_model or self.embedded_model
                settings = EmbeddedSettings(model_path=Path(path) if path else None)
                server = await asyncio.to_thread(get_embedded_server, settings)
                found = (get_endpoint(rc, role=role, base_url=server.base_url), server.model)
            self._endpoints[key] = found
        return found[0], found[1], rc

    async def endpoint(self, role: str) -> Endpoint:
        """The endpoint ``role`` calls (what it has been found to support lives there)."""
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
    ) -> ChatResult:
        """One completion by ``role``, seeded by :func:`call_seed` (``info`` names the node).

        With ``config`` (a node's run configuration), the call is reported to its LangChain
        callbacks as a chat-model run, streamed from the endpoint when a handler listens.
        ``max_tokens`` and ``temperature`` replace the role's for this call (a principle
        judge reads one token at temperature 0); ``top_logprobs`` and ``json_schema`` are
        passed to :meth:`Endpoint.chat`.
        """
        endpoint, model, rc = await self._endpoint(role)
        if max_tokens is not None or temperature is not None:
            rc = rc.model_copy(
                update={
                    "max_tokens": rc.max_tokens if max_tokens is None else max_tokens,
                    "temperature": rc.temperature if temperature is None else temperature,
                }
            )

        def request(on_token: Any) -> Awaitable[ChatResult]:
            return self.budget.run(
                endpoint.chat(
                    messages,
                    model=model,
                    role=role,
                    temperature=rc.temperature,
                    top_p=rc.top_p,
                    max_tokens=rc.max_tokens,
                    seed=call_seed(rc.seed, self.seed_key, info, index),
                    stop=rc.stop,
                    extra_body=rc.extra_body,
                    on_token=on_token,
                    top_logprobs=top_logprobs,
                    json_schema=json_schema,
                )
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


class ActiveRun:
    """The typed, process-local view of one run: its caller, budget and attempt id."""

    __slots__ = ("attempt", "budget", "caller", "shared", "spec")

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.attempt = uuid.uuid4().hex
        self.budget = RunBudget(deadline_s=spec["deadline_s"], max_tokens=spec["max_tokens"])
        # Validated once by ``start``; rebuilt here without validating again.
        roles = {r: RoleConfig.model_construct(**spec["roles"][r]) for r in spec["roles"]}
        self.caller = RoleCaller(
            roles,
            embedded_model=spec["embedded_model"],
            budget=self.budget,
            seed_key=seed_key(spec),
        )
        # Calls identical candidates share, for this attempt (see ``twins``).
        self.shared = SharedCalls()


def seed_key(spec: RunSpec) -> str:
    """What a run's call seeds derive from: its cache key (a new one, as ``--fresh`` makes,
    draws new samples) or, with none set, the run's own key (kept in its checkpoint, so a
    resumed run draws the same samples and another run new ones), and its conversation."""
    conversation = json.dumps(spec.get("conversation"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.blake2b(conversation.encode(), digest_size=8).hexdigest()
    return f"{spec.get('cache_key') or spec['key']}:{digest}"


# Runs active in this process, least recently used first. A run touches its entry on every
# call, so only runs idle for longer than thousands of others take to start are evicted; an
# evicted run that comes back starts a new attempt (fresh budget), never a crash.
_active: OrderedDict[str, ActiveRun] = OrderedDict()
_MAX_ACTIVE = 16384


def active_run(spec: RunSpec) -> ActiveRun:
    """The process-local view of the run ``spec`` describes, made on first use."""
    key = spec["key"]
    run = _active.get(key)
    if run is None:
        run = ActiveRun(spec)
        _active[key] = run
        while len(_active) > _MAX_ACTIVE:
            _active.popitem(last=False)
    else:
        _active.move_to_end(key)
    return run


def forget_run(spec: RunSpec) -> None:
    """End this process's attempt at the run (its budget and attempt id go with it)."""
    _active.pop(spec["key"], None)
