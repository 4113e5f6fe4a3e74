"""The in-memory tally of survey answers, campaign opens and quiz votes (nazaha/awareness/
tally.py): nothing is written below ``min_batch`` (per group), a batch is one transaction in
sorted key order, a failed or cancelled write neither loses nor doubles, and a graceful stop
drops what is below the threshold."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from nazaha.awareness.tally import Tally
from nazaha.storage.database import create_engine, create_sessionmaker


@pytest.fixture
async def sm(sqlite_url):
    """A sessionmaker on an empty SQLite file: the writers below touch no table."""
    engine = create_engine(sqlite_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


class Recorder:
    """A writer that records each batch it is given (and can fail, or wait)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[tuple, int]]] = []
        self.fail = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.pauses = 0

    async def __call__(self, session, batch) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(self.pauses):
                await asyncio.sleep(0)
            if self.fail:
                self.fail -= 1
                raise RuntimeError("database is locked")
            self.batches.append(list(batch))
        finally:
            self.in_flight -= 1

    @property
    def written(self) -> int:
        return sum(n for batch in self.batches for _, n in batch)


async def test_nothing_is_written_below_the_threshold_then_one_batch_in_key_order(sm):
    writes = Recorder()
    tally = Tally(sm, writes, min_batch=3)
    await tally.add((2, 1))
    await tally.add((1, 5))
    assert writes.batches == [] and tally.pending == 2
    assert await tally.flush() == 0  # the periodic check: still below
    await tally.add((1, 0))  # the third: written at once, sorted by key, not by arrival
    assert writes.batches == [[((1, 0), 1), ((1, 5), 1), ((2, 1), 1)]]
    assert tally.pending == 0
    await tally.add((1, 0), 0)  # nothing to count
    await tally.add_many([((3, 0), 2), ((3, 1), 1)])
    assert writes.batches[-1] == [((3, 0), 2), ((3, 1), 1)]
    with pytest.raises(ValueError):
        Tally(sm, writes, min_batch=0)


async def test_each_group_reaches_the_threshold_on_its_own(sm):
    writes = Recorder()
    tally = Tally(sm, writes, min_batch=2, group=lambda key: key[0])  # e.g. one survey each
    await tally.add((7, 0))
    await tally.add((9, 1))
    assert writes.batches == []  # two in all, but one per survey
    await tally.add((7, 2))
    assert writes.batches == [[((7, 0), 1), ((7, 2), 1)]]
    assert tally.pending == 1  # survey 9's single answer waits


async def test_without_flush_on_add_only_the_periodic_flush_writes(sm):
    writes = Recorder()
    tally = Tally(sm, writes, min_batch=2, flush_on_add=False)  # campaign opens
    for key in ((5, "2026-12-01"), (4, "2026-12-01"), (5, "2026-12-02")):
        await tally.add(key)
    assert writes.batches == []
    assert await tally.flush() == 3
    assert writes.batches == [[((4, "2026-12-01"), 1), ((5, "2026-12-01"), 1), ((5, "2026-12-02"), 1)]]
    assert await tally.flush() == 0


async def test_a_graceful_stop_writes_due_groups_and_drops_smaller_ones(sm):
    writes = Recorder()
    tally = Tally(sm, writes, min_batch=3, group=lambda key: key[0], flush_on_add=False)
    for key in ((1, 0), (1, 1), (1, 1), (2, 0), (2, 1)):
        await tally.add(key)
    assert await tally.close() == 2  # survey 2's two answers: a batch too small to write
    assert writes.batches == [[((1, 0), 1), ((1, 1), 2)]]
    assert tally.pending == 0
    assert await Tally(sm, writes, min_batch=3).close() == 0


async def test_a_failed_write_keeps_the_increments_and_logs_no_key(sm, caplog):
    writes = Recorder()
    writes.fail = 1
    tally = Tally(sm, writes, min_batch=2, name="survey answers")
    caplog.set_level(logging.DEBUG)
    await tally.add((123456, 1))
    await tally.add((123456, 1))  # due: the write fails, the answer is not lost
    assert writes.batches == [] and tally.pending == 2
    assert "RuntimeError" in caplog.text and "123456" not in caplog.text
    assert await tally.flush() == 2
    assert writes.batches == [[((123456, 1), 2)]]
    writes.fail = 1
    await tally.add((1, 0))
    await tally.add((1, 0))  # fails again: put back...
    with pytest.raises(RuntimeError):
        writes.fail = 1
        await tally.flush()  # ...and an explicit flush says why
    assert tally.pending == 2


async def test_concurrent_answers_and_flushes_count_everything_exactly_once(sm):
    writes = Recorder()
    writes.pauses = 3  # the transaction yields: adds and flushes interleave with it
    tally = Tally(sm, writes, min_batch=7, group=lambda key: key[0])
    rng = random.Random(11)
    plan = [[(rng.randrange(3), rng.randrange(4)) for _ in range(40)] for _ in range(25)]

    async def answers(keys) -> None:
        for key in keys:
            await tally.add(key)
            await asyncio.sleep(0)

    async def ticks() -> None:
        for _ in range(30):
            await tally.flush()
            await asyncio.sleep(0)

    await asyncio.gather(*(answers(keys) for keys in plan), ticks())
    dropped = await tally.close()
    assert writes.written + dropped == 25 * 40
    assert writes.most_in_flight == 1  # one transaction at a time
    for batch in writes.batches:
        keys = [key for key, _ in batch]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        per_group: dict[int, int] = {}
        for (group, _option), n in batch:
            per_group[group] = per_group.get(group, 0) + n
        assert all(n >= 7 for n in per_group.values()), batch
    assert dropped < 3 * 7  # at most min_batch - 1 per group


async def test_a_cancelled_flush_finishes_its_transaction_and_counts_once(sm):
    release = asyncio.Event()
    batches = []

    async def slow(session, batch) -> None:
        await release.wait()
        batches.append(list(batch))

    tally = Tally(sm, slow, min_batch=2, flush_on_add=False)
    await tally.add((1, 0))
    await tally.add((1, 1))
    task = asyncio.create_task(tally.flush())
    while not tally._writing:
        await asyncio.sleep(0)
    task.cancel()  # e.g. the periodic task at shutdown
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await tally.close() == 0  # waits for the write under way; nothing left to drop
    assert batches == [[((1, 0), 1), ((1, 1), 1)]]
