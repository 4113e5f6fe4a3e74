"""Database tables (SQLite and PostgreSQL).

What is deliberately absent: Telegram user or chat ids, names, usernames, and any time finer
than a day on reports. Rows keyed by a person use an HMAC pseudonym (pepper outside the DB).
Report answers live in ``report_fields`` sealed under the report's data key.
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
    status: Mapped[str] = mapped_column(String(32), default="received", server_default="received")
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
