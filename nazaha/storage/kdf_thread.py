"""The one thread that runs Argon2id, serving report submissions before receipt unlocks.

Argon2id is memory-hard and slow on purpose (about 0.3 s at the production parameters). One
dedicated worker thread bounds it to a single core however many people submit or follow up
at once, so the event loop keeps a core of its own. A plain executor would serve jobs in
arrival order, so a report submission could wait behind a queue of receipt guesses; here
each job carries a priority (:data:`SUBMISSION` before :data:`UNLOCK`, arrival order within
a priority) and the thread, each time it is free, takes the most urgent job waiting.

Mechanism: the job goes into a heap, and one ``_run_next`` call is queued in the
single-thread executor per job. Each ``_run_next`` pops whatever is most urgent *when the
thread gets to it*, so the number of calls matches the number of jobs and every job runs
exactly once. A job whose caller was cancelled before it started is skipped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

SUBMISSION = 0  # sealing a report: the reporter is waiting for their receipt
UNLOCK = 1  # checking a typed receipt (possibly one of many guesses)

_Job = tuple[int, int, Future, Callable[..., Any], tuple[Any, ...]]


class KdfThread:
    """One worker thread with a two-priority queue. Thread-safe; usable from any event loop."""

    def __init__(self, name: str = "nazaha-kdf") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._jobs: list[_Job] = []
        self._order = itertools.count()

    def submit(self, priority: int, function: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``function(*args)``; lower ``priority`` runs first (see :data:`SUBMISSION`).

        Returns a ``concurrent.futures.Future``; cancelling it before the job starts
        drops the job."""
        future: Future[T] = Future()
        with self._lock:
            heapq.heappush(self._jobs, (priority, next(self._order), future, function, args))
        self._executor.submit(self._run_next)
        return future

    async def run(self, priority: int, function: Callable[..., T], *args: Any) -> T:
        """Await ``function(*args)`` run on the thread (cancelling the await drops a job that
        has not started yet)."""
        return await asyncio.wrap_future(self.submit(priority, function, *args))

    def pending(self) -> int:
        """Jobs queued and not yet started (for tests and metrics)."""
        with self._lock:
            return len(self._jobs)

    def _run_next(self) -> None:
        with self._lock:
            _, _, future, function, args = heapq.heappop(self._jobs)
        if not future.set_running_or_notify_cancel():
            return  # cancelled while waiting
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting caller
            future.set_exception(exc)
        else:
            future.set_result(result)


__all__ = ["KdfThread", "SUBMISSION", "UNLOCK"]
