"""The webhook server of one bot replica: ``POST /webhook``, ``GET /healthz``, ``GET /readyz``.

``POST /webhook`` (Telegram, or the reverse proxy in front of several replicas):

* ``X-Telegram-Bot-Api-Secret-Token`` must equal the secret given to setWebhook (compared in
  constant time): otherwise 401, and nothing is read;
* the update is fed to the dispatcher (:class:`~nazaha.bot.confirm.UpdateRunner`) and the
  request is answered when its :class:`~nazaha.bot.confirm.Settlement` is known: 200 once its
  effects are committed, before its replies are sent (a reply waiting out a 429 never holds
  the request past Telegram's timeout); 500 when it failed before the commit, so that
  Telegram delivers it again (to this replica or another);
* an update that cannot be decoded is answered 200 (Telegram must not resend it) and handed
  to ``undecodable`` (nazaha/bot/undecodable.py);
* while the server is stopping: 503, so Telegram retries (another replica, or this one once
  restarted).

``GET /healthz``: 200 while the process serves (liveness). ``GET /readyz``: 200 when every
readiness probe (nazaha/bot/health.py) succeeds, else 503 with which failed; 503 while
stopping. Both answer JSON with no detail beyond the probes' names and verdicts.

:meth:`WebhookServer.stop` is the graceful stop: refuse new updates, let those in progress
finish (replies included) for ``grace_seconds``, cut the rest short (unless committed, they
are handed back), then close the listening socket.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from nazaha.bot.confirm import UpdateRunner, Verdict
from nazaha.bot.health import Probe, readiness
from nazaha.bot.undecodable import decode_update

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REFUSAL_LOG_INTERVAL = 60.0  # seconds: refused requests are logged at most this often
SHUTDOWN_WRITE_SECONDS = 5.0  # after the grace period: for answers still being written


class WebhookServer:
    """``runner`` processes updates; ``probes`` are run by ``/readyz``; ``undecodable(raw)``
    is told of each update that could not be decoded."""

    def __init__(
        self,
        runner: UpdateRunner,
        secret: str,
        *,
        probes: Mapping[str, Probe] | None = None,
        undecodable: Callable[[Any], None] | None = None,
        path: str = "/webhook",
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a secret token")
        self.runner = runner
        self._secret = secret.encode()
        self.probes = dict(probes or {})
        self.undecodable = undecodable
        self.path = path
        self.stopping = False
        self._refused = 0
        self._refusal_logged_at: float | None = None
        self.app = web.Application()
        self.app.router.add_post(path, self.handle_update)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self._runner: web.AppRunner | None = None

    # -- requests -----------------------------------------------------------------------

    def secret_matches(self, request: web.Request) -> bool:
        given = request.headers.get(SECRET_HEADER, "").encode()
        return hmac.compare_digest(given, self._secret)

    async def handle_update(self, request: web.Request) -> web.Response:
        if not self.secret_matches(request):
            self._log_refusal()
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.stopping:
            return web.json_response({"error": "stopping"}, status=503)
        bot = self.runner.bot
        try:
            raw = await request.json(loads=bot.session.json_loads)
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        update = decode_update(bot, raw)
        if update is None:
            if self.undecodable is not None:
                self.undecodable(raw)
            else:
                log.warning("an update that could not be decoded was skipped")
            return web.json_response({})
        verdict = await self.runner.feed(update).wait()
        if verdict is Verdict.CONFIRM:
            return web.json_response({})
        return web.json_response({"error": "not processed, send it again"}, status=500)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self.stopping:
            return web.json_response({"status": "stopping"}, status=503)
        checks = await readiness(self.probes)
        ready = all(result == "ok" for result in checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    def _log_refusal(self) -> None:
        """A wrong or missing secret: logged with a count, at most once a minute (a
        stranger's requests must not fill the log)."""
        self._refused += 1
        now = time.monotonic()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning("webhook requests refused for a wrong secret token: %d", self._refused)
            self._refused = 0
            self._refusal_logged_at = now

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_WRITE_SECONDS
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new updates (503), wait up to ``grace_seconds`` for those in progress,
        cut the rest short, then close the server (answers still being written get a few
        seconds)."""
        self.stopping = True
        await self.runner.drain(grace_seconds)
        await self.close()

    async def close(self) -> None:
        self.stopping = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


__all__ = ["SECRET_HEADER", "WebhookServer"]
