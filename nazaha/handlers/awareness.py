"""Learn about corruption, subscriptions, quizzes, surveys, campaign and staff links.

Two entry points:

* ``router`` comes before the report and follow-up routers and handles what must work in
  any state, without touching a draft or a follow-up session: ``/stop``, every button that
  only removes topics (the "Unsubscribe" button under broadcasts, ``aw:unsub``; "Unsubscribe
  from everything"; a ticked topic), survey answers (``sv:``, also under broadcasts), the
  buttons under a console member's test send (``aw:tu``, ``aw:ts:``: "this was a test",
  nothing counted or changed) and Telegram's ``poll`` updates with the anonymous counts of
  quiz polls. /stop, Unsubscribe and "Unsubscribe from everything" (and /wipe) also end a
  console member's link to the chat (for test broadcasts): the person in it said stop.
  In a report or a follow-up session, every other awareness button (and "Learn" on an old
  main menu) gets the answer /learn gets there: the conversation's help, the draft kept.
* The menu router (no report in progress) calls :func:`show_learn`,
  :func:`show_subscriptions`, :func:`open_start_payload` and :func:`on_callback` for the
  Learn screens, which edit their message in place as the user navigates (a text message
  only: under a quiz poll the next screen comes as a new message).

Subscription buttons say what they do (add or remove a topic) and act on the stored state:
one whose screen is out of date (after /stop, say) changes nothing and brings the
subscriptions screen as it is now. Each change is confirmed by a short notice over the chat
(the answer to the button's callback query).

Writes: a subscription goes through the update's unit of work (SubscriberStore); a survey
answer's marker in a transaction of its own; survey answers, campaign opens and quiz votes
are counted in memory and written in batches (nazaha/awareness/tally.py says why); which
quiz poll went out for which item is kept in memory only. Nothing here is logged about the
user.
"""

from __future__ import annotations

import datetime as dt
import logging

from aiogram import Router
from aiogram.methods import SendPoll
from aiogram.types import CallbackQuery, InputPollOption, Message, Poll

from nazaha.awareness import staff_chats
from nazaha.awareness.campaigns import campaign_code_of
from nazaha.awareness.library import ItemView, quiz_poll
from nazaha.awareness.services import AwarenessServices
from nazaha.awareness.survey_answers import Answer
from nazaha.flows import report_flow as flow
from nazaha.handlers import awareness_callbacks as aw
from nazaha.handlers import awareness_screens as views
from nazaha.handlers import callbacks as cb
from nazaha.handlers import followup, report, wipe
from nazaha.handlers.awareness_memory import BROWSING_LEARN, NEXT_QUESTION_USED
from nazaha.handlers.context import Reply

log = logging.getLogger(__name__)

router = Router(name="awareness")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _services(reply: Reply) -> AwarenessServices:
    services = reply.services.awareness
    assert services is not None, "the composition root builds the awareness services"
    return services


def _language(reply: Reply) -> str:
    return reply.i18n.current_locale


def _anchor(query: CallbackQuery) -> int | None:
    """The message to edit in place: the one under the button if it is a text message
    (Telegram refuses editMessageText on a quiz poll or a photo, so those get a new one)."""
    message = query.message
    if isinstance(message, Message) and message.text is not None:
        return message.message_id
    return None


def _message_id(query: CallbackQuery) -> int | None:
    """The message under the button, whatever it holds (to take its buttons away)."""
    return query.message.message_id if query.message is not None else None


def _poll_under(query: CallbackQuery) -> int | None:
    """The id of the quiz poll under the button, if the button is under one."""
    message = query.message
    if isinstance(message, Message) and message.poll is not None:
        return message.message_id
    return None


def notify(reply: Reply, text: str) -> None:
    """A short notice over the chat, as the answer to the pressed button (a message if
    there is no callback query to answer)."""
    if not reply.outbox.callback_notice(text):
        reply.say(text)


def _browsing(reply: Reply) -> None:
    """Remember, in memory only, that this chat is looking at Learn (:func:`hint_if_browsing`)."""
    BROWSING_LEARN.mark(reply.chat_id)


def leave_learn(reply: Reply) -> None:
    """The chat went elsewhere (the menu, a report): typed text is no longer about Learn."""
    BROWSING_LEARN.drop(reply.chat_id)


