"""Broadcasts as the console handles them: compose and edit, preview, the review by a second
person, pause/resume/cancel, tests to the member's own chat, and progress.

Statuses (nazaha.storage.awareness_models.BROADCAST_STATUSES)::

    draft --submit--> submitted --approve (an admin who is not the author)--> approved
      ^  <--withdraw--    |                                                    | the sender
      |                   +--reject (with a note)--> rejected --edit/submit--> | starts it
      +------------------------------------------------------------------------+-> sending
    sending <--pause/resume--> paused;  sending -> done (the sender)
    approved (not started) <--pause/resume--> paused (the sender does not start it)
    any status but done and cancelled --cancel--> cancelled (final; the sender skips the rest)

Approval and rejection name the :func:`current_revision` the reviewer saw (the page's forms carry
it): a broadcast taken back, changed and submitted again meanwhile is refused
(``changed``), so an administrator approves only content they have read; :func:`view_parts`
and :func:`changed_parts` let the refusal say which parts changed. A ``send_at``
already past when approving needs the reviewer's explicit "send it now", or a new time.

Only ``draft`` and ``rejected`` broadcasts are edited, by their author only. The preview is
made by :func:`nazaha.awareness.broadcast_message.build_message`, the very function the
sender sends with, so what the console shows is what Telegram shows; a version too long for
Telegram (4,096 characters for a text, 1,024 for a photo's caption), empty, with a link that
is not http(s), or carrying a survey without a text in its language cannot be submitted or
approved. The preview also lists each version's links with their addresses (the bubble shows
only their words), and warns, without refusing, when a version's text does not ask the
survey's question (:func:`asks`): the buttons go out without it.

People are numbers here (``author``, ``reviewer``: see :mod:`nazaha.awareness.members`).
Functions take the caller's session (a write transaction where they write) and do not commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.awareness.broadcast_message import BroadcastMessage, build_message
from nazaha.awareness.broadcast_revision import RevisionSurvey, encode_parts
from nazaha.awareness.broadcast_revision import changed as changed_revision_parts
from nazaha.awareness.broadcast_revision import parts as content_parts
from nazaha.awareness.broadcast_revision import revision as content_revision
from nazaha.awareness.markup import CAPTION_LIMIT, TEXT_LIMIT, Link, links_of, markup_problems, preview_html
from nazaha.awareness.surveys import split_options, survey_for_message
from nazaha.storage.awareness_models import (
    LANGUAGES,
    OUTBOX_STATES,
    AwarenessTopic,
    Broadcast,
    BroadcastImage,
    BroadcastOutbox,
    BroadcastTestSend,
    BroadcastVersion,
    StaffChat,
    Survey,
    SurveyText,
)

__all__ = [
    "EDITABLE", "NAME_MAX", "NOTE_MAX", "BODY_MAX_CHARS", "BroadcastError", "Composition",
    "BroadcastView", "VersionPreview", "TestSendView", "list_broadcasts", "get_broadcast",
    "save_broadcast", "set_image", "image_of", "previews", "asks", "view_revision", "view_parts",
    "changed_parts", "current_revision",
    "submit", "withdraw", "approve", "reject", "pause", "resume", "cancel", "request_tests", "test_sends", "forget_test_sends", "progress",
    "progress_of_many", "waiting_for_review",
]

EDITABLE = frozenset({"draft", "rejected"})
FINAL = frozenset({"done", "cancelled"})
NAME_MAX = 120
NOTE_MAX = 1000
# What the form accepts before parsing (the limit that matters is Telegram's, after it).
BODY_MAX_CHARS = 20_000


class BroadcastError(ValueError):
    """Refused, with a ``code`` the console words: ``not_found``, ``not_allowed``,
    ``not_editable``, ``transition``, ``own_broadcast`` (an author approving their own),
    ``problems`` (a version cannot be sent as it is), ``name``, ``languages``,
    ``body_missing``, ``body_too_big``, ``topics``, ``survey``, ``channel``, ``send_at_past``,
    ``note``, ``not_linked``, ``test_pending`` (and, from the console's counts,
    ``test_rate_broadcast``, ``test_rate_member``), ``changed`` (approving or rejecting content
    other than the current one), ``send_at_passed`` (approving after the time set, without
    saying "send it now" or giving a new time), ``new_time`` (that new time is not ahead),
    ``own_rejection`` (the author sending their own broadcast back: they take it back
    instead); approving or rejecting a broadcast no longer waiting for review:
    ``taken_back`` (its author took it back), ``already_approved``, ``already_rejected``,
    ``already_cancelled``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Composition:
    """What the compose form says. ``bodies``: language -> markup (languages not in
    ``languages`` are dropped); ``topics`` empty: every subscriber of the chosen languages;
    ``send_at``: aware UTC, None = as soon as approved."""

    name: str
    bodies: Mapping[str, str]
    topics: tuple[str, ...]
    languages: tuple[str, ...]
    to_channel: bool = False
    survey_id: int | None = None
    send_at: dt.datetime | None = None


