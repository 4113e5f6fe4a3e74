"""What the volunteers' and administrators' trial of the awareness console found (issue 11),
over HTTP: batched counts said on the survey and campaign pages, where an open survey is
published, who may deactivate and activate a campaign, campaign codes without case, target
titles in the console's language, Arabic punctuation and units, the results' footnote; and
migration 0012 (campaign authors, lower-case codes)."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select, text

from nazaha.awareness.campaigns import Campaigns
from nazaha.storage.awareness_models import AwarenessTopic, AwarenessTopicText, Campaign, biased
from tests.console_support import csrf_of
from tests.test_console_awareness import (  # noqa: F401 - the module's world fixture
    BOT,
    TODAY,
    compose,
    member,
    number_of,
    open_survey_via_http,
    set_counts,
    world,
)


def arabic(client) -> None:
    page = client.get("/awareness")
    answer = client.post("/locale", data={"csrf": csrf_of(page.text), "locale": "ar", "back": "/awareness"})
    assert answer.status_code == 303


def unescaped(page: str) -> str:
    return html.unescape(page)


# ------------------------------------------------------------------------------ surveys


async def test_survey_pages_say_answers_are_counted_in_groups_and_closing_loses_the_rest(world):
    w = world
    assert w.settings.aggregate_min_batch == 10
    vera = await member(w, "vera", "volunteer")
    listing = unescaped(vera.get("/awareness/surveys").text)
    assert "Answers are counted in groups of 10, so that nobody's answer can be singled out." in listing
    assert "Up to 9 recent answers may not show yet." in listing

    survey_id = open_survey_via_http(vera)
    page = unescaped(vera.get(f"/awareness/surveys/{survey_id}").text)
    note = re.search(r'id="batch-note">(.*?)</p>', page, re.S).group(1)
    assert "groups of 10" in note and "Up to 9 recent answers" in note
    # Closing warns that the answers the bot holds, not yet a group, are never counted.
    confirm = re.search(r'id="close-survey" data-confirm="([^"]*)"', page).group(1)
    assert "not yet counted (up to 9) will never be" in confirm
    closed = vera.post(f"/awareness/surveys/{survey_id}/close", data={"csrf": csrf_of(page)})
    after = unescaped(vera.get(closed.headers["location"]).text)
    notice = re.search(r'id="closed-notice">(.*?)</p>', after, re.S).group(1)
    assert "no more answers are counted" in notice and "(up to 9) are not counted" in notice
    # Closed: the note no longer says recent answers "may not show yet": they never will.
    note = re.search(r'id="batch-note">(.*?)</p>', after, re.S).group(1)
    assert "may not show yet" not in note
    assert "up to 9 answers given shortly before it closed were not counted and never will be" in note

    # Counted one by one (NAZAHA_AGGREGATE_MIN_BATCH=1): nothing to explain.
    w.console.settings.aggregate_min_batch = 1
    other = open_survey_via_http(vera)
    page = unescaped(vera.get(f"/awareness/surveys/{other}").text)
    assert 'id="batch-note"' not in page and "groups of" not in page
    assert 'data-confirm="Close the survey? No more answers will be counted."' in page
    assert "groups of" not in vera.get("/awareness/surveys").text


async def test_the_survey_pages_say_an_open_survey_is_in_have_your_say_for_everyone(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    listing = unescaped(vera.get("/awareness/surveys").text)
    assert "An open survey is in the bot for everyone, subscribed or not" in listing
    assert "“🗳 Have your say” on the “📚 Learn about corruption” screen" in listing
    assert "A survey reaches subscribers attached to a broadcast" not in listing  # the old, wrong wording

    form = vera.get("/awareness/surveys/new")
    made = vera.post("/awareness/surveys", data={"csrf": csrf_of(form.text), "question_en": "Q?", "options_en": "a\nb"})
    draft = unescaped(vera.get(made.headers["location"]).text)
    where = re.search(r'id="where-shown">(.*?)</p>', draft, re.S).group(1)
    assert "Opening the survey publishes it at once in the bot" in where and "subscribed or not" in where
    survey_id = int(re.search(r"/awareness/surveys/(\d+)", made.headers["location"]).group(1))
    opened = vera.post(f"/awareness/surveys/{survey_id}/open", data={"csrf": csrf_of(draft)})
    page = unescaped(vera.get(opened.headers["location"]).text)
    notice = re.search(r'id="opened-notice">(.*?)</p>', page, re.S).group(1)
    assert "Everyone who uses the bot now finds it under “🗳 Have your say”" in notice
    assert "attach it to a broadcast to ask subscribers" not in page


async def test_a_results_footnote_explains_the_asterisk_of_hidden_cells(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    survey_id = open_survey_via_http(vera)
    await set_counts(w, survey_id, [3, 0, 9])  # "fewer than 5", and its complement withheld
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    assert page.count('class="num small-cell"') == 2  # the stylesheet marks these with "*"
    footnote = re.search(r'<p class="hint footnote" id="results-table-footnote">(.*?)</p>', page, re.S).group(1)
    assert footnote.startswith('<span class="footnote-mark" aria-hidden="true">*</span> A number under 5 is never shown')
    await set_counts(w, survey_id, [7, 6, 0])  # nothing hidden: no "*" to explain
    page = vera.get(f"/awareness/surveys/{survey_id}").text
    assert "small-cell" not in page and "footnote-mark" not in page
    assert 'id="results-table-footnote">A number under 5 is never shown' in page
    css = vera.get("/static/console.css").text
    assert '.small-cell::after { content: " *"; }' in css


# ---------------------------------------------------------------------------- campaigns


def create_campaign(client, code: str, target: str = "rights", name: str = "Posters"):
    page = client.get("/awareness/campaigns").text
    return client.post("/awareness/campaigns", data={"csrf": csrf_of(page), "name": name, "code": code, "target": target})


def campaign_id_of(answer) -> int:
    assert answer.status_code == 303, answer.text
    return int(re.search(r"/awareness/campaigns/(\d+)", answer.headers["location"]).group(1))


def switch(client, campaign_id: int, active: bool):
    page = client.get(f"/awareness/campaigns/{campaign_id}").text
    return client.post(f"/awareness/campaigns/{campaign_id}/active", data={"csrf": csrf_of(page), "active": "1" if active else "0"})


async def campaign_row(w, campaign_id: int) -> Campaign:
    async with w.sm() as session:
        return await session.get(Campaign, campaign_id)


async def test_only_the_author_or_an_admin_pauses_and_only_an_admin_lifts_an_admins_pause(world):
    w = world
    admin = w.admin_browser
    vera = await member(w, "vera", "volunteer")
    omar = await member(w, "omar", "volunteer")
    carl = await member(w, "carl", "caseworker")

    admins = campaign_id_of(create_campaign(admin, "admins-own"))
    veras = campaign_id_of(create_campaign(vera, "veras-own"))
    vera_no, admin_no = await number_of(w, "vera"), await number_of(w, "admin")
    assert (await campaign_row(w, veras)).created_by == vera_no
    assert (await campaign_row(w, admins)).created_by == admin_no
    page = vera.get(f"/awareness/campaigns/{veras}").text
    assert re.search(r'id="campaign-author">vera<', page)

    # Another member (a volunteer, a caseworker) may neither pause nor see the button.
    for client, campaign in ((vera, admins), (omar, veras), (carl, veras)):
        page = client.get(f"/awareness/campaigns/{campaign}").text
        assert 'id="deactivate"' not in page and 'id="state-rule"' in page
        refused = switch(client, campaign, False)
        assert refused.status_code == 303 and refused.headers["location"].endswith("error=not_allowed")
        assert (await campaign_row(w, campaign)).active is True
        assert "Only the campaign's author or an administrator can deactivate or activate it." in unescaped(
            client.get(refused.headers["location"]).text)

    # An admin pauses the volunteer's campaign: she may not lift it, another admin's call.
    assert switch(admin, veras, False).headers["location"].endswith("done=deactivated")
    row = await campaign_row(w, veras)
    assert (row.active, row.paused_by) == (False, admin_no)
    page = unescaped(vera.get(f"/awareness/campaigns/{veras}").text)
    assert 'id="activate"' not in page and re.search(r'id="campaign-paused-by">admin<', page)
    assert "An administrator deactivated this campaign: only an administrator can activate it again." in page
    refused = switch(vera, veras, True)
    assert refused.headers["location"].endswith("error=paused_by_admin")
    assert (await campaign_row(w, veras)).active is False
    assert 'id="activate"' in admin.get(f"/awareness/campaigns/{veras}").text
    assert switch(admin, veras, True).headers["location"].endswith("done=activated")
    row = await campaign_row(w, veras)
    assert (row.active, row.paused_by) == (True, None)

    # Her own pause she lifts herself; another volunteer may not.
    assert switch(vera, veras, False).headers["location"].endswith("done=deactivated")
    assert (await campaign_row(w, veras)).paused_by == vera_no
    assert switch(omar, veras, True).headers["location"].endswith("error=not_allowed")
    assert 'id="activate"' in vera.get(f"/awareness/campaigns/{veras}").text
    assert switch(vera, veras, True).headers["location"].endswith("done=activated")
    assert (await campaign_row(w, veras)).active is True

    # A campaign from before authors were recorded: administrators only.
    async with w.sm.begin() as session:
        session.add(Campaign(code="legacy", name="Legacy", target="rights", active=True, created_on=TODAY))
    async with w.sm() as session:
        legacy = await session.scalar(select(Campaign.id).where(Campaign.code == "legacy"))
    assert switch(vera, legacy, False).headers["location"].endswith("error=not_allowed")
    assert switch(admin, legacy, False).headers["location"].endswith("done=deactivated")


async def test_campaign_codes_do_not_depend_on_case(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    gaza = campaign_id_of(create_campaign(vera, "Gaza-Posters"))
    assert (await campaign_row(w, gaza)).code == "gaza-posters"
    page = vera.get(f"/awareness/campaigns/{gaza}").text
    assert f'<a href="https://t.me/{BOT}?start=c_gaza-posters"' in page
    for code in ("gaza-posters", "GAZA-POSTERS", " gaza-Posters "):
        refused = create_campaign(vera, code)
        assert refused.status_code == 400 and "This code is taken (upper and lower case count as the same letter)" in refused.text
    random = campaign_id_of(create_campaign(vera, ""))
    assert re.fullmatch(r"[a-z0-9]{10}", (await campaign_row(w, random)).code)

    # A mixed-case code kept from before 0012 (its lower case was another's) still blocks.
    async with w.sm.begin() as session:
        session.add(Campaign(code="Hebron", name="Old", target="rights", active=True, created_on=TODAY))
    refused = create_campaign(vera, "hebron")
    assert refused.status_code == 400 and "This code is taken" in refused.text

    # The bot finds a link whatever its case; a kept mixed-case code by its exact spelling.
    async with w.sm.begin() as session:
        session.add(Campaign(code="hebron", name="New", target="forms", active=True, created_on=TODAY))
    bot = Campaigns(w.sm)
    assert (await bot.find("GAZA-posters")).id == gaza
    assert (await bot.find("gaza-posters")).id == gaza
    async with w.sm() as session:
        ids = dict((await session.execute(select(Campaign.code, Campaign.id).where(Campaign.code.in_(["Hebron", "hebron"])))).all())
    assert (await bot.find("Hebron")).id == ids["Hebron"]
    assert (await bot.find("hebron")).id == ids["hebron"] == (await bot.find("HEBRON")).id
    assert await bot.find("gaza") is None


async def test_campaign_targets_are_named_in_the_consoles_language(world):
    w = world
    async with w.sm.begin() as session:
        session.add(AwarenessTopic(code="trial_topic", position=99, origin="console"))
        await session.flush()
        session.add(AwarenessTopicText(topic="trial_topic", language="en", title="Trial topic", summary=""))
        session.add(AwarenessTopicText(topic="trial_topic", language="ar", title="موضوع التجربة", summary=""))
    vera = await member(w, "vera", "volunteer")
    campaign_id = campaign_id_of(create_campaign(vera, "trial-posters", target="trial_topic"))
    for path in ("/awareness/campaigns", f"/awareness/campaigns/{campaign_id}"):
        page = vera.get(path).text
        assert "Topic · <bdi>Trial topic</bdi>" in page and "<bdi>موضوع التجربة</bdi>" not in page, path
    arabic(vera)
    for path in ("/awareness/campaigns", f"/awareness/campaigns/{campaign_id}"):
        page = vera.get(path).text
        assert "<bdi>موضوع التجربة</bdi>" in page and "<bdi>Trial topic</bdi>" not in page, path


async def test_campaign_pages_say_opens_are_counted_in_groups(world):
    w = world
    vera = await member(w, "vera", "volunteer")
    campaign_id = campaign_id_of(create_campaign(vera, "counted"))
    for path in ("/awareness/campaigns", f"/awareness/campaigns/{campaign_id}"):
        note = re.search(r'id="batch-note">(.*?)</p>', vera.get(path).text, re.S).group(1)
        assert "Opens are counted in groups of at least 10, all campaigns together" in note, path
        assert "the latest opens may not show yet" in note
    w.console.settings.aggregate_min_batch = 1
    note = re.search(r'id="batch-note">(.*?)</p>', vera.get("/awareness/campaigns").text, re.S).group(1)
    assert "groups" not in note and "the latest opens may not show yet" in note


# ------------------------------------------------------------------------- Arabic wording


async def test_arabic_pages_use_the_arabic_comma_and_a_translated_unit(world):
    w = world
    admin = w.admin_browser
    broadcast_id = compose(admin)  # in Arabic and English
    arabic(admin)
    page = admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    languages = re.search(r"<dd>(العربية.*?)</dd>", page).group(1)
    assert languages == "العربية، الإنجليزية" and "," not in languages
    edit = admin.get(f"/awareness/broadcasts/{broadcast_id}/edit").text
    assert "\u206610\u2069 ميغابايت" in edit and "10 MB" not in edit  # the unit, isolated number and all
    admin.post("/locale", data={"csrf": csrf_of(page), "locale": "en", "back": "/awareness"})
    page = admin.get(f"/awareness/broadcasts/{broadcast_id}").text
    assert "<dd>Arabic, English</dd>" in page
    assert "photo of at most 10 MB and 25 megapixels" in admin.get(f"/awareness/broadcasts/{broadcast_id}/edit").text


# ---------------------------------------------------------------------------- migration



async def test_migration_0012_records_authors_and_lowercases_codes_without_a_clash(empty_url):
    from alembic import command
    from sqlalchemy import inspect

    from nazaha.storage.database import create_engine
    from nazaha.storage.migrations import alembic_config

    config = alembic_config(empty_url)
    engine = create_engine(empty_url)

    def migrate(step, target):
        def run(sync_conn):
            config.attributes["connection"] = sync_conn
            step(config, target)
        return run

    async def rows(sql: str) -> list[tuple]:
        async with engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(text(sql))]

    async def columns() -> set[str]:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("campaigns")})

    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrate(command.upgrade, "0011"))
            for n, code in enumerate(("Gaza", "gaza", "Ramallah", "nablus", "JENIN-2026"), start=1):
                await conn.execute(text("INSERT INTO campaigns (id, code, name, target, active, created_on) "
                                        "VALUES (:id, :code, :code, 'rights', true, '2026-11-01')"), {"id": n, "code": code})
                await conn.execute(text("INSERT INTO campaign_days (campaign_id, day, biased_opens) "
                                        "VALUES (:id, '2026-11-02', :opens)"), {"id": n, "opens": biased(n)})
        async with engine.begin() as conn:
            await conn.run_sync(migrate(command.upgrade, "0012"))
        assert {"created_by", "paused_by"} <= await columns()
        assert await rows("SELECT id, code, created_by, paused_by FROM campaigns ORDER BY id") == [
            (1, "Gaza", None, None), (2, "gaza", None, None), (3, "ramallah", None, None),
            (4, "nablus", None, None), (5, "jenin-2026", None, None)]
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE campaigns SET created_by = 7, paused_by = 7, active = false WHERE id = 4"))
            await conn.run_sync(migrate(command.downgrade, "0011"))
        assert {"created_by", "paused_by"}.isdisjoint(await columns())
        # Plain ALTER TABLE: no copy of the table whose DROP would cascade to the counts.
        assert await rows(f"SELECT campaign_id, biased_opens - {biased(0)} FROM campaign_days ORDER BY 1") == [
            (n, n) for n in range(1, 6)]
        assert len(await rows("SELECT id FROM campaigns")) == 5
    finally:
        await engine.dispose()


@pytest.mark.parametrize("code", ["Gaza", "GAZA", "gaza"])
def test_normal_code_is_lower_case(code):
    from nazaha.awareness.campaign_editor import normal_code

    assert normal_code(f" {code} ") == "gaza"

