"""Running the app: what ``feedit serve`` runs, and a server in a background thread.

Nothing here imports FastAPI or uvicorn at module level; running the app is what needs them.
The command's flags are in :mod:`langgraph_feedit.commands.serve`.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from langgraph_feedit.errors import ConfigError, UserError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from langgraph_feedit.config import FeeditConfig

__all__ = ["config_from_args", "run_serve", "serve_in_thread"]

log = logging.getLogger("langgraph_feedit.serve")


def config_from_args(args: argparse.Namespace) -> FeeditConfig:
    """The server's configuration: defaults < file < ``FEEDIT_*`` environment < flags.

    Raises:
        ConfigError: a bad file, variable or flag (the message names the key).
    """
    from langgraph_feedit.config import FeeditConfig
    from langgraph_feedit.overrides import set_path

    overrides: dict[str, Any] = {}
    for key, value in (
        ("roles.default.base_url", args.base_url),
        ("roles.default.model", args.model),
        ("roles.default.api_key_env", args.api_key_env),
    ):
        if value is not None:
            set_path(overrides, key, value)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}", source="arguments")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        set_path(overrides, key.strip(), parsed)
    return FeeditConfig.load(args.config, overrides=overrides)


def run_serve(args: argparse.Namespace) -> int:
    """Run ``feedit serve`` until interrupted; returns the exit status.

    Raises:
        ConfigError: a bad configuration, or ``--client-key-env`` names an unset variable.
        UserError: the ``serve`` extra (FastAPI, uvicorn) is not installed.
    """
    try:
        import uvicorn

        from langgraph_feedit.serve.app import build_app
    except ImportError as exc:
        raise UserError(
            f"feedit serve needs the serve extra: pip install 'langgraph-feedit[serve]' ({exc})"
        ) from None
    config = config_from_args(args)
    app = build_app(
        config,
        api_key_env=args.client_key_env,
        max_body_bytes=args.max_body_bytes,
        max_fanout=args.max_fanout,
        allow_overrides=args.allow_override,
        keep_traces=args.keep_traces,
    )
    # Everything built so far (modules, graphs, models) lives as long as the process: moved out
    # of the collector's reach, it no longer makes full collections long. Measured with
    # bench/serve.py, this takes the p99 of the latency the app adds from ~60 ms to ~5 ms.
    gc.collect()
    gc.freeze()
    _log_to_stderr(args.log_level)
    if args.client_key_env is None and not _is_loopback(args.host):
        log.warning(
            "serving on %s without an API key: anyone who reaches it can spend the backends' "
            "tokens (set --client-key-env)",
            args.host,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _log_to_stderr(level: str) -> None:
    # uvicorn configures its own loggers only; the package's request log needs a handler too.
    package = logging.getLogger("langgraph_feedit")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        package.addHandler(handler)
    package.setLevel(level.upper())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def serve_in_thread(
    app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread (its own event loop); yield the base URL
    (``http://host:port/v1``) once it listens, and shut it down on exit.

    ``port=0`` picks a free port. For tests, benchmarks and embedding in a synchronous program;
    logging is left to the host program (uvicorn's loggers propagate to its handlers).
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="feedit-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout)
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout)