@dataclass(frozen=True)
class BroadcastView:
    id: int
    name: str
    status: str
    author_no: int
    approved_by: int | None
    topics: tuple[str, ...]
    languages: tuple[str, ...]
    to_channel: bool
    channel_state: str | None
    survey_id: int | None
    send_at: dt.datetime | None
    created_at: dt.datetime
    approved_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    review_note: str
    bodies: dict[str, str]
    has_image: bool

    @property
    def editable(self) -> bool:
        return self.status in EDITABLE

    def viewable_by(self, number: int | None, admin: bool) -> bool:
        return admin or (number is not None and number == self.author_no)


@dataclass(frozen=True)
class VersionPreview:
    """One language's message as Telegram will show it. ``html``: the text or caption as
    safe HTML (every character escaped); ``problems``: codes that stop a submission
    (``empty``, ``too_long``, ``bad_link``, ``survey_language``); ``links``: its text links
    (what they say, where they lead), for the reviewer to check the addresses;
    ``notices``: codes that do not stop it (``survey_question``: the text does not ask the
    survey's ``survey_question``, which the buttons answer)."""

    language: str
    message: BroadcastMessage
    html: str
    length: int
    limit: int
    problems: tuple[str, ...]
    links: tuple[Link, ...] = ()
    notices: tuple[str, ...] = ()
    survey_question: str | None = None


@dataclass(frozen=True)
class TestSendView:
    language: str
    state: str  # queued | sending | sent | failed
    requested_at: dt.datetime
    id: int = 0

    __test__ = False  # not a pytest test class

    @property
    def handled(self) -> bool:
        return self.state in ("sent", "failed")


def _codes(text: str) -> tuple[str, ...]:
    return tuple(part for part in (text or "").split(",") if part)


async def _load(session: AsyncSession, broadcast_id: int, *, lock: bool = False) -> Broadcast:
    """The row; ``lock``: FOR UPDATE (PostgreSQL; SQLite's write transactions are
    exclusive already), so that a status change reads what it changes."""
    row = (await session.get(Broadcast, broadcast_id, with_for_update=True if lock else None)
           if isinstance(broadcast_id, int) else None)
    if row is None:
        raise BroadcastError("not_found")
    return row


async def _view(session: AsyncSession, row: Broadcast) -> BroadcastView:
    versions = (await session.scalars(select(BroadcastVersion).where(BroadcastVersion.broadcast_id == row.id))).all()
    bodies = {v.language: v.body for v in sorted(versions, key=lambda v: _language_order(v.language))}
    has_image = (await session.scalar(select(func.count()).select_from(BroadcastImage).where(BroadcastImage.broadcast_id == row.id))) > 0
    return BroadcastView(
        id=row.id, name=row.name, status=row.status, author_no=row.author_id, approved_by=row.approved_by,
        topics=_codes(row.topics), languages=_codes(row.languages), to_channel=bool(row.to_channel),
        channel_state=row.channel_state, survey_id=row.survey_id, send_at=row.send_at,
        created_at=row.created_at, approved_at=row.approved_at, started_at=row.started_at,
        finished_at=row.finished_at, review_note=row.review_note or "", bodies=bodies, has_image=has_image,
    )


