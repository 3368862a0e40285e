"""Configuration: roles, width, depth and budgets as pydantic models, and their loading.

A role's settings (:class:`RoleConfig`, and the role names, judge kinds and sampling fields)
live in :mod:`langgraph_feedit.roles`; this module holds the whole configuration, its layers
and the one place a preset is applied (:func:`resolve_config`).

Precedence, lowest first: the defaults below < a TOML/YAML file < ``FEEDIT_*`` environment
variables < explicit arguments < per-run configuration. Every layer is validated with
``extra="forbid"``, so an unknown or mistyped key is an error naming the key and where it came
from.

Example:
    ```python
    from langgraph_feedit import FeeditConfig

    config = FeeditConfig.load(
        "feedit.toml",
        overrides={"width": {"drafts": 8}, "roles": {"draft": {"temperature": 0.9}}},
    )
    ```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from langgraph_feedit.errors import ConfigError
from langgraph_feedit.roles import (
    DEFAULT_PRINCIPLE,
    JUDGE_KINDS,
    NO_KEY,
    ROLE_NAMES,
    RUN_ROLE_NAMES,
    SAMPLING_FIELDS,
    JudgeKind,
    JudgePart,
    Principle,
    RoleConfig,
    RoleName,
    RolesConfig,
    RunRoleName,
    SamplingConfig,
    StrictModel,
    ThinkingConfig,
    ThinkSwitch,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_PRINCIPLE",
    "ENV_PREFIX",
    "JUDGE_KINDS",
    "NO_KEY",
    "PRESETS",
    "ROLE_NAMES",
    "RUN_ROLE_NAMES",
    "SAMPLING_FIELDS",
    "BudgetConfig",
    "DepthConfig",
    "FeeditConfig",
    "JudgeKind",
    "JudgePart",
    "PresetName",
    "Principle",
    "RoleConfig",
    "RoleName",
    "RolesConfig",
    "RunRoleName",
    "SamplingConfig",
    "StoreConfig",
    "ThinkSwitch",
    "ThinkingConfig",
    "WidthConfig",
    "deep_merge",
    "resolve_config",
]

ENV_PREFIX = "FEEDIT_"
"""Environment variables ``FEEDIT_<SECTION>__<KEY>`` override file values, e.g.
``FEEDIT_WIDTH__DRAFTS=8`` or ``FEEDIT_ROLES__DRAFT__BASE_URL=http://127.0.0.1:8000/v1``."""

CONFIG_ENV = "FEEDIT_CONFIG"
"""Names a configuration file to load when none is given explicitly."""


class WidthConfig(StrictModel):
    """Branching width of the tree."""

    drafts: int = Field(default=4, ge=1, le=256)
    """Drafts sampled for the conversation."""
    critiques: int = Field(default=1, ge=0, le=64)
    """Critiques per candidate in each round (0 = best-of-n, no editing)."""
    edits: int = Field(default=1, ge=1, le=64)
    """Edits per critique."""


class DepthConfig(StrictModel):
    """Critique-edit rounds."""

    max_rounds: int = Field(default=1, ge=0, le=32)
    """Critique-edit rounds; 1 is the paper's single pass, 0 judges the drafts only."""
    stop_score: float | None = None
    """Stop deepening once the best judged score reaches this."""
    beam: int = Field(default=2, ge=1, le=64)
    """Candidates carried into the next round."""
    skip_perfect: bool = False
    """Count only effective critiques, as the paper: a critique that asks for no change (its
    verdict is "perfectly helpful", or it says no changes are needed) spawns no edit, and the
    critique slot is sampled again, up to ``max_critique_samples`` times."""
    max_critique_samples: int = Field(default=3, ge=1, le=16)
    """With ``skip_perfect``: the most critiques sampled per slot to get an effective one
    (1: never resample)."""


