"""What ``feedit serve`` accepts: OpenAI chat-completions requests, validated.

Nothing here knows about HTTP frameworks: :func:`parse_chat_request` turns a request body into a
:class:`DoorRequest`, or an :class:`APIError` naming the offending field. The body's shape is one
pydantic model, :class:`ChatCompletionRequest` (``extra="forbid"``, strict types: ``true`` is not
a number), whose validation errors map to OpenAI-shaped 400s in one place (:func:`api_error`);
the conversation goes through the same check as input files
(:func:`langgraph_feedit.inputs.check_conversation`), and per-request settings through the
per-run policy of :mod:`langgraph_feedit.overrides`.

Request fields, beyond ``model`` (a preset name) and ``messages``:

- ``temperature``, ``top_p``, ``seed``, ``presence_penalty`` and ``frequency_penalty`` apply to
  the **draft** role only: they shape the candidate answers, while critiques, edits and the
  judge keep the server's settings (a temperature meant for answers would make a judge noisy).
- ``max_tokens`` (or ``max_completion_tokens``) and ``stop`` (a string or a list) bound the
  answer: they apply to every call that produces a candidate, drafts **and edits**, so the reply
  respects them whichever candidate is chosen and its ``finish_reason`` says whether it was
  cut off. Critiques and the judge keep the server's settings.
- ``n``: the ``n`` best candidates as ``n`` choices (the selected answer first, then the others
  by judged score); the tree must hold at least ``n`` drafts.
- ``stream`` and ``stream_options.include_usage`` as in OpenAI's API.
- ``feedit`` (``extra_body={"feedit": {...}}`` in the official clients): per-request width, depth,
  budget and role sampling, flat (the names of :data:`~langgraph_feedit.overrides.FLAT_KEYS`:
  ``drafts``, ``critiques``, ``edits``, ``rounds``, ``beam``, ``stop_score``, ``skip_perfect``,
  ``judge``, ``deadline``, ``token_budget``) or nested as in the configuration file (``width``,
  ``depth``, ``budget``, ``roles``); plus ``trace`` (add the whole tree as ``feedit_trace``) and
  ``progress`` (streams only: ``true`` sends progress as chunks carrying a ``feedit`` field and an
  empty delta, ``false`` sends none; by default progress goes out as SSE comments, which every
  client skips). A request's ``roles`` may set sampling (``temperature``, ``top_p``,
  ``max_tokens``, ``seed``, ``stop``), a built-in ``template`` set and the judge's ``kind``;
  endpoints, key variables, limits and retries stay with the server unless its operator opens
  a key (``feedit serve --allow-override``).
- ``user``, ``metadata``, ``store``, ``service_tier``, ``parallel_tool_calls``,
  ``prompt_cache_key``, ``safety_identifier`` and ``stream_options.include_obfuscation`` are
  accepted and have no effect; tools, logprobs and structured output are refused (an empty
  ``tools``, ``tool_choice: "none"``, ``logprobs: false`` or a text ``response_format`` asks for
  nothing and passes), since the answer is chosen among free-text candidates. Any other field
  is refused with its name, as OpenAI does.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from langgraph_feedit.config import SAMPLING_FIELDS, FeeditConfig, resolve_config
from langgraph_feedit.errors import ConfigError, FeeditError
from langgraph_feedit.inputs import (
    ConversationError,
    check_conversation,
    find_unencodable,
    load_json,
    unencodable_message,
)
from langgraph_feedit.overrides import (
    ANSWER_BOUNDS,
    ANSWER_ROLES,
    FLAT_KEYS,
    check_untrusted_overrides,
)

__all__ = [
    "APIError",
    "ChatCompletionRequest",
    "DoorRequest",
    "api_error",
    "error_body",
    "parse_chat_request",
    "tree_calls",
]


class APIError(FeeditError):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

    Messages name the offending field, never its value when it could be a secret.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# -- the request's shape --------------------------------------------------------------------------


class _Wire(BaseModel):
    # Strict: a JSON ``true`` is not a count and ``"2"`` is not a temperature.
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Wire):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None
    """Accepted, no effect: feedit's chunks carry no padding to turn off."""


class ChatCompletionRequest(_Wire):
    """The body of ``POST /v1/chat/completions``, as far as its shape goes.

    What depends on the server (the model is a preset, the tree fits ``max_fanout``) and the
    conversation itself are checked by :func:`parse_chat_request`.
    """

    model: str
    messages: list[Any]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    feedit: dict[str, Any] | None = None
    # Accepted for compatibility; none changes the answer (``parallel_tool_calls`` means nothing
    # without tools, and some clients send it regardless).
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Refused when they ask for something (see ``_UNSUPPORTED``).
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    logit_bias: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        # OpenAI's API takes one stop sequence as a plain string.
        return [value] if isinstance(value, str) else value


_UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)
# Request fields that set the draft role's sampling, by the RoleConfig field each one sets;
# those that bound the answer (ANSWER_BOUNDS) set the edit role's too.
_SAMPLING = {**{field: field for field in SAMPLING_FIELDS}, "max_completion_tokens": "max_tokens"}
_PENALTIES = ("presence_penalty", "frequency_penalty")
_SECTIONS = ("width", "depth", "budget", "roles")
_OPTIONS = ("trace", "progress")


@dataclass(frozen=True, slots=True)
class DoorRequest:
    """One validated chat-completions request."""

    preset: str
    messages: list[dict[str, Any]]
    context: dict[str, Any]
    """The graph's per-run ``context``: ``width``, ``depth``, ``budget`` and ``roles`` overrides."""
    stream: bool = False
    include_usage: bool = False
    trace: bool = False
    progress: bool | None = None
    """Streams: ``True`` progress chunks, ``False`` none, ``None`` SSE comments."""
    n: int = 1
    passthrough: bool = False
    """The answer is the one draft's text (one draft, no rounds): a stream passes its tokens on
    as the endpoint sends them."""
    deadline_s: float | None = None
    """The run's resolved deadline, to tell a timed-out run from a failed one."""
    calls: int = 0
    """The most drafts, critiques and edits the tree can hold (see :func:`tree_calls`)."""


def parse_chat_request(
    raw: bytes,
    *,
    config: FeeditConfig,
    presets: Collection[str],
    max_fanout: int,
    allow: Collection[str] = (),
) -> DoorRequest:
    """Validate a request body against the server's configuration.

    Args:
        raw: the body.
        config: the server's configuration, which the request's settings are laid over.
        presets: the model names served.
        max_fanout: the most drafts, critiques and edits one request's tree may hold.
        allow: per-run keys the operator opens beyond the default policy
            (see :func:`langgraph_feedit.overrides.check_untrusted_overrides`).

    Raises:
        APIError: 400 for malformed JSON, a missing or bad field, an unknown or forbidden
            ``feedit`` key, or a tree above ``max_fanout``; 404 for an unknown model (preset).
    """
    try:
        # The batch's reader's own parser: what one surface takes, every surface takes.
        body = load_json(raw)
    except ValueError as exc:  # a UnicodeDecodeError among them
        raise APIError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    bad = find_unencodable(body)
    if bad is not None:
        raise APIError(400, unencodable_message(f"{bad!r}"), param=bad)
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise api_error(exc, presets=presets) from None
    for name in _UNSUPPORTED:
        if _present(getattr(request, name)):
            raise APIError(
                400,
                f"{name!r} is not supported: feedit answers with free-text answers chosen "
                "among several candidates",
                param=name,
                code="unsupported_parameter",
            )
    if request.model not in presets:
        shown = request.model if len(request.model) <= 100 else "(not a preset name)"
        raise APIError(
            404,
            f"The model {shown!r} does not exist: choose a preset ({', '.join(presets)})",
            param="model",
            code="model_not_found",
        )
    try:
        messages = check_conversation(request.messages, require_user=False, unknown_keys="refuse")
    except ConversationError as exc:
        raise APIError(400, str(exc), param=exc.field) from None
    feedit = request.feedit or {}
    origins: dict[tuple[str, ...], str] = {}
    context = _context(feedit, origins)
    for name, key in _SAMPLING.items():
        value = getattr(request, name)
        if value is not None:
            for role in ANSWER_ROLES if key in ANSWER_BOUNDS else ("draft",):
                _put(context, ("roles", role, key), value, name, origins)
    try:
        check_untrusted_overrides(context, allow=allow)
    except ConfigError as exc:
        raise _setting_error(exc, origins) from None
    # Penalties have no RoleConfig field: they travel in the draft role's extra_body, which a
    # caller may not set itself (it reaches the backend unchecked).
    penalties = {k: getattr(request, k) for k in _PENALTIES if getattr(request, k) is not None}
    if penalties:
        _put(context, ("roles", "draft", "extra_body"), penalties, next(iter(penalties)), origins)
    try:
        resolved = resolve_config(
            config,
            overrides={**context, "preset": request.model},
            source="the request's feedit settings",
        )
    except ConfigError as exc:
        raise _setting_error(exc, origins) from None
    calls = tree_calls(resolved)
    if calls > max_fanout:
        w, d = resolved.width, resolved.depth
        raise APIError(
            400,
            f"the requested tree holds up to {calls} drafts, critiques and edits (drafts "
            f"{w.drafts}, critiques {w.critiques}, edits {w.edits}, rounds {d.max_rounds}, "
            f"beam {d.beam}), above this server's max_fanout of {max_fanout}: lower the "
            "feedit drafts, critiques, edits, rounds or beam",
            param="feedit",
            code="fanout_too_large",
        )
    n = request.n or 1
    if n > resolved.width.drafts:
        raise APIError(
            400,
            f"'n' asks for {n} choices, the {n} best candidates, but the tree has "
            f"{resolved.width.drafts} draft(s): set feedit drafts to at least n, or use a "
            "preset with several drafts",
            param="n",
        )
    return DoorRequest(
        preset=request.model,
        messages=messages,
        context=context,
        stream=bool(request.stream),
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        trace=_flag("feedit.trace", feedit.get("trace")) or False,
        progress=_flag("feedit.progress", feedit.get("progress")),
        n=n,
        passthrough=n == 1 and resolved.width.drafts == 1 and not _has_rounds(resolved),
        deadline_s=resolved.budget.deadline_s,
        calls=calls,
    )