def _language_order(language: str) -> int:
    return LANGUAGES.index(language) if language in LANGUAGES else len(LANGUAGES)


async def get_broadcast(session: AsyncSession, broadcast_id: int, *, viewer: int | None,
                        admin: bool) -> BroadcastView:
    """One broadcast; ``not_found`` also for a non-admin who is not its author (volunteers
    see their own broadcasts only)."""
    view = await _view(session, await _load(session, broadcast_id))
    if not view.viewable_by(viewer, admin):
        raise BroadcastError("not_found")
    return view


async def list_broadcasts(session: AsyncSession, *, author: int | None, limit: int = 200) -> list[BroadcastView]:
    """Newest first (at most ``limit``, and every one waiting for approval): ``author``'s
    own, or every broadcast when ``author`` is None."""
    statement = select(Broadcast).order_by((Broadcast.status == "submitted").desc(), Broadcast.id.desc()).limit(limit)
    if author is not None:
        statement = statement.where(Broadcast.author_id == author)
    rows = (await session.scalars(statement)).all()
    return [await _view(session, row) for row in rows]


async def waiting_for_review(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Broadcast).where(Broadcast.status == "submitted")) or 0)


async def _check(session: AsyncSession, composition: Composition, *, now: dt.datetime,
                 channel_available: bool, current_survey: int | None) -> dict[str, str]:
    name = composition.name.strip()
    if not name or len(name) > NAME_MAX:
        raise BroadcastError("name")
    languages = tuple(lang for lang in LANGUAGES if lang in set(composition.languages))
    if not languages or len(languages) != len(set(composition.languages)):
        raise BroadcastError("languages")
    bodies: dict[str, str] = {}
    for language in languages:
        body = (composition.bodies.get(language) or "").replace("\r\n", "\n")
        if len(body) > BODY_MAX_CHARS:
            raise BroadcastError("body_too_big")
        if not body.strip():
            raise BroadcastError("body_missing")
        bodies[language] = body
    if composition.topics:
        known = set((await session.scalars(select(AwarenessTopic.code).where(AwarenessTopic.code.in_(composition.topics)))).all())
        if known != set(composition.topics):
            raise BroadcastError("topics")
    if composition.to_channel and not channel_available:
        raise BroadcastError("channel")
    if composition.survey_id is not None and composition.survey_id != current_survey:
        survey = await session.get(Survey, composition.survey_id)
        if survey is None or survey.status != "open":
            raise BroadcastError("survey")
    if composition.send_at is not None and composition.send_at <= now:
        raise BroadcastError("send_at_past")
    return bodies


async def save_broadcast(
    session: AsyncSession, composition: Composition, *, author: int, now: dt.datetime,
    channel_available: bool, broadcast_id: int | None = None,
) -> int:
    """Create a draft (``broadcast_id`` None) or rewrite a draft or rejected broadcast of
    ``author``. Returns its id. Refusals: :class:`BroadcastError`. A version that is too
    long or has a bad link is saved (the preview says what is wrong) but cannot be
    submitted."""
    current_survey = None
    row: Broadcast | None = None
    if broadcast_id is not None:
        row = await _load(session, broadcast_id, lock=True)
        if row.author_id != author:
            raise BroadcastError("not_allowed")
        if row.status not in EDITABLE:
            raise BroadcastError("not_editable")
        current_survey = row.survey_id
    bodies = await _check(session, composition, now=now, channel_available=channel_available,
                          current_survey=current_survey)
    values = dict(
        name=composition.name.strip(), topics=",".join(sorted(set(composition.topics))),
        languages=",".join(bodies), to_channel=bool(composition.to_channel),
        survey_id=composition.survey_id, send_at=composition.send_at,
    )
    if row is None:
        row = Broadcast(status="draft", author_id=author, created_at=now, review_note="", **values)
        session.add(row)
        await session.flush()
    else:
        for key, value in values.items():
            setattr(row, key, value)
        await session.execute(delete(BroadcastVersion).where(BroadcastVersion.broadcast_id == row.id))
    for language, body in bodies.items():
        session.add(BroadcastVersion(broadcast_id=row.id, language=language, body=body))
    await session.flush()
    return row.id


