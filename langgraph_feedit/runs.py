"""A run: its plain spec in thread state, and the typed view every node works from.

:class:`Operator` is what a graph was built with (the operator's configuration, preset, context
policy, chat models and clients). Its :meth:`~Operator.start` writes a run's
:class:`~langgraph_feedit.state.RunSpec`: plain data in the configuration's own shape (its
``width``, ``depth`` and ``budget`` tables, each role's sampling settings, the judge kind), with
each role's endpoint as a digest only. Its :meth:`~Operator.run` turns a spec found in state or
a ``Send`` back into an :class:`ActiveRun`: the validated :class:`~.config.FeeditConfig` of the
run, checked against the graph's own configuration, with each role's caller, the budget and
the *attempt* id. Nodes read the run's settings from ``run.config`` and its derived facts
(:attr:`ActiveRun.judge`, :attr:`ActiveRun.trivial`, ...), never from the spec.

An attempt is one process working on the run: the first invocation, or a resume
(``ainvoke(None, config)``, a batch rerun after a kill, a LangGraph Server retry). Each
attempt has its own deadline and token budget (a resumed run gets fresh ones: the deadline
bounds how long its caller waits), and calls made by an earlier attempt count as reused, not
bought.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, TypeAdapter, ValidationError

from langgraph_feedit.calls import RoleCaller, RunBudget
from langgraph_feedit.chatmodels import model_identity, resolve_model
from langgraph_feedit.config import (
    ROLE_NAMES,
    RUN_ROLE_NAMES,
    SAMPLING_FIELDS,
    FeeditConfig,
    JudgeKind,
    RoleConfig,
    RoleName,
    deep_merge,
    resolve_config,
)
from langgraph_feedit.endpoints import ClientSource, client_base_url, role_clients
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.overrides import (
    FLAT_KEYS,
    RUN_ROLES,
    check_untrusted_overrides,
    expand_flat,
    set_path,
)
from langgraph_feedit.prompts import BUILTIN_TEMPLATES
from langgraph_feedit.state import RunSpec
from langgraph_feedit.twins import SharedCalls

__all__ = [
    "SPEC_SECTIONS",
    "ActiveRun",
    "Operator",
    "bound",
    "endpoint_identity",
    "find_run",
    "forget_run",
    "make_spec",
    "malformed_spec",
    "operator_models",
    "read_spec",
    "role_settings",
    "seed_key",
]

SPEC_SECTIONS = ("width", "depth", "budget", "cache_key", "preset", "answer_schema")
"""The configuration's keys a run spec carries as they are (besides each role's tunables in
``roles``): what a run may choose, in the configuration's own shape."""

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
    return rc.model_copy(update={k: None for k in SAMPLING_FIELDS if k not in given})


def make_spec(
    config: FeeditConfig,
    conversation: list[dict[str, Any]],
    *,
    key: str | None = None,
    started: float | None = None,
    models: Mapping[str, BaseChatModel] | None = None,
    client_urls: Mapping[str, str] | None = None,
) -> RunSpec:
    """The run spec of a resolved configuration: what the run's state carries. Role endpoints
    (and chat models, from ``models``) appear as digests only; each role's sampling settings,
    its template when it is a built-in set, and the judge's kind, as values (a run may choose
    those), in the configuration's own shape."""
    roles: dict[str, dict[str, Any]] = {}
    endpoints: dict[str, str] = {}
    for r in RUN_ROLE_NAMES:
        rc = role_settings(config, r, models)
        tuned = rc.model_dump(include=set(SAMPLING_FIELDS), exclude_none=True)
        if rc.template in BUILTIN_TEMPLATES:
            tuned["template"] = rc.template
        if r == "judge":
            tuned["kind"] = rc.kind
        roles[r] = tuned
        endpoints[r] = endpoint_identity(
            rc, config.embedded_model, (models or {}).get(r), (client_urls or {}).get(r)
        )
    sections = config.model_dump(include=set(SPEC_SECTIONS))
    return {
        "key": key or uuid.uuid4().hex,
        "started": time.time() if started is None else started,
        "conversation": conversation,
        "roles": roles,
        "endpoints": endpoints,
        "width": sections["width"],
        "depth": sections["depth"],
        "budget": sections["budget"],
        "cache_key": config.cache_key,
        "preset": config.preset,
        "answer_schema": config.answer_schema,
        "trivial": config.trivial,
    }


