"""What ``feedit serve`` accepts: OpenAI chat-completions requests, validated.

Nothing here knows about HTTP frameworks: :func:`parse_chat_request` turns a request body into a
:class:`ChatRequest`, or an :class:`APIError` naming the offending field. Keeping the format apart
from the server lets it be read (and checked) against OpenAI's reference in one place.

Request fields, beyond ``model`` (a preset name) and ``messages``:

- ``temperature``, ``top_p``, ``max_tokens`` (or ``max_completion_tokens``), ``seed``, ``stop``,
  ``presence_penalty`` and ``frequency_penalty`` apply to the **draft** role only: they shape the
  candidate answers, while critiques, edits and the judge keep the server's settings (a
  temperature meant for answers would make a judge noisy).
- ``stream`` and ``stream_options.include_usage`` as in OpenAI's API.
- ``feedit`` (``extra_body={"feedit": {...}}`` in the official clients): per-request width, depth,
  budget and role sampling, flat (``drafts``, ``critiques``, ``edits``, ``rounds``, ``beam``,
  ``stop_score``, ``skip_perfect``, ``judge``, ``deadline``, ``token_budget``) or nested as in the
  configuration file (``width``, ``depth``, ``budget``, ``roles``); plus ``trace`` (add the whole
  tree as ``feedit_trace``) and ``progress`` (stream progress chunks; default true). A request's
  ``roles`` may set sampling (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``),
  a built-in ``template`` set and the judge's ``kind``; endpoints, key variables, limits and
  retries stay with the server.
- ``user``, ``metadata``, ``store``, ``service_tier`` and ``parallel_tool_calls`` are accepted
  and have no effect; ``n`` must be 1; tools, logprobs and structured output are refused (an
  empty ``tools``, ``tool_choice: "none"``, ``logprobs: false`` or a text ``response_format``
  asks for nothing and passes), since the answer is chosen among free-text candidates. Any
  other field is refused with its name, as OpenAI does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from langgraph_feedit.config import FeeditConfig, RoleConfig, resolve_config
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.prompts import BUILTIN_TEMPLATES

__all__ = ["APIError", "ChatRequest", "error_body", "parse_chat_request", "tree_calls"]

# Request fields that set the draft role's sampling, by the RoleConfig field each one sets.
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "seed": "seed",
    "stop": "stop",
}
_PENALTIES = ("presence_penalty", "frequency_penalty")
# Accepted for compatibility; none changes the answer (``parallel_tool_calls`` means nothing
# without tools, and some clients send it regardless).
_NO_EFFECT = frozenset({"user", "metadata", "store", "service_tier", "parallel_tool_calls"})
_UNSUPPORTED = frozenset(
    {
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
    }
)
_KNOWN = frozenset(
    {"model", "messages", "stream", "stream_options", "n", "feedit", *_SAMPLING, *_PENALTIES}
)

# Flat ``feedit`` keys and the configuration key each one sets.
_FLAT: dict[str, tuple[str, ...]] = {
    "drafts": ("width", "drafts"),
    "critiques": ("width", "critiques"),
    "edits": ("width", "edits"),
    "rounds": ("depth", "max_rounds"),
    "beam": ("depth", "beam"),
    "stop_score": ("depth", "stop_score"),
    "skip_perfect": ("depth", "skip_perfect"),
    "judge": ("roles", "judge", "kind"),
    "deadline": ("budget", "deadline_s"),
    "token_budget": ("budget", "max_tokens"),
}
_SECTIONS = ("width", "depth", "budget", "roles")
_OPTIONS = ("trace", "progress")
# What a request may set on a role. Endpoints, key variables, limits, retries and template files
# stay with the server's configuration: a client able to set ``base_url`` and ``api_key_env``
# could have the server send any of its environment variables to a host of the client's choice.
_ROLE_FIELDS = frozenset({"temperature", "top_p", "max_tokens", "seed", "stop", "template", "kind"})
_REQUEST_ROLES = ("default", "draft", "critique", "edit", "judge")
_MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant"})
_MESSAGE_KEYS = frozenset({"role", "content", "name"})


class APIError(Exception):
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


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One validated chat-completions request."""

    preset: str
    messages: list[dict[str, Any]]
    context: dict[str, Any]
    """The graph's per-run ``context``: ``width``, ``depth``, ``budget`` and ``roles`` overrides."""
    stream: bool = False
    include_usage: bool = False
    trace: bool = False
    progress: bool = True
    deadline_s: float | None = None
    """The run's resolved deadline, to tell a timed-out run from a failed one."""
    calls: int = 0
    """The most drafts, critiques and edits the tree can hold (see :func:`tree_calls`)."""