async def set_image(session: AsyncSession, broadcast_id: int, jpeg: bytes | None, *, author: int) -> None:
    """Attach a prepared image (:func:`nazaha.awareness.broadcast_image.prepare_image`), or
    remove it (``None``). Same rules as editing."""
    row = await _load(session, broadcast_id, lock=True)
    if row.author_id != author:
        raise BroadcastError("not_allowed")
    if row.status not in EDITABLE:
        raise BroadcastError("not_editable")
    await session.execute(delete(BroadcastImage).where(BroadcastImage.broadcast_id == broadcast_id))
    if jpeg is not None:
        session.add(BroadcastImage(broadcast_id=broadcast_id, content=jpeg, mime_type="image/jpeg"))
    await session.flush()


async def image_of(session: AsyncSession, broadcast_id: int) -> tuple[bytes, str] | None:
    row = await session.get(BroadcastImage, broadcast_id)
    return (row.content, row.mime_type) if row is not None else None


_DIACRITICS = dict.fromkeys([*range(0x064B, 0x0653), 0x0640, 0x0670])  # Arabic vowel marks, tatweel
_QUESTION_ENDS = " \t\n?؟.!:…"


def _comparable(text: str) -> str:
    return " ".join(text.translate(_DIACRITICS).casefold().split()).strip(_QUESTION_ENDS)


def asks(text: str, question: str) -> bool:
    """Whether ``text`` (what a version reads) contains ``question``, ignoring case, spacing,
    Arabic vowel marks and the question mark. The words must be the survey's: a question
    asked in other words is not recognised (the preview then only warns)."""
    wanted = _comparable(question)
    return not wanted or wanted in _comparable(text)


async def previews(session: AsyncSession, view: BroadcastView) -> list[VersionPreview]:
    """Each version as Telegram will show it, with what stops it from being sent and what
    the author and the reviewer should check (its links, a survey question it does not ask)."""
    found: list[VersionPreview] = []
    for language, body in view.bodies.items():
        survey = await survey_for_message(session, view.survey_id, language)
        message = build_message(
            body, language, has_image=view.has_image,
            survey_code=survey[0] if survey else None, survey_options=survey[1] if survey else (),
        )
        limit = CAPTION_LIMIT if view.has_image else TEXT_LIMIT
        problems = list(markup_problems(body, limit=limit))
        if view.survey_id is not None and survey is None:
            problems.append("survey_language")
        question = None
        if survey is not None:
            question = await session.scalar(select(SurveyText.question).where(
                SurveyText.survey_id == view.survey_id, SurveyText.language == language))
        notices = ("survey_question",) if question and not asks(message.formatted.text, question) else ()
        found.append(VersionPreview(language, message, preview_html(message.formatted),
                                    message.formatted.length, limit, tuple(problems),
                                    links_of(message.formatted), notices, question))
    return found


async def _sendable(session: AsyncSession, view: BroadcastView) -> None:
    """Refuses what cannot go out as previewed: ``problems`` in a version, or ``survey`` when
    its survey has closed since it was chosen (the sender would drop the answer buttons)."""
    if not view.bodies or any(p.problems for p in await previews(session, view)):
        raise BroadcastError("problems")
    if view.survey_id is not None and await session.scalar(select(Survey.status).where(Survey.id == view.survey_id)) != "open":
        raise BroadcastError("survey")


