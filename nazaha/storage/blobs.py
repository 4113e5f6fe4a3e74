"""Sealed blob store for evidence files: streamed in, encrypted in chunks, never plaintext on disk.

Layout: ``root/<report_id>/<file_id>.<variant>`` (directories 0700, files 0600).  Ids are hex
strings made by our own code and are validated strictly, so no id can escape ``root``.

File format (version 1)
-----------------------
::

    header  = "NZBLOB" || version u8 (=1) || chunk size u32 || write id (16 random bytes)
    record  = final u8 (0|1) || plaintext length u32 || 0x01 || nonce(12) || ciphertext || tag(16)
    file    = header || record* (at least one; exactly the last one has final = 1)

Each record is :func:`nazaha.storage.crypto.seal`'s format (AES-256-GCM, random nonce) under
the report's data key, with AAD = :func:`~nazaha.storage.crypto.blob_chunk_aad` (header,
report id, file id, variant, chunk index, final flag, length).  Hence:

* the header is authenticated by every chunk (a changed magic, version, chunk size or write
  id fails);
* a chunk moved to another position, file, variant or report, or spliced in from another
  write of the same name, fails (:class:`BlobTampered`);
* a file cut at a chunk boundary lacks the record with ``final = 1`` and a file cut inside a
  record is shorter than the record's length says (:class:`BlobTruncated`).

Every record but the last holds exactly ``chunk size`` plaintext bytes; the last holds
0..chunk size (an empty file is one empty final record).  Overhead: 27 bytes per file and 34
per chunk (0.05 % at 64 KiB).

Memory is bounded by the chunk size: writing holds at most one incomplete chunk (the stream
is re-chunked; a chunk is sealed straight from the incoming piece when possible) plus one
ciphertext; reading holds one record and its plaintext.  The bound is about
``2 x CHUNK_SIZE + the largest incoming piece`` (see docs/benchmarks.md, "Blob store").

A streamed reader gets each chunk only after it verified, but an error can still come after
some chunks were yielded (a truncated file is only detected at its end): a consumer of
:meth:`BlobStore.read_stream` must discard what it got when an error is raised.
:meth:`BlobStore.read_bytes` returns only fully verified contents.

Deletion unlinks files.  It does not overwrite them: the files are ciphertext only, and on
journaling or flash storage an overwrite does not reach the old blocks anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from nazaha.storage.crypto import ChunkSealer, CryptoError, TamperedData, blob_chunk_aad

__all__ = [
    "CHUNK_SIZE",
    "VARIANTS",
    "BlobError",
    "BlobTampered",
    "BlobTruncated",
    "BlobNotFound",
    "BlobTooLarge",
    "BlobInfo",
    "BlobStore",
]

# 64 KiB: the size of the pieces we download from Telegram (handlers/evidence.py), large
# enough that the per-chunk costs (a syscall, a nonce, 34 bytes of framing, a Python
# round trip) are negligible next to AES-GCM, small enough that memory stays a few hundred
# KiB per concurrent upload and that the event loop is never held for more than ~0.1 ms.
CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 256  # accepted in headers (tests use small chunks)
MAX_CHUNK_SIZE = 4 * 1024 * 1024  # a header cannot make a reader allocate more than this

VARIANTS = frozenset({"original", "clean"})

_MAGIC = b"NZBLOB"
_VERSION = 1
_HEADER = struct.Struct(">6sBI16s")
_HEADER_LEN = _HEADER.size  # 27
_RECORD = struct.Struct(">BI")  # final flag, plaintext length
_SEALED_OVERHEAD = 1 + 12 + 16  # seal(): version byte, nonce, tag
_ID_RE = re.compile(r"[0-9a-f]{16,64}")


# --------------------------------------------------------------------------- errors


class BlobError(CryptoError):
    """Base class of blob store failures."""


class BlobTampered(BlobError, TamperedData):
    """The blob failed authentication: modified bytes, chunks reordered or swapped, a blob
    moved to another report, file id or variant, or a wrong data key."""


class BlobTruncated(BlobTampered):
    """The blob ends early: its final chunk is missing or a record is cut short.

    A subclass of :class:`BlobTampered` because a cut file is modified data too; catch
    :class:`BlobTampered` for "cannot be trusted", this class to tell the two apart."""


class BlobNotFound(BlobError):
    """No blob is stored under this report id, file id and variant."""


class BlobTooLarge(BlobError):
    """The incoming stream exceeded ``max_bytes``; nothing was stored."""


@dataclass(frozen=True)
class BlobInfo:
    file_id: str
    variant: str
    size: int  # plaintext bytes
    sha256: str  # hex digest of the plaintext
    chunks: int


# --------------------------------------------------------------------------- store


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        raise ValueError(f"{what} must be 16-64 lowercase hex characters")
    return value


def _check_variant(variant: object) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}")
    return variant  # type: ignore[return-value]


def _write_all(fd: int, parts: list[bytes | memoryview]) -> None:
    """os.writev, completing short writes."""
    remaining = sum(len(p) for p in parts)
    written = os.writev(fd, parts)
    if written == remaining:
        return
    views = [memoryview(p) for p in parts]
    for view in views:  # rare: finish what writev left over
        if written >= len(view):
            written -= len(view)
            continue
        view = view[written:]
        written = 0
        while view:
            view = view[os.write(fd, view) :]


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if data is None or len(data) == n:
        return data or b""
    parts = [data]
    got = len(data)
    while got < n:
        more = fh.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_without_atime(path: Path) -> int:
    """Open for reading without updating the access time where the system allows it
    (O_NOATIME: Linux, files we own), so reading evidence leaves no precise time."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            pass
    return os.open(path, flags)