class BudgetConfig(StrictModel):
    """Limits that end a run early with the best candidate so far."""

    deadline_s: float | None = Field(default=None, gt=0.0)
    """Wall-clock seconds for the whole run."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Total tokens (prompt + completion, all roles) the run may spend."""


class StoreConfig(StrictModel):
    """Where batch runs keep checkpoints and the call cache."""

    path: str = ".feedit"
    """Folder of the SQLite checkpoint and cache files (used unless a URL below is set)."""
    checkpoint_url: str | None = None
    """``postgresql://...``: LangGraph's Postgres checkpointer, shared by machines."""
    cache_url: str | None = None
    """``redis://...``: LangGraph's Redis call cache, shared by machines."""


class FeeditConfig(StrictModel):
    """The whole configuration of a feedit run."""

    roles: RolesConfig = Field(default_factory=RolesConfig)
    width: WidthConfig = Field(default_factory=WidthConfig)
    depth: DepthConfig = Field(default_factory=DepthConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    preset: str | None = None
    """Name of a preset (``single``, ``best-of-n``, ``feedback-edit``, ``self-refine``,
    ``beam``) whose width and depth apply under the explicit values."""
    embedded_model: str | None = None
    """Path to a GGUF file for the embedded endpoint (default: SmolLM2-135M-Instruct)."""
    cache_key: str = ""
    """Mixed into every call's cache key: change it to draw new samples instead of reusing
    cached ones (only matters when a call cache is in use)."""
    answer_schema: dict[str, Any] | None = None
    """Constrain every answer (drafts and edits) to a JSON schema, given as
    ``{"name": ..., "schema": {...}}`` (what ``ChatFeedit.with_structured_output`` sets): each
    call that produces a candidate is sent with ``response_format``, and a candidate that is
    not a JSON value is no candidate. Critiques and the judge are not constrained."""

    def role(self, name: RoleName) -> RoleConfig:
        """The effective settings of one role."""
        return self.roles.resolve(name)

    @property
    def rounds(self) -> bool:
        """Whether a run critiques and edits at all."""
        return self.depth.max_rounds >= 1 and self.width.critiques >= 1

    @property
    def trivial(self) -> bool:
        """One draft and no rounds: nothing to choose between, so no judge call."""
        return self.width.drafts == 1 and not self.rounds

    def roles_in_use(self) -> list[RoleName]:
        """The roles a run of this configuration (presets already applied, see
        :func:`resolve_config`) calls: ``draft``; ``critique`` and ``edit`` when there are
        critique-edit rounds; ``judge`` unless it is ``consensus`` (no model) or the run is
        trivial (one draft, no rounds: nothing to choose between). A ``function`` or
        ``verify`` judge (alone or combined) calls no model."""
        rounds = self.rounds
        used: list[RoleName] = ["draft"]
        if rounds:
            used += ["critique", "edit"]
        judge = self.role("judge")
        models: set[str | None] = (
            {p.kind for p in judge.combine or []} if judge.kind == "combined" else {judge.kind}
        )
        if judge.kind == "pairwise" and judge.function:
            models = {"function"}  # a pairwise function judges the matches
        if models - {"consensus", "function", "verify"} and (self.width.drafts > 1 or rounds):
            used.append("judge")
        return used

    def check_api_keys(self, roles: Sequence[RoleName] | None = None) -> None:
        """Read the API key of every role in ``roles`` (default: :meth:`roles_in_use`), so a
        missing variable stops a run before its first call rather than failing every call.

        Raises:
            ConfigError: a role's ``api_key_env`` names a variable that is not set.
        """
        for name in self.roles_in_use() if roles is None else roles:
            self.role(name).api_key(name)

    def merged(
        self, overrides: Mapping[str, Any] | None, *, source: str = "arguments"
    ) -> FeeditConfig:
        """A copy with ``overrides`` (a nested mapping) laid over this configuration."""
        if not overrides:
            return self
        return _validate(deep_merge(self.model_dump(exclude_unset=True), overrides), source)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> FeeditConfig:
        """Build a configuration from defaults < ``path`` < environment < ``overrides``.

        Args:
            path: a ``.toml``, ``.yaml`` or ``.yml`` file, or ``None`` (then the file named
                by ``FEEDIT_CONFIG``, if set).
            env: environment to read ``FEEDIT_*`` variables from (default ``os.environ``).
            overrides: explicit values, as a nested mapping.

        Raises:
            ConfigError: a file cannot be read or parsed, or a key is unknown or mistyped;
                the message names the key and where it came from.
        """
        env = os.environ if env is None else env
        if path is None and env.get(CONFIG_ENV):
            path = env[CONFIG_ENV]
        data: dict[str, Any] = {}
        if path is not None:
            file_data = read_config_file(path)
            _validate(file_data, str(path))
            data = deep_merge(data, file_data)
        env_data = env_overrides(env)
        if env_data:
            _validate(env_data, "environment")
            data = deep_merge(data, env_data)
        if overrides:
            _validate(dict(overrides), "arguments")
            data = deep_merge(data, overrides)
        return _validate(data, "configuration")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML or YAML configuration file into a dict (not yet validated)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {p}: {exc}", source=str(p)) from exc
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            loaded = yaml.safe_load(text) or {}
        else:
            loaded = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p}: the top level must be a table of sections", source=str(p))
    return loaded


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Nested overrides from ``FEEDIT_SECTION__KEY=value`` variables.

    Values stay strings; validation converts them (``"8"`` to 8, ``"true"`` to True). List
    values (``stop``) are written as JSON.
    """
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _env_value(value)
    return out


def _env_value(value: str) -> Any:
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        import json

        try:
            return json.loads(stripped)
        except ValueError:
            return value
    if stripped.lower() in ("none", "null"):
        return None
    return value


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively lay ``over`` on ``base``: tables merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(data: Mapping[str, Any], source: str) -> FeeditConfig:
    try:
        return FeeditConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, source) from None


def _config_error(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    first_key: str | None = None
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        first_key = first_key or key
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        else:
            # Never echo the value: a mistyped key could hold a secret.
            lines.append(f"{key!r}: {err['msg']}")
    where = "environment (FEEDIT_* variables)" if source == "environment" else source
    return ConfigError(
        f"invalid configuration in {where}: " + "; ".join(lines), key=first_key, source=source
    )


from langgraph_feedit.presets import PRESETS, PresetName  # noqa: E402  (re-exported)


def resolve_config(
    config: FeeditConfig,
    *,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "run configuration",
) -> FeeditConfig:
    """The settings of a run: the one place a preset is applied.

    One rule: a preset fills what the settings given with it leave unset, and replaces what
    was given before it. Lowest first:

    1. the configuration's preset (``preset``, else ``config.preset``), under
    2. the configuration's explicit settings, under
    3. a per-run preset (``overrides["preset"]``: LangGraph Server's context, the model name a
       ``feedit serve`` client asks for), under
    4. the rest of ``overrides``.

    So ``preset="self-refine"`` with ``depth.max_rounds = 5`` refines five times, while a run
    that asks for ``single`` gets one draft whatever the configuration's ``width.drafts``.
    Widths a preset leaves open (the drafts of ``feedback-edit``) come from below it.

    Raises:
        ConfigError: an unknown preset, or overrides with unknown keys.
    """
    overrides = dict(overrides or {})
    run_preset = overrides.pop("preset", None)
    name = preset or config.preset
    data = config.model_dump(exclude_unset=True)
    if name is not None:
        data = deep_merge(_preset(name), data)
    if run_preset is not None:
        data = deep_merge(data, _preset(run_preset))
    if (run_preset or name) is not None:
        data["preset"] = run_preset or name
    if overrides:
        _validate(overrides, source)
        data = deep_merge(data, overrides)
    return _validate(data, source)


def _preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}", key="preset"
        )
    return dict(PRESETS[name])
