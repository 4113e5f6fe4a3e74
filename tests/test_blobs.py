"""Blob store: round trips, tampering, truncation, moved blobs, plaintext never on disk."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import stat
from pathlib import Path

import pytest

from nazaha.storage.blobs import (
    CHUNK_SIZE,
    BlobError,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobTampered,
    BlobTooLarge,
    BlobTruncated,
)
from nazaha.storage.crypto import CryptoError, TamperedData, new_data_key, open_sealed

SMALL = 1024  # chunk size for tests that need many chunks
HEADER = 27
RECORD_OVERHEAD = 5 + 1 + 12 + 16


def new_id() -> str:
    return secrets.token_hex(16)


async def pieces(data: bytes, rng: random.Random | None = None, max_piece: int = 200_000):
    """``data`` as an async stream of pieces of random (or one) sizes."""
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_piece) if rng else len(data)
        yield data[pos : pos + n]
        pos += n


def record_offsets(size: int, chunk: int) -> list[tuple[int, int]]:
    """(start, end) of each record of a blob of ``size`` plaintext bytes."""
    lengths = [chunk] * (size // chunk)
    if size % chunk or not lengths:
        lengths.append(size % chunk)
    offsets, pos = [], HEADER
    for length in lengths:
        offsets.append((pos, pos + RECORD_OVERHEAD + length))
        pos += RECORD_OVERHEAD + length
    return offsets


@pytest.fixture
def store(data_dir: Path) -> BlobStore:
    return BlobStore(data_dir / "blobs", chunk_size=SMALL)


@pytest.fixture
def key() -> bytes:
    return new_data_key()


async def stored(store: BlobStore, key: bytes, data: bytes) -> tuple[str, str, Path]:
    report_id, file_id = new_id(), new_id()
    await store.write_bytes(key, report_id, file_id, "original", data)
    return report_id, file_id, store.path(report_id, file_id, "original")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 5 * SMALL + 7])
async def test_round_trip_sizes(store: BlobStore, key: bytes, size: int):
    data = os.urandom(size)
    report_id, file_id = new_id(), new_id()
    info = await store.write_stream(key, report_id, file_id, "original", pieces(data))
    expected_chunks = max(1, -(-size // SMALL))
    assert info == BlobInfo(
        file_id, "original", size, __import__("hashlib").sha256(data).hexdigest(), expected_chunks
    )
    assert await store.read_bytes(key, report_id, file_id, "original") == data
    on_disk = store.path(report_id, file_id, "original").stat().st_size
    assert on_disk == HEADER + expected_chunks * RECORD_OVERHEAD + size


@pytest.mark.parametrize("seed", range(4))
async def test_round_trip_several_mb_random_pieces(data_dir: Path, key: bytes, seed: int):
    store = BlobStore(data_dir / "blobs")  # the real chunk size
    rng = random.Random(seed)
    data = rng.randbytes(3 * 1024 * 1024 + rng.randint(0, CHUNK_SIZE))
    report_id, file_id = new_id(), new_id()
    max_piece = [100, 1000, CHUNK_SIZE, 3 * CHUNK_SIZE][seed]
    info = await store.write_stream(key, report_id, file_id, "clean", pieces(data, rng, max_piece))
    assert info.size == len(data) and info.chunks == -(-len(data) // CHUNK_SIZE)
    chunks = [c async for c in store.read_stream(key, report_id, file_id, "clean")]
    assert all(len(c) == CHUNK_SIZE for c in chunks[:-1]) and 0 < len(chunks[-1]) <= CHUNK_SIZE
    assert b"".join(chunks) == data


async def test_rechunking_with_many_piece_patterns(data_dir: Path, key: bytes):
    """Pieces smaller, equal to, and multiples of the chunk size, in random mixes."""
    store = BlobStore(data_dir / "blobs", chunk_size=256, durable=False)
    rng = random.Random(7)
    for trial in range(300):
        data = rng.randbytes(rng.choice([0, 1, 255, 256, 257, 512, rng.randint(0, 3000)]))
        sizes = [1, 100, 255, 256, 257, 512, 700]

        async def stream():
            pos = 0
            while pos < len(data):
                n = rng.choice(sizes)
                kind = rng.choice([bytes, bytearray, memoryview])
                yield kind(data[pos : pos + n])
                pos += n

        report_id, file_id = new_id(), new_id()
        info = await store.write_stream(key, report_id, file_id, "original", stream())
        assert info.size == len(data) and info.chunks == max(1, -(-len(data) // 256)), trial
        chunks = [c async for c in store.read_stream(key, report_id, file_id, "original")]
        assert b"".join(chunks) == data, trial
        assert all(len(c) == 256 for c in chunks[:-1])


async def test_pieces_of_every_type_and_empty_pieces(store: BlobStore, key: bytes):
    data = os.urandom(3 * SMALL)

    async def mixed():
        yield b""
        yield bytearray(data[:10])
        yield memoryview(data)[10:2000]
        yield b""
        yield data[2000:]

    report_id, file_id = new_id(), new_id()
    await store.write_stream(key, report_id, file_id, "original", mixed())
    assert await store.read_bytes(key, report_id, file_id, "original") == data


async def test_each_chunk_is_the_crypto_modules_seal_format(store: BlobStore, key: bytes):
    """Chunks are seal() output: crypto.open_sealed opens them given the chunk AAD."""
    from nazaha.storage.crypto import blob_chunk_aad

    data = os.urandom(SMALL + 5)
    report_id, file_id, path = await stored(store, key, data)
    raw = path.read_bytes()
    header = raw[:HEADER]
    (s0, e0), (s1, e1) = record_offsets(len(data), SMALL)
    first = open_sealed(
        key, blob_chunk_aad(header, report_id, file_id, "original", 0, False, SMALL), raw[s0 + 5 : e0]
    )
    last = open_sealed(
        key, blob_chunk_aad(header, report_id, file_id, "original", 1, True, 5), raw[s1 + 5 : e1]
    )
    assert first + last == data


async def test_rewrite_replaces_atomically(store: BlobStore, key: bytes):
    report_id, file_id = new_id(), new_id()
    await store.write_bytes(key, report_id, file_id, "clean", b"first version")
    await store.write_bytes(key, report_id, file_id, "clean", b"second")
    assert await store.read_bytes(key, report_id, file_id, "clean") == b"second"


# --------------------------------------------------------------------------- tampering


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= mask
    path.write_bytes(bytes(raw))


async def test_flipped_byte_anywhere_fails(store: BlobStore, key: bytes):
    data = os.urandom(2 * SMALL + 100)
    report_id, file_id, path = await stored(store, key, data)
    pristine = path.read_bytes()
    kinds: dict[type, int] = {}
    for offset in range(len(pristine)):
        for mask in (0x01, 0x80):
            raw = bytearray(pristine)
            raw[offset] ^= mask
            path.write_bytes(bytes(raw))
            with pytest.raises(BlobTampered) as caught:
                await store.read_bytes(key, report_id, file_id, "original")
            kinds[type(caught.value)] = kinds.get(type(caught.value), 0) + 1
    # Only a length field grown within the chunk size reads as a cut record; all else is
    # an authentication or framing failure.
    assert kinds[BlobTampered] > 0.99 * sum(kinds.values())


async def test_flipped_byte_in_each_part_is_blob_tampered(store: BlobStore, key: bytes):
    data = os.urandom(2 * SMALL + 100)
    report_id, file_id, path = await stored(store, key, data)
    pristine = path.read_bytes()
    (s0, _), (s1, e1), _ = record_offsets(len(data), SMALL)
    places = {
        "magic": 0,
        "version": 6,
        "chunk size": 9,
        "write id": 20,
        "final flag": s1,
        "length": s1 + 3,
        "seal version": s1 + 5,
        "nonce": s1 + 10,
        "ciphertext": s1 + 40,
        "tag": e1 - 3,
    }
    for where, offset in places.items():
        path.write_bytes(pristine)
        flip(path, offset)
        with pytest.raises(BlobTampered) as caught:
            await store.read_bytes(key, report_id, file_id, "original")
        assert type(caught.value) is BlobTampered, where


async def test_swapped_chunks_fail(store: BlobStore, key: bytes):
    data = os.urandom(3 * SMALL + 10)
    report_id, file_id, path = await stored(store, key, data)
    raw = path.read_bytes()
    (s0, e0), (s1, e1), *_ = record_offsets(len(data), SMALL)
    swapped = raw[:s0] + raw[s1:e1] + raw[s0:e0] + raw[e1:]
    assert len(swapped) == len(raw)
    path.write_bytes(swapped)
    with pytest.raises(BlobTampered):
        await store.read_bytes(key, report_id, file_id, "original")


async def test_chunk_spliced_from_another_write_of_the_same_blob_fails(store: BlobStore, key: bytes):
    report_id, file_id = new_id(), new_id()
    data = os.urandom(2 * SMALL + 1)
    path = store.path(report_id, file_id, "original")
    await store.write_bytes(key, report_id, file_id, "original", data)
    first = path.read_bytes()
    await store.write_bytes(key, report_id, file_id, "original", data)
    second = path.read_bytes()
    s1, e1 = record_offsets(len(data), SMALL)[1]
    path.write_bytes(second[:s1] + first[s1:e1] + second[e1:])  # same index, other write id
    with pytest.raises(BlobTampered):
        await store.read_bytes(key, report_id, file_id, "original")


async def test_dropped_last_chunk_is_truncated(store: BlobStore, key: bytes):
    data = os.urandom(3 * SMALL)  # exactly three full chunks
    report_id, file_id, path = await stored(store, key, data)
    raw = path.read_bytes()
    offsets = record_offsets(len(data), SMALL)
    for start, _ in offsets[1:]:  # cut at each chunk boundary
        path.write_bytes(raw[:start])
        with pytest.raises(BlobTruncated):
            await store.read_bytes(key, report_id, file_id, "original")
    path.write_bytes(raw[:HEADER])
    with pytest.raises(BlobTruncated):
        await store.read_bytes(key, report_id, file_id, "original")


async def test_truncated_mid_chunk_and_header(store: BlobStore, key: bytes):
    data = os.urandom(2 * SMALL + 300)
    report_id, file_id, path = await stored(store, key, data)
    raw = path.read_bytes()
    for cut in (0, 5, HEADER + 2, HEADER + 500, len(raw) - 200, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(BlobTruncated):
            await store.read_bytes(key, report_id, file_id, "original")


async def test_streamed_reader_stops_at_truncation(store: BlobStore, key: bytes):
    data = os.urandom(3 * SMALL)
    report_id, file_id, path = await stored(store, key, data)
    path.write_bytes(path.read_bytes()[: record_offsets(len(data), SMALL)[2][0]])
    got = []
    with pytest.raises(BlobTruncated):
        async for chunk in store.read_stream(key, report_id, file_id, "original"):
            got.append(chunk)
    assert b"".join(got) == data[: 2 * SMALL]  # only verified chunks were yielded


async def test_trailing_data_fails(store: BlobStore, key: bytes):
    report_id, file_id, path = await stored(store, key, b"short")
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(BlobTampered):
        await store.read_bytes(key, report_id, file_id, "original")


async def test_blob_moved_to_another_report_file_or_variant_fails(store: BlobStore, key: bytes):
    data = os.urandom(SMALL + 1)
    report_id, file_id, path = await stored(store, key, data)
    other_report, other_file = new_id(), new_id()
    # Same data key on purpose: only the AAD binding can stop these.
    moved = store.path(other_report, file_id, "original")
    moved.parent.mkdir(parents=True)
    shutil.copy(path, moved)
    renamed = store.path(report_id, other_file, "original")
    shutil.copy(path, renamed)
    as_clean = store.path(report_id, file_id, "clean")
    shutil.copy(path, as_clean)
    for r, f, v in [(other_report, file_id, "original"), (report_id, other_file, "original"),
                    (report_id, file_id, "clean")]:
        with pytest.raises(BlobTampered) as caught:
            await store.read_bytes(key, r, f, v)
        assert type(caught.value) is BlobTampered
    assert await store.read_bytes(key, report_id, file_id, "original") == data


async def test_wrong_data_key_fails(store: BlobStore, key: bytes):
    report_id, file_id, _ = await stored(store, key, b"evidence")
    with pytest.raises(BlobTampered):
        await store.read_bytes(new_data_key(), report_id, file_id, "original")


def test_error_hierarchy():
    assert issubclass(BlobTruncated, BlobTampered)
    for cls in (BlobTampered, BlobTruncated):
        assert issubclass(cls, TamperedData)
    for cls in (BlobTampered, BlobTruncated, BlobNotFound, BlobTooLarge):
        assert issubclass(cls, BlobError) and issubclass(cls, CryptoError)


# --------------------------------------------------------------------------- plaintext never on disk


CANARY = "CANARY-blob-7f3k9q whistle"


async def test_canary_is_nowhere_on_disk(data_dir: Path, key: bytes):
    store = BlobStore(data_dir / "blobs")
    unit = (CANARY + " / ").encode()
    text = unit * (3 * CHUNK_SIZE // len(unit) + 7)  # repeated across chunk boundaries
    utf16 = (CANARY + " / ").encode("utf-16-le") * 5000
    report_id = new_id()
    rng = random.Random(1)
    await store.write_stream(key, report_id, new_id(), "original", pieces(text, rng, 5000))
    await store.write_stream(key, report_id, new_id(), "original", pieces(utf16, rng, 70000))
    await store.write_bytes(key, new_id(), new_id(), "clean", text)
    needles = [CANARY.encode("utf-8"), CANARY.encode("utf-16-le"), CANARY.encode("utf-16-be"),
               CANARY[:12].encode()]
    files = [p for p in data_dir.rglob("*") if p.is_file()]  # the pool's empty files too
    assert len([p for p in files if BlobStore.POOL not in p.parts]) == 3
    for path in files:
        raw = path.read_bytes()
        assert not any(n in raw for n in needles), path


# --------------------------------------------------------------------------- limits, temp files


async def test_too_large_stream_leaves_nothing_and_closes_the_stream(store: BlobStore, key: bytes):
    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                yield os.urandom(4096)
        finally:
            closed.set()

    report_id, file_id = new_id(), new_id()
    with pytest.raises(BlobTooLarge):
        await store.write_stream(key, report_id, file_id, "original", endless(), max_bytes=50_000)
    assert closed.is_set()
    assert list(store.path(report_id, file_id, "original").parent.iterdir()) == []
    # At the limit exactly is fine.
    data = os.urandom(50_000)
    info = await store.write_stream(
        key, report_id, file_id, "original", pieces(data, random.Random(2), 3000), max_bytes=50_000
    )
    assert info.size == 50_000


async def test_failing_stream_leaves_no_temp_file(store: BlobStore, key: bytes):
    async def broken():
        yield os.urandom(5000)
        raise ConnectionResetError("download dropped")

    report_id, file_id = new_id(), new_id()
    with pytest.raises(ConnectionResetError):
        await store.write_stream(key, report_id, file_id, "original", broken())
    assert list(store.root.rglob("*.tmp")) == []
    assert not store.exists(report_id, file_id, "original")


async def test_cancelled_write_leaves_no_temp_file(store: BlobStore, key: bytes):
    started = asyncio.Event()

    async def stalls():
        yield os.urandom(5000)
        started.set()
        await asyncio.Event().wait()  # a download that hangs
        yield b""

    report_id, file_id = new_id(), new_id()
    task = asyncio.create_task(store.write_stream(key, report_id, file_id, "original", stalls()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outside_the_pool(store) == [store.root / report_id]


async def test_success_leaves_only_the_blob_with_private_permissions(data_dir: Path, key: bytes):
    store = BlobStore(data_dir / "blobs")  # durable: fsync path
    report_id, file_id = new_id(), new_id()
    await store.write_bytes(key, report_id, file_id, "original", os.urandom(200_000))
    everything = outside_the_pool(store)
    assert everything == [store.root / report_id, store.path(report_id, file_id, "original")]
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.root / report_id).stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path(report_id, file_id, "original").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- file times


def fresh_times(*paths: Path) -> list[str]:
    """Those of ``paths`` whose access or modification time is not the start of a UTC day
    (stat only: listing a directory would move its access time)."""
    day = 86400 * 10**9
    return [str(p) for p in paths if os.stat(p).st_mtime_ns % day or os.stat(p).st_atime_ns % day]


async def test_no_fresh_file_time_survives_a_write_a_failed_write_or_a_deletion(data_dir: Path, key: bytes):
    """Seized-host trial (F5): after an evidence write the pool (a file and a directory had
    just been taken from it) kept the moment of the upload, and so did a report directory
    after a failed write or a deleted file. Now every time a write or a deletion moved is
    set to the start of its day. (Change times cannot be set: docs/security.md.)"""
    store = BlobStore(data_dir / "blobs", chunk_size=SMALL)  # durable, as the bot runs it
    pool = store.root / BlobStore.POOL
    report_id, file_id = new_id(), new_id()
    await store.write_bytes(key, report_id, file_id, "original", os.urandom(3 * SMALL))
    blob = store.path(report_id, file_id, "original")
    assert fresh_times(blob, blob.parent, store.root, pool) == []
    await store.write_bytes(key, report_id, file_id, "clean", b"x")  # into an existing directory
    assert fresh_times(store.path(report_id, file_id, "clean"), blob, blob.parent, store.root, pool) == []

    async def broken():
        yield os.urandom(5000)
        raise ConnectionResetError("download dropped")

    other = new_id()
    with pytest.raises(ConnectionResetError):
        await store.write_stream(key, other, new_id(), "original", broken())
    with pytest.raises(BlobTooLarge):
        await store.write_stream(key, report_id, new_id(), "original", pieces(os.urandom(5000)), max_bytes=100)
    assert fresh_times(store.root / other, blob.parent, store.root, pool) == []

    store.delete(report_id, file_id)
    assert fresh_times(blob.parent, store.root, pool) == []
    store.delete_report(other)
    assert fresh_times(store.root, pool) == []


# --------------------------------------------------------------------------- ids, listing, deleting


@pytest.mark.parametrize(
    "bad",
    ["../" + "a" * 16, "a" * 15, "A" * 32, "a" * 65, "a" * 16 + "/x", "..", "", "a" * 16 + "\x00",
     "/etc/passwd", "g" * 16],
)
async def test_bad_ids_are_rejected(store: BlobStore, key: bytes, bad: str):
    good = new_id()
    for args in [(bad, good, "original"), (good, bad, "original")]:
        with pytest.raises(ValueError):
            await store.write_bytes(key, *args, b"x")
        with pytest.raises(ValueError):
            store.read_stream(key, *args)
        with pytest.raises(ValueError):
            store.delete(args[0], args[1])
    with pytest.raises(ValueError):
        store.delete_report(bad)
    assert not store.root.exists() or list(store.root.iterdir()) == []


async def test_bad_variant_is_rejected(store: BlobStore, key: bytes):
    with pytest.raises(ValueError):
        await store.write_bytes(key, new_id(), new_id(), "../original", b"x")
    with pytest.raises(ValueError):
        store.read_stream(key, new_id(), new_id(), "thumbnail")


async def test_missing_blob_is_not_found(store: BlobStore, key: bytes):
    with pytest.raises(BlobNotFound):
        store.read_stream(key, new_id(), new_id(), "original")
    with pytest.raises(BlobNotFound):
        await store.read_bytes(key, new_id(), new_id(), "clean")


async def test_delete_list_and_delete_report(store: BlobStore, key: bytes):
    assert store.list_reports() == []
    r1, r2, f1, f2 = new_id(), new_id(), new_id(), new_id()
    for variant in ("original", "clean"):
        await store.write_bytes(key, r1, f1, variant, b"a")
        await store.write_bytes(key, r1, f2, variant, b"b")
    await store.write_bytes(key, r2, f1, "original", b"c")
    (store.root / "not-a-report").mkdir()
    assert store.list_reports() == sorted([r1, r2])
    store.delete(r1, f1, "clean")
    assert store.exists(r1, f1, "original") and not store.exists(r1, f1, "clean")
    store.delete(r1, f2)
    assert not store.exists(r1, f2, "original") and not store.exists(r1, f2, "clean")
    store.delete(r1, f2)  # idempotent
    store.delete_report(r1)
    store.delete_report(r1)
    assert store.list_reports() == [r2]
    assert await store.read_bytes(key, r2, f1, "original") == b"c"


def test_chunk_size_bounds(tmp_path: Path):
    with pytest.raises(ValueError):
        BlobStore(tmp_path, chunk_size=10)
    with pytest.raises(ValueError):
        BlobStore(tmp_path, chunk_size=64 * 1024 * 1024)


async def test_reader_rejects_absurd_chunk_size_in_header(store: BlobStore, key: bytes):
    report_id, file_id, path = await stored(store, key, b"x")
    raw = bytearray(path.read_bytes())
    raw[7:11] = (2**32 - 1).to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    with pytest.raises(BlobTampered):
        await store.read_bytes(key, report_id, file_id, "original")


def outside_the_pool(store: BlobStore) -> list:
    """What the store holds, less its pool of empty files and directories."""
    return sorted(p for p in store.root.rglob("*") if BlobStore.POOL not in p.relative_to(store.root).parts)
