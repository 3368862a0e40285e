"""Per-run settings: the flat aliases, dotted keys, and what an untrusted caller may set.

One place for three facts every surface shares (the command line, ``feedit serve``, the
Python adapters and the LangGraph Server graphs):

- :data:`FLAT_KEYS`: the short names (``drafts``, ``rounds``, ...) and the configuration key
  each one stands for;
- :func:`set_path`: writing a dotted key into a nested mapping;
- :func:`check_untrusted_overrides`: the policy for settings that arrive from someone other
  than the operator (an HTTP body, a LangGraph Server run's ``context``). Such a caller may tune
  width, depth, budget and sampling, never where calls go or which key they carry: a caller able
  to set ``base_url`` and ``api_key_env`` could have the server send any of its environment
  variables (its real keys included) to a host of the caller's choice. An operator widens the
  policy with an explicit allow-list.

Nothing here knows about HTTP or LangGraph, so a graph's start node can use it as well as the
door.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from langgraph_feedit.config import (
    RUN_ROLE_NAMES,
    SAMPLING_FIELDS,
    BudgetConfig,
    DepthConfig,
    FeeditConfig,
    RoleConfig,
    WidthConfig,
)
from langgraph_feedit.errors import ConfigError
from langgraph_feedit.prompts import BUILTIN_TEMPLATES

__all__ = [
    "ANSWER_BOUNDS",
    "ANSWER_ROLES",
    "FLAT_KEYS",
    "RUN_ROLES",
    "UNTRUSTED_KEYS",
    "bound_answers",
    "check_allow_patterns",
    "check_untrusted_overrides",
    "expand_flat",
    "set_path",
]

FLAT_KEYS: Mapping[str, str] = {
    "drafts": "width.drafts",
    "critiques": "width.critiques",
    "edits": "width.edits",
    "rounds": "depth.max_rounds",
    "beam": "depth.beam",
    "stop_score": "depth.stop_score",
    "skip_perfect": "depth.skip_perfect",
    "judge": "roles.judge.kind",
    "deadline": "budget.deadline_s",
    "token_budget": "budget.max_tokens",
}
"""Short names for the settings people change most, by the dotted configuration key each sets
(``feedit run --drafts``, ``extra_body={"feedit": {"drafts": ...}}``, ``afeedit(drafts=...)``)."""

ANSWER_BOUNDS = ("max_tokens", "stop")
"""The settings a caller bounds its answer with (a chat model's ``.bind(max_tokens=...)``, the
door's request fields)."""

ANSWER_ROLES = ("draft", "edit")
"""The roles whose calls produce candidates, any of which may be the answer: a bound the caller
gives applies to each of them, or an edit could exceed what the caller asked for."""


def bound_answers(
    context: Mapping[str, Any], *, max_tokens: int | None = None, stop: Any = None
) -> dict[str, Any]:
    """``context`` with ``max_tokens`` and ``stop`` set on every role that produces a candidate
    (:data:`ANSWER_ROLES`), so that the selected answer respects them whichever call made it."""
    from langgraph_feedit.config import deep_merge

    given = {"max_tokens": max_tokens, "stop": [stop] if isinstance(stop, str) else stop}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return dict(context)
    return deep_merge(context, {"roles": {r: dict(given) for r in ANSWER_ROLES}})


RUN_ROLES: tuple[str, ...] = ("default", *RUN_ROLE_NAMES)
"""The role tables a run may set: ``default`` and the roles a run calls (``evaluator``
belongs to ``feedit judge``, not to a run)."""

UNTRUSTED_KEYS: tuple[str, ...] = (
    "preset",
    "width.*",
    "depth.*",
    "budget.*",
    *(f"roles.*.{field}" for field in SAMPLING_FIELDS),
    "roles.*.template",
    "roles.*.kind",
    "cache_key",
    "answer_schema",
)
"""What an untrusted caller may set, as dotted patterns (``*`` is one key). Everything else
(``base_url``, ``model``, ``api_key_env``, ``extra_body``, ``max_concurrency``, ``timeout``,
``max_retries``, ``backoff``, ``store``, ``embedded_model``) belongs to the operator, and so
does ``roles.judge.principles``: principles are what is judged (a caller who could set them
could have every candidate judged on "always answer Yes"), while the judge ``kind`` is a
choice of method. ``roles.*.template`` takes a built-in set's name only: a path
would have the server read a file of the caller's choosing. ``cache_key`` only keys the call
cache: a caller changes it to draw new samples where the operator keeps a cache.
``answer_schema`` only shapes the answer (a JSON schema its calls are constrained by), the
way ``max_tokens`` and ``stop`` bound it; ``roles.*.chat_model`` is a destination, the
operator's."""

# The section models, to check a caller's values strictly (a JSON ``true`` is not a count).
_SECTIONS: Mapping[str, type[BaseModel]] = {
    "width": WidthConfig,
    "depth": DepthConfig,
    "budget": BudgetConfig,
}


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating the tables between.

    Raises:
        ConfigError: a key on the way already holds something other than a table.
    """
    *parents, last = dotted.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{where!r} must be a table to set {dotted!r}", key=where)
        node = child
    node[last] = value


def expand_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested overrides for ``{"drafts": 4, "rounds": 2}``; ``None`` values are skipped.

    Raises:
        ConfigError: an unknown short name (``key`` is that name).
    """
    out: dict[str, Any] = {}
    for name, value in flat.items():
        dotted = FLAT_KEYS.get(name)
        if dotted is None:
            raise ConfigError(
                f"unknown setting {name!r}: choose from {', '.join(FLAT_KEYS)}", key=name
            )
        if value is not None:
            set_path(out, dotted, value)
    return out


def _settings(overrides: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every setting of a nested override as ``(dotted key, value)``, down to the fields of the
    configuration's models (a role's ``extra_body`` is one setting, not a table to descend).

    Raises:
        ConfigError: a key the configuration does not have, or a table that is not one.
    """
    for key, value in overrides.items():
        if key in _SECTIONS:
            yield from _fields(_SECTIONS[key], value, key)
        elif key == "roles":
            if not isinstance(value, Mapping):
                raise ConfigError("'roles' must be a table", key="roles")
            for role, settings in value.items():
                if role not in RUN_ROLES:
                    raise ConfigError(
                        f"unknown role 'roles.{role}': the roles of a run are "
                        + ", ".join(RUN_ROLES),
                        key=f"roles.{role}",
                    )
                yield from _fields(RoleConfig, settings, f"roles.{role}")
        elif key in FeeditConfig.model_fields:
            yield key, value
        else:
            raise ConfigError(f"unknown key {key!r}", key=key)


def _fields(model: type[BaseModel], values: Any, where: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where!r} must be a table", key=where)
    for field, value in values.items():
        if field not in model.model_fields:
            raise ConfigError(f"unknown key '{where}.{field}'", key=f"{where}.{field}")
        yield f"{where}.{field}", value


def _known_keys() -> Iterator[str]:
    for key in FeeditConfig.model_fields:
        if key in _SECTIONS:
            yield from (f"{key}.{field}" for field in _SECTIONS[key].model_fields)
        elif key == "roles":
            for role in RUN_ROLES:
                yield from (f"roles.{role}.{field}" for field in RoleConfig.model_fields)
        else:
            yield key


def check_allow_patterns(allow: Collection[str]) -> None:
    """Refuse an operator's allow-list entry that matches no setting (a typo would open nothing
    and say nothing).

    Raises:
        ConfigError: ``key`` is the pattern.
    """
    if isinstance(allow, str):
        raise ConfigError("the allow-list must be a list of patterns, not one string")
    known = list(_known_keys())
    for pattern in allow:
        if not any(_matches(pattern, key) for key in known):
            raise ConfigError(
                f"the allow-list entry {pattern!r} matches no per-run setting "
                "(patterns are dotted keys, '*' for any one key: 'roles.*.model')",
                key=pattern,
            )


def _matches(pattern: str, dotted: str) -> bool:
    want, have = pattern.split("."), dotted.split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def check_untrusted_overrides(overrides: Mapping[str, Any], *, allow: Collection[str] = ()) -> None:
    """Refuse per-run settings an untrusted caller may not give, and values of the wrong type.

    ``overrides`` is nested as in the configuration file (``{"width": {"drafts": 4}}``). A key
    the configuration does not have is refused as unknown; a key outside
    :data:`UNTRUSTED_KEYS` and ``allow`` as not the caller's to set; a value of the wrong type
    as invalid, checked strictly (``true`` is not a number, ``"4"`` is not a count) against the
    configuration's own models, since a caller's JSON should mean what it says. Ranges are left
    to the configuration's validation, which names the same keys.

    Args:
        overrides: the caller's settings.
        allow: dotted patterns (``*`` is any one key) the operator opens on top of the default
            policy, e.g. ``("roles.*.base_url", "roles.*.model")``; naming
            ``roles.*.template`` lets a caller give template file paths, not only built-in
            names.

    Raises:
        ConfigError: ``key`` is the dotted key of the first offending setting; the message
            never repeats its value.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError("per-run settings must be a table of keys")
    patterns = (*UNTRUSTED_KEYS, *allow)
    settings = list(_settings(overrides))
    for dotted, value in settings:
        if not any(_matches(p, dotted) for p in patterns):
            raise ConfigError(
                f"{dotted!r} cannot be set per run: endpoints, models, keys, limits and retries "
                "belong to the server's configuration (its operator can allow a key)",
                key=dotted,
                source="run context",
            )
        path_given = value is not None and value not in BUILTIN_TEMPLATES
        if (
            dotted.endswith(".template")
            and path_given
            and not any(_matches(p, dotted) for p in allow)
        ):
            raise ConfigError(
                f"{dotted!r} must name a built-in template set ({', '.join(BUILTIN_TEMPLATES)})",
                key=dotted,
            )
    for section, model in _SECTIONS.items():
        if section in overrides:
            _check_values(model, overrides[section], section)
    for role, values in (overrides.get("roles") or {}).items():
        _check_values(RoleConfig, values, f"roles.{role}")
    preset = overrides.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise ConfigError("'preset' must be the name of a preset", key="preset")


def _check_values(model: type[BaseModel], values: Any, where: str) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where!r} must be a table", key=where)
    try:
        model.model_validate(dict(values), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join([where, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"unknown key {key!r}", key=key) from None
        # Never the value: a caller's mistake may hold something private.
        raise ConfigError(f"invalid {key!r}: {err['msg']}", key=key) from None