async def hint_if_browsing(reply: Reply) -> bool:
    """Text typed while browsing Learn: a hint to choose a topic, with the topics; False
    (nothing said) when the chat is not known to be browsing Learn."""
    if reply.services.awareness is None or not BROWSING_LEARN.has(reply.chat_id):
        return False
    await show_learn(reply, note=views.learn_hint())
    return True


# ---- in any state -----------------------------------------------------------------------


def _is_stop(message: Message) -> bool:
    return cb.command_of(message.text) == "/stop"


@router.message(_is_stop)
async def on_stop(message: Message, reply: Reply, raw_state: str | None = None) -> None:
    """/stop: delete this chat's subscription; a report in progress carries on."""
    await stop(reply)
    if raw_state == report.ReportForm.active.state:
        await report.reask(reply)


async def stop(reply: Reply) -> bool:
    """Delete the subscription and a console member's link to this chat, and say so; True
    if there was a subscription."""
    store = _services(reply).subscribers
    unlinked = await forget_staff_link(reply)
    if await store.get(reply.chat_id) is None:
        if not unlinked:
            reply.say(views.not_subscribed())
        return False
    store.queue_stop(reply.uow, reply.chat_id)
    reply.say(views.stopped())
    return True


async def forget_staff_link(reply: Reply) -> bool:
    """End a console member's link to this chat (and a confirmation waiting for it), and
    say so; False (nothing said) if there was none."""
    staff_chats = _services(reply).staff_chats
    if not await staff_chats.has_link(reply.chat_id):
        return False
    staff_chats.queue_forget(reply.uow, reply.chat_id)
    reply.say(views.staff_chat_unlinked())
    return True


# The conversations in which Learn waits: a report (or complaint) and a follow-up session.
_REPORT = report.ReportForm.active.state
_FOLLOWUP = followup.FollowUpForm.active.state
LEARN_BUTTON = cb.menu("learn")


def _in_any_state(query: CallbackQuery, raw_state: str | None = None) -> bool:
    """Buttons this router answers: "Unsubscribe" under a broadcast and survey answers
    always; in a report or a follow-up session, every valid awareness button and "Learn"
    on an old main menu (outside one, the menu router shows Learn)."""
    parsed = aw.parse(query.data)
    if isinstance(parsed, (aw.Unsubscribe, aw.SurveyAnswer, aw.TestButton)):
        return True
    if raw_state not in (_REPORT, _FOLLOWUP):
        return False
    return parsed is not None or query.data == LEARN_BUTTON


@router.callback_query(_in_any_state)
async def on_anywhere_button(query: CallbackQuery, reply: Reply, raw_state: str | None = None) -> None:
    """Unsubscribing works at any moment, like /stop; survey answers too. In a report,
    the current question is asked again afterwards (as /stop does); any other awareness
    button there gets what /learn gets: the report's help, the draft kept."""
    parsed = aw.parse(query.data)
    if isinstance(parsed, aw.SurveyAnswer):
        await answer_survey(reply, parsed)
        return
    if isinstance(parsed, aw.TestButton):  # under a test send: nothing counted or changed
        notify(reply, views.pressed_under_a_test())
        return
    in_conversation = raw_state in (_REPORT, _FOLLOWUP)
    if isinstance(parsed, aw.Unsubscribe):
        await stop(reply)
        message_id = _message_id(query)
        if message_id is not None:
            reply.outbox.remove_keyboard(reply.chat_id, message_id)
    elif in_conversation and aw.reduces_subscription(parsed):
        await on_callback(query, reply)
    elif raw_state == _REPORT:
        await report.resume(reply, flow.Help())  # as /learn in a report
        return
    elif raw_state == _FOLLOWUP:
        await followup.resume(reply, flow.Help())  # as /learn in a follow-up session
        return
    if raw_state == _REPORT:
        await report.reask(reply)


async def answer_survey(reply: Reply, parsed: aw.SurveyAnswer) -> None:
    outcome = await _services(reply).surveys.answer(
        parsed.code, parsed.option, reply.user_id, now=_now()
    )
    if outcome is Answer.COUNTED:
        reply.say(views.survey_counted())
    elif outcome is Answer.ALREADY:
        reply.say(views.survey_already())
    else:
        reply.say(views.survey_closed())