async def submit(session: AsyncSession, broadcast_id: int, *, author: int, now: dt.datetime) -> None:
    """draft/rejected -> submitted (the author; every version must be sendable, and a time
    set to send it must still be ahead: ``send_at_past`` otherwise, the author edits it)."""
    row = await _load(session, broadcast_id, lock=True)
    if row.author_id != author:
        raise BroadcastError("not_allowed")
    if row.status not in EDITABLE:
        raise BroadcastError("transition")
    await _sendable(session, await _view(session, row))
    if row.send_at is not None and row.send_at <= now:
        raise BroadcastError("send_at_past")
    row.status = "submitted"
    await session.flush()


async def withdraw(session: AsyncSession, broadcast_id: int, *, author: int) -> None:
    """submitted -> draft (the author takes it back to change it)."""
    row = await _load(session, broadcast_id, lock=True)
    if row.author_id != author:
        raise BroadcastError("not_allowed")
    if row.status != "submitted":
        raise BroadcastError("transition")
    row.status = "draft"
    await session.flush()


async def _revision_inputs(session: AsyncSession, view: BroadcastView) -> dict:
    """The arguments of :func:`nazaha.awareness.broadcast_revision.revision` (and ``parts``)
    for ``view``: the image's bytes and the survey's texts are read here."""
    image = await session.scalar(select(BroadcastImage.content).where(BroadcastImage.broadcast_id == view.id))
    survey = None
    if view.survey_id is not None:
        texts = (await session.execute(
            select(SurveyText.language, SurveyText.question, SurveyText.options).where(SurveyText.survey_id == view.survey_id)
        )).all()
        survey = RevisionSurvey(view.survey_id, {language: (question, tuple(split_options(options)))
                                                 for language, question, options in texts})
    return {"bodies": view.bodies, "image": image, "survey": survey, "topics": view.topics,
            "languages": view.languages, "to_channel": view.to_channel, "send_at": view.send_at}


async def view_revision(session: AsyncSession, view: BroadcastView) -> str:
    """The revision of ``view`` as loaded (64 hex digits:
    :func:`nazaha.awareness.broadcast_revision.revision` of its texts, image, survey,
    audience, channel flag and ``send_at``): the page computes it from the very view it
    shows, so a change between two reads cannot slip in."""
    return content_revision(**await _revision_inputs(session, view))


async def view_parts(session: AsyncSession, view: BroadcastView) -> str:
    """The fingerprints of ``view``'s parts for the review forms
    (:func:`nazaha.awareness.broadcast_revision.encode_parts`): they let a refusal say what
    changed."""
    return encode_parts(content_parts(**await _revision_inputs(session, view)))


async def changed_parts(session: AsyncSession, broadcast_id: int, posted: str) -> list[str]:
    """What differs between the parts a review form carried (``posted``, untrusted) and the
    broadcast now (:func:`nazaha.awareness.broadcast_revision.changed`); empty if unknown."""
    view = await _view(session, await _load(session, broadcast_id))
    return changed_revision_parts(posted, content_parts(**await _revision_inputs(session, view)))


async def _revision_of(session: AsyncSession, row: Broadcast) -> str:
    return await view_revision(session, await _view(session, row))


async def current_revision(session: AsyncSession, broadcast_id: int) -> str:
    """The broadcast's current revision (:func:`view_revision`). ``not_found`` if there is
    no such broadcast."""
    return await _revision_of(session, await _load(session, broadcast_id))


def _not_waiting(status: str) -> str:
    """Why a broadcast in ``status`` (not ``submitted``) cannot be approved or sent back:
    ``taken_back`` (a draft: its author took it back to change it, or never submitted it),
    ``already_rejected``, ``already_cancelled``, ``already_approved`` (approved, paused,
    sending or done)."""
    if status in EDITABLE:
        return "taken_back" if status == "draft" else "already_rejected"
    return "already_cancelled" if status == "cancelled" else "already_approved"


