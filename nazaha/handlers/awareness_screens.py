"""What a citizen sees of the awareness side: Learn (topics, articles, quizzes), the
subscriptions screen, surveys, and the short answers to /stop, survey answers and links.

Pure presentation like nazaha/handlers/screens.py: no state, no I/O, called inside the
update's i18n context. Library text (titles, articles, questions) is shown as written, with
its own entities; buttons carry :mod:`nazaha.handlers.awareness_callbacks` data.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity
from aiogram.utils.i18n import gettext as _

from nazaha.awareness.library import (
    ArticleRef,
    ItemView,
    Page,
    TopicView,
    article_message,
    paginate,
)
from nazaha.awareness.markup import utf16_len
from nazaha.awareness.subscribers import Subscription
from nazaha.awareness.survey_answers import OpenSurvey
from nazaha.handlers import awareness_callbacks as aw
from nazaha.handlers import callbacks as cb
from nazaha.handlers.screens import LANGUAGE_NAMES, Screen, back_arrow, is_rtl, isolate, ltr

# One page size for the topics in Learn and on the subscriptions screen: the library's
# ten topics (and a couple an admin may add) fit on one page.
TOPICS_PER_PAGE = 12
ARTICLES_PER_PAGE = 6
BUTTON_LABEL_MAX = 60  # characters of a title shown on a button

Rows = list[list[tuple[str, str]]]


def _markup(rows: Rows) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=data) for label, data in row]
            for row in rows
            if row
        ]
    )


def forward_arrow() -> str:
    """An arrow pointing forward in reading order: left in Arabic, right in English."""
    return "⬅️" if is_rtl() else "➡️"


def back(text: str) -> str:
    """A "back"/"previous" label with its arrow before it, pointing back in reading order."""
    return back_arrow() + " " + text


def forward(text: str) -> str:
    """A "next" label with its arrow after it, pointing forward in reading order."""
    return text + " " + forward_arrow()


def label(title: str) -> str:
    """A title as a button label: one line, at most BUTTON_LABEL_MAX characters."""
    title = " ".join(title.split())
    return title if len(title) <= BUTTON_LABEL_MAX else title[: BUTTON_LABEL_MAX - 1].rstrip() + "…"


def _pager(page: Page, data_of) -> list[tuple[str, str]]:
    """Previous / Next buttons of a paginated list (none when it fits one page)."""
    row = []
    if page.has_previous:
        row.append((back(_("Previous")), data_of(page.number - 1)))
    if page.has_next:
        row.append((forward(_("Next")), data_of(page.number + 1)))
    return row


def _page_note(page: Page) -> str:
    if page.count <= 1:
        return ""
    return "\n\n" + _("Page {number} of {count}").format(number=page.number + 1, count=page.count)


def _bold_title(title: str, rest: str) -> Screen:
    """``title`` in bold, then ``rest`` (plain)."""
    return Screen(title + rest, entities=(MessageEntity(type="bold", offset=0, length=utf16_len(title)),))


def _menu_row() -> list[tuple[str, str]]:
    return [(_("🏠 Menu"), cb.menu("menu"))]


def quoted(title: str) -> str:
    """A topic's title in the quotation marks of the language: «…» in Arabic, “…” in
    English."""
    return f"«{title}»" if is_rtl() else f"\u201c{title}\u201d"


def topic_list(titles: Iterable[str]) -> str:
    """Topic titles as one list in running text, in the order given (the library's): each
    quoted, its title isolated (FSI … PDI) so that a title in the other script, or one that
    starts or ends with a number, is never reordered with the next one (a title in Latin
    letters beside another in an Arabic sentence read as one left-to-right run: the list
    came out reversed); joined by the Arabic comma in Arabic. "—" if there is none."""
    separator = "، " if is_rtl() else ", "
    return separator.join(quoted(isolate(title)) for title in titles) or "—"


# ---- Learn ------------------------------------------------------------------------------


def learn_home(topics: Sequence[TopicView], page: int, *, has_surveys: bool) -> Screen:
    """The list of topics (paginated), "Have your say" when a survey is open, and the
    subscriptions screen."""
    shown = paginate(list(topics), page, TOPICS_PER_PAGE)
    title = _("📚 Learn about corruption")
    if topics:
        body = _(
            "Short articles on what corruption is, what it costs us all, and the rights you "
            "have. Choose a topic:"
        )
    else:
        body = _("There are no articles yet. Please come back later.")
    rows: Rows = [[(label(t.title), aw.topic(t.code))] for t in shown.entries]
    rows.append(_pager(shown, aw.home))
    if has_surveys:
        rows.append([(_("🗳 Have your say"), aw.surveys())])
    rows.append([(_("🔔 Subscriptions"), aw.subscriptions())])
    rows.append(_menu_row())
    screen = _bold_title(title, "\n\n" + body + _page_note(shown))
    return Screen(screen.text, _markup(rows), screen.entities)


def _subscribe_label(subscribed: bool) -> str:
    return _("✅ Subscribed to this topic") if subscribed else _("🔔 Subscribe to this topic")


def topic_screen(
    topic: TopicView, articles: Page, *, has_quizzes: bool, subscribed: bool
) -> Screen:
    """A topic: its title and summary, a page of its articles as buttons, "Quiz me", the
    subscribe toggle, back to the topics."""
    rest = "\n\n" + topic.summary if topic.summary else ""
    if not articles.entries:
        rest += "\n\n" + _("There are no articles in this topic yet.")
    rest += _page_note(articles)
    rows: Rows = [[(label(a.title), aw.article(a.id))] for a in articles.entries if isinstance(a, ArticleRef)]
    rows.append(_pager(articles, lambda p: aw.topic(topic.code, p)))
    if has_quizzes:
        rows.append([(_("❓ Quiz me"), aw.quiz(topic.code))])
    rows.append(
        [(_subscribe_label(subscribed), aw.toggle("t", articles.number, topic.code, subscribe=not subscribed))]
    )
    rows.append([(back(_("Topics")), aw.home()), *_menu_row()])
    screen = _bold_title(topic.title, rest)
    return Screen(screen.text, _markup(rows), screen.entities)


def article_text(item: ItemView):
    """The article as one message (title in bold, body, sources), within Telegram's limit."""
    return article_message(
        item,
        sources_label=_("Sources:"),
        shortened_note=_("This article was shortened to fit in one message."),
    )


def article_screen(
    item: ItemView,
    *,
    topic_page: int,
    next_id: int | None,
    has_quizzes: bool,
    subscribed: bool,
) -> Screen:
    formatted = article_text(item)
    rows: Rows = []
    if has_quizzes:
        rows.append([(_("❓ Quiz me"), aw.quiz(item.topic))])
    if next_id is not None:
        rows.append([(forward(_("Next article")), aw.article(next_id))])
    rows.append([(_subscribe_label(subscribed), aw.toggle("i", 0, item.id, subscribe=not subscribed))])
    rows.append(
        [
            (back(_("Back to the topic")), aw.topic(item.topic, topic_page)),
            (_("📚 Topics"), aw.home()),
        ]
    )
    rows.append(_menu_row())
    return Screen(formatted.text, _markup(rows), formatted.entities)


def content_gone() -> str:
    return _("This is no longer available. Here are the topics:")


def quiz_keyboard(topic: str, next_index: int) -> InlineKeyboardMarkup:
    """Under a quiz poll that is not the topic's last: the next question, back to the
    topic. (The last one has no buttons: :func:`quiz_finished` follows it.)"""
    rows: Rows = [
        [(forward(_("Next question")), aw.quiz(topic, next_index))],
        [(back(_("Back to the topic")), aw.topic(topic))],
    ]
    return _markup(rows)


def quiz_finished(topic: str) -> Screen:
    """Sent right after the topic's last quiz question."""
    return Screen(
        _(
            "That was the last question of this topic. Quizzes are anonymous: the bot does "
            "not know your answers."
        ),
        _markup([[(back(_("Back to the topic")), aw.topic(topic)), (_("📚 Topics"), aw.home())]]),
    )


def quiz_unavailable() -> str:
    return _("There is no quiz for this topic right now.")


def next_question_already_sent() -> str:
    """A "Next question" tapped again: the question it sends is already below."""
    return _("The next question is already below.")


def learn_hint() -> str:
    """Text typed while browsing Learn: the bot reads no questions there."""
    return _(
        "The bot cannot answer written questions. To read about a subject, choose a topic "
        "with the buttons below."
    )


# ---- subscriptions ----------------------------------------------------------------------


def subscription_disclosure() -> str:
    """What subscribing means, said before anyone subscribes (docs/security.md)."""
    return _(
        "Subscribers receive short messages on the topics they choose: messages the "
        "coalition's volunteers prepare and the coalition approves before anything is "
        "sent.\n\n"
        "What the bot keeps: to send you messages, the bot has to keep this chat's Telegram "
        "id. It is kept encrypted, but the bot itself can read it (and so could anyone who "
        "took over the bot's server). It is kept apart from any report: nothing links your "
        "subscription to a report, a receipt or a draft.\n\n"
        "How to stop: send /stop at any time, or tap \"Unsubscribe\" under any message we "
        "send. /wipe also ends your subscription."
    )


def subscriptions_screen(
    topics: Sequence[TopicView], subscription: Subscription | None, language: str, page: int
) -> Screen:
    """The disclosure, the current state, one toggle per topic (✓ when chosen), subscribe
    to all, unsubscribe from everything."""
    chosen = subscription.topics if subscription is not None else frozenset()
    title = _("🔔 Subscriptions")
    language_line = "\n" + _(
        "Messages come in {language}, the language you chose for the bot (/language "
        "changes it)."
    ).format(language=LANGUAGE_NAMES.get(language, language))
    if subscription is None:
        state = _("You are not subscribed. Tap a topic below to subscribe to it.")
    elif topics and {t.code for t in topics} <= chosen:
        state = _("You are subscribed to every topic.") + language_line
    else:
        listed = topic_list(t.title for t in topics if t.code in chosen)
        state = _("You are subscribed to: {topics}.").format(topics=listed)
        state += language_line
        state += "\n" + _("Tap a topic to add or remove it.")
    shown = paginate(list(topics), page, TOPICS_PER_PAGE)
    rows: Rows = [
        [
            (
                f"✅ {label(t.title)}" if t.code in chosen else label(t.title),
                aw.toggle("s", shown.number, t.code, subscribe=t.code not in chosen),
            )
        ]
        for t in shown.entries
    ]
    rows.append(_pager(shown, aw.subscriptions))
    if topics and not {t.code for t in topics} <= chosen:
        rows.append([(_("Subscribe to all topics"), aw.subscribe_all())])
    if subscription is not None:
        rows.append([(_("🔕 Unsubscribe from everything"), aw.unsubscribe_all())])
    rows.append([(back(_("Topics")), aw.home()), *_menu_row()])
    screen = _bold_title(title, "\n\n" + subscription_disclosure() + "\n\n" + state + _page_note(shown))
    return Screen(screen.text, _markup(rows), screen.entities)


def consent_screen(topic: TopicView, where: str, page: int, ref: str, back_data: str) -> Screen:
    """Before a first subscription from an article or a topic: what it means, then "Yes"."""
    question = _("Subscribe to \u201c{topic}\u201d?").format(topic=topic.title)
    rows: Rows = [
        [(_("✅ Yes, subscribe"), aw.toggle(where, page, ref, subscribe=True, confirmed=True))],
        [(back(_("No, go back")), back_data)],
    ]
    screen = _bold_title(question, "\n\n" + subscription_disclosure())
    return Screen(screen.text, _markup(rows), screen.entities)


def stopped() -> str:
    return _(
        "You are unsubscribed: the bot has deleted this chat's subscription and will send "
        "you no more awareness messages. You can subscribe again at any time with /subscribe."
    )


def not_subscribed() -> str:
    return _(
        "You are not subscribed, so there is nothing to stop: the bot keeps no "
        "subscription for this chat. /subscribe shows what subscribing means."
    )


def no_topics_left() -> str:
    return _("You removed your last topic, so you are unsubscribed.")


# Short notices shown by Telegram over the chat when a button is tapped (at most 200
# characters: a topic title has at most 64).


def subscribed_to(title: str) -> str:
    return _("Subscribed to {topic}").format(topic=quoted(title))


def unsubscribed_from(title: str) -> str:
    return _("Unsubscribed from {topic}").format(topic=quoted(title))


def subscribed_to_all() -> str:
    return _("Subscribed to every topic")


def unsubscribed_from_all() -> str:
    return _("Unsubscribed from every topic")


def screen_out_of_date() -> str:
    """A subscription button whose screen no longer shows the real state (after /stop, or
    a change made on another screen): nothing was changed."""
    return _(
        "That screen was out of date, so nothing was changed. Here is where your "
        "subscriptions stand now."
    )


# ---- surveys ----------------------------------------------------------------------------


def survey_note() -> str:
    return _(
        "Your answer is counted without keeping who gave it. To stop anyone answering twice, "
        "the bot keeps a mark that this account answered (never the answer) until the survey "
        "closes, for 30 days at most."
    )


def surveys_screen(surveys: Collection[OpenSurvey]) -> Screen:
    title = _("🗳 Have your say")
    if surveys:
        body = _("Short anonymous surveys. Choose one:") + "\n\n" + survey_note()
    else:
        body = _("There is no open survey right now.")
    rows: Rows = [[(label(s.question), aw.survey(s.code))] for s in surveys]
    rows.append([(back(_("Topics")), aw.home()), *_menu_row()])
    screen = _bold_title(title, "\n\n" + body)
    return Screen(screen.text, _markup(rows), screen.entities)


def survey_screen(survey: OpenSurvey) -> Screen:
    rows: Rows = [
        [(option[:64], aw.survey_answer(survey.code, index))]
        for index, option in enumerate(survey.options)
    ]
    rows.append([(back(_("Back")), aw.surveys())])
    screen = _bold_title(survey.question, "\n\n" + survey_note())
    return Screen(screen.text, _markup(rows), screen.entities)


def survey_counted() -> str:
    return _("Thank you, your answer was counted anonymously.")


def survey_already() -> str:
    return _("You already answered this survey. Thank you!")


def survey_closed() -> str:
    return _("This survey is closed.")


# ---- volunteers' chats ------------------------------------------------------------------


def staff_chat_confirmation(code: str) -> str:
    """What a chat that opened a console member's link gets: the code to type back."""
    return _(
        "Someone asked in the Nazaha console to link this chat, to receive tests of "
        "broadcasts. If it was you, type this code on the console page: {code}\n\n"
        "It works for 10 minutes; nothing is linked until it is typed. If you did not ask "
        "for this yourself, give this code to no one and ignore this message."
    ).format(code=ltr(code))


def staff_link_failed() -> str:
    return _("This link has expired or was already used. Make a new one in the console.")


def staff_chat_unlinked() -> str:
    return _("This chat is no longer linked to a console account: it will receive no more test broadcasts.")


def pressed_under_a_test() -> str:
    """The answer to a button under a test send (nothing counted or changed)."""
    return _("This was a test: nothing was counted or changed.")
