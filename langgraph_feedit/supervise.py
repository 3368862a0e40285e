"""Supervising one child server process: start, wait until healthy, restart, stop, read its log.

Nothing here knows which server it runs: a subclass of :class:`ChildServer` says how to run it
(``command``), what to check before (``prepare``), how to name it in errors (``describe``) and
which causes its log may reveal (``hint``). ``embedded.py`` runs llama.cpp's server this way.

The child runs in its own session, so it is stopped with its whole process group, and (on Linux)
receives SIGTERM if this process dies, so it never outlives its parent. Its stdout and stderr go
to a temporary log file that is kept after it stops, and whose tail goes into the error when it
does not come up.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import ctypes
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
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

from langgraph_feedit.errors import ServerProcessError

__all__ = ["ChildServer", "Served", "answers", "connect_host", "free_port", "terminate"]

_STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
_LOG_TAIL_BYTES = 64 * 1024
_PR_SET_PDEATHSIG = 1


def connect_host(host: str) -> str:
    """The address a client uses to reach a server bound to ``host`` (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def free_port(host: str) -> int:
    """Ask the kernel for a free port; another process may take it before the server binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (connection refused just means not up yet)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


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


class Served(abc.ABC):
    """A server with ``start()`` and ``stop()`` that is also a sync and an async context
    manager; ``astart``/``astop`` run the blocking ``start``/``stop`` on a worker thread, so
    the event loop keeps serving while a server comes up or goes down."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Start the server and return it once it serves."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server; safe to call twice."""

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

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
        await self.astop()


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
                    target=self._run, name="feedit-child-spawner", daemon=True
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


def terminate(process: subprocess.Popen[bytes], timeout: float = _STOP_TIMEOUT) -> None:
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


class ChildServer(Served):
    """One HTTP server run as a child process on ``host:port``, healthy once ``health_path``
    answers 200.

    Like an open file, the server is also stopped when this object is garbage-collected or the
    interpreter exits, so keep a reference for as long as it is used.

    Subclasses implement ``command`` and may override ``prepare``, ``describe`` and ``hint``.

    Attributes:
        host: interface the server binds.
        startup_timeout: seconds to wait for ``health_path`` to answer 200.
        health_path: the path polled at start (``/v1/models`` for OpenAI-compatible servers).
        process: the child process, or ``None`` before ``start``.
        log_path: the server's log file, or ``None`` before ``start``.
    """

    name: ClassVar[str] = "child server"
    """How messages call the server."""
    error: ClassVar[type[ServerProcessError]] = ServerProcessError
    """The error raised when it cannot start."""
    log_prefix: ClassVar[str] = "feedit-child-"
    """The start of the log file's name."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 60.0,
        health_path: str = "/v1/models",
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.health_path = health_path
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._fixed_port = port
        self._port: int | None = port or None
        self._log: IO[bytes] | None = None
        self._lock = threading.RLock()
        self._abort = threading.Event()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- what a subclass says ------------------------------------------------------------------

    @abc.abstractmethod
    def command(self, port: int) -> list[str]:
        """The command line that runs the server on ``port``."""

    def prepare(self) -> None:
        """Check, before anything is spawned, that the server can run (raise ``error`` if not)."""

    def describe(self) -> str:
        """The server as named in error messages."""
        return self.name

    def hint(self, log: str) -> str | None:
        """The likely cause of a failed start that the (lower-cased) log reveals, if any."""
        return None

    # -- where it listens ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            ServerProcessError: a free port is only chosen at start, and it is not started.
        """
        if self._port is None:
            raise self.error(f"the {self.name} has no port yet: call start() first")
        return self._port

    @property
    def origin(self) -> str:
        """``http://host:port`` as a client reaches it."""
        return f"http://{connect_host(self.host)}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading)."""
        return self.process is not None and self.process.poll() is None

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

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and block until ``health_path`` answers 200.

        Returns ``self``; does nothing if already running. With port 0, a free port is picked,
        and picked again once if another process took it first.

        Raises:
            ServerProcessError: ``prepare`` failed, the server exited, or it did not answer
                within ``startup_timeout`` seconds. The message says which, with the log tail;
                the process is stopped first.
        """
        with self._lock:
            if self.running:
                return self
            self._abort.clear()
            self.prepare()
            attempts = 2 if self._fixed_port == 0 else 1
            for attempt in range(attempts):
                port = self._fixed_port or free_port(self.host)
                try:
                    self._launch(port)
                    return self
                except _StartFailed as failed:
                    if not (failed.address_in_use and attempt + 1 < attempts):
                        raise self._failure("exited while starting") from None
            raise AssertionError("unreachable")

    def restart(self) -> Self:
        """Stop the server (if running) and start it again."""
        with self._lock:
            self.stop()
            return self.start()

    def _launch(self, port: int) -> None:
        """Spawn one server on ``port`` and wait for it; on failure leave it stopped."""
        self.stop()
        fd, name = tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")
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
            raise self.error(f"could not run {command[0]}: {exc}") from exc
        self._finalizer = weakref.finalize(self, terminate, self.process)
        url = f"{self.origin}{self.health_path}"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise _StartFailed("address already in use" in self.log_tail(20).lower())
            if self._abort.is_set():
                self.stop()
                raise self.error(f"{self.name} start was cancelled")
            if answers(url):
                return
            if time.monotonic() >= deadline:
                raise self._failure(f"did not answer {url} within {self.startup_timeout:g} s")
            time.sleep(_POLL_INTERVAL)

    def _failure(self, what: str) -> ServerProcessError:
        """Stop the server and explain why it did not come up, naming the likely cause."""
        code = self.process.poll() if self.process is not None else None
        self.stop()
        tail = self.log_tail()
        message = f"{self.describe()} {what}"
        if code is not None:
            message += f" (exit code {code})"
        lowered = tail.lower()
        if "address already in use" in lowered:
            message += f"; port {self._port} on {self.host} is already in use"
        elif (hint := self.hint(lowered)) is not None:
            message += f"; {hint}"
        return self.error(message, log_tail=tail or None)

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
                terminate(self.process)
            if self._log is not None:
                self._log.close()
                self._log = None

    def __repr__(self) -> str:
        where = f"port={self._port}" if self._port is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}({where}, {state})"
