"""Evidence: the one list of kinds, captions, albums (fake clock) and images by content."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest
from aiogram.types import Message, Update
from PIL import Image

from nazaha.bot.app import build_i18n
from nazaha.flows import followup_flow as fu
from nazaha.flows import report_flow as flow
from nazaha.flows.evidence_kinds import EVIDENCE_KINDS, FILE_FIELDS
from nazaha.handlers import labels, screens
from nazaha.handlers.albums import AlbumCollector, AlbumMiddleware
from nazaha.handlers.evidence import album_of, attach_of, file_of
from nazaha.handlers.report import evidence_record
from nazaha.storage import cases as cases_module
from nazaha.storage.blobs import BlobStore
from nazaha.storage.cases import CaseService
from nazaha.storage.models import Evidence
from nazaha.storage.reports import ReportDraft, new_sealing_context
from nazaha.storage.report_writes import ReportBatch, ReportWriter
from nazaha.storage.scrub import scrub_image, sniff_image

I18N = build_i18n()
CAPTION = "signed by the deputy director on 3 March, stamp no. 4471"
CTX = {"report_id": "0" * 32, "data_key": "AA=="}


def message(kind: str, *, caption: str | None = None, group: str | None = None, message_id: int = 1) -> Message:
    """A Telegram message of ``kind`` as Telegram sends it (only the fields that matter)."""
    file = {"file_id": f"F{kind}{message_id}", "file_unique_id": f"U{message_id}", "file_size": 1234}
    media = {
        "photo": {"photo": [{**file, "width": 90, "height": 90}, {**file, "width": 900, "height": 900}]},
        "document": {"document": {**file, "file_name": "a.pdf", "mime_type": "application/pdf"}},
        "voice": {"voice": {**file, "duration": 2, "mime_type": "audio/ogg"}},
        "audio": {"audio": {**file, "duration": 2, "mime_type": "audio/mpeg"}},
        "video": {"video": {**file, "width": 1, "height": 1, "duration": 2, "mime_type": "video/mp4"}},
        "video_note": {"video_note": {**file, "length": 240, "duration": 2}},
        "animation": {
            "animation": {**file, "width": 1, "height": 1, "duration": 2, "mime_type": "video/mp4"},
            "document": {**file, "mime_type": "video/mp4"},
        },
    }[kind]
    data = {
        "message_id": message_id,
        "date": 0,
        "chat": {"id": 7, "type": "private"},
        **media,
    }
    if caption:
        data["caption"] = caption
    if group:
        data["media_group_id"] = group
    return Message.model_validate(data)


def item(n: int, kind: str = "photo", caption: str | None = None, **extra) -> flow.EvidenceItem:
    values = dict(id=f"{n:032x}", kind=kind, size=2000 + n, caption=caption,
                  sha256=hashlib.sha256(str(n).encode()).hexdigest())
    return flow.EvidenceItem(**{**values, **extra})


def run(draft, event, *args):
    transition = flow.step(draft, event, *args)
    return transition.draft, transition.effects


# ---- one list of kinds --------------------------------------------------------------------


def test_every_kind_is_one_list_used_by_flow_handler_storage_and_screens():
    assert cases_module.EVIDENCE_KINDS is EVIDENCE_KINDS and flow.EVIDENCE_KINDS is EVIDENCE_KINDS
    assert set(labels.EVIDENCE_KIND_LABELS) == set(EVIDENCE_KINDS)
    assert Evidence.__table__.c.kind.type.length >= max(len(k) for k in EVIDENCE_KINDS)
    for kind in FILE_FIELDS:
        found = file_of(message(kind))
        assert found is not None and found[0] == kind  # an animation is not taken for a document
        # Recordings carry the voice warning (the first of a draft; see report_flow.VOICE_KINDS).
        assert flow.check_attach(attach_of(message(kind)), 0, 0, flow.DEFAULT_LIMITS) in (
            (), (flow.Notice("document_warning"),), (flow.Notice("voice_warning"),)
        )
        assert flow.check_attach(attach_of(message(kind)), 0, 0, flow.DEFAULT_LIMITS, warn_voice=False) in (
            (), (flow.Notice("document_warning"),)
        )


async def test_every_kind_the_flow_accepts_is_stored_reviewed_and_decrypted(
    sessionmaker, vault, team_key, tmp_path
):
    """Each kind: sealed blob + record through ReportBatch/ReportWriter, the review text,
    then opened with the team key as the console and ``nazaha decrypt`` do."""
    blobs = BlobStore(tmp_path / "blobs", durable=False)
    report_id, data_key = new_sealing_context()
    items = []
    for n, kind in enumerate(EVIDENCE_KINDS):
        notices = flow.check_attach(flow.Attach(kind, 10), 0, 0, flow.DEFAULT_LIMITS, warn_voice=False)
        assert not notices or kind == "document"
        info = await blobs.write_bytes(data_key, report_id, f"{n:032x}", "original", kind.encode() * 50)
        items.append(item(n, kind, caption=f"{CAPTION} ({kind})", size=info.size, sha256=info.sha256))
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.REVIEW, evidence=tuple(items),
                       answers={"description": "d" * 40})
    with I18N.context(), I18N.use_locale("en"):
        review = "\n".join(s.text for s in screens.review(draft))
        for kind, one in zip(EVIDENCE_KINDS, items):
            assert str(labels.EVIDENCE_KIND_LABELS[kind]) in review and one.caption in review

    sealed = await vault.seal(ReportDraft(kind="complaint", triage={}, fields={"description": "d" * 40}),
                              report_id=report_id, data_key=data_key)
    batch = ReportBatch(bot_id=None, update_id=None)
    vault.store(batch, sealed, evidence=[evidence_record(i) for i in items])
    await ReportWriter(sessionmaker, max_delay=0).commit(batch)

    case = await vault.unlock_with_team(sealed.designation, team_key)
    records = await CaseService(sessionmaker).evidence(case)
    assert [r.kind for r in records] == list(EVIDENCE_KINDS)
    assert [r.caption for r in records] == [i.caption for i in items]
    for record in records:
        data = await blobs.read_bytes(case.data_key, case.report_id, record.id, "original")
        assert data == record.kind.encode() * 50
    async with sessionmaker() as session:
        from sqlalchemy import select

        rows = (await session.scalars(select(Evidence))).all()
    assert all(CAPTION.encode() not in row.sealed_meta for row in rows)  # sealed, never plain


def test_metadata_sealed_before_captions_still_opens():
    record = evidence_record(item(1))
    assert "caption" not in cases_module._evidence_meta(record)
    assert cases_module._evidence_meta(evidence_record(item(2, caption=CAPTION)))["caption"] == CAPTION


# ---- captions -----------------------------------------------------------------------------


def test_a_caption_is_kept_and_the_user_is_told():
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.EVIDENCE)
    attach = attach_of(message("photo", caption=CAPTION))
    assert attach.caption == CAPTION
    new, effects = run(draft, flow.Stored(item(1, caption=CAPTION), CTX))
    assert new.evidence[0].caption == CAPTION
    with I18N.context(), I18N.use_locale("en"):
        text = screens.notice(effects[0].code, dict(effects[0].params))
    assert "kept with it" in text
    # Follow-up "Add evidence" too.
    session = fu.Session(fu.FStep.EVIDENCE, {"key_ref": "x"})
    after = fu.step(session, flow.Stored(item(2, caption=CAPTION), CTX))
    assert after.effects[0] == fu.SaveEvidence(item(2, caption=CAPTION))
    assert after.effects[1] == fu.DeleteTyped()  # the file leaves the chat once stored
    assert after.effects[2].params["captioned"] == 1


def test_a_caption_at_the_description_step_is_description_text():
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.DESCRIPTION, parts=("x" * 10,))
    attach = attach_of(message("photo", caption=CAPTION))
    new, effects = run(draft, attach)
    assert new.parts == ("x" * 10, CAPTION)
    assert effects == (flow.Notice("caption_as_description", {"total": 10 + len(CAPTION), "files": 1}),)


# ---- albums -------------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that moves only when told; ``sleep`` waits for it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in list(self.sleepers):
            if entry[0] <= self.now:
                self.sleepers.remove(entry)
                entry[1].set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


async def test_album_collector_answers_once_after_a_quiet_period():
    clock = FakeClock()
    collector: AlbumCollector[int] = AlbumCollector(1.5, clock=clock, sleep=clock.sleep)
    first = asyncio.create_task(collector.collect("g", 1))
    await asyncio.sleep(0)
    assert await collector.collect("g", 2) is None
    await clock.advance(1.0)
    assert await collector.collect("g", 3) is None  # restarts the quiet period
    await clock.advance(1.0)  # 1.0 s after the last: not yet
    assert not first.done()
    await clock.advance(0.5)
    assert await first == [1, 2, 3]
    assert len(collector) == 0
    # A group that never goes quiet is cut off after max_wait_seconds.
    collector.max_wait_seconds = 3.0
    endless = asyncio.create_task(collector.collect("h", 1))
    await asyncio.sleep(0)
    for n in (2, 3):
        await clock.advance(1.0)
        assert await collector.collect("h", n) is None
    await clock.advance(1.0)  # 3 s after it began, though the last came 1 s ago
    assert await endless == [1, 2, 3]


async def test_album_middleware_passes_the_first_update_with_all_messages():
    clock = FakeClock()
    middleware = AlbumMiddleware(AlbumCollector(1.5, clock=clock, sleep=clock.sleep))
    seen = []

    async def handler(event, data):
        seen.append((event.update_id, [m.message_id for m in data.get("album") or []]))

    updates = [
        Update(update_id=10 + n, message=message("photo", group="G", message_id=n, caption=CAPTION if n == 1 else None))
        for n in (1, 2, 3)
    ]
    tasks = [asyncio.create_task(middleware(handler, u, {})) for u in updates]
    await clock.advance(0)
    plain = Update(update_id=20, message=message("photo", message_id=9))
    await middleware(handler, plain, {})
    assert seen == [(20, [])]
    await clock.advance(1.5)
    await asyncio.gather(*tasks)
    assert seen == [(20, []), (11, [1, 2, 3])]


def test_an_album_at_the_description_step_is_one_answer_with_its_caption_as_text():
    messages = [message("photo", message_id=n, group="G", caption=CAPTION if n == 1 else None) for n in (1, 2, 3)]
    album, files = album_of(messages)
    assert album.caption == CAPTION and len(album.attaches) == 3 and files == messages
    draft = flow.Draft(kind=flow.Kind.CORRUPTION, step=flow.Step.DESCRIPTION)
    new, effects = run(draft, album)
    assert new.parts == (CAPTION,)
    assert effects == (flow.Notice("caption_as_description", {"total": len(CAPTION), "files": 3}),)
    # Without a caption: one notice, nothing added.
    bare, _ = album_of([message("photo", message_id=n, group="H") for n in (1, 2)])
    assert flow.step(draft, bare) == flow.Transition(draft, (flow.Notice("files_at_description", {"files": 2}),))


def test_an_album_at_the_evidence_step_is_fetched_with_its_caption_and_answered_once():
    draft = flow.Draft(kind=flow.Kind.CORRUPTION, step=flow.Step.EVIDENCE)
    album, _ = album_of([message("photo", message_id=n, caption=CAPTION if n == 2 else None) for n in (1, 2, 3)])
    _, effects = run(draft, album)
    assert effects == (flow.FetchAlbum((0, 1, 2), CAPTION),)
    items = tuple(item(n, caption=CAPTION) for n in range(3))
    new, effects = run(draft, flow.StoredAlbum(items, CTX, ("failed",)))
    assert new.evidence == items
    assert effects == (flow.Notice("evidence_added", {"count": 3, "added": 3, "failed": 1, "captioned": 1}),)
    # Limits are applied file by file: only what fits is fetched.
    limits = flow.EvidenceLimits(max_files=2)
    _, effects = run(draft, album, limits)
    assert effects == (flow.Notice("evidence_too_many", {"limit": 2}), flow.FetchAlbum((0, 1), CAPTION))
    # The same in follow-up.
    session = fu.Session(fu.FStep.EVIDENCE, {"key_ref": "x"})
    assert fu.step(session, album).effects == (flow.FetchAlbum((0, 1, 2), CAPTION),)
    saved = fu.step(session, flow.StoredAlbum(items, CTX))
    assert saved.effects[:3] == tuple(fu.SaveEvidence(i) for i in items) and len(saved.effects) == 5
    assert saved.effects[3] == fu.DeleteTyped()  # the album leaves the chat once stored
    assert saved.session.evidence_count == 3


@pytest.mark.parametrize("code", ["files_at_description", "caption_as_description", "evidence_added"])
@pytest.mark.parametrize("n", [1, 2, 3, 11])
def test_album_notices_render_in_both_languages(code, n):
    params = {"files": n, "total": 40, "count": n, "added": n, "failed": n, "captioned": 1}
    for locale in ("en", "ar"):
        with I18N.context(), I18N.use_locale(locale):
            assert screens.notice(code, params)


# ---- images by content --------------------------------------------------------------------


def _image(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_sniff_image_knows_images_by_their_first_bytes(fmt):
    data = _image(fmt)
    assert sniff_image(data[:16])
    assert scrub_image(data).data is not None


@pytest.mark.parametrize(
    "head", [b"%PDF-1.7\n", b"PK\x03\x04", b"OggS\x00", b"BM not really", b"", b"\x00\x00\x00\x18ftypmp42"]
)
def test_sniff_image_refuses_other_files(head):
    assert not sniff_image(head)


# ---- with the other issue 8 changes (voice, edits) ------------------------------------------


def test_a_voice_with_a_caption_at_the_description_step_is_the_description():
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.DESCRIPTION)
    _, effects = run(draft, attach_of(message("voice", caption=CAPTION)))
    assert isinstance(effects[-1], flow.Fetch) and effects[-1].as_description


def test_a_caption_at_the_description_step_can_be_edited_like_text():
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.DESCRIPTION)
    draft, effects = run(draft, attach_of(message("photo", caption=CAPTION, message_id=41)))
    assert effects[0].code == "caption_as_description" and draft.parts == (CAPTION,)
    assert draft.part_ids == (41,)
    draft, effects = run(draft, flow.Edited(41, CAPTION + " and 5 March"))
    assert draft.parts == (CAPTION + " and 5 March",) and effects[0].code == "edit_description"
    album, _files = album_of([message("photo", caption=CAPTION, group="g", message_id=50),
                              message("photo", group="g", message_id=51)])
    assert album.message_id == 50


def test_an_album_of_recordings_is_warned_about_once_per_draft():
    draft = flow.Draft(kind=flow.Kind.COMPLAINT, step=flow.Step.EVIDENCE)
    album, _files = album_of([message("audio", group="g", message_id=n) for n in (1, 2)])
    draft, effects = run(draft, album)
    assert [e.code for e in effects if isinstance(e, flow.Notice)] == ["voice_warning"]
    assert draft.voice_warned and isinstance(effects[-1], flow.FetchAlbum)
    _, effects = run(draft, album)
    assert not [e for e in effects if isinstance(e, flow.Notice)]


def test_a_recording_without_a_reduced_copy_is_said_so():
    voice = item(1, "voice", flagged="unreadable")
    assert flow.added_notice(1, (voice,)).code == "voice_flagged"
    assert flow.added_notice(2, (voice, item(2, flagged="unreadable"))).code == "evidence_flagged"
    with I18N.context(), I18N.use_locale("en"):
        text = screens.notice("voice_flagged", dict(flow.added_notice(1, (item(1, "voice", CAPTION, flagged="x"),)).params))
    assert "voice-reduced" in text and "kept with it" in text