@router.poll()
async def on_poll(poll: Poll, awareness: AwarenessServices | None = None) -> None:
    """Telegram's counts for an anonymous quiz poll the bot sent since it started (unknown
    ids: ignored); what grew is counted. The bot never asks for ``poll_answer`` updates: it
    never learns who answered."""
    if awareness is None:
        return
    await awareness.quiz_polls.update_counts(poll.id, [option.voter_count for option in poll.options])


# ---- Learn (no report in progress) ------------------------------------------------------


async def show_learn(reply: Reply, page: int = 0, *, edit: int | None = None, note: str | None = None) -> None:
    _browsing(reply)
    services = _services(reply)
    language = _language(reply)
    topics = await services.library.topics(language)
    has_surveys = bool(await services.surveys.open_surveys(language, _now().date()))
    screen = views.learn_home(topics, page, has_surveys=has_surveys)
    if note:
        reply.say(note)
        edit = None
    reply.present(screen, edit=edit)


async def _subscribed_topics(reply: Reply) -> frozenset[str]:
    subscription = await _services(reply).subscribers.get(reply.chat_id)
    return subscription.topics if subscription is not None else frozenset()


async def show_topic(
    reply: Reply, code: str, page: int = 0, *, edit: int | None = None,
    subscribed: frozenset[str] | None = None,
) -> None:
    _browsing(reply)
    services = _services(reply)
    language = _language(reply)
    topic = await services.library.topic(code, language)
    if topic is None:
        await show_learn(reply, edit=edit, note=views.content_gone())
        return
    articles = await services.library.articles(code, language, page, views.ARTICLES_PER_PAGE)
    if subscribed is None:
        subscribed = await _subscribed_topics(reply)
    screen = views.topic_screen(
        topic,
        articles,
        has_quizzes=await services.library.has_quizzes(code),
        subscribed=code in subscribed,
    )
    reply.present(screen, edit=edit)


async def show_article(
    reply: Reply, item: ItemView | None, *, edit: int | None = None,
    subscribed: frozenset[str] | None = None,
) -> None:
    _browsing(reply)
    services = _services(reply)
    if item is None or item.kind != "article":
        await show_learn(reply, edit=edit, note=views.content_gone())
        return
    ids = await services.library.article_ids(item.topic)
    position = ids.index(item.id) if item.id in ids else 0
    next_id = ids[position + 1] if position + 1 < len(ids) else None
    if subscribed is None:
        subscribed = await _subscribed_topics(reply)
    screen = views.article_screen(
        item,
        topic_page=position // views.ARTICLES_PER_PAGE,
        next_id=next_id,
        has_quizzes=await services.library.has_quizzes(item.topic),
        subscribed=item.topic in subscribed,
    )
    reply.present(screen, edit=edit)


async def show_subscriptions(reply: Reply, page: int = 0, *, edit: int | None = None) -> None:
    _browsing(reply)
    services = _services(reply)
    language = _language(reply)
    topics = await services.library.topics(language)
    subscription = await services.subscribers.get(reply.chat_id)
    reply.present(views.subscriptions_screen(topics, subscription, language, page), edit=edit)


async def send_quiz(reply: Reply, topic: str, index: int) -> None:
    """The topic's ``index``-th quiz question as an anonymous quiz poll, with "Next
    question" under it; after the last one, a message says the quiz is over. Once Telegram
    answers with the poll's id, the bot remembers (in memory, no chat) which item it stands
    for, to count its votes."""
    _browsing(reply)
    services = _services(reply)
    ids = await services.library.quiz_ids(topic)
    spec = item = None
    position = max(0, index)
    while position < len(ids):  # skip a question an admin left unusable
        item = await services.library.item(ids[position], _language(reply))
        spec = quiz_poll(item) if item is not None else None
        if spec is not None:
            break
        position += 1
    if spec is None or item is None:
        if index > 0 and ids:
            reply.show(views.quiz_finished(topic))  # the questions after it went away
        else:
            reply.say(views.quiz_unavailable())
        return
    last = position + 1 >= len(ids)
    explanation = spec.explanation
    method = SendPoll(
        chat_id=reply.chat_id,
        question=spec.question,
        question_parse_mode=None,
        options=[InputPollOption(text=option, text_parse_mode=None) for option in spec.options],
        type="quiz",
        is_anonymous=True,
        correct_option_id=spec.correct,
        explanation=explanation.text if explanation else None,
        explanation_entities=list(explanation.entities) or None if explanation else None,
        explanation_parse_mode=None,
        reply_markup=None if last else views.quiz_keyboard(topic, position + 1),
    )
    quiz_polls, item_id = services.quiz_polls, item.id

    async def record(message: Message) -> None:
        if message is not None and message.poll is not None:
            quiz_polls.record(message.poll.id, item_id)

    reply.outbox.call(method, on_result=record)
    if last:
        reply.show(views.quiz_finished(topic))


