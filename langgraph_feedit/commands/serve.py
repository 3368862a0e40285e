"""``feedit serve``: every preset behind an OpenAI-compatible API (the ``serve`` extra).

The flags are read by :func:`langgraph_feedit.serve.config_from_args`; FastAPI and uvicorn are
imported when the command runs, so the command line lists ``serve`` without the extra.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph_feedit.errors import UserError, register_secret

if TYPE_CHECKING:
    from langgraph_feedit.commands.options import Subcommands

__all__ = ["add_arguments", "add_parser", "register", "run"]

_PARSER: dict[str, Any] = dict(
    help="serve every preset behind an OpenAI-compatible API",
    description=(
        "Serve the presets (single, best-of-n, feedback-edit, self-refine, beam) as models "
        "of an OpenAI-compatible chat-completions API. Clients pick a preset as their "
        "model and may set width, depth and budget per request with "
        'extra_body={"feedit": {"drafts": 8, ...}}.'
    ),
    epilog=(
        "examples:\n"
        "  feedit serve --config feedit.toml\n"
        "  FEEDIT_SERVE_KEY=... feedit serve --host 0.0.0.0 --client-key-env FEEDIT_SERVE_KEY "
        "--base-url http://127.0.0.1:8000/v1 --model my-model\n"
        "then, from any OpenAI client:\n"
        '  OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="...").chat.completions'
        '.create(model="feedback-edit", messages=[...], extra_body={"feedit": {"drafts": 4}})'
    ),
    formatter_class=argparse.RawDescriptionHelpFormatter,
)


def register(sub: Subcommands) -> None:
    """Add ``feedit serve``."""
    sub.add_parser("serve", arguments=add_arguments, **_PARSER).set_defaults(func=run)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``serve`` with its arguments to any parser's sub-commands
    (``parser.add_subparsers()``), for a program that embeds the command."""
    serve: argparse.ArgumentParser = subparsers.add_parser("serve", **_PARSER)
    add_arguments(serve)
    return serve


def add_arguments(serve: argparse.ArgumentParser) -> None:
    """The flags of ``feedit serve``."""
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.add_argument("--config", type=Path, help="a TOML or YAML configuration file")
    serve.add_argument("--base-url", help="backend endpoint for every role")
    serve.add_argument("--model", help="backend model for every role")
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="NAME of the variable holding the backends' API key (roles.default.api_key_env),"
        " as in `feedit run`",
    )
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by dotted key, e.g. width.drafts=8 (repeatable)",
    )
    serve.add_argument(
        "--client-key-env",
        metavar="NAME",
        help="NAME of the variable holding the key clients must send (Authorization: Bearer)",
    )
    serve.add_argument(
        "--allow-override",
        action="append",
        default=[],
        metavar="KEY",
        help="let clients set this per-request key too, a dotted pattern such as "
        "'roles.*.model' (repeatable; by default clients may set width, depth, budget and "
        "sampling, never endpoints, models, keys, limits or retries)",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=1_000_000, help="largest request body accepted"
    )
    serve.add_argument(
        "--max-fanout",
        type=int,
        default=256,
        help="most drafts, critiques and edits one request's tree may hold",
    )
    serve.add_argument(
        "--keep-traces",
        type=int,
        default=0,
        metavar="N",
        help="keep the last N runs' traces in memory and serve their pages at /traces/ and "
        "/traces/ID (ID: the completion's id), behind the same key (default 0: keep none)",
    )
    serve.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the exit status."""
    from langgraph_feedit.serve import run_serve

    _client_key(args.client_key_env)
    return run_serve(args)


def _client_key(name: str | None) -> None:
    """Check the variable ``--client-key-env`` names, and register its value as a secret (the
    door keeps only a digest of it, but a backend or a log may still quote it)."""
    if name is None:
        return
    value = os.environ.get(name)
    if not value:
        raise UserError(
            f"--client-key-env names the environment variable {name!r}, which is not set"
        )
    register_secret(value)
