"""Reports: sealed per field, opened by the team key or by the reporter's receipt."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from sqlalchemy import select, update

from nazaha.storage.crypto import (
    KDF_FLOOR,
    KDF_TESTING,
    KdfParams,
    TamperedData,
    TeamPrivateKey,
    UnknownKeyId,
    WeakKdfParameters,
    format_receipt,
)
from nazaha.storage.models import Report, ReportField, SystemSetting
from nazaha.storage.reports import (
    OpenedReport,
    ReportDraft,
    ReportNotFound,
    ReportVault,
    SystemNotInitialised,
    initialise_system,
)
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.unit_of_work import DuplicateUpdate

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

NASTY = (
    "\u200fرشوة\u200b في\u200e مكتب\u00a0الترخيص\x00\x07\x1b[31m\r\n\t"
    " leading and trailing spaces  \ufeff😀"
)
LONG = ("أ" * 4000) + ("x" * 200) + "\u200f"


def draft(**fields: str) -> ReportDraft:
    return ReportDraft(
        kind="corruption",
        triage={"category": "bribery", "sector": "health", "governorate": "nablus"},
        fields=fields or {"description": "a bribe was asked for a permit"},
    )


async def store(
    sessionmaker,
    vault: ReportVault,
    d: ReportDraft,
    update_id: int | None = None,
    writer: ReportWriter | None = None,
):
    """Seal and store a report as the bot does: a report-side batch in its own transaction."""
    sealed = await vault.seal(d)
    batch = ReportBatch(bot_id=1 if update_id else None, update_id=update_id)
    vault.store(batch, sealed)
    await (writer or ReportWriter(sessionmaker, max_delay=0)).commit(batch)
    return sealed


async def test_seal_store_and_open_both_ways(sessionmaker, vault, team_key):
    fields = {
        "description": NASTY,
        "when": "  last week ",
        "contact_name": "",
        "contact_phone": "+970 59 ١٢٣ ٤٥٦٧",
        "long": LONG,
    }
    assert len(LONG) > 4096
    sealed = await vault.seal(draft(**fields))
    async with sessionmaker() as session:
        assert (await session.scalars(select(Report))).all() == []  # seal() writes nothing

    batch = ReportBatch(bot_id=1, update_id=100)
    vault.store(batch, sealed)
    async with sessionmaker() as session:
        assert (await session.scalars(select(Report))).all() == []  # store() only queues
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)

    by_team = await vault.open_with_team(sealed.designation, team_key)
    assert by_team == OpenedReport(
        report_id=sealed.report_id,
        designation=sealed.designation,
        kind="corruption",
        status="received",
        created_on=sealed.created_on,
        triage={"category": "bribery", "sector": "health", "service": None, "governorate": "nablus"},
        fields=fields,
    )
    assert by_team.fields == fields  # exact, byte for byte, no stripping

    by_receipt = await vault.open_with_receipt(sealed.receipt)
    assert by_receipt == by_team

    # The reporter may type the receipt grouped, in Arabic-Indic digits, with marks.
    typed = "\u200f" + format_receipt(sealed.receipt).translate(ARABIC_INDIC) + " "
    assert await vault.open_with_receipt(typed) == by_team


async def test_stored_rows_hold_no_plaintext(sessionmaker, vault):
    sealed = await store(sessionmaker, vault, draft(description="secret-marker رشوة"))
    async with sessionmaker() as session:
        report = await session.get(Report, sealed.report_id)
        cells = [value for value in vars(report).values() if isinstance(value, (bytes, str))]
        cells += (await session.scalars(select(ReportField.sealed))).all()
        cells += (await session.scalars(select(SystemSetting.value))).all()
    for cell in cells:
        raw = cell if isinstance(cell, bytes) else cell.encode()
        assert b"secret-marker" not in raw and "رشوة".encode() not in raw
        assert sealed.receipt.encode() not in raw


async def test_unknown_or_malformed_receipt_gives_none(sessionmaker, vault):
    sealed = await store(sessionmaker, vault, draft())
    wrong = ("1" if sealed.receipt[0] != "1" else "2") + sealed.receipt[1:]
    assert await vault.open_with_receipt(wrong) is None
    assert await vault.open_with_receipt("not a receipt") is None
    assert await vault.open_with_receipt(sealed.receipt[:-1]) is None
    assert await vault.open_with_receipt("") is None


async def test_field_moved_to_another_report_fails_to_open(sessionmaker, vault, team_key):
    a = await store(sessionmaker, vault, draft(description="report A"))
    b = await store(sessionmaker, vault, draft(description="report B"))
    async with sessionmaker.begin() as session:
        sealed_a = await session.scalar(
            select(ReportField.sealed).where(
                ReportField.report_id == a.report_id, ReportField.name == "description"
            )
        )
        await session.execute(
            update(ReportField)
            .where(ReportField.report_id == b.report_id, ReportField.name == "description")
            .values(sealed=sealed_a)
        )
    with pytest.raises(TamperedData):
        await vault.open_with_team(b.designation, team_key)
    with pytest.raises(TamperedData):
        await vault.open_with_receipt(b.receipt)
    assert (await vault.open_with_team(a.designation, team_key)).fields == {
        "description": "report A"
    }


async def test_field_renamed_within_a_report_fails_to_open(sessionmaker, vault, team_key):
    a = await store(sessionmaker, vault, draft(description="d", when="w"))
    async with sessionmaker.begin() as session:
        await session.execute(
            update(ReportField)
            .where(ReportField.report_id == a.report_id, ReportField.name == "when")
            .values(name="when_renamed")
        )
    with pytest.raises(TamperedData):
        await vault.open_with_team(a.designation, team_key)


async def test_team_key_errors(sessionmaker, vault):
    sealed = await store(sessionmaker, vault, draft())
    with pytest.raises(UnknownKeyId):
        await vault.open_with_team(sealed.designation, TeamPrivateKey.generate())
    with pytest.raises(ReportNotFound):
        await vault.open_with_team("R-NOPE00", TeamPrivateKey.generate())


async def test_receipt_designation_and_id_are_random_and_unrelated(sessionmaker, vault):
    one = await vault.seal(draft())
    two = await vault.seal(draft())  # the same answers
    assert len({one.receipt, two.receipt}) == 2
    assert len({one.designation, two.designation}) == 2
    assert len({one.report_id, two.report_id}) == 2
    assert len({one.receipt_lookup, two.receipt_lookup}) == 2
    for s in (one, two):
        assert len(s.receipt) == 20 and s.receipt.isdigit()
        assert len(s.report_id) == 32 and int(s.report_id, 16) >= 0
        assert s.designation.startswith("R-") and len(s.designation) == 8
        assert s.receipt not in s.report_id and s.designation[2:] not in s.receipt
        assert s.receipt not in repr(s)
    # The team-side and reporter-side wraps differ and neither is the lookup value.
    assert one.wrapped_key_team != one.wrapped_key_reporter
    assert one.receipt_lookup not in (one.wrapped_key_reporter, one.wrapped_key_team)


async def test_designation_collision_at_store_time_is_retried(sessionmaker, vault, team_key):
    first = await store(sessionmaker, vault, draft(description="first"))
    second = await vault.seal(draft(description="second"))
    object.__setattr__(second, "designation", first.designation)  # simulate a collision
    batch = ReportBatch()
    vault.store(batch, second)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    assert second.designation != first.designation
    opened = await vault.open_with_team(second.designation, team_key)
    assert opened.fields == {"description": "second"}
    assert (await vault.open_with_receipt(second.receipt)).designation == second.designation


async def test_duplicate_update_does_not_store_the_report(sessionmaker, vault):
    await store(sessionmaker, vault, draft(description="first"), update_id=55)
    sealed = await vault.seal(draft(description="again"))
    batch = ReportBatch(bot_id=1, update_id=55)
    vault.store(batch, sealed)
    with pytest.raises(DuplicateUpdate):
        await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    assert await vault.open_with_receipt(sealed.receipt) is None
    async with sessionmaker() as session:
        assert len((await session.scalars(select(Report))).all()) == 1


@pytest.mark.parametrize("delay", [0, 0.02])
async def test_concurrent_reports(sessionmaker, vault, team_key, delay):
    """Twenty reports at once, through one writer as in the bot: with a delay they share
    transactions; every one is stored and opens."""
    writer = ReportWriter(sessionmaker, max_delay=delay, rng=random.Random(8))
    sealed = await asyncio.gather(
        *(
            store(sessionmaker, vault, draft(description=f"report {i}"), update_id=1000 + i, writer=writer)
            for i in range(20)
        )
    )
    for i, s in enumerate(sealed):
        assert (await vault.open_with_receipt(s.receipt)).fields == {"description": f"report {i}"}
    assert len({s.designation for s in sealed}) == 20


async def test_designation_collision_within_one_transaction_is_retried(sessionmaker, vault, team_key):
    """Two reports sealed with the same designation and written in the same transaction:
    the second sees the first (flushed in its savepoint) and takes another."""
    writer = ReportWriter(sessionmaker, max_delay=0.02, rng=random.Random(2))
    one = await vault.seal(draft(description="one"))
    two = await vault.seal(draft(description="two"))
    object.__setattr__(two, "designation", one.designation)
    batches = []
    for sealed in (one, two):
        batches.append(ReportBatch())
        vault.store(batches[-1], sealed)
    await asyncio.gather(*(writer.commit(b) for b in batches))
    assert one.designation != two.designation
    assert (await vault.open_with_team(one.designation, team_key)).fields == {"description": "one"}
    assert (await vault.open_with_team(two.designation, team_key)).fields == {"description": "two"}


async def test_system_settings_and_load_checks(sessionmaker, team_key):
    with pytest.raises(SystemNotInitialised, match="nazaha init"):
        await ReportVault.load(sessionmaker, team_key.public_key(), kdf_floor=KDF_TESTING)
    await initialise_system(sessionmaker, team_key.public_key(), KDF_TESTING)
    async with sessionmaker() as session:
        before = dict((await session.execute(select(SystemSetting.name, SystemSetting.value))).all())
    await initialise_system(sessionmaker, TeamPrivateKey.generate().public_key(), KDF_FLOOR)
    async with sessionmaker() as session:
        after = dict((await session.execute(select(SystemSetting.name, SystemSetting.value))).all())
    assert before == after  # idempotent: nothing replaced
    assert set(after) == {"receipt_salt", "receipt_kdf", "team_public_key", "team_key_id"}
    assert json.loads(after["receipt_kdf"]) == KDF_TESTING.to_dict()
    assert len(after["receipt_salt"]) >= 16

    with pytest.raises(RuntimeError, match="not the one"):
        await ReportVault.load(sessionmaker, TeamPrivateKey.generate().public_key(), kdf_floor=KDF_TESTING)
    with pytest.raises(WeakKdfParameters):
        await ReportVault.load(sessionmaker, team_key.public_key())  # production floor


async def test_load_from_a_public_key_file(sessionmaker, team_key, data_dir):
    path = data_dir / "team_public.key"
    path.write_bytes(team_key.public_key().to_bytes())
    await initialise_system(sessionmaker, team_key.public_key(), KDF_TESTING)
    vault = await ReportVault.load(sessionmaker, path, kdf_floor=KDF_TESTING)
    sealed = await store(sessionmaker, vault, draft())
    assert (await vault.open_with_team(sealed.designation, team_key)).kind == "corruption"


def test_vault_refuses_weak_kdf(team_key):
    with pytest.raises(WeakKdfParameters):
        ReportVault(None, team_key.public_key(), b"s" * 16, KdfParams(64, 1, 1))  # type: ignore[arg-type]


def test_draft_validation():
    with pytest.raises(ValueError):
        ReportDraft(kind="gossip", triage={}, fields={})
    with pytest.raises(ValueError):
        ReportDraft(kind="complaint", triage={"name": "x"}, fields={})


# --------------------------------------------------------------------------- reporter public key


async def stored_public_key(sessionmaker, report_id: str) -> bytes | None:
    async with sessionmaker() as session:
        value = await session.scalar(
            select(Report.reporter_public_key).where(Report.id == report_id)
        )
    return None if value is None else bytes(value)


async def test_a_new_report_stores_the_public_key_derived_from_its_receipt(sessionmaker, vault):
    from nazaha.storage.crypto import derive_reporter_keys

    sealed = await store(sessionmaker, vault, draft())
    other = await store(sessionmaker, vault, draft())
    stored = await stored_public_key(sessionmaker, sealed.report_id)
    assert stored is not None and len(stored) == 1216
    keys = derive_reporter_keys(
        format_receipt(sealed.receipt).translate(ARABIC_INDIC), vault._salt, KDF_TESTING, KDF_TESTING
    )
    assert stored == keys.kem_private().public_key().to_bytes()
    assert await stored_public_key(sessionmaker, other.report_id) not in (None, stored)
    # the unlocked case carries the same key, and nothing is missing
    case = await vault.unlock_with_receipt(sealed.receipt)
    assert case.reporter_public_key == stored and not case.reporter_public_key_missing
    assert stored.hex() not in repr(case)
    batch = ReportBatch()
    vault.store_reporter_public_key(batch, case)
    assert len(batch) == 0  # nothing to write


async def test_a_legacy_report_gets_its_public_key_at_the_next_receipt_unlock(
    sessionmaker, vault, team_key
):
    legacy = await store(sessionmaker, vault, draft())
    kept = await store(sessionmaker, vault, draft())
    kept_key = await stored_public_key(sessionmaker, kept.report_id)
    async with sessionmaker() as session, session.begin():  # as if stored before 0007
        await session.execute(
            update(Report).where(Report.id == legacy.report_id).values(reporter_public_key=None)
        )
    by_team = await vault.unlock_with_team(legacy.designation, team_key)
    assert not by_team.reporter_public_key_missing and by_team.reporter_public_key == b""

    case = await vault.unlock_with_receipt(format_receipt(legacy.receipt))
    assert case.reporter_public_key_missing and len(case.reporter_public_key) == 1216
    with pytest.raises(TypeError):  # never in an update's unit of work
        from nazaha.storage.unit_of_work import UnitOfWork

        vault.store_reporter_public_key(UnitOfWork(sessionmaker), case)
    batch = ReportBatch()
    vault.store_reporter_public_key(batch, case)
    assert len(batch) == 1
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    assert await stored_public_key(sessionmaker, legacy.report_id) == legacy.reporter_public_key
    assert await stored_public_key(sessionmaker, kept.report_id) == kept_key  # untouched
    again = await vault.unlock_with_receipt(legacy.receipt)
    assert not again.reporter_public_key_missing

    # a stale backfill never overwrites a key that is there
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Report).where(Report.id == legacy.report_id).values(reporter_public_key=b"x" * 1216)
        )
    batch = ReportBatch()
    vault.store_reporter_public_key(batch, case)
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)
    assert await stored_public_key(sessionmaker, legacy.report_id) == b"x" * 1216
