"""What a conversation leaves in the chat, and its deletion: the pure span of message ids
(nazaha/flows/chat_trail.py), the flows' ClearChat effects, and the outbox's deletions."""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import DeleteMessages, SendMessage
from nazaha.bot.retry import RetryPolicy
from nazaha.flows import followup_flow as fu
from nazaha.flows import report_flow as flow
from nazaha.flows.chat_trail import LATE, MAX_IDS, ClearChat, span_ids, widen
from nazaha.handlers import callbacks as cb
from nazaha.handlers.outbox import Outbox

CASE = {"report_id": "ab" * 16, "data_key": "secret"}
DESCRIPTION = "The clerk asked for money to register the deed, twice."


def test_the_span_starts_at_the_users_first_message_never_at_a_pressed_button():
    assert widen(0, 0, (12,), typed=False) == (0, 12)  # a button under message 12
    assert widen(0, 12, (15,), typed=True) == (15, 15)
    assert widen(15, 20, (3,), typed=False) == (15, 20)  # an old message's button: no move
    assert widen(15, 20, (14, 16), typed=True) == (14, 20)
    assert widen(15, 20, (), typed=True) == (15, 20) == widen(15, 20, (0,), typed=True)


def test_span_ids_cover_the_span_and_late_replies_under_a_bound():
    assert span_ids(0, 50) == ()  # no message of the user: nothing known to delete
    assert span_ids(0, 50, (7, 0)) == (7,)
    assert span_ids(10, 12) == tuple(range(10, 12 + LATE + 1))
    assert span_ids(10, 12, below=14) == (10, 11, 12, 13)
    assert span_ids(10, 12, (3,)) == (3, *range(10, 12 + LATE + 1))
    big = span_ids(1, 5000)
    assert len(big) == MAX_IDS and big[-1] == 5000 + LATE  # the newest are kept


def drive(draft, *events):
    effects = ()
    for event in events:
        t = flow.step(draft, event)
        draft, effects = t.draft, t.effects
    return draft, effects


def to_review(typed_start: bool):
    """A complaint begun by ``/complaint`` (message 1) or by a menu button (message 1, the
    bot's), its description typed as message 9, up to the review (pressed: message 14)."""
    draft = flow.start(flow.Kind.COMPLAINT, safety_seen=True, anchor=1, typed=typed_start).draft
    draft, _ = drive(draft, flow.Choose("service", "health"), flow.Choose("governorate", "gaza"))
    draft = flow.seen(draft, (9,), typed=True)
    draft, _ = drive(draft, flow.Text(DESCRIPTION, 9), flow.Done(), flow.Done(),
                     flow.Choose("contact", "anonymous"), flow.Choose("notify", "none"))
    assert draft.step is flow.Step.REVIEW
    return flow.seen(draft, (14,), typed=False)


def test_submitting_clears_the_chat_first_then_stores():
    draft = to_review(typed_start=True)
    assert (draft.first_id, draft.last_id) == (1, 14)
    _, effects = drive(draft, flow.Submit())
    assert effects[0] == ClearChat(tuple(range(1, 14 + LATE + 1)))
    assert isinstance(effects[1], flow.SubmitReport)
    # Begun from a button, the questions before the first typed answer stay.
    _, effects = drive(to_review(typed_start=False), flow.Submit())
    assert effects[0] == ClearChat(tuple(range(9, 14 + LATE + 1)))


def test_discarding_clears_the_chat_before_saying_so_and_a_draft_survives_a_round_trip():
    draft = to_review(typed_start=True)
    assert flow.Draft.from_dict(draft.to_dict()) == draft
    gone, effects = drive(draft, flow.Cancel(), flow.ConfirmCancel(discard=True))
    assert gone is None and isinstance(effects[0], ClearChat) and effects[1] == flow.Discarded()
    # A draft without any message of the user's has nothing to clear.
    empty = flow.start(flow.Kind.CORRUPTION, safety_seen=True).draft
    _, effects = drive(empty, flow.Cancel(), flow.ConfirmCancel(discard=True))
    assert effects == (flow.Discarded(),)


def opened_session():
    session = fu.start(3, typed=True).session  # /followup is message 3
    session = fu.seen(session, (4,), typed=True)  # the receipt
    return fu.step(session, fu.Unlocked(CASE)).session