def parse_chat_request(
    raw: bytes, *, config: FeeditConfig, presets: Collection[str], max_fanout: int
) -> ChatRequest:
    """Validate a request body against the server's configuration.

    Raises:
        APIError: 400 for malformed JSON, a missing or bad field, an unknown or forbidden
            ``feedit`` key, or a tree above ``max_fanout``; 404 for an unknown model (preset).
    """
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise APIError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    for key in body:
        if key in _UNSUPPORTED and _present(body[key]):
            raise APIError(
                400,
                f"{key!r} is not supported: feedit answers with one free-text answer chosen "
                "among several candidates",
                param=key,
                code="unsupported_parameter",
            )
        if key not in _KNOWN and key not in _NO_EFFECT and key not in _UNSUPPORTED:
            raise APIError(
                400,
                f"Unrecognized request argument supplied: {key}",
                param=key,
                code="unknown_parameter",
            )
    preset = _model(body, presets)
    messages = _messages(body.get("messages"))
    n = body.get("n")
    if n is not None and n != 1:
        raise APIError(400, "'n' must be 1: feedit returns one selected answer", param="n")
    stream = _flag("stream", body.get("stream"))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise APIError(400, "'stream_options' must be an object", param="stream_options")
    include_usage = _flag("stream_options.include_usage", (options or {}).get("include_usage"))
    feedit = body.get("feedit")
    if feedit is None:
        feedit = {}
    if not isinstance(feedit, dict):
        raise APIError(400, "'feedit' must be an object", param="feedit")
    origins: dict[tuple[str, ...], str] = {}
    context = _context(feedit, origins)
    for name in _SAMPLING:
        if body.get(name) is not None:
            _put(context, ("roles", "draft", _SAMPLING[name]), body[name], name, origins)
    penalties = {k: body[k] for k in _PENALTIES if body.get(k) is not None}
    for name, value in penalties.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not -2 <= value <= 2:
            raise APIError(400, f"{name!r} must be a number from -2 to 2", param=name)
    if penalties:
        path = ("roles", "draft", "extra_body")
        _put(context, path, penalties, next(iter(penalties)), origins)
    _check_sampling(context, origins)
    try:
        resolved = resolve_config(
            config, preset=preset, overrides=context, source="the request's feedit settings"
        )
    except ConfigError as exc:
        raise APIError(400, str(exc), param=f"feedit.{exc.key}" if exc.key else "feedit") from None
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
    return ChatRequest(
        preset=preset,
        messages=messages,
        context=context,
        stream=stream,
        include_usage=include_usage,
        trace=_flag("feedit.trace", feedit.get("trace")),
        progress=_flag("feedit.progress", feedit.get("progress"), default=True),
        deadline_s=resolved.budget.deadline_s,
        calls=calls,
    )


def tree_calls(config: FeeditConfig) -> int:
    """The most drafts, critiques and edits one run can make (judge calls not counted).

    Round 1 critiques every draft; each later round critiques only the ``beam`` best candidates
    of the round before, so ``beam`` bounds the tree's growth with depth.
    """
    w, d = config.width, config.depth
    rounds = d.max_rounds if w.critiques >= 1 else 0
    per_candidate = w.critiques * (1 + w.edits)
    calls = w.drafts
    if rounds >= 1:
        calls += w.drafts * per_candidate
        calls += (rounds - 1) * d.beam * per_candidate
    return calls


