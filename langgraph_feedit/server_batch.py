"""A batch on a LangGraph server: every prompt a run of a served graph, on its own thread.

``feedit batch --server URL`` sends each prompt of the input file to a LangGraph deployment
(or ``langgraph dev``) serving ``graphs/langgraph.json``, as a background run on a thread whose
id is derived from the prompt and the batch (assistant, per-run settings, the prompt's
messages). The server's run queue, workers and checkpointer do the work; this client keeps at
most ``concurrency`` runs in flight, collects them as they finish and writes the same output
lines, summary and exit status as a local batch (:mod:`langgraph_feedit.batch_output`).

Running the same command again resumes, because it finds the same threads:

- a thread whose run finished is read back, with no run and no call;
- a thread with a run still pending or running (this client was killed) is waited for;
- a thread whose run failed (a backend down, every branch failed) is resumed: the server's
  checkpoint keeps what the failed run finished, so only the calls that failed are made again;
- a thread the server lost (the in-memory ``langgraph dev`` restarted before it saved it) is
  created and run again.

While the server does not answer (a restart, a deploy), the batch waits up to ``wait_s`` for
it, then stops with :class:`~langgraph_feedit.errors.DeploymentError`; the runs it had started
go on on the server and a rerun collects them.

Per-run settings travel in each run's ``context`` and are checked here with the server's own
policy (:func:`~langgraph_feedit.overrides.check_untrusted_overrides`): width, depth, budget and
sampling are the batch's to choose, endpoints, models and keys the server's. The deployment's
own key, if it wants one, is read from the environment variable ``key_env`` names and sent as
``x-api-key``; it is never read from a file and never shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import httpx

from langgraph_feedit.batch import thread_id
from langgraph_feedit.batch_output import (
    BatchOptions,
    BatchSummary,
    Outcome,
    check_options,
    prepare_prompts,
    sidecar_of,
    write_answers,
)
from langgraph_feedit.errors import ConfigError, DeploymentError, UserError, register_secret
from langgraph_feedit.inputs import Prompt
from langgraph_feedit.outputs import output_lock
from langgraph_feedit.overrides import FLAT_KEYS, check_untrusted_overrides, set_path

__all__ = ["ServerOptions", "run_server_batch", "server_thread_id"]

T = TypeVar("T")

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "langgraph-feedit:server-batch")
"""LangGraph Server takes only UUIDs as thread ids: ours are UUIDv5 of the batch's thread name
under this namespace, so the same prompt of the same batch always names the same thread."""

_ACTIVE = ("pending", "running")
_MAX_LOST = 5
"""Runs of one prompt the server may lose (restarts) before the prompt is written as failed."""
_TRANSIENT_STATUS = (429, 500, 502, 503, 504)
"""Statuses a restarting or overloaded server answers with; any other is its final word."""

PARTIAL_HINT = (
    "partial answers are kept as they are: a LangGraph server remakes only the failed calls "
    "of a run that failed, and these runs finished (rerun them with --fresh for new samples)"
)


@dataclass(slots=True)
class ServerOptions:
    """Where a batch runs and with what."""

    url: str
    """The LangGraph server's base URL (``http://127.0.0.1:2024``, a deployment's URL)."""
    assistant: str = "feedback-edit"
    """The assistant id, or the graph's name in ``langgraph.json`` (the presets' names)."""
    context: dict[str, Any] = field(default_factory=dict)
    """Per-run settings sent as each run's ``context`` (``{"width": {"drafts": 4}}``)."""
    key_env: str | None = None
    """Name of the environment variable holding the deployment's key (sent as
    ``x-api-key``); ``None`` sends no key."""
    wait_s: float = 300.0
    """How long the batch waits for a server that stopped answering before it gives up."""
    concurrency: int = 32
    """Runs in flight at once (``BatchOptions.concurrency`` takes precedence)."""