def test_a_follow_up_keeps_its_span_and_clears_it_at_the_end():
    session = opened_session()
    assert session.step is fu.FStep.CASE and (session.first_id, session.last_id) == (3, 4)
    assert fu.Session.from_dict(session.to_dict()) == session
    t = fu.step(session, flow.Choose("case", "end"))
    assert t.session is None and t.effects[0] == ClearChat(tuple(range(3, 4 + LATE + 1)))
    assert t.effects[-1] == fu.End()


def test_a_follow_up_reply_or_file_leaves_the_chat_once_stored():
    session = fu.step(opened_session(), flow.Choose("case", "reply")).session
    t = fu.step(session, flow.Text("A reply for the caseworkers.", 8))
    assert t.effects[:2] == (fu.SendReply("A reply for the caseworkers."), fu.DeleteTyped())
    item = flow.EvidenceItem(id="c" * 32, kind="photo", size=10, caption="a caption")
    t = fu.step(opened_session(), flow.Stored(item, CASE))
    assert t.effects[:2] == (fu.SaveEvidence(item), fu.DeleteTyped())


def test_an_expired_session_clears_its_span_but_not_the_reply_it_keeps():
    session = fu.step(opened_session(), flow.Choose("case", "reply")).session
    session = fu.seen(session, (6,), typed=False)
    t = fu.expired(session, flow.Text("Kept for later.", 9))
    clear = next(e for e in t.effects if isinstance(e, ClearChat))
    assert clear.message_ids == tuple(range(3, 9))  # under the kept reply (9)
    assert t.session.pending_reply == "Kept for later." and t.session.pending_id == 9
    assert t.session.first_id == 9
    # Unlocked again and sent, the kept reply's message is deleted too.
    waiting = fu.step(t.session, fu.Unlocked(CASE)).session
    assert waiting.step is fu.FStep.CONFIRM_REPLY and waiting.first_id == 9
    sent = fu.step(waiting, flow.Choose("confirm_reply", "send"))
    assert sent.effects[:2] == (fu.SendReply("Kept for later."), flow.DeleteMessage(9))


class RecordingBot:
    """Records the methods called; refuses deleteMessages if told to."""

    def __init__(self, refuse_deletions: bool = False) -> None:
        self.refuse = refuse_deletions
        self.calls: list = []

    async def __call__(self, method):
        self.calls.append(method)
        if self.refuse and isinstance(method, DeleteMessages):
            raise TelegramBadRequest(method=method, message="Bad Request: message can't be deleted")
        return True


async def no_sleep(_: float) -> None:
    return None


async def test_the_outbox_deletes_first_in_batches_and_tells_only_if_something_went():
    bot = RecordingBot()
    outbox = Outbox(bot, RetryPolicy(sleep=no_sleep))  # type: ignore[arg-type]
    outbox.answer_callback("q1")
    outbox.send(5, "the receipt", protect=True)
    cleared = outbox.clear(5, tuple(range(1, 251)))
    outbox.send(5, "deleted for your safety", only_if=cleared)
    outbox.send(5, "what next")
    await outbox.flush()
    kinds = [type(m).__name__ for m in bot.calls]
    assert kinds == ["DeleteMessages"] * 3 + ["AnswerCallbackQuery", "SendMessage", "SendMessage", "SendMessage"]
    assert [len(m.message_ids) for m in bot.calls[:3]] == [100, 100, 50]
    assert bot.calls[4].protect_content is True and cleared.done

    refused = RecordingBot(refuse_deletions=True)
    outbox = Outbox(refused, RetryPolicy(sleep=no_sleep))  # type: ignore[arg-type]
    cleared = outbox.clear(5, (7, 8))
    outbox.send(5, "the receipt", protect=True)
    outbox.send(5, "deleted for your safety", only_if=cleared)
    outbox.send(5, "what next")
    await outbox.flush()  # a refusal never stops the rest
    texts = [m.text for m in refused.calls if isinstance(m, SendMessage)]
    assert texts == ["the receipt", "what next"] and not cleared.done


def test_the_delete_receipt_button_parses():
    assert cb.parse(cb.delete_receipt()) == cb.DeleteReceipt()
    assert cb.parse("s:deleted") is None