async def next_question(reply: Reply, parsed: aw.Quiz, query: CallbackQuery) -> None:
    """"Quiz me", or "Next question" under a quiz poll: that poll's buttons are taken away
    and, once per poll, the next question is sent."""
    poll = _poll_under(query)
    if poll is not None:
        reply.outbox.remove_keyboard(reply.chat_id, poll)
        if not NEXT_QUESTION_USED.claim(reply.chat_id, poll):
            notify(reply, views.next_question_already_sent())
            return
    await send_quiz(reply, parsed.topic, parsed.index)


async def toggle(reply: Reply, parsed: aw.Toggle, anchor: int | None) -> None:
    """Add or remove a topic as the button says, then show the screen it was on again. A
    first subscription from an article or a topic shows what subscribing means first. A
    button that asks for what is already so (its screen is out of date: after /stop, or a
    change elsewhere) changes nothing: the subscriptions screen as it is now comes below."""
    services = _services(reply)
    language = _language(reply)
    if parsed.where == "i":
        item = await services.library.item(int(parsed.ref), language)
        if item is None:
            await show_learn(reply, edit=anchor, note=views.content_gone())
            return
        code = item.topic
    else:
        item, code = None, parsed.ref
    topic = await services.library.topic(code, language)
    if topic is None:
        await show_learn(reply, edit=anchor, note=views.content_gone())
        return
    subscription = await services.subscribers.get(reply.chat_id)
    chosen = set(subscription.topics) if subscription is not None else set()
    if parsed.subscribe is None or parsed.subscribe == (code in chosen):
        notify(reply, views.screen_out_of_date())
        await show_subscriptions(reply)
        return
    if parsed.subscribe and subscription is None and parsed.where != "s" and not parsed.confirmed:
        back = aw.article(item.id) if item is not None else aw.topic(code, parsed.page)
        reply.present(views.consent_screen(topic, parsed.where, parsed.page, parsed.ref, back), edit=anchor)
        return
    if parsed.subscribe:
        chosen.add(code)
        notify(reply, views.subscribed_to(topic.title))
    else:
        chosen.discard(code)
        notify(reply, views.unsubscribed_from(topic.title))
    _store_topics(reply, chosen, had_subscription=subscription is not None)
    after = frozenset(chosen)
    if parsed.where == "i":
        await show_article(reply, item, edit=anchor, subscribed=after)
    elif parsed.where == "t":
        await show_topic(reply, code, parsed.page, edit=anchor, subscribed=after)
    else:
        await show_subscriptions_after(reply, parsed.page, after, anchor)


def _store_topics(reply: Reply, topics: set[str], *, had_subscription: bool) -> None:
    store = _services(reply).subscribers
    if topics:
        store.queue_subscribe(reply.uow, reply.chat_id, _language(reply), topics, today=_now().date())
    elif had_subscription:
        store.queue_stop(reply.uow, reply.chat_id)
        reply.say(views.no_topics_left())


async def show_subscriptions_after(
    reply: Reply, page: int, topics: frozenset[str], anchor: int | None
) -> None:
    """The subscriptions screen as it will be once this update's writes are committed."""
    from nazaha.awareness.subscribers import Subscription

    _browsing(reply)
    services = _services(reply)
    language = _language(reply)
    listed = await services.library.topics(language)
    subscription = Subscription(0, language, topics, True) if topics else None
    reply.present(views.subscriptions_screen(listed, subscription, language, page), edit=anchor)


