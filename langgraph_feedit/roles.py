"""Roles: what each model call is for, and one role's endpoint, sampling and limits.

Every model call belongs to a role (``draft``, ``critique``, ``edit``, ``judge``, and
``evaluator`` for Arena-Hard judging). Each role names an endpoint and its sampling settings;
``roles.default`` holds settings shared by every role, so one table can point all roles at one
server. A role without a ``base_url`` uses the embedded default endpoint.

The lists of these are derived, never written again: :data:`SAMPLING_FIELDS` from
:class:`SamplingConfig`'s fields, and (in :mod:`langgraph_feedit.names`, re-exported here) the
role names and judge kinds from their ``Literal`` types.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langgraph_feedit.defaults import (
    BACKOFF_S,
    CALL_TIMEOUT_S,
    FIRST_BYTE_TIMEOUT_S,
    MAX_CONCURRENCY,
    MAX_RETRIES,
)
from langgraph_feedit.errors import ConfigError, register_secret
from langgraph_feedit.names import (
    JUDGE_KINDS,
    PART_KINDS,
    ROLE_NAMES,
    RUN_ROLE_NAMES,
    JudgeKind,
    PartKind,
    RoleName,
    RunRoleName,
)

__all__ = [
    "DEFAULT_PRINCIPLE",
    "JUDGE_KINDS",
    "NO_KEY",
    "PART_KINDS",
    "ROLE_NAMES",
    "RUN_ROLE_NAMES",
    "SAMPLING_FIELDS",
    "JudgeKind",
    "JudgePart",
    "PartKind",
    "Principle",
    "RoleConfig",
    "RoleName",
    "RolesConfig",
    "RunRoleName",
    "SamplingConfig",
    "StrictModel",
    "ThinkSwitch",
    "ThinkingConfig",
]

DEFAULT_PRINCIPLE = (
    "The response is helpful: it follows every instruction in the prompt and answers it "
    "correctly, completely and clearly"
)
"""What the ``principle`` judge asks about when ``roles.judge.principles`` names nothing."""


class StrictModel(BaseModel):
    """A configuration table: an unknown key is an error naming it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Principle(StrictModel):
    """One principle the ``principle`` judge asks about, with its weight in the mean."""

    text: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0.0)


ThinkSwitch = Literal["reasoning_effort", "chat_template_kwargs", "system_prompt", "no_think"]
"""How a server is told whether (and how hard) a model thinks:

- ``reasoning_effort``: OpenAI's field (o-series, gpt-oss on vLLM and SGLang): ``effort`` is
  sent; it cannot turn thinking off.
- ``chat_template_kwargs``: ``{"enable_thinking": think}`` for the chat template (Qwen3,
  DeepSeek-V3.1, GLM-4.5 on vLLM, SGLang and llama.cpp's server).
- ``system_prompt``: a system line, ``detailed thinking on`` / ``off`` (Llama-Nemotron).
- ``no_think``: Qwen3's soft switch, ``/think`` or ``/no_think`` after the last user message.
"""

_SYSTEM_SWITCH = {True: "detailed thinking on", False: "detailed thinking off"}
_SOFT_SWITCH = {True: "/think", False: "/no_think"}