def _coarsen_times(path: Path) -> None:
    """atime and mtime to the start of the UTC day they fall in (never finer than a day)."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return
    day = mtime - (mtime % 86400)
    try:
        os.utime(path, (day, day))
    except FileNotFoundError:
        pass


class BlobStore:
    """Evidence blobs sealed under each report's data key, one directory per report.

    ``durable`` (default): a blob is fsync'ed (file and directory, in a worker thread) before
    :meth:`write_stream` returns, so a report committed afterwards never points to a blob a
    power cut lost.  Tests and benchmarks may turn it off.
    """

    def __init__(self, root: Path, *, chunk_size: int = CHUNK_SIZE, durable: bool = True):
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}]")
        self.root = Path(root)
        self.chunk_size = chunk_size
        self.durable = durable

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # ----------------------------------------------------------------- paths

    def _report_dir(self, report_id: str) -> Path:
        return self.root / _check_id(report_id, "report id")

    def path(self, report_id: str, file_id: str, variant: str) -> Path:
        """Where a blob lives (validated ids; the file may not exist)."""
        return self._report_dir(report_id) / f"{_check_id(file_id, 'file id')}.{_check_variant(variant)}"

    def exists(self, report_id: str, file_id: str, variant: str) -> bool:
        return self.path(report_id, file_id, variant).is_file()

    # ----------------------------------------------------------------- writing

    async def write_stream(
        self,
        data_key: bytes,
        report_id: str,
        file_id: str,
        variant: str,
        chunks: AsyncIterable[bytes | bytearray | memoryview],
        *,
        max_bytes: int | None = None,
    ) -> BlobInfo:
        """Seal an incoming stream (pieces of any size) into ``report_id/file_id.variant``.

        Written to a temporary file in the same directory and renamed into place only when
        complete, so a reader never sees a partial blob and an existing blob is replaced
        atomically.  :class:`BlobTooLarge` if the stream exceeds ``max_bytes`` (nothing is
        kept).  On any failure, and on cancellation, the temporary file is removed and the
        incoming stream closed.  Then, written or not, the access and modification times of
        the blob, its report directory, the root and the pool (a file and maybe a directory
        were taken from it) are set to the start of their UTC day; their change times stay
        at this moment until the next :meth:`blur_times` (docs/security.md, "Coarse time").
        """
        target = self.path(report_id, file_id, variant)
        sealer = ChunkSealer(data_key)
        size = self.chunk_size
        header = _HEADER.pack(_MAGIC, _VERSION, size, secrets.token_bytes(16))
        directory = target.parent
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return await self._write_records(sealer, header, target, report_id, file_id, variant, chunks, max_bytes)
        finally:  # written, failed or cancelled: no fresh access or modification time stays
            for path in (target, directory, self.root, self.root / self.POOL):
                _coarsen_times(path)

    async def _write_records(
        self, sealer: ChunkSealer, header: bytes, target: Path, report_id: str, file_id: str,
        variant: str, chunks: AsyncIterable[bytes | bytearray | memoryview], max_bytes: int | None,
    ) -> BlobInfo:
        """:meth:`write_stream`'s work: the pooled file filled, sealed and renamed into place."""
        size = self.chunk_size
        directory = target.parent
        if not directory.is_dir():
            self._from_pool("d", directory)
        tmp = directory / f".{file_id}.{variant}.{secrets.token_hex(8)}.tmp"
        self._from_pool("f", tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        handed_over = False
        digest = hashlib.sha256()
        total = 0
        index = 0

        def emit(view: bytes | bytearray | memoryview, final: bool) -> None:
            nonlocal index
            length = len(view)
            aad = blob_chunk_aad(header, report_id, file_id, variant, index, final, length)
            prefix, body = sealer.seal_parts(aad, view)
            _write_all(fd, [_RECORD.pack(1 if final else 0, length), prefix, body])
            index += 1

        try:
            _write_all(fd, [header])
            # Data not sealed yet: at most one chunk, held back until we know whether more
            # data follows (then it is not the final chunk).  A whole incoming ``bytes``
            # piece is held by reference, not copied.
            held: bytes | bytearray = b""
            try:
                async for piece in chunks:
                    if not piece:
                        continue
                    total += len(piece)
                    if max_bytes is not None and total > max_bytes:
                        raise BlobTooLarge("the file is larger than allowed")
                    digest.update(piece)
                    with memoryview(piece) as incoming:
                        pos = 0
                        if held:
                            if len(held) < size:
                                pos = min(size - len(held), len(incoming))
                                if not isinstance(held, bytearray):
                                    held = bytearray(held)
                                held += incoming[:pos]
                            if len(held) == size and pos < len(incoming):
                                emit(held, final=False)
                                held = b""
                                await asyncio.sleep(0)
                        # Here ``held`` is empty unless ``incoming`` is used up.
                        while len(incoming) - pos > size:  # sealed in place, no copy
                            emit(incoming[pos : pos + size], final=False)
                            pos += size
                            await asyncio.sleep(0)
                        if pos < len(incoming):
                            held = piece if pos == 0 and type(piece) is bytes else bytearray(incoming[pos:])
                    del piece
                emit(held, final=True)
                del held
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            if self.durable:
                handed_over = True  # the worker thread owns fd from here on
                await asyncio.to_thread(self._commit, fd, tmp, target)
            else:
                os.close(fd)
                fd = -1
                os.replace(tmp, target)
        except BaseException:
            if not handed_over:
                if fd >= 0:
                    os.close(fd)
                tmp.unlink(missing_ok=True)
            raise
        return BlobInfo(file_id, variant, total, digest.hexdigest(), index)

    @staticmethod
    def _commit(fd: int, tmp: Path, target: Path) -> None:
        """fsync, rename into place, fsync the directory (in a worker thread)."""
        try:
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    async def write_bytes(
        self, data_key: bytes, report_id: str, file_id: str, variant: str, data: bytes
    ) -> BlobInfo:
        """Seal ``data`` (already in memory) as one blob."""

        async def once() -> AsyncIterator[bytes]:
            yield data

        return await self.write_stream(data_key, report_id, file_id, variant, once())

    # ----------------------------------------------------------------- reading

    def read_stream(
        self, data_key: bytes, report_id: str, file_id: str, variant: str
    ) -> AsyncIterator[bytes]:
        """Yield the plaintext chunk by chunk, each verified before it is yielded.

        Bad ids raise ``ValueError`` and a missing blob :class:`BlobNotFound` at once;
        :class:`BlobTampered` / :class:`BlobTruncated` come while iterating (see the module
        docstring: discard what was yielded if an error follows).
        """
        path = self.path(report_id, file_id, variant)
        if not path.is_file():
            raise BlobNotFound("no such blob")
        sealer = ChunkSealer(data_key)
        return self._read_records(sealer, path, report_id, file_id, variant)

    async def _read_records(
        self, sealer: ChunkSealer, path: Path, report_id: str, file_id: str, variant: str
    ) -> AsyncIterator[bytes]:
        try:
            fh = os.fdopen(_open_without_atime(path), "rb", buffering=0)
        except FileNotFoundError:
            raise BlobNotFound("no such blob") from None
        with fh:
            header = _read_exact(fh, _HEADER_LEN)
            if len(header) < _HEADER_LEN:
                raise BlobTruncated("blob header is cut short")
            magic, version, size, _write_id = _HEADER.unpack(header)
            if magic != _MAGIC or version != _VERSION:
                raise BlobTampered("not a blob of a known version")
            if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
                raise BlobTampered("blob header has an invalid chunk size")
            index = 0
            while True:
                record = _read_exact(fh, _RECORD.size)
                if len(record) < _RECORD.size:
                    raise BlobTruncated("blob ends before its final chunk")
                final, length = _RECORD.unpack(record)
                if final not in (0, 1) or length > size or (final == 0 and length != size):
                    raise BlobTampered("blob chunk has an invalid frame")
                sealed = _read_exact(fh, _SEALED_OVERHEAD + length)
                if len(sealed) < _SEALED_OVERHEAD + length:
                    raise BlobTruncated("blob chunk is cut short")
                aad = blob_chunk_aad(header, report_id, file_id, variant, index, bool(final), length)
                try:
                    plaintext = sealer.open(aad, sealed)
                except TamperedData:
                    raise BlobTampered("blob chunk failed authentication") from None
                del sealed
                if final:
                    if fh.read(1):
                        raise BlobTampered("data after the final chunk")
                    yield plaintext
                    return
                yield plaintext
                index += 1
                await asyncio.sleep(0)  # a fast consumer must not hold the loop for a whole file

    async def read_bytes(self, data_key: bytes, report_id: str, file_id: str, variant: str) -> bytes:
        """The whole plaintext, returned only if every chunk verified."""
        parts = [chunk async for chunk in self.read_stream(data_key, report_id, file_id, variant)]
        return b"".join(parts)

    # ----------------------------------------------------------------- deleting, listing

    def delete(self, report_id: str, file_id: str, variant: str | None = None) -> None:
        """Delete one variant, or every variant (and leftover temporary files) of a file.
        Missing blobs are not an error."""
        directory = self._report_dir(report_id)
        _check_id(file_id, "file id")
        variants = sorted(VARIANTS) if variant is None else [_check_variant(variant)]
        for name in variants:
            (directory / f"{file_id}.{name}").unlink(missing_ok=True)
            if directory.is_dir():
                for leftover in directory.glob(f".{file_id}.{name}.*.tmp"):
                    leftover.unlink(missing_ok=True)
        _coarsen_times(directory)  # an unlink (and the listing) dated the directory

    def delete_report(self, report_id: str) -> None:
        """Delete every blob of a report (missing report: not an error)."""
        directory = self._report_dir(report_id)
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory)
            _coarsen_times(self.root)

    # ----------------------------------------------------------------- the inode pool

    # A file's birth time (statx btime) is set when its inode is made and no call can
    # change it. So blob files and report directories are not made when a file arrives:
    # they are taken from a pool of empty ones made in batches, at start-up and by the
    # maintenance pass, and renamed into place (a rename keeps the birth time). Their birth
    # times then tell only when a batch was made, never when a piece of evidence arrived.

    POOL = ".pool"

    def replenish_pool(self, files: int = 64, directories: int = 16) -> int:
        """Top the pool up to ``files`` empty files and ``directories`` empty directories,
        made together now; returns how many were made."""
        pool = self.root / self.POOL
        pool.mkdir(mode=0o700, parents=True, exist_ok=True)
        have = {"f": 0, "d": 0}
        for entry in os.scandir(pool):
            if entry.name[:2] in ("f-", "d-"):
                have[entry.name[0]] += 1
        made = 0
        for _ in range(max(0, files - have["f"])):
            fd = os.open(pool / f"f-{secrets.token_hex(12)}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            made += 1
        for _ in range(max(0, directories - have["d"])):
            (pool / f"d-{secrets.token_hex(12)}").mkdir(mode=0o700)
            made += 1
        for entry in os.scandir(pool):
            _coarsen_times(Path(entry.path))
        _coarsen_times(pool)
        return made

    def _from_pool(self, kind: str, destination: Path) -> None:
        """Rename a pooled empty file (``kind`` "f") or directory ("d") to ``destination``;
        an empty pool is topped up first (then that batch's time is this moment). The take
        moves the pool's times: the caller (:meth:`write_stream`) coarsens them."""
        pool = self.root / self.POOL
        for attempt in range(2):
            if pool.is_dir():
                for entry in os.scandir(pool):
                    if entry.name.startswith(f"{kind}-"):
                        try:
                            os.rename(entry.path, destination)
                            return
                        except FileNotFoundError:  # taken by someone else meanwhile
                            continue
                        except OSError:
                            if kind == "d" and destination.is_dir():
                                return  # made meanwhile by another write of this report
                            raise
            if attempt == 0:
                self.replenish_pool()
        raise BlobError("could not take a file from the blob pool")

    def blur_times(self) -> int:
        """Set every blob's and directory's access and modification times to the start of
        their UTC day; this also moves their change time (which no call can set) to now, the
        same moment for all. Run periodically, so that file times never tell when a file was
        written (docs/security.md). Returns how many entries were touched."""
        touched = 0
        if not self.root.is_dir():
            return 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                _coarsen_times(Path(directory) / name)
                touched += 1
            _coarsen_times(Path(directory))
            touched += 1
        return touched

    def list_reports(self) -> list[str]:
        """Report ids that have a blob directory (for the orphan purge)."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.is_dir(follow_symlinks=False) and _ID_RE.fullmatch(entry.name)
        )
