"""Shared pieces of the awareness tests: sample content files and a clean database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

AWARENESS_TABLES = (
    "awareness_item_texts", "awareness_items", "awareness_topic_texts", "awareness_topics",
    "quiz_counts", "survey_answer_markers", "survey_counts", "survey_texts", "surveys",
    "campaign_days", "campaigns", "subscriber_topics", "subscribers",
)

FORMS_EN = '''
[topic]
code = "forms"
position = 10
title = "Forms of corruption"
summary = "Bribery, embezzlement, nepotism and more."

[[item]]
code = "bribery"
kind = "article"
position = 10
title = "Bribery"
body = """**Bribery** is offering or taking something of value to sway a decision.

Read more at [the coalition](https://www.aman-palestine.org)."""
sources = ["UNCAC, article 15"]

[[item]]
code = "nepotism"
kind = "article"
position = 20
title = "Nepotism and wasta"
body = "Favouring relatives and friends in public posts."
sources = []

[[item]]
code = "forms_quiz_1"
kind = "quiz"
position = 90
title = "Which of these is bribery?"
options = ["A gift to sway a decision", "A receipt for a fee", "A public tender"]
correct = 0
explanation = "A gift *given to sway* a decision is a bribe."
sources = ["UNCAC, article 15"]
'''

FORMS_AR = '''
[topic]
code = "forms"
position = 10
title = "أشكال الفساد"
summary = "الرشوة والاختلاس والمحسوبية."

[[item]]
code = "bribery"
kind = "article"
position = 10
title = "الرشوة"
body = "**الرشوة** هي عرض شيء ذي قيمة أو قبوله للتأثير في قرار."
sources = ["اتفاقية الأمم المتحدة لمكافحة الفساد، المادة 15"]

[[item]]
code = "forms_quiz_1"
kind = "quiz"
position = 90
title = "أيّ مما يلي رشوة؟"
options = ["هدية للتأثير في قرار", "إيصال رسوم", "عطاء عام"]
correct = 0
explanation = "الهدية المقدّمة للتأثير في قرار رشوة."
sources = []
'''

RIGHTS_EN = '''
[topic]
code = "rights"
position = 20
title = "Your rights"
summary = "Access to information and protection."

[[item]]
code = "access_to_information"
kind = "article"
position = 10
title = "Access to information"
body = "You may ask public bodies for information."
sources = ["A source"]
'''


def write_content(root: Path, files: dict[str, str]) -> Path:
    """``files``: "<lang>/<name>.toml" -> text, under ``root``/<lang>/awareness/. Returns
    ``root`` (a locales dir)."""
    for name, body in files.items():
        language, file_name = name.split("/")
        folder = root / language / "awareness"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_name).write_text(body, encoding="utf-8")
    return root


async def clean_awareness(engine) -> None:
    """Empty the awareness tables (PostgreSQL's test database lives for the whole run)."""
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(AWARENESS_TABLES)} RESTART IDENTITY CASCADE"))
        else:
            for table in AWARENESS_TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
