""""Show my receipt": a receipt that could not be delivered, sent once on request; and
"delete it from this chat", the button under every receipt.

The user was told at their next contact (``Reply.tell_if_receipt_waiting``); this router
comes first, so the buttons work whatever the conversation's state.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery

from nazaha.handlers import callbacks as cb
from nazaha.handlers import screens
from nazaha.handlers.context import Reply

router = Router(name="receipt_again")


@router.callback_query(F.data == cb.show_receipt())
async def on_show_receipt(query: CallbackQuery, reply: Reply) -> None:
    receipts, user_id = reply.services.receipts, reply.user_id
    kept = await receipts.take(user_id)  # forgotten now: shown at most once
    if kept is None:
        reply.say(screens.receipt_gone())
        return
    # If Telegram will not take it this time either, it goes back until its first expiry.
    reply.outbox.send(
        reply.chat_id,
        screens.receipt(kept.receipt),
        screens.receipt_keyboard(),
        protect=True,
        on_undelivered=lambda: receipts.keep(user_id, kept.receipt, expires_at=kept.expires_at),
    )


@router.callback_query(F.data == cb.delete_receipt())
async def on_delete_receipt(query: CallbackQuery, reply: Reply) -> None:
    """The user wrote the receipt down: the message under the button leaves the chat (the
    token of a seized bot host could copy it from there; so could anyone with the phone)."""
    if query.message is not None:
        reply.outbox.delete(reply.chat_id, query.message.message_id)
    reply.outbox.callback_notice(screens.receipt_deleted_from_chat())
