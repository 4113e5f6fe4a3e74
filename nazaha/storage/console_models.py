"""The console's own tables: staff accounts and keys, case work, audit (schema ``console``).

None of this is in the bot's reach. On SQLite the tables live in a separate file
(``console.db`` in the console dir) that the console process attaches to its connection to the
bot's database under the name ``console``; the bot process never opens it. On PostgreSQL they
live in the schema ``console`` of the same database, which the bot's role has no privilege on
(docs/deployment-roles.sql). The same SQL therefore runs on both: ``console.<table>``.

What a person wrote about a case (notes) is sealed under the report's data key, as the thread
is. Labels, priority, assignment and dates are triage metadata, plain here because the bot
host never holds this store. Reports are referred to by their id (the bot's ``reports.id``,
no cross-database foreign key); the audit log refers to cases only through ``case_refs`` so
that a purge can cut the link (issue 10).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nazaha.storage.models import NAMING_CONVENTION, UtcDateTime

CONSOLE_SCHEMA = "console"

ROLES = ("admin", "caseworker", "volunteer")
# invited: link sent, not yet enrolled; active: enrolled; reset: an admin reset the
# account (password, TOTP and keys gone), a new invitation is pending; removed: kept for
# the audit log's actor names, no way in.
ACCOUNT_STATES = ("invited", "active", "reset", "removed")
PRIORITIES = ("low", "normal", "high", "urgent")


# Tables looked up by their primary key for each case of an inbox page: on SQLite the rows
# live in the primary key's b-tree (one lookup, not an index then a table).
KEYED = {"sqlite_with_rowid": False}


class ConsoleBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION, schema=CONSOLE_SCHEMA)


def _fk(column: str, ondelete: str = "CASCADE") -> ForeignKey:
    return ForeignKey(f"{CONSOLE_SCHEMA}.{column}", ondelete=ondelete)


class StaffUser(ConsoleBase):
    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="invited")
    locale: Mapped[str] = mapped_column(String(8), default="ar")
    password_hash: Mapped[str | None] = mapped_column(String(256))  # Argon2id PHC
    # The TOTP secret sealed under the console secret (the database alone cannot make codes).
    totp_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)  # each code works once
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # JSON: the private key sealed under Argon2id(password) combined with the console secret.
    sealed_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    enrolled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # Bumped by reset and removal: sessions opened before are no longer valid.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Whether a caseworker may export the inbox's triage metadata (admins always may,
    # volunteers never); set by an admin on the team page.
    can_export: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # HMAC under the console secret of (id, role, public key), written at enrolment and at
    # sign-in: a member row written into the database by anyone else is never granted the
    # team key (services.key_rotation.staff_key_checks_out).
    key_mac: Mapped[str | None] = mapped_column(String(64))
    # The member's own Telegram chat for "send a test to me": the random link id of a
    # ``staff_chats`` row in the bot's database (nazaha.awareness.staff_chats). Only this
    # store says whose chat it is.
    chat_link_id: Mapped[str | None] = mapped_column(String(32))
    # The linked chat's first name as Telegram gave it to the bot when the chat opened the
    # link (shown on the awareness page), sealed under the console secret (purpose
    # "telegram-name"): urlsafe base64. The bot's database never holds it readably.
    chat_name: Mapped[str | None] = mapped_column(Text)


class TeamKeyGrant(ConsoleBase):
    """The team private key sealed to one staff member's public key."""

    __tablename__ = "team_key_grants"

    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), primary_key=True)
    team_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    granted_by: Mapped[str | None] = mapped_column(String(32))
    granted_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class TeamKeyBootstrap(ConsoleBase):
    """The passphrase-sealed team key, kept only until the first admin is granted it (they
    type the team passphrase at enrolment); deleted right after."""

    __tablename__ = "team_key_bootstrap"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class Invitation(ConsoleBase):
    """A one-time enrolment link: only the SHA-256 of its token is stored."""

    __tablename__ = "invitations"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str | None] = mapped_column(String(32))


class RecoveryCode(ConsoleBase):
    """One-time login codes for a lost phone: HMAC under the console secret, never plain."""

    __tablename__ = "recovery_codes"

    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)


class CaseState(ConsoleBase):
    """The console's side of a case (the report itself is the bot's ``reports`` row, whose
    ``status`` the reporter sees). A report without a row here is new and unassigned."""

    __tablename__ = "cases"
    # The inbox's deadline order walks the acknowledged cases by day (nazaha.services.inbox_sql).
    __table_args__ = (Index("ix_cases_acknowledged_on", "acknowledged_on", "report_id"), KEYED)

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    assignee_id: Mapped[str | None] = mapped_column(String(32), index=True)
    acknowledged_on: Mapped[dt.date | None] = mapped_column(Date)
    feedback_on: Mapped[dt.date | None] = mapped_column(Date)  # first substantive feedback
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    referred_to: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)


class CaseLabel(ConsoleBase):
    __tablename__ = "case_labels"
    __table_args__ = (Index("ix_case_labels_label", "label"), KEYED)

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)


class CaseShare(ConsoleBase):
    """A caseworker other than the assignee who may work the case."""

    __tablename__ = "case_shares"
    __table_args__ = (Index("ix_case_shares_user_id", "user_id"), KEYED)

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), primary_key=True)


