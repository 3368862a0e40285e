"""Asking a role for a completion or a score, within the run's deadline and token budget.

This is the one seam between the graph and the endpoints: a node says "ask role R" and gets
text and usage back. :class:`RunBudget` is shared by every branch of one run (in the same
process): when the deadline passes or the token budget is spent, it cancels the calls in
flight, so their HTTP requests close and the servers see a disconnect, and refuses new ones.

:class:`Operator` turns a run's plain :class:`~langgraph_feedit.state.RunSpec` into its typed,
process-local view once (:class:`ActiveRun`): the roles' :class:`RoleConfig` objects, taken from
the graph's configuration and never from state, the resolved endpoints, the budget and the
*attempt* id. An attempt is one process working on the run: the first
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
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, TypeAdapter, ValidationError

from langgraph_feedit.chatapi import ChatResult
from langgraph_feedit.chatmodels import (
    ChatModelRole,
    chat_model_role,
    model_identity,
    resolve_model,
)
from langgraph_feedit.config import (
    ROLE_NAMES,
    FeeditConfig,
    RoleConfig,
    RoleName,
    deep_merge,
    resolve_config,
)
from langgraph_feedit.endpoints import (
    ClientSource,
    Endpoint,
    client_base_url,
    get_endpoint,
    role_clients,
)
from langgraph_feedit.errors import ConfigError, EndpointTimeout, FeeditError
from langgraph_feedit.overrides import (
    FLAT_KEYS,
    RUN_ROLES,
    check_untrusted_overrides,
    expand_flat,
)
from langgraph_feedit.prompts import BUILTIN_TEMPLATES
from langgraph_feedit.state import CallFailure, RunSpec
from langgraph_feedit.tracing import CallInfo, call_run_id, traced_chat
from langgraph_feedit.twins import SharedCalls
from langgraph_feedit.usage import Usage

__all__ = [
    "RUN_SAMPLING",
    "ActiveRun",
    "Backend",
    "BudgetExhausted",
    "Operator",
    "RoleCaller",
    "RunBudget",
    "bound",
    "call_seed",
    "endpoint_identity",
    "failure_kind",
    "failure_text",
    "find_run",
    "forget_run",
    "make_spec",
    "operator_models",
    "role_settings",
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


RUN_SAMPLING = ("temperature", "top_p", "max_tokens", "seed", "stop")
"""The role settings a run's spec carries (a run may tune them; see ``overrides``). Where a
call goes, with which key, model, extra fields, principles and template file, is never read
from a run's state: it comes from the graph's configuration (:class:`Operator`)."""

# The roles a run calls (``overrides.RUN_ROLES`` less ``default``, which is no role of its own).
_RUN_ROLES = cast(tuple[RoleName, ...], tuple(r for r in RUN_ROLES if r != "default"))

# The operator's side of a role: what the spec names only by a digest (``endpoint_identity``).
_DESTINATION = (
    "base_url",
    "model",
    "chat_model",
    "extra_body",
    "principles",
    "thinking",
    "function",
    "questions",
    "combine",
)
_DESTINATION_IF_SET = ("headers", "query", "api_version", "azure_deployment")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def endpoint_identity(
    rc: RoleConfig,
    embedded_model: str | None,
    chat_model: BaseChatModel | None = None,
    client_url: str | None = None,
) -> str:
    """A digest of where a role's calls go and what the operator fixed for them: base URL (or
    the embedded model, or the base URL of the client the operator handed in for the role),
    model, a chat model given in Python (its class and parameters, see
    :func:`~langgraph_feedit.chatmodels.model_identity`), extra fields, principles, a template
    file, and the client settings that change what a server is asked (headers, query, Azure's
    version and deployment). It keys the call cache, and it is how a run's state is checked
    against the graph's configuration, without the state showing any of them (a thread is
    readable by every client of a server)."""
    ident: dict[str, Any] = {k: _plain(getattr(rc, k)) for k in _DESTINATION}
    if ident["principles"] is not None:
        ident["principles"] = [p.model_dump() for p in rc.principle_list()]
    if chat_model is not None:
        ident["chat_model"] = f"object:{model_identity(chat_model)}"
    elif client_url is not None:
        ident["base_url"] = f"client:{client_url}"
    elif not rc.base_url and rc.chat_model is None:
        ident["base_url"] = f"embedded:{rc.embedded_model or embedded_model or 'default'}"
    for k in _DESTINATION_IF_SET:
        if getattr(rc, k) is not None:  # absent when unset: digests made before stay valid
            ident[k] = getattr(rc, k)
    if rc.template not in (None, *BUILTIN_TEMPLATES):
        ident["template"] = rc.template
    blob = json.dumps(ident, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def role_settings(
    config: FeeditConfig, role: RoleName, models: Mapping[str, BaseChatModel] | None = None
) -> RoleConfig:
    """A role's effective settings in a run. A role backed by a chat model keeps only the
    sampling settings the configuration or the run gives: the built-in defaults (a
    temperature of 0.7, 1024 tokens) would override what the model was built with."""
    rc = config.role(role)
    if not ((models and role in models) or rc.chat_model is not None):
        return rc
    given = config.roles.default.model_fields_set | getattr(config.roles, role).model_fields_set
    return rc.model_copy(update={k: None for k in RUN_SAMPLING if k not in given})


def make_spec(
    config: FeeditConfig,
    conversation: list[dict[str, Any]],
    *,
    key: str | None = None,
    started: float | None = None,
    models: Mapping[str, BaseChatModel] | None = None,
    client_urls: Mapping[str, str] | None = None,
) -> RunSpec:
    """The run spec of a resolved configuration: what the run's state carries and every node
    reads. Role endpoints (and chat models, from ``models``) appear as digests only; each
    role's sampling settings, and its template when it is a built-in set, as values (a run
    may choose those)."""
    roles: dict[str, dict[str, Any]] = {}
    endpoints: dict[str, str] = {}
    for r in _RUN_ROLES:
        rc = role_settings(config, r, models)
        tuned = {k: getattr(rc, k) for k in RUN_SAMPLING if getattr(rc, k) is not None}
        if rc.template in BUILTIN_TEMPLATES:
            tuned["template"] = rc.template
        roles[r] = tuned
        endpoints[r] = endpoint_identity(
            rc, config.embedded_model, (models or {}).get(r), (client_urls or {}).get(r)
        )
    w, d = config.width, config.depth
    return {
        "key": key or uuid.uuid4().hex,
        "started": time.time() if started is None else started,
        "conversation": conversation,
        "roles": roles,
        "endpoints": endpoints,
        "drafts": w.drafts,
        "critiques": w.critiques,
        "edits": w.edits,
        "max_rounds": d.max_rounds,
        "stop_score": d.stop_score,
        "beam": d.beam,
        "skip_perfect": d.skip_perfect,
        "critique_samples": d.max_critique_samples if d.skip_perfect else 1,
        "deadline_s": config.budget.deadline_s,
        "max_tokens": config.budget.max_tokens,
        "judge": config.role("judge").kind or "principle",
        "trivial": w.drafts == 1 and not (d.max_rounds >= 1 and w.critiques >= 1),
        "cache_key": config.cache_key,
        "preset": config.preset,
        "answer_schema": config.answer_schema,
    }


def _tunables(spec: RunSpec) -> dict[str, Any]:
    """A spec's run-tunable settings as per-run overrides (the shape of a run's ``context``),
    so that settings found in state pass the same checks as settings sent by a client."""
    roles: dict[str, dict[str, Any]] = {r: dict(v) for r, v in spec["roles"].items()}
    roles.setdefault("judge", {})["kind"] = spec["judge"]
    depth: dict[str, Any] = {
        "max_rounds": spec["max_rounds"],
        "stop_score": spec["stop_score"],
        "beam": spec["beam"],
        "skip_perfect": spec["skip_perfect"],
    }
    if spec["skip_perfect"]:
        depth["max_critique_samples"] = spec["critique_samples"]
    out: dict[str, Any] = {
        "width": {"drafts": spec["drafts"], "critiques": spec["critiques"], "edits": spec["edits"]},
        "depth": depth,
        "budget": {"deadline_s": spec["deadline_s"], "max_tokens": spec["max_tokens"]},
        "roles": roles,
        "cache_key": spec["cache_key"],
    }
    if spec.get("preset") is not None:
        out["preset"] = spec["preset"]
    if spec.get("answer_schema") is not None:
        out["answer_schema"] = spec["answer_schema"]
    return out


_SPEC = TypeAdapter(RunSpec)


class Operator:
    """What a graph was built with: the operator's configuration, preset and context policy.

    Every node resolves its run from here, never from state alone. A run's state (and any
    ``Send`` payload, ``update_state`` or checkpoint) is client-writable on a server: what it
    may choose is what a run's context may (width, depth, budget, sampling, a built-in
    template, the judge kind), and it is checked the same way; where calls go, with which key,
    model, extra fields, principles or template file comes from the configuration alone.
    """

    def __init__(
        self,
        config: FeeditConfig,
        preset: str | None,
        context_allow: Collection[str] | None,
        models: Mapping[str, Any] | None = None,
        clients: Mapping[str, ClientSource] | None = None,
    ) -> None:
        self.config = config
        self.preset = preset
        self.context_allow = None if context_allow is None else tuple(context_allow)
        self.models = operator_models(models)
        # The operator's own clients: only this object holds them, nothing a run writes.
        self.clients = role_clients(clients, ROLE_NAMES)
        urls = {id(c): client_base_url(c) for c in self.clients.values()}  # once per client
        self.client_urls = {r: urls[id(c)] for r, c in self.clients.items()}

    def resolve(self, context: Any) -> FeeditConfig:
        """This run's configuration: the graph's, with the run's ``context`` laid over (checked
        as untrusted input when the graph was built with ``context_allow``)."""
        overrides: Mapping[str, Any] | None = None
        if context is not None:
            overrides = context if isinstance(context, Mapping) else dict(vars(context))
        if overrides and any(k in FLAT_KEYS for k in overrides):
            # The short names (``{"drafts": 8}``), laid over the sections given beside them.
            flat = {k: v for k, v in overrides.items() if k in FLAT_KEYS}
            rest = {k: v for k, v in overrides.items() if k not in FLAT_KEYS}
            overrides = deep_merge(rest, expand_flat(flat))
        if overrides and self.context_allow is not None:
            check_untrusted_overrides(overrides, allow=self.context_allow)
        return resolve_config(self.config, preset=self.preset, overrides=overrides)

    def start(self, config: FeeditConfig, conversation: list[dict[str, Any]]) -> ActiveRun:
        """A new run of the resolved ``config`` (the ``start`` node's)."""
        spec = make_spec(config, conversation, models=self.models, client_urls=self.client_urls)
        run = ActiveRun(spec, config, self)
        _remember(run)
        return run

    def run(self, spec: Any, context: Any) -> ActiveRun:
        """The process-local run ``spec`` (from state or a ``Send``) names, rebuilt from the
        configuration and checked against it the first time this process sees it.

        Raises:
            ConfigError: the spec is malformed, asks for what a run may not choose, or names
                other endpoints than this graph's configuration gives (a forged thread state,
                or a run resumed with another context than it started with).
        """
        key = spec.get("key") if isinstance(spec, Mapping) else None
        run = _active.get(key) if isinstance(key, str) else None
        if run is not None:
            if run.operator is not self:
                raise ConfigError("the run in this thread's state belongs to another graph")
            _active.move_to_end(run.spec["key"])
            return run
        run = self._rebuild(spec, context)
        _remember(run)
        return run

    def _rebuild(self, spec: Any, context: Any) -> ActiveRun:
        try:
            given = _SPEC.validate_python(spec)
        except ValidationError as exc:
            raise ConfigError(
                f"the run settings in this thread's state are malformed ({exc.error_count()} "
                "error(s)): start a new run on the thread",
                source="thread state",
            ) from None
        config = self.resolve(context)
        try:
            tunables = _tunables(given)
            # State is checked as a run's context is on a server, whoever wrote it.
            check_untrusted_overrides(tunables, allow=())
            config = resolve_config(config, overrides=tunables, source="thread state")
        except ConfigError as exc:
            raise ConfigError(
                f"the run settings in this thread's state: {exc}",
                key=exc.key,
                source="thread state",
            ) from None
        rebuilt = make_spec(
            config,
            given["conversation"],
            key=given["key"],
            started=given["started"],
            models=self.models,
            client_urls=self.client_urls,
        )
        if rebuilt["endpoints"] != given["endpoints"]:
            raise ConfigError(
                "the run in this thread's state names other endpoints than this graph's "
                "configuration gives it: resume a run with the context it started with",
                source="thread state",
            )
        return ActiveRun(rebuilt, config, self)


def operator_models(models: Mapping[str, Any] | None) -> dict[str, BaseChatModel]:
    """The chat models an operator gives per role (``"default"`` for every role a run calls,
    a role's own entry over it), ``"provider:model"`` strings made now.

    Raises:
        ConfigError: an unknown role, or a value that is no chat model (see
            :func:`~langgraph_feedit.chatmodels.resolve_model`).
    """
    if not models:
        return {}
    if not isinstance(models, Mapping):
        raise ConfigError(
            "models must be a mapping of role names to chat models, e.g. "
            '{"default": ChatOpenAI(...), "judge": "openai:gpt-4o-mini"}',
            key="models",
        )
    known = RUN_ROLES
    for role in models:
        if role not in known:
            raise ConfigError(
                f"models names an unknown role {role!r}: choose from {', '.join(known)}",
                key=f"models.{role}",
            )
    made = {role: resolve_model(value, role=role) for role, value in models.items()}
    out: dict[str, BaseChatModel] = {r: made[r] for r in _RUN_ROLES if r in made}
    if "default" in made:
        for r in _RUN_ROLES:
            out.setdefault(r, made["default"])
    return out


class ActiveRun:
    """The typed, process-local view of one run: its spec, caller, budget and attempt id."""

    __slots__ = ("attempt", "budget", "caller", "config", "operator", "shared", "spec")

    def __init__(self, spec: RunSpec, config: FeeditConfig, operator: Operator) -> None:
        self.spec = spec
        self.config = config
        self.operator = operator
        self.attempt = uuid.uuid4().hex
        self.budget = RunBudget(deadline_s=spec["deadline_s"], max_tokens=spec["max_tokens"])
        self.caller = RoleCaller(
            {r: role_settings(config, r, operator.models) for r in ROLE_NAMES},
            embedded_model=config.embedded_model,
            budget=self.budget,
            models=operator.models,
            seed_key=seed_key(spec),
            clients=operator.clients,
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


def _remember(run: ActiveRun) -> None:
    _active[run.spec["key"]] = run
    while len(_active) > _MAX_ACTIVE:
        _active.popitem(last=False)


def bound(
    op: Operator, fn: Callable[..., Awaitable[Any]]
) -> Callable[[Any, Any, Any], Awaitable[Any]]:
    """The node ``fn(op, state, runtime, config)`` of one graph, as LangGraph calls a node:
    each graph's nodes resolve their runs from that graph's own configuration."""

    async def node(state: Any, runtime: Any, config: Any) -> Any:
        return await fn(op, state, runtime, config)

    node.__name__ = node.__qualname__ = fn.__name__
    node.__doc__ = fn.__doc__
    return node


def find_run(spec: RunSpec) -> ActiveRun:
    """The run a node of this process already resolved (for edges, which run after one)."""
    run = _active.get(spec["key"])
    if run is None:
        # Each edge follows a node of its run in the same process (``start``, ``select``, a
        # branch's ``route``), so only a state written from outside (``update_state``) gets here.
        raise ConfigError(
            "the run in this thread's state was not started by this graph: start a new run",
            source="thread state",
        )
    return run


def forget_run(spec: RunSpec) -> None:
    """End this process's attempt at the run (its budget and attempt id go with it)."""
    _active.pop(spec["key"], None)
