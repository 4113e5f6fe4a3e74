"""Polls and quizzes as the Bot API models them (Bot API 9.6+): ``sendPoll``, ``stopPoll``,
votes by sandbox users and the ``poll`` / ``poll_answer`` updates the sending bot receives.

Shapes (what Telegram sends; see https://core.telegram.org/bots/api#poll):

* ``Poll``: ``id`` (numeric string), ``question``, ``options`` (``persistent_id``, ``text``,
  ``voter_count``), ``total_voter_count`` (voters, not votes), ``is_closed``, ``is_anonymous``,
  ``type`` (``regular`` | ``quiz``), ``allows_multiple_answers``, ``allows_revoting``,
  ``members_only``; for a quiz seen by the bot that sent it ``correct_option_ids`` (and the
  legacy ``correct_option_id`` when there is exactly one), ``explanation`` with
  ``explanation_entities``; ``open_period`` + ``close_date`` while a timed poll is open.
* ``PollAnswer``: ``poll_id``, ``user``, ``option_ids``, ``option_persistent_ids`` (both
  empty for a retracted vote). Only for polls that are not anonymous.

Only the bot that sent a poll gets updates about it. Timed polls close when the emulator
clock passes ``close_date``; the emulator notices at the next vote, ``stopPoll`` or read of
the chat through the control API, and then queues the ``poll`` update Telegram sends.
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Any

from .entities import with_found_entities
from .formatting import bad_request, parse_html

if TYPE_CHECKING:
    from .emulator import BotApiEmulator, BotState, ChatState, StoredMessage

__all__ = [
    "StoredPoll", "VoteRefused", "build_poll", "user_poll", "vote", "stop_poll", "close_due_polls", "register",
    "MAX_OPTIONS", "MAX_QUESTION_LENGTH", "MAX_OPTION_LENGTH", "MAX_EXPLANATION_LENGTH",
]

MAX_QUESTION_LENGTH = 300
MAX_OPTIONS = 12  # Bot API 9.1 raised it from 10; 10.0 lowered the minimum to 1
MAX_OPTION_LENGTH = 100
MAX_EXPLANATION_LENGTH = 200
MAX_EXPLANATION_LINE_FEEDS = 2
MAX_DESCRIPTION_LENGTH = 1024
MIN_OPEN_PERIOD, MAX_OPEN_PERIOD = 5, 2_628_000
_poll_ids = itertools.count(secrets.randbelow(10**9) * 10**9 + 5_000_000_000_000_000_000)


class VoteRefused(Exception):
    """A vote Telegram's apps would not send or its servers would refuse (``status``: the
    control API's HTTP status, 400 for a malformed vote, 409 for one the poll's state refuses)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoredPoll:
    """One poll: its settings, and each voter's chosen option positions."""

    __slots__ = ("id", "owner", "question", "question_entities", "options", "type", "is_anonymous",
                 "allows_multiple_answers", "allows_revoting", "correct_option_ids", "explanation",
                 "explanation_entities", "description", "description_entities", "open_period",
                 "close_date", "is_closed", "votes", "_counts")

    def __init__(self, owner: "BotState | None", question: str, options: list[dict[str, Any]]) -> None:
        self.id = str(next(_poll_ids))
        self.owner = owner  # the bot that sent it; None for a user's poll
        self.question = question
        self.question_entities: list[dict[str, Any]] | None = None
        self.options = options  # [{"text", "text_entities"?}]
        self.type = "regular"
        self.is_anonymous = True
        self.allows_multiple_answers = False
        self.allows_revoting = True
        self.correct_option_ids: list[int] = []
        self.explanation: str | None = None
        self.explanation_entities: list[dict[str, Any]] | None = None
        self.description: str | None = None
        self.description_entities: list[dict[str, Any]] | None = None
        self.open_period: int | None = None
        self.close_date: int | None = None
        self.is_closed = False
        self.votes: dict[int, list[int]] = {}  # voter id -> chosen positions (never empty)
        self._counts = [0] * len(options)  # voters per option, kept with the votes

    def copy_for(self, owner: "BotState", now: int) -> "StoredPoll":
        """A copy (``copyMessage``): a new poll with the same settings and solution, open and
        without votes; its open period counts from now."""
        poll = StoredPoll(owner, self.question, [dict(o) for o in self.options])
        for name in ("question_entities", "type", "is_anonymous", "allows_multiple_answers", "allows_revoting",
                     "correct_option_ids", "explanation", "explanation_entities", "description",
                     "description_entities", "open_period"):
            setattr(poll, name, getattr(self, name))
        if poll.open_period:
            poll.close_date = now + poll.open_period
        return poll

    def counts(self) -> list[int]:
        return list(self._counts)

    def set_vote(self, voter_id: int, chosen: list[int]) -> None:
        """Record ``voter_id``'s answer (``[]`` retracts it), keeping the counts."""
        for position in self.votes.pop(voter_id, ()):
            self._counts[position] -= 1
        if chosen:
            self.votes[voter_id] = chosen
            for position in chosen:
                self._counts[position] += 1

    def to_poll(self, with_solution: bool = True) -> dict[str, Any]:
        """The Bot API ``Poll`` object. ``with_solution``: show a quiz's correct options and
        explanation (to the bot that sent it, as Telegram does)."""
        poll: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.question_entities:
            poll["question_entities"] = self.question_entities
        options = []
        for position, (option, count) in enumerate(zip(self.options, self.counts())):
            shown: dict[str, Any] = {"persistent_id": str(position), "text": option["text"]}
            if option.get("text_entities"):
                shown["text_entities"] = option["text_entities"]
            shown["voter_count"] = count
            options.append(shown)
        poll["options"] = options
        poll["total_voter_count"] = len(self.votes)
        if self.close_date is not None and not self.is_closed:
            poll["open_period"] = self.open_period
            poll["close_date"] = self.close_date
        poll.update({
            "is_closed": self.is_closed,
            "is_anonymous": self.is_anonymous,
            "type": self.type,
            "allows_multiple_answers": self.allows_multiple_answers,
            "allows_revoting": self.allows_revoting,
            "members_only": False,
        })
        if self.type == "quiz" and (with_solution or self.is_closed):
            if len(self.correct_option_ids) == 1:
                poll["correct_option_id"] = self.correct_option_ids[0]
            poll["correct_option_ids"] = list(self.correct_option_ids)
            if self.explanation:
                poll["explanation"] = self.explanation
                if self.explanation_entities:
                    poll["explanation_entities"] = self.explanation_entities
        if self.description:
            poll["description"] = self.description
            if self.description_entities:
                poll["description_entities"] = self.description_entities
        return poll

    def view(self, voter_id: int | None) -> dict[str, Any]:
        """The control API's view for the chat page: what a Telegram app shows ``voter_id``
        (a quiz's solution only once they answered it or it closed)."""
        chosen = self.votes.get(voter_id, []) if voter_id is not None else []
        view = {
            "id": self.id,
            "question": self.question,
            "options": [{"text": o["text"], "voter_count": c} for o, c in zip(self.options, self.counts())],
            "total_voter_count": len(self.votes),
            "is_closed": self.is_closed,
            "is_anonymous": self.is_anonymous,
            "type": self.type,
            "allows_multiple_answers": self.allows_multiple_answers,
            "allows_revoting": self.allows_revoting,
            "chosen": list(chosen),
            "close_date": self.close_date,
            "from_bot": self.owner is not None,
        }
        if self.type == "quiz" and (chosen or self.is_closed):
            view["correct_option_ids"] = list(self.correct_option_ids)
            view["explanation"] = self.explanation
            view["explanation_entities"] = self.explanation_entities
        return view


