"""The staff digest: counts only, in the staff chat's language, sent through the retry
policy; never a designation or anything about one case."""

from __future__ import annotations

import datetime as dt

from nazaha.services.deadlines import DeadlineRules
from nazaha.services.staff_digest import digest_counts, digest_text, send_digest
from nazaha.storage.crypto import TeamPrivateKey
from tests.casework_support import console_store, make_case, sessionmaker_of


async def test_counts_text_and_delivery(tmp_path):
    public = TeamPrivateKey.generate().public_key()
    async for engine in _store(tmp_path):
        sm = sessionmaker_of(engine)
        await make_case(sm, public, designation="R-DIGA22", created_on=dt.date(2026, 11, 29))
        await make_case(sm, public, designation="R-DIGB33", created_on=dt.date(2026, 11, 2))
        await make_case(sm, public, designation="R-DIGC44", created_on=dt.date(2026, 10, 1),
                        status="closed", outcome="out_of_scope")
        async with sm() as session:
            counts = await digest_counts(session, dt.date(2026, 11, 30), dt.date(2026, 11, 29), DeadlineRules())
    assert counts["received"] == 1  # since the 29th
    assert counts["unassigned"] == 2  # open ones
    assert counts["ack_overdue"] == 1  # received on the 2nd, never acknowledged

    english = digest_text(counts, "en")
    assert "1 new report received" in english and "2 open cases without an assignee" in english
    arabic = digest_text(counts, "ar")
    assert "R-" not in english + arabic and arabic != english
    assert "\u2066" in arabic or "واحد" in arabic  # numbers isolated, or spelled out for one/two

    class RecordingBot:
        def __init__(self) -> None:
            self.sent: list[tuple[int, str]] = []

        async def send_message(self, chat_id: int, text: str):
            self.sent.append((chat_id, text))

    bot = RecordingBot()
    assert await send_digest(bot, [-1001, -1002], english) == 2
    assert bot.sent == [(-1001, english), (-1002, english)]


async def _store(tmp_path):
    async with console_store("sqlite", tmp_path) as engine:
        yield engine
