"""Prometheus metrics: every metric of the bot (its workers included) and of the console, in
one place, with label values from fixed lists only.

Aggregate only: no label carries an id (update, chat, user, message, broadcast, case), a
designation, a receipt, a route path with an id in it or anything a person wrote. Every
label value goes through one of the functions below, which map what they are given onto a
fixed list (anything else becomes ``"other"``), so no value can come from user input.

Two registries: the bot's (:data:`BOT_REGISTRY`, served by ``nazaha bot`` on its own
address, nazaha/bot/observability.py) and the console's (:data:`CONSOLE_REGISTRY`, served by
the console at ``/metrics`` with a bearer token, nazaha/admin/metrics.py). The demo runs both
in one process; each endpoint still shows only its own metrics (and the process's).
"""

from __future__ import annotations

from typing import Any

from aiogram.types import Update
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from nazaha.storage.awareness_models import BROADCAST_STATUSES, OUTBOX_STATES

OTHER = "other"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# ---------------------------------------------------------------------- label values

# aiogram's update types (the fields of an Update besides its id).
UPDATE_KINDS = frozenset(name for name in Update.model_fields if name != "update_id")

# What became of an update. Inner middlewares say so with :func:`mark_outcome`; otherwise
# the dispatcher's answer tells handled from unhandled (no handler matched).
OUTCOMES = (
    "handled",
    "unhandled",  # no handler for it
    "refused",  # a group or channel the bot is not configured for (ChatGate)
    "album_part",  # a later file of an album, handled with the album's first update
    "duplicate",  # redelivered: already handled or in progress
    "throttled",  # flood control
    "failed",  # the handler or the commit failed; the user was told, a redelivery retries
    "error",  # an exception left the middlewares
    "cancelled",  # cut short (the process stopping)
)
OUTCOME_KEY = "nazaha_outcome"

# Bot API methods the bot and its workers call; any other is counted as "other".
API_METHODS = frozenset({
    "getMe", "getUpdates", "getFile", "setWebhook", "deleteWebhook", "getWebhookInfo",
    "setMyCommands", "setMyDescription", "setMyShortDescription", "sendMessage", "sendPhoto",
    "sendDocument", "sendPoll", "stopPoll", "sendChatAction", "sendMediaGroup", "copyMessage",
    "forwardMessage", "editMessageText", "editMessageReplyMarkup", "editMessageCaption",
    "deleteMessage", "deleteMessages", "answerCallbackQuery", "leaveChat",
})
# Error codes the Bot API answers with; every 5xx is "5xx", a failure to reach it "network".
API_ERROR_CODES = ("400", "401", "403", "404", "409", "413", "429", "5xx", "network", OTHER)

# Queues whose depth the bot publishes (nazaha/storage/queue_depths.py).
QUEUES = (
    "notification_instructions",  # sealed "notify this chat" instructions for a running bot
    "notification_pending",  # reports with news, waiting for the console to dispatch them
    "broadcast_outbox",  # broadcast messages queued (not yet handed to Telegram)
    "broadcast_test_sends",  # "send a test to me" requests queued
    "undelivered_receipts",  # receipts Telegram would not take, held in this bot's memory
)

LOGIN_RESULTS = ("ok", "failed", "throttled")
HTTP_METHODS = frozenset({"GET", "POST", "HEAD"})
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Console requests that matched no route: never their path.
UNMATCHED_ROUTE = "unmatched"


def update_kind(update: Any) -> str:
    """aiogram's type name of an update (``"message"``, ``"callback_query"`` ...), or
    ``"other"``."""
    try:
        kind = update.event_type
    except Exception:  # UpdateTypeLookupError: a type aiogram does not know
        return OTHER
    return kind if kind in UPDATE_KINDS else OTHER


def outcome_label(value: Any) -> str:
    return value if value in OUTCOMES else OTHER


def mark_outcome(data: dict[str, Any], outcome: str) -> None:
    """Called by a middleware that ends an update early (``data``: aiogram's middleware
    data, shared by the outer update middlewares)."""
    data[OUTCOME_KEY] = outcome


def api_method(name: Any) -> str:
    """A Bot API method name from :data:`API_METHODS`, or ``"other"``."""
    return name if name in API_METHODS else OTHER