class ThinkingConfig(StrictModel):
    """Whether and how hard a role's model thinks, how the server is told, and how its
    thinking is marked in a reply (``roles.<role>.thinking``)."""

    think: bool | None = None
    """Think (``true``) or answer at once (``false``); unset leaves the model's default."""
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    """How hard to think, sent as ``reasoning_effort``."""
    switch: ThinkSwitch | None = None
    """How the server is told (see :data:`ThinkSwitch`). Unset: ``chat_template_kwargs`` when
    ``think`` is set, ``reasoning_effort`` when only ``effort`` is."""
    tags: tuple[str, str] = ("<think>", "</think>")
    """The opening and closing tags of a thinking block at the start of ``content`` (what a
    server without a reasoning parser returns). An empty opening tag is for templates that
    open the block in the prompt (DeepSeek-R1's distills): the reply starts inside it."""

    @field_validator("tags")
    @classmethod
    def _closing_tag(cls, value: tuple[str, str]) -> tuple[str, str]:
        if not value[1]:
            raise ValueError("the closing tag must not be empty")
        return value

    @model_validator(mode="after")
    def _can_say_it(self) -> Self:
        if self.switch == "reasoning_effort" and self.think is False:
            raise ValueError(
                "switch 'reasoning_effort' cannot turn thinking off; set effort = 'low' "
                "(or 'minimal') instead, or use a switch the model knows"
            )
        return self

    @property
    def resolved_switch(self) -> ThinkSwitch | None:
        """The switch in force: the one named, else the one ``think`` or ``effort`` implies."""
        if self.switch is not None:
            return self.switch
        if self.think is not None:
            return "chat_template_kwargs"
        return "reasoning_effort" if self.effort is not None else None

    def can_turn_off(self) -> bool:
        """Whether this role says how to tell its server not to think."""
        return self.resolved_switch not in (None, "reasoning_effort")

    def apply(
        self,
        messages: Sequence[Mapping[str, Any]],
        extra_body: Mapping[str, Any] | None,
        *,
        think: bool | None = None,
    ) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any] | None]:
        """The messages and extra request fields that tell the server this setting;
        ``think`` replaces the role's own (a principle judge asks with thinking off)."""
        think = self.think if think is None else think
        switch = self.resolved_switch
        extra = dict(extra_body) if extra_body else None
        if self.effort is not None and think is not False:
            extra = {**(extra or {}), "reasoning_effort": self.effort}
        if think is None or switch in (None, "reasoning_effort"):
            return messages, extra
        if switch == "chat_template_kwargs":
            kwargs = dict((extra or {}).get("chat_template_kwargs") or {})
            kwargs["enable_thinking"] = think
            return messages, {**(extra or {}), "chat_template_kwargs": kwargs}
        out = [dict(m) for m in messages]
        if switch == "system_prompt":
            line = _SYSTEM_SWITCH[think]
            if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
                out[0]["content"] = f"{line}\n\n{out[0]['content']}"
            else:
                out.insert(0, {"role": "system", "content": line})
            return out, extra
        for m in reversed(out):
            if m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, str):
                    m["content"] = f"{content} {_SOFT_SWITCH[think]}"
                elif isinstance(content, list):
                    m["content"] = [*content, {"type": "text", "text": _SOFT_SWITCH[think]}]
                break
        return out, extra


class JudgePart(StrictModel):
    """One judge of a ``combined`` judge, with its weight in the sum."""

    kind: PartKind
    weight: float = 1.0