async def approve(
    session: AsyncSession, broadcast_id: int, *, reviewer: int, now: dt.datetime, revision: str,
    send_now: bool = False, send_at: dt.datetime | None = None,
) -> None:
    """submitted -> approved, by an admin (the caller checks the role) who is not the
    author: a second person always approves.

    ``revision``: the :func:`current_revision` of the content the reviewer read; ``changed`` if the
    broadcast is no longer that. When its ``send_at`` has passed, approving sends it at once:
    refused (``send_at_passed``) unless ``send_now`` says the reviewer chose that, or
    ``send_at`` (aware, later than ``now``: ``new_time`` otherwise) gives a new time,
    which replaces the author's. Other refusals: no longer waiting for review
    (:func:`_not_waiting`: ``taken_back``, ``already_approved``, ``already_rejected``,
    ``already_cancelled``), ``own_broadcast``, ``problems``."""
    row = await _load(session, broadcast_id, lock=True)
    if row.status != "submitted":
        raise BroadcastError(_not_waiting(row.status))
    if row.author_id == reviewer:
        raise BroadcastError("own_broadcast")
    view = await _view(session, row)
    if revision != await view_revision(session, view):
        raise BroadcastError("changed")
    await _sendable(session, view)
    if send_at is not None:
        if send_at <= now:
            raise BroadcastError("new_time")
        row.send_at = send_at
    elif row.send_at is not None and row.send_at <= now and not send_now:
        raise BroadcastError("send_at_passed")
    row.status, row.approved_by, row.approved_at, row.review_note = "approved", reviewer, now, ""
    await session.flush()


async def reject(session: AsyncSession, broadcast_id: int, *, reviewer: int, note: str, revision: str) -> None:
    """submitted -> rejected, with a note for the author (1 to NOTE_MAX characters: ``note``),
    by an admin who is not the author (``own_rejection``: the author takes it back
    instead) and who read the current ``revision`` (``changed`` otherwise); no longer
    waiting for review: as :func:`approve`."""
    note = (note or "").strip()
    if not note or len(note) > NOTE_MAX:
        raise BroadcastError("note")
    row = await _load(session, broadcast_id, lock=True)
    if row.status != "submitted":
        raise BroadcastError(_not_waiting(row.status))
    if row.author_id == reviewer:
        raise BroadcastError("own_rejection")
    if revision != await _revision_of(session, row):
        raise BroadcastError("changed")
    row.status, row.review_note, row.approved_by = "rejected", note, None
    await session.flush()


async def _change(session: AsyncSession, broadcast_id: int, actor: int, admin: bool,
                  allowed_from: Iterable[str], to: str) -> Broadcast:
    row = await _load(session, broadcast_id, lock=True)
    if not admin and row.author_id != actor:
        raise BroadcastError("not_allowed")
    if row.status not in set(allowed_from):
        raise BroadcastError("transition")
    row.status = to
    await session.flush()
    return row


async def pause(session: AsyncSession, broadcast_id: int, *, actor: int, admin: bool) -> None:
    """sending -> paused (the author or an admin): the sender stops taking new recipients;
    approved -> paused before it started: the sender does not start it (it starts only
    ``approved`` broadcasts, in the same statement that checks the status)."""
    await _change(session, broadcast_id, actor, admin, ("approved", "sending"), "paused")


async def resume(session: AsyncSession, broadcast_id: int, *, actor: int, admin: bool) -> str:
    """paused -> sending, or -> approved if it never started: the sender then starts it at
    its ``send_at``, at once if that has passed. Returns the new status."""
    row = await _load(session, broadcast_id, lock=True)
    return (await _change(session, broadcast_id, actor, admin, ("paused",),
                          "sending" if row.started_at else "approved")).status


async def cancel(session: AsyncSession, broadcast_id: int, *, actor: int, admin: bool) -> None:
    """Any status but done/cancelled -> cancelled (the author or an admin). The sender sends
    nothing more of it and marks the recipients still queued skipped (the console only reads
    the outbox: docs/deployment-roles.sql); a message already handed to Telegram is not
    called back."""
    await _change(session, broadcast_id, actor, admin,
                  ("draft", "submitted", "rejected", "approved", "sending", "paused"), "cancelled")


