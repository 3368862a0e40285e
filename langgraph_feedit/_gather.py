"""Awaiting sibling calls together, the way a branch expects: all of them, or none left running.

``asyncio.gather`` raises the first failure and leaves the other awaitables running: a judge
whose one match failed would go on retrying its sibling requests in the background, after the
node had failed, and a resumed run could meet them at the server. ``all_or_cancel`` cancels
the siblings and waits for them to end before the failure propagates (what ``TaskGroup``
does, without wrapping the failure in an ``ExceptionGroup`` that every caller would unwrap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["all_or_cancel"]

T = TypeVar("T")


async def all_or_cancel(*aws: Awaitable[T]) -> list[T]:
    """The results of ``aws`` in order; on the first failure (or a cancellation) the rest are
    cancelled and awaited, then that failure is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