class SamplingConfig(StrictModel):
    """A role's sampling settings: what a run may tune per role (see ``overrides``) and what
    its spec carries; every other role setting is the operator's."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    """Sampling seed forwarded to the endpoint (when it supports one)."""
    stop: list[str] | None = None


SAMPLING_FIELDS: tuple[str, ...] = tuple(SamplingConfig.model_fields)
"""The names of a role's sampling settings (``temperature``, ``top_p``, ``max_tokens``,
``seed``, ``stop``)."""


class RoleConfig(SamplingConfig):
    """One role's endpoint, sampling settings and limits. Unset fields inherit from
    ``roles.default``, then from the built-in defaults."""

    base_url: str | None = None
    """OpenAI-compatible base URL (``http://host:port/v1``). ``None`` uses the embedded endpoint."""
    model: str | None = None
    """Model name sent to the endpoint. ``None`` asks the endpoint (its first listed model)."""
    api_key_env: str | None = None
    """NAME of the environment variable holding the API key. Keys never live in files."""
    extra_body: dict[str, Any] | None = None
    """Extra request fields for server-specific options (e.g. vLLM's ``top_k``)."""
    headers: dict[str, str] | None = None
    """Extra HTTP headers sent with every call (a gateway's routing or tenant header). No
    secrets here: a header whose value is a key belongs in ``header_env``."""
    header_env: dict[str, str] | None = None
    """Headers whose values come from environment variables: header name to the NAME of the
    variable (``{"X-Gateway-Key": "GATEWAY_KEY"}``). Like ``api_key_env``, never the value."""
    query: dict[str, str] | None = None
    """Extra query parameters sent with every call."""
    api_version: str | None = None
    """Azure OpenAI: the ``api-version`` query parameter. Setting it makes the role an Azure
    one: ``base_url`` is the resource's endpoint (``https://NAME.openai.azure.com``), the key
    from ``api_key_env`` goes in the ``api-key`` header, and calls go to
    ``/openai/deployments/DEPLOYMENT/...``."""
    azure_deployment: str | None = None
    """Azure OpenAI: the deployment to call; unset, the role's ``model`` names it."""
    connect_timeout: float | None = Field(default=None, gt=0.0)
    """Seconds to open a connection, when it should be shorter than ``timeout``."""
    verify: bool | None = None
    """Whether to verify the server's TLS certificate (default: yes)."""
    ca_file: str | None = None
    """A PEM file of CA certificates to verify the server's with (a private CA)."""
    http_client: Literal["aiohttp", "httpx"] | None = None
    """The HTTP client under the OpenAI SDK: ``aiohttp`` (the default; the lower CPU per
    call) or ``httpx`` (the SDK's own default). Both read proxies from ``HTTP_PROXY``,
    ``HTTPS_PROXY`` and ``NO_PROXY`` as the SDK does."""
    max_concurrency: int | None = Field(default=None, ge=1)
    """Calls in flight to this endpoint at once, shared by every run in the process."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds a request may wait on the server (to connect, and for each read of its reply:
    a streamed reply may take longer in all) before it is cancelled and retried. It starts
    when the request leaves this process's queue."""
    first_byte_timeout: float | None = Field(default=None, gt=0.0)
    """Seconds a streamed request may wait for its first chunk (queueing at the server
    included) before it is cancelled and retried: an endpoint that takes the connection and
    never answers fails this, not ``timeout``. A plain request's first byte is its whole
    reply, so only ``timeout`` bounds it."""
    max_retries: int | None = Field(default=None, ge=0, le=20)
    """Retries after the first attempt, on retryable failures only."""
    backoff: float | None = Field(default=None, ge=0.0, le=60.0)
    """First retry's backoff in seconds; it doubles each retry (with jitter, capped at 30 s).
    A server's ``Retry-After`` takes precedence."""
    template: str | None = None
    """Prompt template set: ``generic``, ``nemotron``, or a path to a TOML file of templates."""
    kind: JudgeKind | None = None
    """Judge kind (``judge`` role only): ``principle`` (the default: logprob of Yes minus No
    per principle, from ``top_logprobs``; the ``llm`` rating where the endpoint returns no
    logprobs), ``reward`` endpoint, ``llm`` rating, ``pairwise`` knockout, or ``consensus``
    (no model)."""
    function: str | None = None
    """The ``function`` judge (``judge`` role only): an import path ``module:function`` of a
    function ``(conversation, candidate) -> float`` (or a coroutine function); a Python
    function given here is kept under its import path for this process."""
    questions: str | None = None
    """The ``verify`` judge (``judge`` role only): an IFEval-format JSONL file (``key``,
    ``prompt``, ``instruction_id_list``, ``kwargs``); a conversation whose last user turn is
    one of its prompts is scored by that prompt's checkers (``feedit batch`` on such a file
    sets it to its input)."""
    combine: list[JudgePart] | None = None
    """The ``combined`` judge (``judge`` role only): pointwise judges and their weights; the
    score is the weighted sum of theirs (``[{kind = "verify"}, {kind = "principle", weight =
    0.05}]``)."""
    principles: list[str | Principle] | None = None
    """What the ``principle`` judge asks about (``judge`` role only): principles as text, or
    ``{text, weight}`` tables; the score is their weighted mean. Default: one helpfulness
    principle (:data:`DEFAULT_PRINCIPLE`)."""
    thinking: ThinkingConfig | None = None
    """A reasoning model's thinking: whether and how hard, how the server is told, how its
    replies mark it (see :class:`ThinkingConfig`). Unset: the model's default, and a
    ``<think>`` block at the start of a reply is read as thinking."""
    chat_model: str | None = None
    """A LangChain chat model for this role, as ``"provider:model"`` (``"openai:gpt-4o-mini"``,
    ``"anthropic:claude-sonnet-4-5"``), made by LangChain's ``init_chat_model`` with the
    provider's integration package; ``base_url`` and ``api_key_env``, when set, are handed to
    it. A chat model object given in Python (``create_feedit_graph(models=...)``) takes
    precedence. See :mod:`langgraph_feedit.chatmodels`."""
    embedded_model: str | None = None
    """Path to a GGUF file this role's embedded endpoint serves (when ``base_url`` is unset);
    overrides the top-level ``embedded_model``, so each role may run its own local model
    (e.g. one trained with ``feedit train``). Roles naming the same file share one server."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Checked here, at load time: a URL the client cannot use would otherwise be retried
        # as a connection failure for every call of every prompt. The value is not echoed
        # (a URL may carry credentials); the key is named by the error.
        if value is None:
            return None
        try:
            parts = urlsplit(value.strip())
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            raise ValueError("must be an http:// or https:// URL with a host") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host (e.g. http://127.0.0.1:8000/v1)"
            )
        return value.strip()

    @field_validator("function", mode="before")
    @classmethod
    def _function_path(cls, value: Any) -> Any:
        if callable(value):
            from langgraph_feedit.judges import register_function

            return register_function(value)
        return value

    @field_validator("principles")
    @classmethod
    def _some_principles(cls, value: list[str | Principle] | None) -> list[str | Principle] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one principle, or leave the key out for the default")
        if any(isinstance(p, str) and not p.strip() for p in value):
            raise ValueError("a principle must not be empty")
        return value

    def thinking_settings(self) -> ThinkingConfig:
        """The role's thinking settings (defaults when unset)."""
        return _NO_THINKING if self.thinking is None else self.thinking

    def combine_parts(self) -> list[JudgePart]:
        """The parts of a ``combined`` judge."""
        return list(self.combine or [])

    def principle_list(self) -> list[Principle]:
        """The principles to judge by, each with its weight (the default when none is set)."""
        given = self.principles or [DEFAULT_PRINCIPLE]
        return [Principle(text=p) if isinstance(p, str) else p for p in given]

    @model_validator(mode="after")
    def _no_inline_keys(self) -> Self:
        if self.api_key_env is not None and not _is_variable_name(self.api_key_env):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                "not a key"
            )
        for header, variable in (self.header_env or {}).items():
            if not _is_variable_name(variable):
                raise ValueError(
                    f"header_env[{header!r}] must be the NAME of an environment variable, "
                    "not a value"
                )
        return self

    def api_key(self, role: str = "role") -> str:
        """The API key from ``api_key_env``; a stand-in value when the endpoint needs none.

        Raises:
            ConfigError: the named variable is not set (the error names the variable only).
        """
        if self.api_key_env is None:
            return NO_KEY
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(
                f"roles.{role}.api_key_env names the environment variable {self.api_key_env!r}, "
                "which is not set",
                key=f"roles.{role}.api_key_env",
                source="environment",
            )
        # From here on the process holds the key: redact it from every error and log.
        register_secret(value)
        return value


