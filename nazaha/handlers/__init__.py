"""aiogram routers: Telegram updates to flow inputs, flow outputs to replies."""

from aiogram import Router


def get_routers() -> list[Router]:
    """Routers in the order they must see updates: "show my receipt" in any state, then a
    report in progress."""
    from nazaha.handlers import chats, followup, menu, receipt_again, report

    return [chats.router, receipt_again.router, report.router, followup.router, menu.router]