async def on_callback(query: CallbackQuery, reply: Reply) -> None:
    """An awareness button pressed with no report in progress (menu router)."""
    parsed = aw.parse(query.data)
    anchor = _anchor(query)
    services = _services(reply)
    language = _language(reply)
    if isinstance(parsed, aw.Home):
        await show_learn(reply, parsed.page, edit=anchor)
    elif isinstance(parsed, aw.Topic):
        await show_topic(reply, parsed.code, parsed.page, edit=anchor)
    elif isinstance(parsed, aw.Article):
        await show_article(reply, await services.library.item(parsed.item_id, language), edit=anchor)
    elif isinstance(parsed, aw.Quiz):
        await next_question(reply, parsed, query)
    elif isinstance(parsed, aw.Subscriptions):
        await show_subscriptions(reply, parsed.page, edit=anchor)
    elif isinstance(parsed, aw.Toggle):
        await toggle(reply, parsed, anchor)
    elif isinstance(parsed, aw.SubscribeAll):
        topics = frozenset(t.code for t in await services.library.topics(language))
        if topics:
            _store_topics(reply, set(topics), had_subscription=True)
            notify(reply, views.subscribed_to_all())
            await show_subscriptions_after(reply, 0, topics, anchor)
        else:
            await show_subscriptions(reply, edit=anchor)
    elif isinstance(parsed, aw.UnsubscribeAll):
        if await services.subscribers.get(reply.chat_id) is None:
            # Shown only to a subscriber: this screen is older than the subscription's end.
            notify(reply, views.screen_out_of_date())
            await show_subscriptions(reply)
        else:
            services.subscribers.queue_stop(reply.uow, reply.chat_id)
            await forget_staff_link(reply)
            notify(reply, views.unsubscribed_from_all())
            await show_subscriptions_after(reply, 0, frozenset(), anchor)
    elif isinstance(parsed, aw.Surveys):
        _browsing(reply)
        surveys = await services.surveys.open_surveys(language, _now().date())
        reply.present(views.surveys_screen(surveys), edit=anchor)
    elif isinstance(parsed, aw.SurveyScreen):
        _browsing(reply)
        survey = await services.surveys.survey(parsed.code, language, _now().date())
        if survey is None:
            reply.say(views.survey_closed())
            surveys = await services.surveys.open_surveys(language, _now().date())
            reply.present(views.surveys_screen(surveys), edit=anchor)
        else:
            reply.present(views.survey_screen(survey), edit=anchor)
    elif isinstance(parsed, (aw.Unsubscribe, aw.SurveyAnswer, aw.TestButton)):
        await on_anywhere_button(query, reply)  # normally handled by ``router`` first
    else:
        from nazaha.handlers import screens

        reply.say(screens.button_expired())
        await show_learn(reply)


# ---- /start payloads --------------------------------------------------------------------


def start_payload(text: str | None) -> str:
    """The payload of "/start <payload>" (a deep link), or ""."""
    if not text:
        return ""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


async def open_start_payload(
    reply: Reply, payload: str, anchor: int | None, *, first_name: str | None = None
) -> bool:
    """A campaign link (``c_<code>``) or a volunteer's chat link (``l_<code>``); False for
    any other payload (the caller shows the welcome as for a plain /start). A chat link
    links nothing: the chat gets a confirmation code for the member to type in the console
    (nazaha/awareness/staff_chats.py); ``first_name`` (Telegram's, from the update) is
    sealed for the console, which shows it once the code is typed."""
    services = _services(reply)
    if payload.startswith(staff_chats.CODE_PREFIX):
        code = payload[len(staff_chats.CODE_PREFIX):]
        confirmation = await services.staff_chats.start_confirmation(
            code, reply.chat_id, first_name, now=_now()
        )
        if confirmation is None:
            reply.say(views.staff_link_failed())
        else:
            reply.say(views.staff_chat_confirmation(confirmation))
        return True
    code = campaign_code_of(payload)
    if code is None:
        return False
    campaign = await services.campaigns.find(code)
    if campaign is None:
        return False
    # Counted in memory and written later in a batch: an aggregate per day, never who.
    await services.campaigns.count_open(campaign.id, _now().date())
    await wipe.mark_conversation_start(reply, anchor)
    language = _language(reply)
    if campaign.item is not None:
        item = await services.library.item_by_code(campaign.item, language)
        if item is not None and item.kind == "article":
            await show_article(reply, item)
            return True
    elif campaign.topic is not None and await services.library.topic(campaign.topic, language) is not None:
        await show_topic(reply, campaign.topic)
        return True
    return False