_NO_THINKING = ThinkingConfig()


def _is_variable_name(name: str) -> bool:
    return not name.startswith("sk-") and name.replace("_", "").isalnum()


NO_KEY = "sk-no-key"
"""The stand-in key sent to endpoints that need none (the OpenAI client insists on one)."""


_ROLE_DEFAULTS = RoleConfig(
    temperature=0.7,
    max_tokens=1024,
    max_concurrency=MAX_CONCURRENCY,
    timeout=CALL_TIMEOUT_S,
    first_byte_timeout=FIRST_BYTE_TIMEOUT_S,
    max_retries=MAX_RETRIES,
    backoff=BACKOFF_S,
    template="generic",
)
# Where a role's built-in defaults differ from every role's (above): judges read greedily.
_ROLE_OVERRIDES: Mapping[RoleName, Mapping[str, Any]] = {
    "judge": {"temperature": 0.0, "max_tokens": 512, "kind": "principle"},
    "evaluator": {"temperature": 0.0, "max_tokens": 4096},
}


class RolesConfig(StrictModel):
    """Per-role settings; ``default`` applies to every role unless the role overrides it."""

    default: RoleConfig = Field(default_factory=RoleConfig)
    draft: RoleConfig = Field(default_factory=RoleConfig)
    critique: RoleConfig = Field(default_factory=RoleConfig)
    edit: RoleConfig = Field(default_factory=RoleConfig)
    judge: RoleConfig = Field(default_factory=RoleConfig)
    evaluator: RoleConfig = Field(default_factory=RoleConfig)

    def resolve(self, role: RoleName) -> RoleConfig:
        """The role's effective settings: built-in < role built-in < ``default`` < the role."""
        data = _ROLE_DEFAULTS.model_dump()
        data.update(_ROLE_OVERRIDES.get(role, {}))
        for layer in (self.default, getattr(self, role)):
            given = layer.model_dump(exclude_unset=True)
            # A role's thinking table refines the default's (the judge turns off what every
            # role shares), where every other setting replaces it.
            if isinstance(given.get("thinking"), dict) and isinstance(data.get("thinking"), dict):
                given["thinking"] = {**data["thinking"], **given["thinking"]}
            data.update(given)
        return RoleConfig.model_validate(data)
