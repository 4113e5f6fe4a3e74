"""Database tables (SQLite and PostgreSQL).

What is deliberately absent: Telegram user or chat ids, names, usernames, and any time finer
than a day on reports. Rows keyed by a person use an HMAC pseudonym (pepper outside the DB).
Report answers live in ``report_fields`` sealed under the report's data key; so do the case
thread (``case_messages``) and the evidence metadata (``evidence``). The chat ids of
notification links are sealed under the bot key. The only finer-than-a-day time tied to a
report is ``pending_notifications.created_at``: an outbox row deleted once sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SystemSetting(Base):
    """Installation-wide values: receipt_salt, receipt_kdf, team_public_key, team_key_id."""

    __tablename__ = "system_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class Report(Base):
    __tablename__ = "reports"

    # 32 random hex digits; never derived from anything about the reporter.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    designation: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    sector: Mapped[str | None] = mapped_column(String(64))
    service: Mapped[str | None] = mapped_column(String(64))
    governorate: Mapped[str | None] = mapped_column(String(64))
    # Plain codes (see nazaha.storage.cases.STATUSES / OUTCOMES), never free text.
    status: Mapped[str] = mapped_column(String(32), default="received", server_default="received")
    outcome: Mapped[str | None] = mapped_column(String(32))
    created_on: Mapped[dt.date] = mapped_column(Date)  # a day, never a time: coarse on purpose
    team_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key_team: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key_reporter: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_lookup: Mapped[bytes] = mapped_column(LargeBinary, unique=True, index=True)


class ReportField(Base):
    __tablename__ = "report_fields"

    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ProcessedUpdate(Base):
    """Claimed Telegram update ids, for exactly-once handling of redelivered updates."""

    __tablename__ = "processed_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_on: Mapped[dt.date] = mapped_column(Date, index=True)


class FsmRecord(Base):
    __tablename__ = "fsm_records"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # a pseudonym
    state: Mapped[str | None] = mapped_column(String(255))
    sealed_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    expired: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UserPreference(Base):
    __tablename__ = "user_preferences"

    pseudonym: Mapped[str] = mapped_column(String(128), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_phc: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    sealed_team_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)


class CaseMessage(Base):
    """One message of a case thread, reporter <-> caseworkers, sealed under the data key."""

    __tablename__ = "case_messages"
    # The unique (report_id, seq) index also serves lookups by report.
    __table_args__ = (UniqueConstraint("report_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)  # order within the report (dates are coarse)
    direction: Mapped[str] = mapped_column(String(16))  # "reporter" | "staff"
    sealed_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)  # a day: coarse on purpose
    read_by_reporter: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    read_by_staff: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Evidence(Base):
    """An attachment of a report; the file itself is in the blob store under ``id``."""

    __tablename__ = "evidence"
    __table_args__ = (UniqueConstraint("report_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # = the blob file id
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)  # order within the report
    kind: Mapped[str] = mapped_column(String(16))  # photo|document|voice|audio|video
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    has_clean_copy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flagged: Mapped[str | None] = mapped_column(String(32))  # e.g. "not_an_image"
    sealed_meta: Mapped[bytes] = mapped_column(LargeBinary)  # file name, MIME type, origin, hash
    added_on: Mapped[dt.date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))  # "report" | "followup"


class NotificationLink(Base):
    """Opt-in "there is an update" notifications: the chat id is sealed under the bot key
    and found by an HMAC pseudonym. Deleted when the case closes or the chat opts out."""

    __tablename__ = "notification_links"
    __table_args__ = (UniqueConstraint("report_id", "chat_pseudonym"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE")
    )
    chat_pseudonym: Mapped[str] = mapped_column(String(128), index=True)
    sealed_chat: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)


class PendingNotification(Base):
    """The outbox the bot's notifier drains (rows are deleted once handled)."""

    __tablename__ = "pending_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ReceiptAttempt(Base):
    """Failed receipt attempts per pseudonym (and one global key) per hour window."""

    __tablename__ = "receipt_attempts"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)  # "2026-11-29T05" (UTC)
    count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
