"""Blob store benchmark: encrypting and storing a 20 MB attachment.

    .venv/bin/python bench/blob_store.py [--size-mb 20] [--piece 65536] [--runs 3] [--dir DIR] [--json]

What is measured (best of ``--runs`` for every timing, all in one process and run):

* **raw AES-GCM**: ``AESGCM.encrypt`` with a fresh random nonce over the same bytes in the
  same chunking, in memory, no disk: the reference.
* **raw AES-GCM + SHA-256**: the same plus the plaintext digest the store must return
  (``BlobInfo.sha256``, the evidence hash): the irreducible crypto of the write path.
* **BlobStore.write_stream**: the same bytes as an async stream of ``--piece``-sized pieces
  (Telegram download size), re-chunked, sealed, written to a temporary file and renamed;
  once ``durable`` (fsync of file and directory: the production default) and once not.
* **BlobStore.read_stream** (page cache warm) next to raw ``AESGCM.decrypt`` of the chunks.

The source is a 1 MiB random pool made before any measurement; each piece is a fresh
``bytes`` slice of it, made when the stream is pulled (as a download yields new pieces), so
the 20 MB never exist in memory at once and the reference pays the same slicing cost.

Memory is measured in a fresh subprocess (so ``ru_maxrss`` is not masked by earlier runs):
``tracemalloc`` peak growth during one ``write_stream`` (Python allocations) and the
``ru_maxrss`` delta (resident set, includes allocator slack), against the target
``4 x CHUNK_SIZE + 64 KiB``.  The same probe measures the longest event-loop stall during a
write (a ticker task runs next to it) and the read path's peak.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nazaha.storage.blobs import CHUNK_SIZE, BlobStore  # noqa: E402
from nazaha.storage.crypto import new_data_key  # noqa: E402

MIB = 1024 * 1024
POOL = 1 * MIB
RATIO_TARGET = 0.7
MEMORY_CONSTANT = 64 * 1024
MEMORY_TARGET = 4 * CHUNK_SIZE + MEMORY_CONSTANT


class Source:
    """``size`` bytes as pieces of ``piece`` bytes, each a fresh slice of a random pool."""

    def __init__(self, size: int, piece: int):
        self.size = size
        self.piece = piece
        self.pool = os.urandom(POOL + piece)

    def pieces(self):
        sent, offset = 0, 0
        while sent < self.size:
            n = min(self.piece, self.size - sent)
            yield self.pool[offset : offset + n]
            sent += n
            offset = (offset + 4099) % POOL  # vary the content a little

    async def stream(self) -> AsyncIterator[bytes]:
        for piece in self.pieces():
            yield piece


def new_ids() -> tuple[str, str]:
    return secrets.token_hex(16), secrets.token_hex(16)


async def raw_aesgcm(source: Source, key: bytes, with_sha: bool) -> float:
    import hashlib

    aead = AESGCM(key)
    aad = b"\x00" * 120  # about the size of a blob chunk's AAD
    digest = hashlib.sha256()
    started = time.perf_counter()
    async for piece in source.stream():
        aead.encrypt(secrets.token_bytes(12), piece, aad)
        if with_sha:
            digest.update(piece)
    return time.perf_counter() - started


async def by_hand(source: Source, key: bytes, path: Path, fsync: bool) -> float:
    """The work the store cannot avoid, without the store: AES-GCM + SHA-256 + write(2)
    of nonce and ciphertext to a file (+ fsync). No framing, no re-chunking, no rename."""
    import hashlib

    aead = AESGCM(key)
    aad = b"\x00" * 120
    digest = hashlib.sha256()
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async for piece in source.stream():
            nonce = secrets.token_bytes(12)
            os.writev(fd, [nonce, aead.encrypt(nonce, piece, aad)])
            digest.update(piece)
        if fsync:
            await asyncio.to_thread(os.fsync, fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


async def store_write(store: BlobStore, source: Source, key: bytes) -> tuple[float, tuple[str, str]]:
    report_id, file_id = new_ids()
    started = time.perf_counter()
    info = await store.write_stream(key, report_id, file_id, "original", source.stream())
    elapsed = time.perf_counter() - started
    assert info.size == source.size
    return elapsed, (report_id, file_id)


async def store_read(store: BlobStore, key: bytes, ids: tuple[str, str]) -> float:
    started = time.perf_counter()
    total = 0
    async for chunk in store.read_stream(key, *ids, "original"):
        total += len(chunk)
    elapsed = time.perf_counter() - started
    return elapsed


def raw_decrypt(key: bytes, source: Source) -> float:
    aead = AESGCM(key)
    aad = b"\x00" * 120
    sealed = []
    for piece in source.pieces():  # prepared outside the timing
        nonce = secrets.token_bytes(12)
        sealed.append((nonce, aead.encrypt(nonce, piece, aad)))
    started = time.perf_counter()
    for nonce, ct in sealed:
        aead.decrypt(nonce, ct, aad)
    return time.perf_counter() - started


async def timings(args: argparse.Namespace, workdir: Path) -> dict:
    size = int(args.size_mb * MIB)
    source = Source(size, args.piece)
    key = new_data_key()
    durable = BlobStore(workdir / "durable", durable=True)
    fast = BlobStore(workdir / "nofsync", durable=False)
    names = ("raw", "raw_sha", "hand", "hand_fsync", "durable", "nofsync", "read", "raw_decrypt")
    best = {k: float("inf") for k in names}
    for _ in range(args.runs):
        best["raw"] = min(best["raw"], await raw_aesgcm(source, key, with_sha=False))
        best["raw_sha"] = min(best["raw_sha"], await raw_aesgcm(source, key, with_sha=True))
        best["hand"] = min(best["hand"], await by_hand(source, key, workdir / "hand", False))
        best["hand_fsync"] = min(best["hand_fsync"], await by_hand(source, key, workdir / "hand", True))
        t, ids = await store_write(durable, source, key)
        best["durable"] = min(best["durable"], t)
        best["read"] = min(best["read"], await store_read(durable, key, ids))
        durable.delete_report(ids[0])
        t, ids = await store_write(fast, source, key)
        best["nofsync"] = min(best["nofsync"], t)
        fast.delete_report(ids[0])
        best["raw_decrypt"] = min(best["raw_decrypt"], raw_decrypt(key, source))
    return {name: size / MIB / seconds for name, seconds in best.items()}


async def memory_probe(args: argparse.Namespace, workdir: Path) -> dict:
    """Run in a fresh interpreter: peak growth of one write_stream and one read."""
    size = int(args.size_mb * MIB)
    source = Source(size, args.piece)
    key = new_data_key()
    store = BlobStore(workdir / "probe", durable=True)
    # Warm up: imports, the worker thread of asyncio.to_thread, allocator arenas.
    for _ in range(2):
        _, ids = await store_write(store, Source(3 * CHUNK_SIZE + 5, args.piece), key)
        await store_read(store, key, ids)
        store.delete_report(ids[0])

    hwm_reset = reset_peak_rss()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    _, ids = await store_write(store, source, key)
    _, write_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    tracemalloc.start()
    rbase, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    await store_read(store, key, ids)
    _, read_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after_read = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    store.delete_report(ids[0])

    # How long write_stream / read_stream hold the event loop in one go: a ticker task
    # yields next to them and records every gap.
    stalls = {}
    for phase in ("write", "read"):
        done = False
        gaps: list[float] = []

        async def ticker() -> None:
            while not done:
                before = time.perf_counter()
                await asyncio.sleep(0)
                gaps.append(time.perf_counter() - before)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        if phase == "write":
            _, ids = await store_write(store, source, key)
        else:
            await store_read(store, key, ids)
        done = True
        await tick
        gaps.sort()
        stalls[phase] = (gaps[len(gaps) // 2] * 1000, gaps[int(len(gaps) * 0.99)] * 1000, gaps[-1] * 1000)
    store.delete_report(ids[0])
    return {
        "write_tracemalloc": write_peak - base,
        "write_rss": rss_after - rss_before,
        "read_tracemalloc": read_peak - rbase,
        "read_rss": rss_after_read - rss_after,
        "rss_high_water_reset": hwm_reset,
        "write_stall_ms": stalls["write"],
        "read_stall_ms": stalls["read"],
    }


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0) so ru_maxrss shows this phase's peak,
    not the import-time one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args: argparse.Namespace, speed: dict, memory: dict) -> None:
    kib = lambda n: f"{n / 1024:,.0f} KiB"  # noqa: E731
    print(
        f"blob store benchmark: {args.size_mb:g} MiB, pieces of {args.piece} B, "
        f"CHUNK_SIZE {CHUNK_SIZE} B, best of {args.runs}; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )
    raw = speed["raw"]
    print(f"\n{'path':48} {'MiB/s':>7} {'/raw':>6}  {'/hand':>6}  target (store / raw AES-GCM >= {RATIO_TARGET})")
    rows = [
        ("raw AES-GCM encrypt, memory (reference)", "raw", None, None),
        ("raw AES-GCM + SHA-256, memory", "raw_sha", None, None),
        ("by hand: AES-GCM + SHA-256 + write(2)", "hand", None, None),
        ("by hand: ... + fsync", "hand_fsync", None, None),
        ("BlobStore.write_stream, no fsync", "nofsync", "hand", RATIO_TARGET),
        ("BlobStore.write_stream, durable (fsync)", "durable", "hand_fsync", RATIO_TARGET),
        ("raw AES-GCM decrypt, memory (reference)", "raw_decrypt", None, None),
        ("BlobStore.read_stream (page cache warm)", "read", None, None),
    ]
    for name, key, hand, target in rows:
        mbs = speed[key]
        reference = speed["raw_decrypt"] if key == "read" else raw
        ratio = mbs / reference
        hand_text = f"{mbs / speed[hand]:6.2f}" if hand else " " * 6
        target_text = verdict(ratio >= target) if target else ""
        print(f"{name:48} {mbs:7.0f} {ratio:6.2f}  {hand_text}  {target_text}")
    print(
        "\n/raw = MiB/s / raw AES-GCM (read: / raw decrypt); /hand = store / the same work by hand."
        f"\nceiling with SHA-256 in the path: {speed['raw_sha'] / raw:.2f} of raw AES-GCM"
    )
    print(f"\nmemory growth (target {kib(MEMORY_TARGET)} = 4 x CHUNK_SIZE + {kib(MEMORY_CONSTANT)})")
    for name, key in (
        ("write_stream peak, tracemalloc", "write_tracemalloc"),
        ("write_stream ru_maxrss delta", "write_rss"),
        ("read_stream peak, tracemalloc", "read_tracemalloc"),
        ("read_stream ru_maxrss delta", "read_rss"),
    ):
        value = memory[key]
        print(f"  {name:34} {kib(value):>10}  {verdict(value <= MEMORY_TARGET)}")
    if not memory["rss_high_water_reset"]:
        print("  (could not reset the peak-RSS mark: ru_maxrss deltas are lower bounds)")
    for phase in ("write", "read"):
        p50, p99, top = memory[f"{phase}_stall_ms"]
        print(f"event loop held by {phase}_stream: p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {top:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=20)
    parser.add_argument("--piece", type=int, default=64 * 1024, help="incoming piece size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", help="where to write (default: a temporary dir)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="nazaha-blob-bench-", dir=args.dir))
    try:
        if args.memory_probe:
            print(json.dumps(asyncio.run(memory_probe(args, workdir))))
            return 0
        probe = subprocess.run(
            [sys.executable, __file__, "--memory-probe", "--size-mb", str(args.size_mb),
             "--piece", str(args.piece)] + (["--dir", args.dir] if args.dir else []),
            capture_output=True, text=True, check=True,
        )
        memory = json.loads(probe.stdout.strip().splitlines()[-1])
        speed = asyncio.run(timings(args, workdir))
    except Exception as exc:  # noqa: BLE001
        print(f"benchmark could not run: {exc!r}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"speed_mib_s": speed, "memory_bytes": memory}, indent=2))
    else:
        report(args, speed, memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