# -- request parts ------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    """Whether an unsupported field asks for something: ``logprobs: false``, ``tools: []``,
    ``tool_choice: "none"`` and a text ``response_format`` ask for nothing."""
    if value is None or value is False or value in ([], {}, "none"):
        return False
    return not (isinstance(value, dict) and value.get("type") == "text")


def _flag(name: str, value: Any, *, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise APIError(400, f"{name!r} must be true or false", param=name)
    return value


def _model(body: Mapping[str, Any], presets: Collection[str]) -> str:
    model = body.get("model")
    if model is None:
        raise APIError(
            400,
            "Missing required parameter: 'model' (a preset: " + ", ".join(presets) + ")",
            param="model",
            code="missing_required_parameter",
        )
    if not isinstance(model, str) or model not in presets:
        shown = model if isinstance(model, str) and len(model) <= 100 else "(not a preset name)"
        raise APIError(
            404,
            f"The model {shown!r} does not exist: choose a preset ({', '.join(presets)})",
            param="model",
            code="model_not_found",
        )
    return model


def _messages(raw: Any) -> list[dict[str, Any]]:
    """The conversation as OpenAI-style dicts, whole: system, developer and earlier turns."""
    if raw is None:
        raise APIError(
            400,
            "Missing required parameter: 'messages'",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(raw, list) or not raw:
        raise APIError(400, "'messages' must be a non-empty array", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise APIError(400, f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in _MESSAGE_ROLES:
            raise APIError(
                400,
                f"{where}.role must be one of system, developer, user or assistant "
                "(tool messages are not supported)",
                param=f"{where}.role",
            )
        extra = [k for k in message if k not in _MESSAGE_KEYS and message[k] is not None]
        if extra:
            raise APIError(400, f"{where}.{extra[0]} is not supported", param=f"{where}.{extra[0]}")
        content = message.get("content")
        if not isinstance(content, str) and not (
            isinstance(content, list) and all(isinstance(p, dict) for p in content)
        ):
            raise APIError(
                400,
                f"{where}.content must be a string or an array of content parts",
                param=f"{where}.content",
            )
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise APIError(400, f"{where}.name must be a string", param=f"{where}.name")
        out.append({k: v for k, v in message.items() if v is not None})
    return out


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
        path = _FLAT.get(key)
        if path is None:
            choices = ", ".join([*_FLAT, *_SECTIONS, *_OPTIONS])
            raise APIError(
                400,
                f"unknown key 'feedit.{key}': choose from {choices}",
                param=f"feedit.{key}",
                code="unknown_parameter",
            )
        if value is not None:
            _put(context, path, value, f"feedit.{key}", origins)
    _check_roles(context.get("roles"))
    return context


def _check_roles(roles: Any) -> None:
    if roles is None:
        return
    for role, settings in roles.items():
        where = f"feedit.roles.{role}"
        if role not in _REQUEST_ROLES:
            raise APIError(
                400,
                f"unknown key {where!r}: roles are {', '.join(_REQUEST_ROLES)}",
                param=where,
                code="unknown_parameter",
            )
        if not isinstance(settings, dict):
            raise APIError(400, f"{where!r} must be an object", param=where)
        for key, value in settings.items():
            if key not in RoleConfig.model_fields:
                raise APIError(
                    400,
                    f"unknown key '{where}.{key}'",
                    param=f"{where}.{key}",
                    code="unknown_parameter",
                )
            if key not in _ROLE_FIELDS:
                raise APIError(
                    400,
                    f"'{where}.{key}' cannot be set per request: endpoints, keys, limits and "
                    "retries belong to the server's configuration",
                    param=f"{where}.{key}",
                )
            if key == "template" and value not in BUILTIN_TEMPLATES:
                raise APIError(
                    400,
                    f"'{where}.template' must name a built-in template set "
                    f"({', '.join(BUILTIN_TEMPLATES)})",
                    param=f"{where}.template",
                )


def _check_sampling(context: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]) -> None:
    """Check the draft role's sampling now, naming the field the client sent it in."""
    draft = (context.get("roles") or {}).get("draft")
    if not draft:
        return
    try:
        RoleConfig.model_validate({k: v for k, v in draft.items() if k != "extra_body"})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        name = origins.get(("roles", "draft", field), f"feedit.roles.draft.{field}")
        raise APIError(400, f"invalid {name!r}: {err['msg']}", param=name) from None


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
