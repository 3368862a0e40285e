"""Sync entry points: every node also runs from ``graph.invoke`` and ``graph.stream``.

The nodes are asynchronous (HTTP clients, limiters and budgets live on an event loop). For a
synchronous run, LangGraph calls each node's sync function on a worker thread; that function
hands the node's coroutine to one event loop that the package keeps on a daemon thread, so
every sync run in the process shares the same clients and per-endpoint limits (one loop, as in
async use), and a notebook's own running loop is never touched.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from langgraph._internal._runnable import RunnableCallable

__all__ = ["both", "inline", "run_sync"]

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _portal() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="feedit-sync", daemon=True).start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the package's event loop and wait for it, from any thread.

    The caller's context variables (LangChain's tracing context among them) go with it.
    """
    loop = _portal()
    context = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(coro, context=context)

        def settle(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(settle)

    loop.call_soon_threadsafe(start)
    return done.result()


def both(afunc: Callable[..., Awaitable[Any]], *, name: str | None = None) -> Any:
    """A node runnable with ``afunc`` for async runs and a sync twin for sync ones.

    ``afunc`` must take ``(state, runtime, config)``; the twin has the same signature, so
    LangGraph injects the same arguments into both.
    """
    from langchain_core.runnables import RunnableConfig
    from langgraph.runtime import Runtime

    def func(state: Any, runtime: Runtime[Any], config: RunnableConfig) -> Any:
        return run_sync(afunc(state, runtime, config))  # type: ignore[arg-type]

    func.__annotations__ = {"state": Any, "runtime": Runtime, "config": RunnableConfig}
    # Untraced, as LangGraph wraps a plain node function: the node is already a run of its
    # own (the task), and a traced callable would nest a second chain run inside every node.
    return RunnableCallable(func, afunc, name=name or afunc.__name__, trace=False)


def inline(func: Callable[..., T], *, trace: bool = False) -> Any:
    """A plain function as a node, error handler or conditional edge that async runs call on
    the event loop.

    LangGraph runs a plain (sync) function of an async run on a worker thread
    (``run_in_executor``). For a function that does no I/O, such as a router, that hop costs
    far more than the function: with one per ``route`` node and one per fan-out edge, it was
    half a hop per call of the tree. ``trace`` as LangGraph's own: nodes and error handlers
    are not runs of their own (the task is), edges are.
    """

    async def afunc(*args: Any, **kwargs: Any) -> T:
        return func(*args, **kwargs)

    return RunnableCallable(func, afunc, name=func.__name__, trace=trace)
