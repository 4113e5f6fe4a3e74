"""The bot's metrics (definitions: nazaha/metrics.py): the update middleware that counts and
times updates, the loop that counts the queues, and the HTTP endpoint that serves them.

The endpoint is off unless ``NAZAHA_METRICS_PORT`` is set. It listens on its own address
(``NAZAHA_METRICS_HOST``, default 127.0.0.1), never on the webhook's port: the webhook faces
Telegram through the reverse proxy, the metrics only the monitoring host. It answers
``GET /metrics`` and nothing else, without authentication, so it must be bound to a
loopback or private address (a public one is logged as a warning at start).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, Awaitable

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject
from aiohttp import web

from nazaha import metrics
from nazaha.storage.queue_depths import QueueDepths, count_queues

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
REGISTRY_KEY = web.AppKey("registry", object)


class UpdateMetrics(BaseMiddleware):
    """Outermost update middleware: counts each update by type and outcome and observes
    how long it took (replies included). Reads nothing of the update but its type."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        started = self.clock()
        outcome = "error"
        try:
            result = await handler(event, data)
            outcome = data.get(metrics.OUTCOME_KEY) or ("unhandled" if result is UNHANDLED else "handled")
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            metrics.record_update(metrics.update_kind(event), outcome, self.clock() - started)


def publish_queue_depths(depths: QueueDepths, undelivered_receipts: int) -> None:
    """Set the queue and broadcast gauges from one count."""
    metrics.QUEUE_DEPTH.labels("notification_instructions").set(depths.notification_instructions)
    metrics.QUEUE_DEPTH.labels("notification_pending").set(depths.notification_pending)
    metrics.QUEUE_DEPTH.labels("broadcast_outbox").set(depths.broadcast_outbox)
    metrics.QUEUE_DEPTH.labels("broadcast_test_sends").set(depths.broadcast_test_sends)
    metrics.QUEUE_DEPTH.labels("undelivered_receipts").set(undelivered_receipts)
    for status, count in depths.broadcasts.items():
        metrics.BROADCASTS.labels(status).set(count)
    for state, count in depths.outbox.items():
        metrics.BROADCAST_OUTBOX.labels(state).set(count)


async def refresh_queue_depths(
    sessionmaker: Any, undelivered: Callable[[], Awaitable[int]], interval: float
) -> None:
    """Every ``interval`` seconds (and at once): count the queues and set the gauges.
    ``await undelivered()``: how many receipts are held (this process's, or Redis's). Failures are counted and
    logged by type; the gauges then keep their last values."""
    while True:
        try:
            publish_queue_depths(await count_queues(sessionmaker), await undelivered())
        except Exception as exc:
            metrics.QUEUE_REFRESH_FAILURES.inc()
            log.warning("queue depths not counted (%s)", type(exc).__name__)
        await asyncio.sleep(interval)


def publicly_reachable(host: str) -> bool:
    """True unless ``host`` is a loopback or private address (or ``localhost``); every
    interface (``0.0.0.0``, ``::``) and any other name count as reachable."""
    if host == "localhost":
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: it may resolve to anything
    if address.is_unspecified:  # 0.0.0.0 or ::, every interface
        return True
    return not (address.is_loopback or address.is_private)


async def _metrics(request: web.Request) -> web.Response:
    body = metrics.exposition(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"})


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (port 0: any free port, see :attr:`port`) until
    :meth:`close`."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    @classmethod
    async def start(cls, host: str, port: int, registry: Any = metrics.BOT_REGISTRY) -> "MetricsServer":
        """Bind and serve; raises OSError if the address cannot be bound."""
        if publicly_reachable(host):
            log.warning("the metrics endpoint is not on a loopback or private address: firewall it")
        app = web.Application()
        app[REGISTRY_KEY] = registry
        app.router.add_get("/metrics", _metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("metrics endpoint listening")
        return cls(runner, bound)

    async def close(self) -> None:
        await self._runner.cleanup()


__all__ = ["MetricsServer", "UpdateMetrics", "publish_queue_depths", "refresh_queue_depths"]