# The keys of a spec written before it took the configuration's shape, and where each one
# lives now (``trivial`` is where it was). Checkpoints of that time hold them.
_OLD_KEYS: Mapping[str, str] = {
    "drafts": "width.drafts",
    "critiques": "width.critiques",
    "edits": "width.edits",
    "max_rounds": "depth.max_rounds",
    "stop_score": "depth.stop_score",
    "beam": "depth.beam",
    "skip_perfect": "depth.skip_perfect",
    "critique_samples": "depth.max_critique_samples",
    "deadline_s": "budget.deadline_s",
    "max_tokens": "budget.max_tokens",
    "judge": "roles.judge.kind",
}

_SPEC = TypeAdapter(RunSpec)


def read_spec(spec: Any) -> RunSpec:
    """A spec from state or a ``Send``, in today's shape: an older spec's flat keys
    (``drafts``, the budget's ``max_tokens``, ``judge``, ...) are read into the tables they
    stand for, over any given beside them.

    Raises:
        ValidationError: the spec is not a run spec's shape.
    """
    if isinstance(spec, Mapping) and any(k in spec for k in _OLD_KEYS):
        new: dict[str, Any] = {k: v for k, v in spec.items() if k not in _OLD_KEYS}
        moved: dict[str, Any] = {}
        for old, dotted in _OLD_KEYS.items():
            if old in spec:
                set_path(moved, dotted, spec[old])
        for section in ("width", "depth", "budget"):
            new.setdefault(section, {})
        spec = deep_merge(new, moved)
    return _SPEC.validate_python(spec)


def _tunables(spec: RunSpec) -> dict[str, Any]:
    """A spec's run-tunable settings as per-run overrides (the shape of a run's ``context``),
    so that settings found in state pass the same checks as settings sent by a client."""
    out: dict[str, Any] = {"roles": spec["roles"]}
    for key in SPEC_SECTIONS:
        value = spec.get(key)
        # An unset preset or schema leaves the configuration's, as before they were carried.
        if value is not None or key not in ("preset", "answer_schema"):
            out[key] = value
    return out


def malformed_spec() -> ConfigError:
    """The error of a run spec that cannot be read (a forged or damaged thread state), the
    same whether a node or a cache key finds it."""
    return ConfigError(
        "the run settings in this thread's state are malformed: start a new run on the thread",
        source="thread state",
    )


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
            given = read_spec(spec)
        except (ValidationError, ConfigError):
            raise malformed_spec() from None
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
    out: dict[str, BaseChatModel] = {r: made[r] for r in RUN_ROLE_NAMES if r in made}
    if "default" in made:
        for r in RUN_ROLE_NAMES:
            out.setdefault(r, made["default"])
    return out


class ActiveRun:
    """The typed, process-local view of one run: its validated configuration (the graph's,
    with what the run chose laid over), caller, budget and attempt id. ``spec`` is the plain
    form its state carries."""

    __slots__ = ("attempt", "budget", "caller", "config", "judge", "operator", "shared", "spec")

    def __init__(self, spec: RunSpec, config: FeeditConfig, operator: Operator) -> None:
        self.spec = spec
        self.config = config
        """The run's settings: nodes read width, depth and budget here."""
        self.operator = operator
        self.attempt = uuid.uuid4().hex
        self.budget = RunBudget(
            deadline_s=config.budget.deadline_s, max_tokens=config.budget.max_tokens
        )
        self.caller = RoleCaller(
            {r: role_settings(config, r, operator.models) for r in ROLE_NAMES},
            embedded_model=config.embedded_model,
            budget=self.budget,
            models=operator.models,
            seed_key=seed_key(spec),
            clients=operator.clients,
        )
        self.judge: JudgeKind = self.caller.settings("judge").kind or "principle"
        """The judge's kind."""
        # Calls identical candidates share, for this attempt (see ``twins``).
        self.shared = SharedCalls()

    @property
    def key(self) -> str:
        """Identifies the run (one per thread turn)."""
        return self.spec["key"]

    @property
    def started(self) -> float:
        return self.spec["started"]

    @property
    def conversation(self) -> list[dict[str, Any]]:
        return self.spec["conversation"]

    @property
    def critique_samples(self) -> int:
        """Critiques sampled per slot at most, to get an effective one (``skip_perfect``)."""
        depth = self.config.depth
        return depth.max_critique_samples if depth.skip_perfect else 1


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