async def request_tests(session: AsyncSession, broadcast_id: int, *, link_id: str | None, now: dt.datetime) -> int:
    """"Send a test to me": one ``broadcast_test_sends`` row per version, for the sender to
    deliver to the member's linked chat. Refused as a submission is when a version cannot
    be sent (``problems``: empty, too long, a bad link, a survey without its language), if
    the chat is not linked (``not_linked``) or a test of this broadcast to it is still
    queued (``test_pending``). Returns how many."""
    row = await _load(session, broadcast_id)
    if row.status == "cancelled":
        raise BroadcastError("transition")
    await _sendable(session, await _view(session, row))
    if not link_id or await session.scalar(select(StaffChat.link_id).where(StaffChat.link_id == link_id)) is None:
        raise BroadcastError("not_linked")
    pending = await session.scalar(
        select(func.count()).select_from(BroadcastTestSend).where(
            BroadcastTestSend.broadcast_id == broadcast_id, BroadcastTestSend.link_id == link_id,
            BroadcastTestSend.state.in_(("queued", "sending")),
        )
    )
    if pending:
        raise BroadcastError("test_pending")
    languages = (await session.scalars(
        select(BroadcastVersion.language).where(BroadcastVersion.broadcast_id == broadcast_id)
    )).all()
    for language in sorted(languages, key=_language_order):
        session.add(BroadcastTestSend(broadcast_id=broadcast_id, link_id=link_id, language=language,
                                      state="queued", requested_at=now))
    await session.flush()
    return len(languages)


async def test_sends(session: AsyncSession, broadcast_id: int, link_id: str | None, *, limit: int = 10) -> list[TestSendView]:
    """The member's tests of this broadcast the bot's database still holds, newest first:
    waiting, or handled and not shown yet (see :func:`forget_test_sends`)."""
    if not link_id:
        return []
    rows = await session.execute(
        select(BroadcastTestSend.language, BroadcastTestSend.state, BroadcastTestSend.requested_at,
               BroadcastTestSend.id)
        .where(BroadcastTestSend.broadcast_id == broadcast_id, BroadcastTestSend.link_id == link_id)
        .order_by(BroadcastTestSend.id.desc()).limit(limit)
    )
    return [TestSendView(language, state, at, test_id) for language, state, at, test_id in rows.all()]


async def forget_test_sends(session: AsyncSession, test_ids: Iterable[int]) -> None:
    """Delete handled test sends once the console has shown their result (it keeps it in
    the member's session): the bot's database keeps no history of who tested what."""
    ids = list(test_ids)
    if ids:
        await session.execute(delete(BroadcastTestSend).where(
            BroadcastTestSend.id.in_(ids), BroadcastTestSend.state.in_(("sent", "failed"))))


async def progress_of_many(session: AsyncSession, broadcast_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Outbox rows per state for each broadcast (every state present, 0 if none)."""
    ids = list(broadcast_ids)
    found: dict[int, dict[str, int]] = {i: dict.fromkeys(OUTBOX_STATES, 0) for i in ids}
    if not ids:
        return found
    rows = await session.execute(
        select(BroadcastOutbox.broadcast_id, BroadcastOutbox.state, func.count())
        .where(BroadcastOutbox.broadcast_id.in_(ids))
        .group_by(BroadcastOutbox.broadcast_id, BroadcastOutbox.state)
    )
    for broadcast_id, state, count in rows.all():
        found[broadcast_id][state] = int(count)
    return found


async def progress(session: AsyncSession, broadcast_id: int) -> dict[str, int]:
    """Outbox rows of one broadcast per state (``OUTBOX_STATES``; 0 if none).

    Until the sender's own ``nazaha.awareness.broadcast_progress.progress`` is merged this
    is the console's aggregate over ``broadcast_outbox``."""
    return (await progress_of_many(session, [broadcast_id]))[broadcast_id]
