"""A chat request as the server takes it, and what the server was found to support: ``n``
choices in one request (else single calls make up the rest), the ``response_format`` forms it
takes (tried best first, a refusal remembered), and whether it sends ``logprobs`` (found by a
probe made as a run starts, see :meth:`Sampling.discover_logprobs`, or by the first call that
asks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from langgraph_feedit._requests import Requests
from langgraph_feedit.chatapi import (
    ChatRequest,
    ChatResult,
    Choices,
    JsonMode,
    read_choices,
    read_stream,
    refuses_response_format,
    why_no_answer,
)
from langgraph_feedit.errors import EndpointError
from langgraph_feedit.usage import Usage

_log = logging.getLogger("langgraph_feedit")

PROBE_MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Answer Yes or No: is 2 > 1?"}]
"""What the logprobs probe asks (:meth:`Sampling.discover_logprobs`), for one token: any
answer tells whether the server sends logprobs."""


class Sampling(Requests):
    """Chat requests, and what the server supports (set by the endpoint's constructor)."""

    n_supported: bool | None
    json_modes: list[JsonMode]
    json_mode_known: bool
    logprobs_supported: bool | None
    _logprobs_probe: asyncio.Task[Usage] | None = None
    """The request :meth:`discover_logprobs` made, while it runs or after."""
    _probe_waiters = 0

    async def _json_ladder(
        self, request: ChatRequest, json_schema: Mapping[str, Any]
    ) -> ChatResult:
        """The call with the first ``response_format`` form not refused here, down to none."""
        while self.json_modes:
            mode = self.json_modes[0]
            try:
                result = await self._chat(request.formatted(mode, json_schema))
            except EndpointError as exc:
                if not refuses_response_format(exc.status, exc.body):
                    raise
                if mode in self.json_modes:
                    self.json_modes.remove(mode)
                continue
            return dataclasses.replace(result, json_mode=mode)
        return await self._chat(request)

    async def _chat(self, request: ChatRequest) -> ChatResult:
        if request.on_token is not None and request.n == 1:
            on_token = request.on_token
            body = request.body(seed=request.seed, stream=True)
            seconds = self.request_timeout(request.max_tokens)

            async def stream() -> ChatResult:
                result = await read_stream(
                    self._events(body, seconds),
                    request.model,
                    on_token,
                    on_reasoning=request.on_reasoning,
                    tags=request.think_tags,
                )
                _answered(result.incomplete, request)
                return result

            streamed: ChatResult = await self._call(
                stream,
                model=request.model,
                role=request.role,
                seconds=seconds,
                refuse=request.asks_json,
            )
            return self._noted(streamed, request)
        n, seed = request.n, request.seed
        got = Choices()
        if n > 1 and request.use_n and self.n_supported is not False:
            try:
                together = await self._complete(request, n=n, seed=seed)
            except EndpointError as exc:
                if exc.status != 400 or "n" not in (exc.body or "").lower():
                    raise
                self.n_supported = False
            else:
                self.n_supported = len(together.texts) >= n
                got.extend(together, n)
        # A server that ignored ``n`` or refused it: the rest as single calls, sample ``i``
        # seeded ``seed + i`` so seeded samples still differ.
        calls = [
            self._complete(request, n=1, seed=None if seed is None else seed + i)
            for i in range(len(got.texts), n)
        ]
        # One call is awaited as it is: gather would give it a task of its own.
        singles = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        for single in singles:
            got.extend(single, 1)
        result = ChatResult(
            texts=got.texts,
            usage=got.usage,
            model=request.model,
            finish_reasons=got.reasons,
            logprobs=got.logprobs,
            reasonings=got.reasonings,
            incomplete=got.incomplete,
        )
        return self._noted(result, request)

    def _noted(self, result: ChatResult, request: ChatRequest) -> ChatResult:
        """Remember whether the server sent the logprobs it was asked for."""
        if request.asks_logprobs:
            self.logprobs_supported = any(lp is not None for lp in result.logprobs)
        return result

    async def _complete(self, request: ChatRequest, *, n: int, seed: int | None) -> Choices:
        """One ``POST /chat/completions`` for ``n`` choices; its choices."""
        body = request.body(n=n, seed=seed)
        seconds = self.request_timeout(request.max_tokens, n)

        async def complete() -> Choices:
            # Read inside the retried call: a reply that is no answer is asked again.
            reply = await self._request("POST", self._chat_path, body, seconds)
            choices = read_choices(reply, request.think_tags)
            if choices is None:
                raise EndpointError(
                    "the reply has no choices",
                    endpoint=self.label(request.model),
                    role=request.role,
                    status=200,
                    body=json.dumps(reply)[:500],
                )
            _answered(choices.incomplete, request)
            return choices

        result: Choices = await self._call(
            complete,
            model=request.model,
            role=request.role,
            seconds=seconds,
            refuse=request.asks_json,
        )
        return result

    # -- what the server supports ---------------------------------------------------------

    async def discover_logprobs(self, ask: Callable[[], Coroutine[Any, Any, Usage]]) -> Usage:
        """Find out whether this server sends ``logprobs``: ``ask`` makes one request of one
        token that asks for them (:data:`PROBE_MESSAGES`), once per endpoint while it is not
        known, and every caller waits on that one; the answer lands in
        :attr:`logprobs_supported` (as any call that asks records it). Returns what the probe
        cost to the caller whose ``ask`` was made (to charge its run), nothing to the others.

        A run makes it while its drafts are written: a judge that found support unknown
        would ask its principle questions, see no logprobs come back, and only then ask for
        the rating, a whole extra round. A probe that fails leaves support unknown (the
        judge's own calls then find out, as before) and is made again by the next run.
        """
        probe = self._logprobs_probe
        made = self.logprobs_supported is None and (probe is None or probe.done())
        if made:
            probe = self._logprobs_probe = asyncio.create_task(ask())
            # Its failure is read here, or by no one if its maker is gone: never logged as lost.
            probe.add_done_callback(lambda t: t.cancelled() or t.exception())
        await self.logprobs_known()
        if not made or probe is None or not probe.done() or probe.cancelled():
            return Usage()
        if probe.exception() is not None:
            _log.debug("feedit: the logprobs probe of %s failed", self.base_url)
            return Usage()
        return probe.result()

    async def logprobs_known(self) -> bool | None:
        """:attr:`logprobs_supported`, once a probe in flight (:meth:`discover_logprobs`) has
        answered. The probe is shared: it is cancelled only when the last caller waiting on
        it is (a run that ends early, a client that disconnects), so a cancellation reaches
        it and no request outlives every run that wanted it."""
        probe = self._logprobs_probe
        if self.logprobs_supported is None and probe is not None and not probe.done():
            self._probe_waiters += 1
            try:
                await asyncio.wait({probe})
            finally:
                self._probe_waiters -= 1
                if not self._probe_waiters and not probe.done():
                    probe.cancel()
        return self.logprobs_supported

    async def aclose(self) -> None:
        if self._logprobs_probe is not None and not self._logprobs_probe.done():
            self._logprobs_probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._logprobs_probe
        await super().aclose()


def _answered(incomplete: Sequence[str | None], request: ChatRequest) -> None:
    """Fail a call whose reply is no answer, unless its caller asked for none."""
    if request.answer_required:
        why_no_answer(incomplete)
