"""aiogram routers: Telegram updates to flow inputs, flow outputs to replies."""

from aiogram import Router


def get_routers() -> list[Router]:
    """Routers in the order they must see updates: "show my receipt", /stop, Unsubscribe,
    survey answers and quiz counts in any state, then a report or follow-up in progress,
    then the menu (with Learn)."""
    from nazaha.handlers import awareness, chats, followup, menu, receipt_again, report

    return [
        chats.router,
        receipt_again.router,
        awareness.router,
        report.router,
        followup.router,
        menu.router,
    ]
