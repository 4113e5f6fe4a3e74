"""aiogram routers: Telegram updates to flow inputs, flow outputs to replies."""

from aiogram import Router


def get_routers() -> list[Router]:
    """Routers in the order they must see updates: a report in progress first."""
    from nazaha.handlers import followup, menu, report

    return [report.router, followup.router, menu.router]
