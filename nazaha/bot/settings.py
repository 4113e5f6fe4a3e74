"""Configuration from ``NAZAHA_*`` environment variables or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from nazaha.sandbox import DEFAULT_SANDBOX_TOKEN as SANDBOX_TOKEN  # noqa: F401 (re-export)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NAZAHA_", env_file=".env", extra="ignore")

    bot_token: SecretStr | None = None
    telegram_api_url: str | None = None  # None: Telegram's own servers
    database_url: str | None = None  # None: SQLite in the data dir
    # Redis for several bot replicas (docs/deployment.md, "Redis"): redis://[user:password@]
    # host:port/db, or rediss:// for TLS verified against NAZAHA_REDIS_CA_FILE (else the
    # system's CAs), with an optional client certificate. Unset: everything stays in memory.
    redis_url: SecretStr | None = None
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    # The bot refuses a Redis that writes to disk (RDB, AOF) or to replicas, at start and
    # every this many seconds while it runs (then it stops), unless this is set: the risk is
    # in docs/security.md ("What Redis holds").
    redis_accept_persistence: bool = False
    redis_check_seconds: float = Field(default=60.0, gt=0)
    data_dir: Path = Path("var")

    # Secrets may come from the environment instead of files in the data dir (base64).
    bot_key: SecretStr | None = None
    pepper: SecretStr | None = None

    draft_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    # An account's preferences row (language, safety notice read) expires after this many
    # days without activity.
    preferences_ttl_days: int = Field(default=30, ge=1)
    # Report-side writes wait up to this long (random) to share a transaction with others,
    # in random order, so that commits do not line up with one account's activity.
    report_write_delay_seconds: float = Field(default=1.0, ge=0)
    # An unlocked follow-up session closes after this much silence.
    session_ttl_seconds: int = Field(default=15 * 60, ge=1)
    # Evidence caps per report (Telegram itself serves bots at most 20 MB per file).
    evidence_max_files: int = Field(default=10, ge=0)
    evidence_max_mb: int = Field(default=100, ge=1)
    # Wrong receipts: per user per hour; once everyone together reaches the global figure
    # within an hour, receipts are checked at most this many per second (nobody is refused).
    receipt_attempts_per_hour: int = Field(default=5, ge=1)
    receipt_attempts_global_per_hour: int = Field(default=1000, ge=1)
    receipt_attempts_slow_per_second: float = Field(default=5.0, gt=0)
    # Files sent as an album arrive one by one; the album is answered once no file of it
    # has arrived for this long (Telegram marks no album's end).
    album_quiet_seconds: float = Field(default=1.5, gt=0)
    # Survey answers, campaign opens and quiz votes are counted in memory and written only
    # in batches of at least this many (per survey; all opens; all votes), checked every
    # NAZAHA_AGGREGATE_FLUSH_SECONDS and, for answers and votes, after each one. A graceful
    # stop drops a smaller batch: at most this many minus one are lost per restart
    # (nazaha/awareness/tally.py, docs/security.md).
    aggregate_min_batch: int = Field(default=10, ge=1)
    aggregate_flush_seconds: float = Field(default=60.0, gt=0)
    # How often the bot looks for update notifications to send.
    notify_interval_seconds: float = Field(default=5.0, gt=0)
    # Awareness broadcasts (nazaha/awareness/sender.py): messages per second overall (any
    # one-second window) and per chat, and how often the bot looks for due broadcasts and
    # test sends (at least every second while one is sending).
    broadcast_rate: int = Field(default=25, ge=1, le=100_000)
    broadcast_chat_rate: int = Field(default=1, ge=1, le=100)
    broadcast_check_seconds: float = Field(default=5.0, gt=0)
    # How often the bot looks for a new (signed) team public key after a rotation.
    team_key_check_seconds: float = Field(default=30.0, gt=0)
    # Reports re-keyed per transaction by a team-key rotation (`nazaha keys rotate`).
    rotation_batch_size: int = Field(default=200, ge=1, le=10_000)
    # The only group, supergroup or channel chats the bot may post in (chat ids; JSON lists
    # in the environment, e.g. NAZAHA_STAFF_CHAT_IDS='[-1001234567890]'). Empty by default:
    # the bot leaves any other group or channel it is added to and never writes there.
    staff_chat_ids: list[int] = Field(default_factory=list)
    publication_chat_ids: list[int] = Field(default_factory=list)
    # The bot's @username (without the @): the console makes t.me/<username>?start=... deep
    # links with it (campaign posters, "link my Telegram"). The demo sets the sandbox bot's.
    bot_username: str | None = Field(default=None, pattern=r"^@?[A-Za-z0-9_]{4,64}$")
    # Shown in the safety notice when set: a channel for reporters at higher risk.
    high_risk_contact: str | None = None
    # "testing" lowers Argon2id costs so test suites run fast. Never use it in production:
    # the stored parameters are checked against the production floor unless it is set.
    kdf_profile: Literal["production", "testing"] = "production"
    # Per-user flood control: sustained updates per second and burst size.
    throttle_rate: float = 3.0
    throttle_burst: int = 12

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8443
    # On SIGTERM (or Ctrl+C) the bot takes no new update and gives those in progress this
    # long to finish, replies included; the rest are cut short (handed back to Telegram
    # unless committed). Keep it under the service manager's stop timeout.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # An update that fails before its commit is handed back to Telegram (delivered again)
    # for this long after its first failure; then it is given up and the user told.
    update_retry_seconds: float = Field(default=120.0, ge=0)

    # Prometheus metrics (nazaha/metrics.py, docs/deployment.md "Metrics"). The bot serves
    # GET /metrics on its own address when NAZAHA_METRICS_PORT is set (off by default), never
    # on the webhook's port; no authentication: keep it on loopback or a private network.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # How often the bot counts its queues (notifications, broadcast outbox) for the metrics.
    metrics_refresh_seconds: float = Field(default=15.0, gt=0)
    # The console serves GET /metrics only when this is set, to requests that carry it as
    # "Authorization: Bearer <token>" (at least 32 characters); unset: /metrics is a 404.
    console_metrics_token: SecretStr | None = Field(default=None, min_length=32)

    console_host: str = "127.0.0.1"
    console_port: int = 8080
    # The console's own store (console.db on SQLite) and its secret key file. Default: a
    # sibling of the data dir ("var-console"), never inside it: the bot refuses to start
    # next to them. The demo keeps them in the data dir.
    console_dir: Path | None = None
    # Public address of the console, used in the invitation links printed and shown.
    console_url: str | None = None
    console_idle_minutes: int = Field(default=30, ge=1)
    # The largest request body the console reads (bytes); larger ones get 413 before a byte
    # is read (nazaha/admin/body_limit.py). Every form: 1 MiB (the largest, a library item,
    # stays under it with all eight fields at their 20,000-character cap in URL-encoded
    # Arabic, 6 bytes a letter). A signed-in member's upload (a
    # broadcast image of at most 10 MB with the form's texts, a recovery file): 11 MiB. Give
    # the reverse proxy the upload figure (nginx: client_max_body_size 11m).
    console_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    console_max_upload_body_bytes: int = Field(default=11 * 1024 * 1024, ge=1024)
    # The reverse proxies whose X-Forwarded-For the console believes (uvicorn's
    # forwarded_allow_ips, e.g. "127.0.0.1"); unset: the connection's own address.
    console_forwarded_allow_ips: str | None = None
    # Deadlines (EU Directive 2019/1937 art. 9(1)(b) and (f)): acknowledge within 7 days,
    # feedback within 3 months of the acknowledgement (or of the end of those 7 days).
    acknowledge_days: int = Field(default=7, ge=1)
    feedback_months: int = Field(default=3, ge=1)
    # A content-free digest (new and overdue counts, no designations) to the staff chats
    # (NAZAHA_STAFF_CHAT_IDS) every this many hours, sent by the console; 0: off.
    staff_digest_hours: float = Field(default=24.0, ge=0)
    staff_digest_locale: Literal["ar", "en"] = "ar"
    # Closed cases are purged this many days after closing (console.cases.closed_on), unless
    # labelled "legal hold"; a content-free aggregate of each stays (nazaha.services.purge).
    retention_days: int = Field(default=365, ge=1)
    # Marked "due soon" in the inbox this many days before a deadline.
    due_soon_days: int = Field(default=2, ge=0)
    # Statistics printed or exported for publication show counts below this as "<5" (and
    # withhold a complement so that they cannot be worked out): nazaha.services.disclosure.
    stats_min_cell: int = Field(default=5, ge=1, le=100)
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = 8081

    log_level: str = "INFO"

    # Set by `nazaha demo` only (or NAZAHA_DEMO): everything shares one machine by design,
    # so init keeps the recovery file in the data dir and the bot does not refuse to start
    # next to it (see keyfiles.check_bot_host_data_dir).
    demo: bool = False

    @property
    def effective_console_dir(self) -> Path:
        if self.console_dir is not None:
            return self.console_dir
        # The demo keeps the console's store in its data dir; commands run there later
        # (`nazaha audit verify`, `invite-admin`) find it without NAZAHA_DEMO.
        if self.demo or (self.data_dir / "console.db").exists():
            return self.data_dir
        return self.data_dir.parent / f"{self.data_dir.name}-console"

    @property
    def effective_console_url(self) -> str:
        if self.console_url:
            return self.console_url.rstrip("/")
        return f"http://{self.console_host}:{self.console_port}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'nazaha.db').as_posix()}"