def server_thread_id(prompt: Prompt, assistant: str, context: Mapping[str, Any]) -> str:
    """The prompt's thread on the server: a UUID derived from its id, its messages and the
    batch (assistant and per-run settings), so a rerun finds it and another batch does not."""
    payload = json.dumps(
        {"assistant": assistant, "context": context, "messages": prompt.messages},
        sort_keys=True,
        ensure_ascii=False,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return str(uuid.uuid5(_NAMESPACE, thread_id(prompt, digest)))


def check_context(context: Mapping[str, Any]) -> None:
    """Refuse settings the server would refuse in every run, once and before any run.

    Raises:
        ConfigError: a key the configuration does not have, one that belongs to the server's
            operator (an endpoint, a model, a key variable, the store), or a value of the
            wrong type; it names the key.
    """
    check_untrusted_overrides(context)


async def run_server_batch(
    options: BatchOptions,
    server: ServerOptions,
    *,
    stream: TextIO | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Answer every prompt of ``options.input`` on the LangGraph server ``server.url``.

    The output, summary and exit status are a local batch's (see
    :func:`~langgraph_feedit.batch.run_batch`); ``options.store``, ``durable`` and the call
    cache do not apply: the server keeps the threads.

    Example::

        summary = await run_server_batch(
            BatchOptions(input=Path("q.jsonl"), output=Path("answers.jsonl")),
            ServerOptions(url="http://127.0.0.1:2024", assistant="best-of-n",
                          context={"drafts": 4}),
        )

    Raises:
        UserError: bad options, per-run settings the server would refuse, or a server that
            cannot be reached, refuses the key, or serves no such assistant (one line each,
            before any run is created).
        InputError: bad input lines with ``on_error="stop"``.
        DeploymentError: the server stopped answering for longer than ``server.wait_s``.
    """
    from langgraph_sdk import get_client

    stream = stream or sys.stderr
    started = time.monotonic()
    check_options(options)
    context = _nested(server.context)
    if options.fresh:
        context["cache_key"] = uuid.uuid4().hex
    try:
        check_context(context)
    except ConfigError as exc:
        raise ConfigError(f"--server: {exc}", key=exc.key, source="arguments") from None
    key = _key(server.key_env)
    # The SDK would otherwise send LANGGRAPH_API_KEY or LANGSMITH_API_KEY to any URL given.
    client = get_client(url=server.url, api_key=key, timeout=(30.0, 600.0, 30.0, 30.0))
    sidecar = sidecar_of(options.output)
    with warnings.catch_warnings():
        # The SDK warns as it reconnects a join cut off by a restart, which the batch expects.
        warnings.filterwarnings("ignore", "Request failed, attempting reconnect", UserWarning)
        summary = await _run(client, options, server, context, sidecar, stream, on_record)
    summary.wall_s = time.monotonic() - started
    return summary


async def _run(
    client: Any,
    options: BatchOptions,
    server: ServerOptions,
    context: dict[str, Any],
    sidecar: Path,
    stream: TextIO,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> BatchSummary:
    try:
        assistant_id = await _check_server(client, server)
        with output_lock(options.output, sidecar):
            chosen, summary = prepare_prompts(options, sidecar)
            summary.retry_hint = PARTIAL_HINT
            runner = _Runner(client, server, assistant_id, context)
            await write_answers(
                chosen,
                summary,
                options,
                runner.answer,
                concurrency=options.concurrency or server.concurrency,
                stream=stream,
                on_record=on_record,
                in_flight=lambda: runner.in_flight,
                in_flight_unit="runs",
            )
    finally:
        await client.aclose()
    return summary


def _nested(context: Mapping[str, Any]) -> dict[str, Any]:
    """The settings nested as in a configuration file, short names (``drafts``) expanded: one
    spelling per setting, so the same settings always name the same threads."""
    out: dict[str, Any] = {}
    for key, value in context.items():
        if key in FLAT_KEYS:
            set_path(out, FLAT_KEYS[key], value)
        else:
            out[key] = json.loads(json.dumps(value))  # a copy that nothing changes under us
    return out


def _key(name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise UserError(
            f"--server-key-env names the environment variable {name!r}, which is not set"
        )
    register_secret(value)
    return value


async def _check_server(client: Any, server: ServerOptions) -> str:
    """The assistant's id, after checking the server answers, takes the key and serves it.

    Raises:
        UserError: one line naming the URL and what is wrong.
    """
    from langgraph_sdk.errors import (
        AuthenticationError,
        NotFoundError,
        PermissionDeniedError,
    )

    where = f"--server {server.url}"
    try:
        assistants = await client.assistants.search(limit=1000)
        # A graph's name means the assistant the server made for it, before any made later.
        assistants.sort(key=lambda a: (a.get("metadata") or {}).get("created_by") != "system")
        for assistant in assistants:
            if server.assistant in (assistant["assistant_id"], assistant["graph_id"]):
                return str(assistant["assistant_id"])
        for assistant in assistants:
            if server.assistant == assistant.get("name"):
                return str(assistant["assistant_id"])
        served = sorted({a["graph_id"] for a in assistants})
    except (AuthenticationError, PermissionDeniedError) as exc:
        how = (
            f"the key in ${server.key_env}"
            if server.key_env
            else "no key (name its variable with --server-key-env)"
        )
        raise UserError(f"{where} refused {how}: {exc.status_code} {_detail(exc)}") from None
    except NotFoundError:
        raise UserError(f"{where} is not a LangGraph server (no /assistants there)") from None
    except httpx.HTTPStatusError as exc:
        raise UserError(
            f"{where} answered {exc.response.status_code} {_detail(exc)}: is it a LangGraph server?"
        ) from None
    except (httpx.TransportError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise UserError(f"{where} cannot be reached: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # a reply that is not JSON
        raise UserError(f"{where} is not a LangGraph server: {exc}") from None
    raise UserError(
        f"--assistant {server.assistant!r}: the server at {server.url} has no such assistant "
        f"or graph; it serves {', '.join(served) or 'none'}"
    )


def _detail(exc: httpx.HTTPStatusError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])[:200]
    return exc.response.reason_phrase


class _Runner:
    """Takes each prompt's thread to a finished run, whatever state the thread is found in."""

    def __init__(
        self, client: Any, server: ServerOptions, assistant_id: str, context: dict[str, Any]
    ) -> None:
        self.client = client
        self.server = server
        self.assistant_id = assistant_id
        self.context = context
        self.in_flight = 0

    async def answer(self, prompt: Prompt) -> Outcome:
        from langgraph_sdk.errors import ConflictError, NotFoundError

        tid = server_thread_id(prompt, self.server.assistant, self.context)
        started = False  # a run of this batch made calls for the prompt
        resumed = False
        lost = 0
        while True:
            try:
                thread = await self._retry(lambda: self.client.threads.get(tid))
            except NotFoundError:
                thread = None
            values = (thread or {}).get("values") or {}
            status = (thread or {}).get("status")
            if thread is not None and status == "idle" and "trace" in values:
                return Outcome(values, was_done=not started)
            run: dict[str, Any] | None
            try:
                if thread is None:
                    await self._retry(
                        lambda: self.client.threads.create(
                            thread_id=tid,
                            if_exists="do_nothing",
                            metadata={"feedit_prompt": prompt.id[:200]},
                        )
                    )
                    run = await self._start(tid, {"messages": prompt.messages})
                elif status == "busy":
                    run = await self._active_run(tid)
                    if run is None:
                        await asyncio.sleep(0.5)
                        continue
                elif not values:
                    run = await self._start(tid, {"messages": prompt.messages})
                else:
                    # Failed, or cut off: resume from the thread's checkpoint, where the
                    # calls that finished are kept; only the rest are made.
                    if resumed:
                        return Outcome(None, await self._last_error(tid))
                    resumed = True
                    run = await self._start(tid, None)
            except ConflictError:
                continue  # another run got there first (a rerun racing a late create)
            started = True
            result = await self._join(tid, run["run_id"])
            error = result.get("__error__") if isinstance(result, dict) else None
            if error is not None and await self._failed(tid, run["run_id"]):
                return Outcome(None, _error_text(error))
            # Finished, or lost with the server's memory (a restart): look at the thread again.
            lost += error is not None
            if lost > _MAX_LOST:
                return Outcome(None, f"{_error_text(error)} ({lost} times on {self.server.url})")

    async def _start(self, tid: str, graph_input: dict[str, Any] | None) -> dict[str, Any]:
        run: dict[str, Any] = await self._retry(
            lambda: self.client.runs.create(
                tid,
                self.assistant_id,
                input=graph_input,
                context=self.context,
                multitask_strategy="reject",
            )
        )
        return run

    async def _failed(self, tid: str, run_id: str) -> bool:
        """Whether the run is there and failed (a join also answers with an error for a run
        the server no longer knows)."""
        from langgraph_sdk.errors import NotFoundError

        try:
            run = await self._retry(lambda: self.client.runs.get(tid, run_id))
        except NotFoundError:
            return False
        return bool(run["status"] == "error")

    async def _active_run(self, tid: str) -> dict[str, Any] | None:
        runs = await self._retry(lambda: self.client.runs.list(tid, limit=20))
        active = [r for r in runs if r["status"] in _ACTIVE]
        return min(active, key=lambda r: r["created_at"]) if active else None

    async def _join(self, tid: str, run_id: str) -> Any:
        from langgraph_sdk.errors import NotFoundError

        self.in_flight += 1
        try:
            return await self._retry(lambda: self.client.runs.join(tid, run_id))
        except (NotFoundError, httpx.HTTPStatusError) as exc:
            if isinstance(exc, NotFoundError) or exc.response.status_code == 404:
                return {}  # the server lost it (a restart): look at the thread again
            raise
        finally:
            self.in_flight -= 1

    async def _last_error(self, tid: str) -> str:
        runs = await self._retry(lambda: self.client.runs.list(tid, limit=1))
        for run in runs:
            if run["status"] == "error":
                return f"run {run['run_id']} failed again on {self.server.url}; see its log"
        return f"the thread {tid} did not finish on {self.server.url}"

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again while the server does not answer (a restart), for at most
        ``wait_s`` seconds of silence; a read that times out on a long run is waited again."""
        deadline: float | None = None
        delay = 0.2
        while True:
            try:
                return await call()
            except httpx.ReadTimeout:
                continue  # a long run's join: the server is there, only slow
            except httpx.TransportError as exc:
                why = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code not in _TRANSIENT_STATUS:
                    raise
                why = f"{exc.response.status_code} {exc.response.reason_phrase}"
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.server.wait_s
            if now >= deadline:
                raise DeploymentError(
                    f"the LangGraph server at {self.server.url} has not answered for "
                    f"{self.server.wait_s:.0f} s ({why}); its runs go on there, and the same "
                    "command run again collects them"
                ) from None
            await asyncio.sleep(delay)
            delay = min(2 * delay, 5.0)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = str(error.get("message") or "")
        return message or str(error.get("error") or "the run failed")
    return str(error)
