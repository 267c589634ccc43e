"""The thread-to-loop hand-off: every item once, in order, with few wake-ups."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.ingest.handoff import Handoff

pytestmark = pytest.mark.asyncio


async def test_items_from_threads_arrive_once_in_order_in_batches() -> None:
    loop = asyncio.get_running_loop()
    got: list[tuple[int, int]] = []
    batches = [0]
    done = asyncio.Event()
    total = 4 * 20_000

    def after() -> None:
        batches[0] += 1
        if len(got) == total:
            done.set()

    handoff: Handoff[tuple[int, int]] = Handoff(loop, got.append, after)

    def producer(n: int) -> None:
        for i in range(20_000):
            handoff.put((n, i))

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    await asyncio.wait_for(done.wait(), 10)
    assert len(got) == total
    for n in range(4):  # each producer's items in its own order, none lost or doubled
        assert [i for m, i in got if m == n] == list(range(20_000))
    assert batches[0] < total // 10  # batched: far fewer wake-ups than items


async def test_an_item_put_while_a_batch_runs_is_delivered_too() -> None:
    loop = asyncio.get_running_loop()
    got: list[int] = []
    handoff: Handoff[int] = Handoff(loop, lambda i: got.append(i) or (i == 1 and handoff.put(2)))
    handoff.put(1)
    for _ in range(3):
        await asyncio.sleep(0)
    assert got == [1, 2]
    handoff.put(3)  # and a later one schedules its own batch
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert got == [1, 2, 3]
