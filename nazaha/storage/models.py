"""Database tables (SQLite and PostgreSQL).

What is deliberately absent: Telegram user or chat ids, names, usernames, drafts (they live in
the bot's memory only), staff accounts and keys (the console's own store), and any time finer
than a day on reports or than an hour anywhere. The only rows keyed by a person
(``user_preferences``) use an HMAC pseudonym (pepper outside the DB) and hold nothing about
reports. Report answers live in ``report_fields`` sealed under the report's data key; so do
the case thread (``case_messages``) and the evidence metadata (``evidence``). Notification
links are sealed twice (bot link key inside, team key outside). See docs/security.md.
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
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
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
    """Installation-wide values: receipt_salt, receipt_kdf, team_public_key, team_key_id and,
    once the team signing key exists, team_key_signature (Ed25519 over the public key)."""

    __tablename__ = "system_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


# The console's inbox reads every report's triage columns: two indexes hold them, in id order
# (narrow, and the joins to the console's rows then read in order) and by day received (the
# newest-first page, date ranges, deadline flags; with the outcome, for the statistics); see
# migrations 0005 and 0006.
TRIAGE_COLUMNS = ("status", "kind", "category", "service", "sector", "governorate", "designation")
# The reporter messages no staff member has read yet (the inbox's "new" mark).
UNREAD_BY_STAFF = "direction = 'reporter' AND NOT read_by_staff"


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_inbox", "id", "created_on", *TRIAGE_COLUMNS),
        Index("ix_reports_received", "created_on", "id", *TRIAGE_COLUMNS, "outcome"),
    )

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
    # The reporter's withdrawals from follow-up (nazaha.storage.cases.CaseService
    # .withdraw_contact / .withdraw_report): the day, never a time. NULL: not withdrawn.
    contact_withdrawn_on: Mapped[dt.date | None] = mapped_column(Date)
    withdrawn_on: Mapped[dt.date | None] = mapped_column(Date)
    team_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key_team: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key_reporter: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_lookup: Mapped[bytes] = mapped_column(LargeBinary, unique=True, index=True)
    # The reporter's hybrid public key (ML-KEM-768 || X25519, 1216 bytes), derived from the
    # receipt (crypto.ReporterKeys.kem_private): lets new keys be wrapped for the reporter
    # without the receipt. NULL for reports stored before migration 0007 until their
    # reporter next unlocks them (a report-side write).
    reporter_public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Which epoch of the case key ``wrapped_key_team`` holds: 0 is the data key made at
    # submission; each team-key rotation opens a new one (``CaseKeyEpoch``).
    key_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class CaseKeyEpoch(Base):
    """A case key made by a team-key rotation (epoch >= 1): wrapped to the reporter's
    public key, and holding the previous epoch's key sealed under it (the chain that lets
    the newest key read the whole case). The team's wrap of the newest key is in
    ``reports.wrapped_key_team``. See crypto, "case key epochs"."""

    __tablename__ = "case_key_epochs"

    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_reporter: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_previous: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)


class ReportField(Base):
    __tablename__ = "report_fields"

    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class ProcessedUpdate(Base):
    """Telegram update ids claimed by report-side writes (a report, a follow-up message or
    file), in the same transaction as those writes: a redelivered "Send" stores nothing
    twice. Kept one to two hours (``claimed_at`` is rounded down to the hour); ordinary steps are
    deduplicated in memory and write nothing here."""

    __tablename__ = "processed_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    claimed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class UserPreference(Base):
    """Per account, keyed by a pepper pseudonym: the language and where the conversation
    began (for /wipe), set alike for every account. Nothing about reports, nor whether the
    account ever began one (storage/prefs.py). ``expires_at`` (rounded down to the hour)
    moves forward at most once an hour of activity; /wipe deletes the row."""

    __tablename__ = "user_preferences"

    pseudonym: Mapped[str] = mapped_column(String(128), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class CaseMessage(Base):
    """One message of a case thread, reporter <-> caseworkers, sealed under the data key."""

    __tablename__ = "case_messages"
    # The unique (report_id, seq) index also serves lookups by report.
    __table_args__ = (
        UniqueConstraint("report_id", "seq"),
        Index(
            "ix_case_messages_unread_by_staff",
            "report_id",
            sqlite_where=text(UNREAD_BY_STAFF),
            postgresql_where=text(UNREAD_BY_STAFF),
        ),
    )

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
    kind: Mapped[str] = mapped_column(String(16))  # one of nazaha.flows.evidence_kinds.EVIDENCE_KINDS
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    has_clean_copy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flagged: Mapped[str | None] = mapped_column(String(32))  # e.g. "not_an_image"
    sealed_meta: Mapped[bytes] = mapped_column(LargeBinary)  # file name, MIME type, origin, hash
    added_on: Mapped[dt.date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))  # "report" | "followup"


class NotificationLink(Base):
    """Opt-in "there is an update" notifications for one report.

    ``sealed_link`` is the chat id (and language) sealed twice: inside under the bot's link
    key, outside to the team public key (HPKE; the link id and report id are bound in).
    Neither the bot host (no team key) nor the console (no link key) can read the chat id
    alone. Deleted when the case closes or the reporter stops notifications with the
    receipt."""

    __tablename__ = "notification_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), index=True
    )
    sealed_link: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)


class PendingNotification(Base):
    """Reports with news for their reporter, waiting for the console to turn them into
    instructions for the running bot (rows are deleted once dispatched)."""

    __tablename__ = "pending_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("reports.id", ondelete="CASCADE"), index=True
    )


class BotMailbox(Base):
    """The public half of a key that exists only in a running bot's memory: instructions
    sealed to it can be read by that process alone, and by nobody once it stops."""

    __tablename__ = "bot_mailboxes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    opened_on: Mapped[dt.date] = mapped_column(Date)


class NotificationInstruction(Base):
    """"Send the content-free notification to the chat inside": one link's inner layer,
    sealed to a bot mailbox. Carries no report id; deleted once sent."""

    __tablename__ = "notification_instructions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    mailbox_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("bot_mailboxes.id", ondelete="CASCADE"), index=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