class CaseRecusal(ConsoleBase):
    """A caseworker who must not see the case (e.g. a conflict of interest)."""

    __tablename__ = "case_recusals"
    __table_args__ = (Index("ix_case_recusals_user_id", "user_id"), KEYED)

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), primary_key=True)


class CaseLink(ConsoleBase):
    """Two cases about the same incident (stored once, ``report_a < report_b``)."""

    __tablename__ = "case_links"
    __table_args__ = KEYED

    report_a: Mapped[str] = mapped_column(String(32), primary_key=True)
    report_b: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class CaseNote(ConsoleBase):
    """An internal note, sealed under the report's data key; never shown to the reporter."""

    __tablename__ = "case_notes"
    __table_args__ = (UniqueConstraint("report_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[str | None] = mapped_column(String(32))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CaseEvent(ConsoleBase):
    """The workflow history of a case (status changes, reopening, assignment): what the
    deadlines and the statistics are computed from. No content."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_report_id_at", "report_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))  # "status", "assign", "reopen", ...
    old: Mapped[str | None] = mapped_column(String(64))
    new: Mapped[str | None] = mapped_column(String(64))


class CaseView(ConsoleBase):
    """When a staff member last opened a case: the inbox's "new or updated" mark."""

    __tablename__ = "case_views"
    __table_args__ = KEYED

    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ReplyTemplate(ConsoleBase):
    """A saved reply per language (acknowledgement, request for information, closure...)."""

    __tablename__ = "reply_templates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    locale: Mapped[str] = mapped_column(String(8))
    purpose: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class CaseRef(ConsoleBase):
    """The audit log's name for a case: a random reference, so that purging a case (issue
    10) can destroy the mapping and leave the chain intact and content-free."""

    __tablename__ = "case_refs"

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)


class AuditEntry(ConsoleBase):
    """One append-only, hash-chained audit record (see nazaha.services.audit)."""

    __tablename__ = "audit_entries"
    # The admin page pages newest first, filtered by actor or by action.
    __table_args__ = (
        Index("ix_audit_entries_actor_id_seq", "actor_id", "seq"),
        Index("ix_audit_entries_action_seq", "action", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48))
    case_ref: Mapped[str | None] = mapped_column(String(32), index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON, content-free
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    exported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PendingNews(ConsoleBase):
    """Reports with news for their reporter that could not be notified yet (no bot was
    running). Written only by the console's own actions, never read from the bot's tables:
    a seized bot host cannot make the console unwrap links it chose."""

    __tablename__ = "pending_news"

    report_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class PurgedCaseAggregate(ConsoleBase):
    """What a purged case leaves for the statistics (issue 10): its triage codes, months and
    durations, counted together with identical ones; no id, no date finer than a month, no
    label, note or anything written. Published figures therefore do not change at a purge."""

    __tablename__ = "purged_aggregates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_month: Mapped[str] = mapped_column(String(7), index=True)  # "YYYY-MM"
    closed_month: Mapped[str | None] = mapped_column(String(7))
    kind: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(64))
    service: Mapped[str | None] = mapped_column(String(64))
    sector: Mapped[str | None] = mapped_column(String(64))
    governorate: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(32))
    ack_days: Mapped[int | None] = mapped_column(Integer)  # receipt to acknowledgement
    close_days: Mapped[int | None] = mapped_column(Integer)  # receipt to closing
    count: Mapped[int] = mapped_column(Integer, default=1)


class PurgeLogEntry(ConsoleBase):
    """One purged case, as a keyed hash of its report id (console secret): a restore from an
    older backup purges it again (issue 10), and nothing else can be learnt from it."""

    __tablename__ = "purge_log"

    report_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purged_on: Mapped[dt.date] = mapped_column(Date)


class KeyRotation(ConsoleBase):
    """One team-key rotation (issue 10): from ``old_key_id`` to ``new_key_id``. While
    ``finished_at`` is NULL the rotation is running or was interrupted: both keys' grants
    exist and a run resumes where the rows say (reports and links still under the old key).
    Key ids are public (the first 16 hex digits of a public key's hash)."""

    __tablename__ = "key_rotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    old_key_id: Mapped[str] = mapped_column(String(64))
    new_key_id: Mapped[str] = mapped_column(String(64), unique=True)
    # The new team public key itself: a resumed run wraps to this, never to whatever the
    # bot's settings (writable from the bot host) say.
    new_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    started_by: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reports_total: Mapped[int] = mapped_column(Integer, default=0)  # under the old key at start
    generation: Mapped[int] = mapped_column(Integer, default=0)  # of the new key
    # HMAC (console secret) of the old and new key ids and the new public key: a row written
    # by whoever can write the database but not read the console's files is never resumed.
    mac: Mapped[str] = mapped_column(String(64), default="")


class AwarenessMember(ConsoleBase):
    """A member's number in the bot's awareness tables (``broadcasts.author_id``,
    ``approved_by``, ``surveys.author_id`` are integers there): given at the member's first
    broadcast or survey. The bot's database holds only the number; this store says who."""

    __tablename__ = "awareness_members"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32), _fk("staff_users.id"), unique=True)