# ---- sendPoll parameters ---------------------------------------------------------------------------


def _formatted(text: Any, parse_mode: Any, entities: Any, what: str) -> tuple[str, list[dict[str, Any]] | None]:
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise bad_request(f"{what} must be of type String")
    if parse_mode and str(parse_mode).lower() == "html":
        text, parsed = parse_html(text)
        entities = parsed or None
    elif parse_mode and str(parse_mode).lower() not in ("markdown", "markdownv2"):
        raise bad_request("unsupported parse_mode")
    if entities is not None and not isinstance(entities, list):
        raise bad_request(f"can't parse {what} entities JSON object")
    return text, entities or None


def _only_custom_emoji(entities: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A poll's question and options keep only custom emoji of their entities, as TDLib does."""
    kept = [e for e in entities or [] if isinstance(e, dict) and e.get("type") == "custom_emoji"]
    return kept or None


def _options(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("can't parse options JSON object")
    options = []
    for item in raw:
        if isinstance(item, str):  # what older clients send; the server reads a string as the text
            text, entities = item, None
        elif isinstance(item, dict):
            if not isinstance(item.get("text"), str):
                raise bad_request("can't parse InputPollOption: Field \"text\" must be of type String")
            if item.get("media") is not None:
                raise bad_request("poll option media are not supported by the sandbox")
            text, entities = _formatted(item["text"], item.get("text_parse_mode"), item.get("text_entities"),
                                        "option text")
        else:
            raise bad_request("can't parse InputPollOption: Expected InputPollOption to be an Object")
        text = text.strip()
        if not text:
            raise bad_request("text must be non-empty")
        if len(text) > MAX_OPTION_LENGTH:
            raise bad_request(f"poll options length must not exceed {MAX_OPTION_LENGTH}")
        option: dict[str, Any] = {"text": text}
        if _only_custom_emoji(entities):
            option["text_entities"] = _only_custom_emoji(entities)
        options.append(option)
    return options


def _correct_ids(params: dict[str, Any]) -> list[int]:
    raw = params.get("correct_option_ids")
    if raw is None and params.get("correct_option_id") is not None:
        raw = [params["correct_option_id"]]  # the parameter before Bot API 9.6
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad_request("can't parse correct_option_ids JSON object")
    ids = []
    for value in raw:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_request("correct option identifier must be of type Number")
        ids.append(value)
    return ids


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key)
    return default if value is None else bool(value)


def build_poll(emu: "BotApiEmulator", bot: "BotState", params: dict[str, Any]) -> StoredPoll:
    """Read and check ``sendPoll`` parameters (already coerced from form strings) into a new
    poll owned by ``bot``. Raises ApiError 400 with Telegram's descriptions."""
    for unsupported in ("media", "explanation_media"):
        if params.get(unsupported):
            raise bad_request(f"{unsupported} is not supported by the sandbox")
    poll_type = params.get("type") or "regular"
    if poll_type not in ("regular", "quiz"):
        raise bad_request("unsupported poll type specified")
    explanation, explanation_entities = None, None
    if poll_type == "quiz":  # read before the options, as the official server does
        explanation, explanation_entities = _formatted(
            params.get("explanation"), params.get("explanation_parse_mode"), params.get("explanation_entities"),
            "explanation")
    question, question_entities = _formatted(params.get("question"), params.get("question_parse_mode"),
                                             params.get("question_entities"), "question")
    options = _options(params.get("options"))
    question = question.strip()
    if not question:
        raise bad_request("text must be non-empty")
    if len(question) > MAX_QUESTION_LENGTH:
        raise bad_request(f"poll question length must not exceed {MAX_QUESTION_LENGTH}")
    if not options:
        raise bad_request("poll must have at least one answer option")
    if len(options) > MAX_OPTIONS:
        raise bad_request(f"poll can't have more than {MAX_OPTIONS} options")
    poll = StoredPoll(bot, question, options)
    poll.question_entities = _only_custom_emoji(question_entities)
    poll.type = poll_type
    poll.is_anonymous = _bool(params, "is_anonymous", True)
    poll.allows_multiple_answers = _bool(params, "allows_multiple_answers", False)
    poll.allows_revoting = _bool(params, "allows_revoting", poll_type == "regular")
    if poll_type == "quiz":
        correct = _correct_ids(params)
        if not correct:
            raise bad_request("correct quiz option list must be non-empty")
        if any(b <= a for a, b in zip(correct, correct[1:])):
            raise bad_request("correct quiz option list must be increasing")
        if correct[0] < 0 or correct[-1] >= len(options):
            raise bad_request("wrong quiz correct_option_id")
        if explanation is not None and len(explanation) > MAX_EXPLANATION_LENGTH:
            raise bad_request(f"quiz explanation must have at most {MAX_EXPLANATION_LENGTH} characters")
        if explanation is not None and explanation.count("\n") > MAX_EXPLANATION_LINE_FEEDS:
            raise bad_request(f"quiz explanation must have at most {MAX_EXPLANATION_LINE_FEEDS} line feeds")
        poll.correct_option_ids = correct
        poll.explanation = explanation or None
        poll.explanation_entities = with_found_entities(explanation, explanation_entities) if explanation else None
    if params.get("description"):
        description, entities = _formatted(params["description"], params.get("description_parse_mode"),
                                           params.get("description_entities"), "description")
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise bad_request("poll description is too long")
        poll.description, poll.description_entities = description or None, entities
    now = emu.now_int()
    open_period, close_date = params.get("open_period"), params.get("close_date")
    if open_period is not None and close_date is not None:
        raise bad_request("open_period and close_date can't be used together")
    if open_period is not None:
        if not isinstance(open_period, int) or not MIN_OPEN_PERIOD <= open_period <= MAX_OPEN_PERIOD:
            raise bad_request(f"open_period must be from {MIN_OPEN_PERIOD} to {MAX_OPEN_PERIOD} seconds")
        poll.open_period, poll.close_date = open_period, now + open_period
    elif close_date is not None:
        if not isinstance(close_date, int) or not MIN_OPEN_PERIOD <= close_date - now <= MAX_OPEN_PERIOD:
            raise bad_request(f"close_date must be from {MIN_OPEN_PERIOD} to {MAX_OPEN_PERIOD} seconds in the future")
        poll.open_period, poll.close_date = close_date - now, close_date
    poll.is_closed = _bool(params, "is_closed", False)
    return poll


def user_poll(question: str, options: list[Any]) -> StoredPoll:
    """A poll a user sends to the bot (a regular, anonymous poll nobody else owns)."""
    return StoredPoll(None, question or "?", [{"text": str(o)} for o in options])


# ---- what happens to a poll -------------------------------------------------------------------------


def _poll_update(emu: "BotApiEmulator", poll: StoredPoll) -> int | None:
    if poll.owner is None:
        return None  # bots get updates only about polls they sent
    return emu.enqueue_update(poll.owner, {"poll": poll.to_poll(with_solution=True)})


def _close(emu: "BotApiEmulator", poll: StoredPoll, chat: "ChatState | None") -> int | None:
    poll.is_closed = True
    if poll.owner is not None:
        poll.owner.timed_polls.pop(poll.id, None)
    if chat is not None:
        chat.changed()
    return _poll_update(emu, poll)


def close_due_polls(emu: "BotApiEmulator", bot: "BotState") -> None:
    """Close this bot's timed polls whose ``close_date`` has passed (emulator clock), queueing
    the ``poll`` update Telegram sends when a poll closes by itself."""
    if not bot.timed_polls:
        return
    now = emu.now()
    for poll_id, (poll, chat) in list(bot.timed_polls.items()):
        if poll.is_closed:
            bot.timed_polls.pop(poll_id, None)
        elif poll.close_date is not None and now >= poll.close_date:
            _close(emu, poll, chat)


def vote(emu: "BotApiEmulator", bot: "BotState", chat: "ChatState", msg: "StoredMessage", user: dict[str, Any],
         option_ids: Any) -> list[int]:
    """``user`` answers (or, with no options, retracts their answer to) the poll in ``msg``,
    as a Telegram app does. Returns the ids of the updates queued for the bot that sent the
    poll: ``poll_answer`` (not for anonymous polls) then ``poll``; none when nothing changed.
    Raises VoteRefused for what Telegram refuses, in TDLib's order of checks."""
    poll = msg.poll
    if poll is None:
        raise VoteRefused(400, "the message has no poll")
    close_due_polls(emu, bot)
    if not isinstance(option_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                    for i in option_ids):
        raise VoteRefused(400, "option_ids must be a list of option positions")
    chosen = sorted(set(option_ids))
    if poll.is_closed:
        raise VoteRefused(409, "the poll is closed")
    if len(chosen) > 1 and not poll.allows_multiple_answers:
        raise VoteRefused(400, "the poll allows one answer only")
    if not chosen and not poll.allows_revoting:
        raise VoteRefused(409, "the poll does not allow to retract a vote")
    if any(not 0 <= i < len(poll.options) for i in chosen):
        raise VoteRefused(400, "no such option in the poll")
    previous = poll.votes.get(user["id"])
    if previous is not None and not poll.allows_revoting:
        raise VoteRefused(409, "the poll does not allow to change a vote" if poll.type == "regular"
                          else "a quiz can be answered only once")
    if (previous or []) == chosen:
        return []
    poll.set_vote(user["id"], chosen)
    chat.changed()
    update_ids = []
    if poll.owner is not None and not poll.is_anonymous:
        update_ids.append(emu.enqueue_update(poll.owner, {"poll_answer": {
            "poll_id": poll.id, "user": dict(user), "option_ids": chosen,
            "option_persistent_ids": [str(i) for i in chosen]}}))
    update_id = _poll_update(emu, poll)
    if update_id is not None:
        update_ids.append(update_id)
    return update_ids


def stop_poll(emu: "BotApiEmulator", bot: "BotState", chat: "ChatState", msg: "StoredMessage | None",
              markup: dict[str, Any] | None) -> dict[str, Any]:
    """``stopPoll``: close the bot's poll in ``msg``, set the message's inline keyboard to
    ``markup`` (removed when None, as an edit does) and return the closed ``Poll``."""
    close_due_polls(emu, bot)
    if msg is None or msg.deleted:
        raise bad_request("message with poll to stop not found")
    poll = msg.poll
    if poll is None:
        raise bad_request("message is not a poll")
    if not msg.from_bot or poll.owner is not bot:
        raise bad_request("poll can't be stopped")
    if poll.is_closed:
        raise bad_request("poll has already been closed")
    msg.reply_markup = markup
    _close(emu, poll, chat)
    return poll.to_poll(with_solution=True)


def register(bot: "BotState", chat: "ChatState", poll: StoredPoll) -> None:
    """Remember a timed poll so that it closes when the emulator clock passes its close date."""
    if poll.close_date is not None and not poll.is_closed:
        bot.timed_polls[poll.id] = (poll, chat)

