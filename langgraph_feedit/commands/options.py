"""What the commands share: the parser class, the configuration flags and their overrides.

The flags of the commands that run the graph name the roles and judge kinds of
:mod:`langgraph_feedit.config`; loading it loads pydantic, which ``feedit --help`` and
``--version`` should not pay for. So a command's arguments are added when its parser is first
used (:class:`CommandParser`), not when the top parser lists the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args, overload

from langgraph_feedit.errors import ConfigError, UserError

__all__ = [
    "KINDS_WITH_SETTINGS",
    "CommandParser",
    "add_config_options",
    "categories",
    "confidence",
    "judge_kinds",
    "overrides_from_args",
    "run_roles",
    "warn",
]

_N = TypeVar("_N")

KINDS_WITH_SETTINGS: dict[str, str] = {
    "function": "roles.judge.function",
    "verify": "roles.judge.questions",
    "combined": "roles.judge.combine",
}
"""Judge kinds that need a setting of their own besides the kind: chosen with ``--set``, not
``--judge`` (the key that must be set with each)."""


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser whose arguments are added the first time it parses or prints.

    ``arguments`` adds them; listing the command in ``feedit --help`` does not call it.
    """

    def __init__(
        self,
        *args: Any,
        arguments: Callable[[argparse.ArgumentParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments

    def _ready(self) -> None:
        if self._arguments is not None:
            add, self._arguments = self._arguments, None
            add(self)

    @overload
    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: None = None
    ) -> tuple[argparse.Namespace, list[str]]: ...
    @overload
    def parse_known_args(
        self, args: Iterable[str] | None, namespace: _N
    ) -> tuple[_N, list[str]]: ...
    @overload
    def parse_known_args(self, *, namespace: _N) -> tuple[_N, list[str]]: ...
    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._ready()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()

    def format_help(self) -> str:
        self._ready()
        return super().format_help()


if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[CommandParser]
    """What each command's ``register`` is given: the top parser's sub-commands."""


def run_roles() -> list[str]:
    """The roles a run calls, each with its ``--ROLE-url`` and ``--ROLE-model`` flags
    (``default`` is ``--base-url`` and ``--model``)."""
    from langgraph_feedit.overrides import RUN_ROLES

    return [role for role in RUN_ROLES if role != "default"]


def judge_kinds() -> list[str]:
    """The judge kinds ``--judge`` takes: every kind that needs no other setting."""
    from langgraph_feedit.config import JudgeKind

    return [kind for kind in get_args(JudgeKind) if kind not in KINDS_WITH_SETTINGS]


def add_config_options(cmd: argparse.ArgumentParser) -> None:
    """The configuration flags shared by commands that run the graph."""
    from langgraph_feedit.presets import PRESETS

    cmd.add_argument("--config", type=Path, help="a TOML or YAML configuration file")
    cmd.add_argument("--preset", choices=sorted(PRESETS), help="a strategy preset")
    cmd.add_argument("--drafts", type=int, help="drafts to sample")
    cmd.add_argument("--critiques", type=int, help="critiques per candidate")
    cmd.add_argument("--edits", type=int, help="edits per critique")
    cmd.add_argument("--rounds", type=int, help="critique-edit rounds (depth.max_rounds)")
    cmd.add_argument("--beam", type=int, help="candidates carried into the next round")
    cmd.add_argument("--stop-score", type=float, help="stop deepening at this judged score")
    cmd.add_argument("--judge", choices=judge_kinds(), help="judge kind")
    cmd.add_argument("--deadline", type=float, help="seconds per prompt")
    cmd.add_argument("--token-budget", type=int, help="total tokens one prompt may spend")
    cmd.add_argument("--base-url", help="endpoint for every role (roles.default.base_url)")
    cmd.add_argument("--model", help="model for every role (roles.default.model)")
    cmd.add_argument("--api-key-env", help="NAME of the variable holding the API key")
    for role in run_roles():
        cmd.add_argument(f"--{role}-url", dest=f"{role}_url", help=f"endpoint of the {role} role")
        cmd.add_argument(f"--{role}-model", dest=f"{role}_model", help=f"model of the {role} role")
    cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by dotted key, e.g. roles.draft.temperature=0.9 (repeatable)",
    )
    cmd.add_argument("--embedded-model", help="a GGUF file for the embedded endpoint")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The explicit-argument layer of the configuration."""
    from langgraph_feedit.overrides import FLAT_KEYS, set_path

    out: dict[str, Any] = {}
    # The flags named like the flat keys (--drafts, --rounds, --token-budget...) set theirs.
    pairs = [(key, getattr(args, flat, None)) for flat, key in FLAT_KEYS.items()]
    pairs += [
        ("roles.default.base_url", args.base_url),
        ("roles.default.model", args.model),
        ("roles.default.api_key_env", args.api_key_env),
        ("embedded_model", args.embedded_model),
        ("preset", args.preset),
    ]
    for role in run_roles():
        pairs.append((f"roles.{role}.base_url", getattr(args, f"{role}_url")))
        pairs.append((f"roles.{role}.model", getattr(args, f"{role}_model")))
    for key, value in pairs:
        if value is not None:
            set_path(out, key, value)
    for key, attr in (("store.checkpoint_url", "checkpoint_url"), ("store.cache_url", "cache_url")):
        if getattr(args, attr, None):
            set_path(out, key, getattr(args, attr))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", source="arguments")
        set_path(out, key.strip(), _parse_value(value))
    return out


def confidence(value: float) -> float:
    """``--confidence`` as a fraction, from a fraction or a percent."""
    coverage = value / 100.0 if value > 1.0 else value
    if not 0.0 < coverage < 1.0:
        raise UserError(f"--confidence {value:g}: expected a fraction (0.9) or a percent (90)")
    return coverage


def categories(values: list[str] | None) -> list[str] | None:
    """``--category`` values, repeatable and comma-separated."""
    if not values:
        return None
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


def warn(message: str) -> None:
    """A warning on standard error, as every command words it."""
    print(f"feedit: warning: {message}", file=sys.stderr, flush=True)
