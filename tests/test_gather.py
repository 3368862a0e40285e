"""Sibling calls: a failure leaves none of the others running (``_gather.all_or_cancel``)."""

from __future__ import annotations

import asyncio

import pytest

from langgraph_feedit._gather import all_or_cancel


async def test_a_failure_cancels_and_awaits_the_siblings() -> None:
    ended: list[str] = []

    async def slow() -> int:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append("slow")
        return 1

    async def failing() -> int:
        await asyncio.sleep(0)
        raise RuntimeError("judge down")

    with pytest.raises(RuntimeError, match="judge down"):  # the failure itself, not a group
        await all_or_cancel(slow(), failing())
    assert ended == ["slow"]  # cancelled and finished before the failure was raised


async def test_results_come_in_order() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert await all_or_cancel(after(0.02, 1), after(0.0, 2)) == [1, 2]