def api_error_code(status: Any) -> str:
    """An HTTP status or Bot API ``error_code`` (or ``"network"``) as one of
    :data:`API_ERROR_CODES`."""
    if status == "network":
        return "network"
    try:
        code = int(status)
    except (TypeError, ValueError):
        return OTHER
    if 500 <= code <= 599:
        return "5xx"
    text = str(code)
    return text if text in API_ERROR_CODES else OTHER


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299 etc.; ``"other"`` outside 100..599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def http_method(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER


# ---------------------------------------------------------------------- registries


# No "<name>_created" series: when a label set was first used (the first failed update, the
# first 403) is nothing the operators need, and one less time to keep.
disable_created_metrics()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


BOT_REGISTRY = _registry()
CONSOLE_REGISTRY = _registry()

# Seconds; an update that writes a report waits up to NAZAHA_REPORT_WRITE_DELAY_SECONDS.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# ---------------------------------------------------------------------- the bot

UPDATES = Counter(
    "nazaha_updates", "Telegram updates handled, by update type and outcome.",
    ["kind", "outcome"], registry=BOT_REGISTRY,
)
UPDATE_SECONDS = Histogram(
    "nazaha_update_duration_seconds",
    "Time from an update entering the dispatcher to its replies sent, by update type.",
    ["kind"], buckets=LATENCY_BUCKETS, registry=BOT_REGISTRY,
)
API_REQUESTS = Counter(
    "nazaha_bot_api_requests", "Bot API requests made, by method (errors included).",
    ["method"], registry=BOT_REGISTRY,
)
API_ERRORS = Counter(
    "nazaha_bot_api_errors", "Bot API requests that failed, by method and error code.",
    ["method", "code"], registry=BOT_REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "nazaha_queue_depth", "Items waiting in each queue, when last counted.",
    ["queue"], registry=BOT_REGISTRY,
)
BROADCASTS = Gauge(
    "nazaha_broadcasts", "Awareness broadcasts by status (all broadcasts together).",
    ["status"], registry=BOT_REGISTRY,
)
BROADCAST_OUTBOX = Gauge(
    "nazaha_broadcast_outbox_messages",
    "Messages of the broadcasts now sending or paused, by delivery state (all together).",
    ["state"], registry=BOT_REGISTRY,
)
QUEUE_REFRESH_FAILURES = Counter(
    "nazaha_queue_depth_refresh_failures", "Failed attempts to count the queues.",
    registry=BOT_REGISTRY,
)

# ---------------------------------------------------------------------- the console

CONSOLE_REQUESTS = Counter(
    "nazaha_console_requests",
    "Console requests, by method, route template (never a path) and status class.",
    ["method", "route", "status"], registry=CONSOLE_REGISTRY,
)
CONSOLE_SECONDS = Histogram(
    "nazaha_console_request_duration_seconds", "Console request duration, by route template.",
    ["route"], buckets=LATENCY_BUCKETS, registry=CONSOLE_REGISTRY,
)
CONSOLE_LOGINS = Counter(
    "nazaha_console_logins", "Console sign-in attempts by result.",
    ["result"], registry=CONSOLE_REGISTRY,
)

# Every label value that exists is created at zero, so that a scrape shows the whole set.
for _kind in UPDATE_KINDS:
    UPDATE_SECONDS.labels(_kind)
for _queue in QUEUES:
    QUEUE_DEPTH.labels(_queue)
for _status in BROADCAST_STATUSES:
    BROADCASTS.labels(_status)
for _state in OUTBOX_STATES:
    BROADCAST_OUTBOX.labels(_state)
for _result in LOGIN_RESULTS:
    CONSOLE_LOGINS.labels(_result)


def record_update(kind: str, outcome: str, seconds: float) -> None:
    UPDATES.labels(kind, outcome_label(outcome)).inc()
    UPDATE_SECONDS.labels(kind).observe(seconds)


def record_api_request(method_name: Any) -> None:
    API_REQUESTS.labels(api_method(method_name)).inc()


def record_api_error(method_name: Any, code: Any) -> None:
    API_ERRORS.labels(api_method(method_name), api_error_code(code)).inc()


def record_login(result: str) -> None:
    CONSOLE_LOGINS.labels(result if result in LOGIN_RESULTS else OTHER).inc()


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


__all__ = [
    "BOT_REGISTRY", "CONSOLE_REGISTRY", "CONTENT_TYPE", "OUTCOMES", "QUEUES", "exposition",
    "mark_outcome", "record_api_error", "record_api_request", "record_login", "record_update",
]
