"""Asking a role for a completion or a score, within the run's deadline and token budget.

This is the one seam between the graph and the endpoints: a node says "ask role R" and gets
text and usage back. :class:`RunBudget` is shared by every branch of one run (in the same
process): when the deadline passes or the token budget is spent, it cancels the calls in
flight, so their HTTP requests close and the servers see a disconnect, and refuses new ones.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langgraph_feedit.config import RoleConfig
from langgraph_feedit.endpoints import ChatResult, Endpoint, Usage, get_endpoint

__all__ = ["BudgetExhausted", "RoleCaller", "RunBudget", "run_budget"]

T = TypeVar("T")


class BudgetExhausted(Exception):
    """The run's deadline passed or its token budget is spent; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RunBudget:
    """The deadline and token budget of one run, shared by all its branches."""

    def __init__(self, *, deadline_at: float | None, max_tokens: int | None) -> None:
        self.deadline_at = deadline_at
        self.max_tokens = max_tokens
        self.spent = 0
        self.reason: str | None = None
        self._event: asyncio.Event | None = None

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
        if self.deadline_at is None and self.max_tokens is None:
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


_budgets: OrderedDict[str, RunBudget] = OrderedDict()
_MAX_BUDGETS = 4096


def run_budget(run: Mapping[str, Any]) -> RunBudget:
    """The shared budget of the run described by ``run`` (the state's ``feedit_run``)."""
    key = str(run["key"])
    budget = _budgets.get(key)
    if budget is None:
        budget = RunBudget(deadline_at=run.get("deadline_at"), max_tokens=run.get("max_tokens"))
        _budgets[key] = budget
        while len(_budgets) > _MAX_BUDGETS:
            _budgets.popitem(last=False)
    return budget


def forget_budget(run: Mapping[str, Any]) -> None:
    _budgets.pop(str(run["key"]), None)


class RoleCaller:
    """Calls on behalf of one run: resolves each role's endpoint and applies its settings."""

    def __init__(self, run: Mapping[str, Any]) -> None:
        self.run = run
        self.budget = run_budget(run)

    def settings(self, role: str) -> RoleConfig:
        return RoleConfig.model_validate(self.run["roles"][role])

    async def _endpoint(self, role: str) -> tuple[Endpoint, str | None, RoleConfig]:
        rc = self.settings(role)
        if rc.base_url:
            return get_endpoint(rc, role=role), rc.model, rc
        from langgraph_feedit.embedded import EmbeddedSettings, get_embedded_server

        model_path = self.run.get("embedded_model")
        settings = EmbeddedSettings(model_path=Path(model_path) if model_path else None)
        server = await asyncio.to_thread(get_embedded_server, settings)
        return get_endpoint(rc, role=role, base_url=server.base_url), server.model, rc

    async def model_name(self, role: str) -> str:
        endpoint, model, _ = await self._endpoint(role)
        return model or await endpoint.default_model()

    async def complete(
        self, role: str, messages: Sequence[Mapping[str, Any]], *, index: int = 0
    ) -> ChatResult:
        """One completion by ``role``; sample ``index`` shifts a configured seed."""
        endpoint, model, rc = await self._endpoint(role)
        result = await self.budget.run(
            endpoint.chat(
                messages,
                model=model,
                role=role,
                temperature=rc.temperature,
                top_p=rc.top_p,
                max_tokens=rc.max_tokens,
                seed=None if rc.seed is None else rc.seed + index,
                stop=rc.stop,
                extra_body=rc.extra_body,
            )
        )
        self.budget.charge(result.usage)
        return result

    async def reward(self, messages: Sequence[Mapping[str, Any]]) -> tuple[float, Usage, str]:
        """A reward model's score of the conversation's last (assistant) turn."""
        endpoint, model, _ = await self._endpoint("judge")
        score, usage = await self.budget.run(endpoint.reward(messages, model=model))
        self.budget.charge(usage)
        return score, usage, model or await endpoint.default_model()