def api_error(exc: ValidationError, *, presets: Collection[str] = ()) -> APIError:
    """The OpenAI-shaped 400 for a request that fails :class:`ChatCompletionRequest`.

    It names the first offending field (``param`` as OpenAI writes it: ``stream_options.
    include_usage``, ``messages[0]``) and what was wrong, never the value sent.
    """
    err = exc.errors()[0]
    param = _param(err["loc"])
    kind = err["type"]
    if kind == "missing":
        hint = f" (a preset: {', '.join(presets)})" if param == "model" and presets else ""
        return APIError(
            400,
            f"Missing required parameter: {param!r}{hint}",
            param=param,
            code="missing_required_parameter",
        )
    if kind == "extra_forbidden":
        return APIError(
            400,
            f"Unrecognized request argument supplied: {param}",
            param=param,
            code="unknown_parameter",
        )
    return APIError(400, f"Invalid {param!r}: {err['msg']}", param=param)


def tree_calls(config: FeeditConfig) -> int:
    """The most drafts, critiques and edits one run can make (judge calls not counted).

    Round 1 critiques every draft; each later round critiques only the ``beam`` best candidates
    of the round before, so ``beam`` bounds the tree's growth with depth.
    """
    w, d = config.width, config.depth
    rounds = d.max_rounds if _has_rounds(config) else 0
    per_candidate = w.critiques * (1 + w.edits)
    calls = w.drafts
    if rounds >= 1:
        calls += w.drafts * per_candidate
        calls += (rounds - 1) * d.beam * per_candidate
    return calls


# -- request parts ------------------------------------------------------------------------------


def _has_rounds(config: FeeditConfig) -> bool:
    return config.depth.max_rounds >= 1 and config.width.critiques >= 1


def _param(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _present(value: Any) -> bool:
    """Whether an unsupported field asks for something: ``logprobs: false``, ``tools: []``,
    ``tool_choice: "none"`` and a text ``response_format`` ask for nothing."""
    if value is None or value is False or value in ([], {}, "none"):
        return False
    return not (isinstance(value, dict) and value.get("type") == "text")


def _flag(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise APIError(400, f"{name!r} must be true or false", param=name)
    return value


def _setting_error(exc: ConfigError, origins: Mapping[tuple[str, ...], str]) -> APIError:
    """A bad per-request setting as a 400: ``param`` is the top-level request field that set it
    (``temperature``), else its key under ``feedit`` (``feedit.width.drafts``); the message says
    which name the client used when it was another (``feedit.drafts``)."""
    if exc.key is None:
        return APIError(400, str(exc), param="feedit")
    origin = origins.get(tuple(exc.key.split(".")))
    top_level = origin is not None and not origin.startswith("feedit.")
    param = origin if origin is not None and top_level else f"feedit.{exc.key}"
    message = str(exc) if origin is None else f"{exc} (sent as {origin!r})"
    code = "unknown_parameter" if str(exc).startswith("unknown ") else None
    return APIError(400, message, param=param, code=code)


def _context(feedit: Mapping[str, Any], origins: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """The run context from the ``feedit`` object, flat keys and nested sections alike."""
    context: dict[str, Any] = {}
    for section in _SECTIONS:
        value = feedit.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise APIError(400, f"'feedit.{section}' must be an object", param=f"feedit.{section}")
        context[section] = copy.deepcopy(value)
    for key, value in feedit.items():
        if key in _SECTIONS or key in _OPTIONS:
            continue
        dotted = FLAT_KEYS.get(key)
        if dotted is None:
            choices = ", ".join([*FLAT_KEYS, *_SECTIONS, *_OPTIONS])
            raise APIError(
                400,
                f"unknown key 'feedit.{key}': choose from {choices}",
                param=f"feedit.{key}",
                code="unknown_parameter",
            )
        if value is not None:
            _put(context, tuple(dotted.split(".")), value, f"feedit.{key}", origins)
    return context


def _put(
    context: dict[str, Any],
    path: tuple[str, ...],
    value: Any,
    name: str,
    origins: dict[tuple[str, ...], str],
) -> None:
    """Set ``path`` in ``context``, refusing a second value for a key the request already set.

    ``origins`` remembers which request field set each key, so that a clash names both fields;
    a key found without an origin came from a nested ``feedit`` section.
    """
    node = context
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise APIError(400, f"'feedit.{part}' must be an object", param=f"feedit.{part}")
        node = child
    if path[-1] in node and node[path[-1]] is not None:
        dotted = ".".join(path)
        other = origins.get(path, f"feedit.{dotted}")
        raise APIError(400, f"{name!r} and {other!r} both set {dotted}: give one", param=name)
    node[path[-1]] = value
    origins[path] = name
