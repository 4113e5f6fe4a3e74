"""Saved replies to reporters, per language (acknowledgement, request for more
information, closure...), that caseworkers pick, adapt and send.

Templates are the team's own wording, not anything a reporter wrote: they are stored plain
in the console's store. A placeholder in square brackets marks what the caseworker must
fill in before sending. Like the workflow functions these take the caller's session and do
not commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.services.access import Viewer
from nazaha.services.workflow import NotAllowed
from nazaha.storage.console_models import ReplyTemplate

LOCALES = ("ar", "en")
PURPOSES = ("acknowledgement", "more_information", "closure", "other")
TITLE_MAX_CHARS = 200
# A staff reply reaches the reporter as one Telegram message (4,096 characters at most).
BODY_MAX_CHARS = 4000


class TemplateNotFound(LookupError):
    """No template with this id."""


@dataclasses.dataclass(frozen=True)
class Template:
    id: str
    locale: str
    purpose: str
    title: str
    body: str
    updated_at: dt.datetime


DEFAULT_TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "acknowledgement": (
            "Acknowledgement of receipt",
            "Thank you for your report. We confirm that we have received it.\n\n"
            "Your report has been registered and our follow-up team will review it carefully "
            "and in confidence. We will tell you what action has been taken or is planned "
            "within three months at the latest.\n\n"
            "You can follow your report and send us more information at any time: choose "
            "“Follow up with my receipt” in the menu and enter your receipt number. Keep your "
            "receipt number in a safe place and do not share it with anyone.",
        ),
        "more_information": (
            "Request for more information",
            "Thank you for your report. To continue our review, we need some more "
            "information. Please answer the following questions.\n\n"
            "[Write your questions here.]\n\n"
            "Please share only what you know and what you can share safely. Do not put "
            "yourself at risk to find out more, and leave out anything that could identify "
            "you unless you choose to share it. You can answer here, in the follow-up of "
            "your report.",
        ),
        "closure": (
            "Closure of the case",
            "We have finished reviewing your report and have closed the case.\n\n"
            "[Explain the outcome and any action taken or planned, as far as it can be "
            "shared.]\n\n"
            "Thank you for taking the time to report and for your trust. If you learn "
            "something new about this matter, you are welcome to send a new report.",
        ),
    },
    "ar": {
        "acknowledgement": (
            "إشعار باستلام البلاغ",
            "شكرًا لك على بلاغك. نؤكد لك أننا استلمناه.\n\n"
            "لقد سُجِّل بلاغك، وسيراجعه فريق المتابعة بعناية وبسرية تامة. وسنُعلمك بما اتُّخذ "
            "من إجراءات بشأنه أو بما نعتزم اتخاذه، في مدة أقصاها ثلاثة أشهر.\n\n"
            "يمكنك متابعة بلاغك وإرسال معلومات إضافية إلينا في أي وقت، باختيار "
            "«المتابعة برقم الإيصال» من القائمة ثم إدخال رقم الإيصال. احتفظ برقم الإيصال في "
            "مكان آمن، ولا تُطلع عليه أحدًا.",
        ),
        "more_information": (
            "طلب معلومات إضافية",
            "شكرًا لك على بلاغك. لكي نواصل دراسته، نحتاج إلى بعض المعلومات الإضافية، ونرجو "
            "أن تجيبنا عن الأسئلة الآتية.\n\n"
            "[اكتب أسئلتك هنا.]\n\n"
            "يُرجى أن تشاركنا فقط ما تعرفه وما يمكنك مشاركته بأمان. لا تعرّض نفسك لأي خطر "
            "في سبيل الحصول على مزيد من المعلومات، ولا تذكر ما قد يكشف هويتك إلا إذا اخترت "
            "ذلك بنفسك. يمكنك الرد هنا، في متابعة بلاغك.",
        ),
        "closure": (
            "إغلاق البلاغ",
            "انتهينا من دراسة بلاغك، وقد أُغلق البلاغ.\n\n"
            "[اشرح النتيجة وما اتُّخذ من إجراءات أو ما يُعتزم اتخاذه، بالقدر الذي يمكن "
            "الإفصاح عنه.]\n\n"
            "نشكرك على الوقت الذي خصصته للإبلاغ وعلى ثقتك بنا. إذا عرفت شيئًا جديدًا عن "
            "هذه المسألة، فيمكنك إرسال بلاغ جديد.",
        ),
    },
}


def _template(row: ReplyTemplate) -> Template:
    return Template(row.id, row.locale, row.purpose, row.title, row.body, row.updated_at)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.timezone.utc)


async def list_templates(session: AsyncSession, locale: str | None = None) -> list[Template]:
    """The templates of one language (all if None), by purpose (in :data:`PURPOSES` order)
    and title."""
    statement = select(ReplyTemplate)
    if locale is not None:
        statement = statement.where(ReplyTemplate.locale == locale)
    rows = [_template(row) for row in await session.scalars(statement)]
    return sorted(rows, key=lambda t: (t.locale, PURPOSES.index(t.purpose) if t.purpose in PURPOSES else len(PURPOSES), t.title, t.id))


async def get_template(session: AsyncSession, template_id: str) -> Template:
    """One template (``TemplateNotFound``)."""
    row = await session.get(ReplyTemplate, template_id) if isinstance(template_id, str) else None
    if row is None:
        raise TemplateNotFound(template_id)
    return _template(row)


def _check_editor(viewer: Viewer) -> None:
    if viewer.role not in ("admin", "caseworker"):
        raise NotAllowed("only caseworkers and admins edit reply templates")


async def save_template(
    session: AsyncSession,
    viewer: Viewer,
    *,
    template_id: str | None = None,
    locale: str,
    purpose: str,
    title: str,
    body: str,
    now: dt.datetime | None = None,
) -> Template:
    """Create a template (``template_id`` None) or replace one (``TemplateNotFound``).
    ``locale`` one of :data:`LOCALES`, ``purpose`` one of :data:`PURPOSES`, ``title`` 1-200
    and ``body`` 1-4,000 characters, not blank (``ValueError``). Caseworkers and admins only
    (``NotAllowed``)."""
    _check_editor(viewer)
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {locale!r}")
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > TITLE_MAX_CHARS:
        raise ValueError(f"a title is 1 to {TITLE_MAX_CHARS} characters")
    if not isinstance(body, str) or not body.strip() or len(body) > BODY_MAX_CHARS:
        raise ValueError(f"a template body is 1 to {BODY_MAX_CHARS} characters")
    moment = _now(now)
    if template_id is None:
        row = ReplyTemplate(id=secrets.token_hex(16), locale=locale, purpose=purpose,
                            title=title.strip(), body=body, updated_at=moment)
        session.add(row)
    else:
        row = await session.get(ReplyTemplate, template_id)
        if row is None:
            raise TemplateNotFound(template_id)
        row.locale, row.purpose, row.title, row.body, row.updated_at = locale, purpose, title.strip(), body, moment
    await session.flush()
    return _template(row)


async def delete_template(session: AsyncSession, viewer: Viewer, template_id: str) -> bool:
    """Delete a template; True if there was one. Caseworkers and admins only."""
    _check_editor(viewer)
    result = await session.execute(delete(ReplyTemplate).where(ReplyTemplate.id == template_id))
    return bool(result.rowcount)


async def ensure_default_templates(session: AsyncSession, *, now: dt.datetime | None = None) -> int:
    """Seed the default templates (acknowledgement, request for more information, closure)
    of each language that has no template at all yet; returns how many were added. Safe to
    call at every start: a language the team has already edited is left alone."""
    have = dict(
        (await session.execute(select(ReplyTemplate.locale, func.count()).group_by(ReplyTemplate.locale))).all()
    )
    moment = _now(now)
    added = 0
    for locale, templates in DEFAULT_TEMPLATES.items():
        if have.get(locale):
            continue
        for purpose, (title, body) in templates.items():
            session.add(ReplyTemplate(id=secrets.token_hex(16), locale=locale, purpose=purpose,
                                      title=title, body=body, updated_at=moment))
            added += 1
    await session.flush()
    return added


__all__ = [
    "BODY_MAX_CHARS",
    "DEFAULT_TEMPLATES",
    "LOCALES",
    "PURPOSES",
    "Template",
    "TemplateNotFound",
    "delete_template",
    "ensure_default_templates",
    "get_template",
    "list_templates",
    "save_template",
]
