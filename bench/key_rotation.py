"""Team-key rotation benchmark: start_rotation and run_rotation over 100,000 reports.

    .venv/bin/python bench/key_rotation.py [--reports 100000] [--backend sqlite|postgresql]
        [--batch-size 200] [--sweep-reports 10000] [--batch-sizes 100,200,500] [--dir DIR] [--json]

1. **Data** (not measured): a fresh database (SQLite file and console store in a temporary
   dir; PostgreSQL: a throwaway database on 127.0.0.1:5432, user postgres, dropped at the
   end; skipped with a message if the server does not answer) with ``--reports`` reports
   inserted in bulk. Each has triage columns and a real ``wrapped_key_team``: its own data
   key HPKE-wrapped to the old team key (``crypto.wrap_for_team``, made in a process pool).
   90 % carry a reporter public key (1216 bytes, ML-KEM-768 || X25519); the other 10 % have
   none, as reports stored before migration 0007. Making a key pair per report would only
   slow the set-up, so 300 reporter key pairs are made and reused (a rotation still makes a
   fresh HPKE encapsulation per report: its cost does not depend on that). About 3 % of the
   reports have one or two notification links, sealed as ``NotificationLinks.add`` does
   (``seal_to_key`` to the team key; the inner layer, the bot's, is random bytes here). The
   published team key and its signature are in ``system_settings``; the console store has
   two staff members holding grants of the old key.
2. **Measured**: ``start_rotation`` (one transaction), then ``run_rotation`` until it
   returns (every report re-keyed, links re-sealed, old grants deleted, WAL truncated or
   tables VACUUMed): wall time, reports per second, per-batch times (each batch is one write
   transaction: how long a bot's write may wait), the split between the batches' crypto (in
   the worker thread) and the rest, process CPU, and the peak resident set added during the
   rotation (VmHWM reset before it) besides ``ru_maxrss`` of the whole run. The figures come
   from timing wrappers put around ``key_rotation._rekey``, ``_reseal_links`` and ``forget``
   for the run; the service's code is unchanged.
3. **Batch size**: the same on ``--sweep-reports`` reports (a copy of one data set per run)
   for each of ``--batch-sizes``.
4. **Verified** after each run, outside the timing: every report is under the new key id,
   the epochs and chain rows are as expected, a sample of reports opens with the new key
   (``reports.team_epoch_keys``: epoch 0's key is the original data key) and their new epoch
   key opens with the reporter's key (``crypto.unwrap_case_key_for_reporter``), every link
   is sealed to the new key and a sample opens, only the new key's grants are left and they
   open. A run that fails this exits 1: a benchmark that measured nothing is a defect.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run or
the rotation's result is wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform
import random
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import func, select, text  # noqa: E402

from nazaha.flows.choices import CATEGORIES, GOVERNORATES, SECTORS, SERVICES  # noqa: E402
from nazaha.services import key_rotation  # noqa: E402
from nazaha.services.key_rotation import run_rotation, staff_key_mac, start_rotation  # noqa: E402

BENCH_SECRET = b"the console secret of a benchmark"[:32]  # the MAC key of rotation and staff rows
from nazaha.storage.console_db import create_console_engine, prepare_console_store  # noqa: E402
from nazaha.storage.console_models import KeyRotation, StaffUser, TeamKeyGrant  # noqa: E402
from nazaha.storage.crypto import (  # noqa: E402
    CryptoError,
    TeamPrivateKey,
    TeamPublicKey,
    TeamSigningKey,
    UnknownKeyId,
    grant_team_key,
    new_data_key,
    open_from_key,
    open_team_key_grant,
    seal_to_key,
    unwrap_case_key_for_reporter,
    unwrap_with_team,
    wrap_for_team,
    wrapped_key_id,
)
from nazaha.storage.database import create_sessionmaker  # noqa: E402
from nazaha.storage.migrations import upgrade_database  # noqa: E402
from nazaha.storage.models import CaseKeyEpoch, NotificationLink, Report, SystemSetting  # noqa: E402
from nazaha.storage.notifications import LINK_LABEL  # noqa: E402
from nazaha.storage.reports import team_epoch_keys  # noqa: E402
from nazaha.storage.team_key import (  # noqa: E402
    SETTING_TEAM_KEY_ID,
    SETTING_TEAM_PUBLIC_KEY,
)

REPORTER_KEY_PAIRS = 300
REPORTER_KEY_SHARE = 0.9  # the rest: stored before migration 0007 (no reporter public key)
LINK_SHARE = 0.03  # reports with notification links (one or two each)
CHUNK = 5000  # rows per bulk insert (and per crypto job of the set-up)
SAMPLE = 500  # reports opened with the new key at the verification
LINK_SAMPLE = 200
FIT_BATCHES = 50  # fewer batches than this: no estimate from the per-batch growth (noise)
STATUSES = ("received", "acknowledged", "in_review", "referred", "action_taken", "closed")
TODAY = dt.date(2026, 12, 1)
NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)


class Defect(Exception):
    """The rotation's result is not what it should be: the figures would measure nothing."""


class Unreachable(Exception):
    """PostgreSQL does not answer."""


# -- the data set ---------------------------------------------------------------------------


def _wrap_chunk(public: bytes, items: list[tuple[str, bytes]]) -> list[bytes]:
    """In a worker process: each (report id, data key) wrapped to the team key, epoch 0."""
    key = TeamPublicKey.from_bytes(public)
    return [wrap_for_team(data_key, key, report_id) for report_id, data_key in items]


@dataclasses.dataclass
class Dataset:
    url: str
    console_dir: Path
    dropper: Callable[[], Awaitable[None]] | None
    old: TeamPrivateKey
    signing: TeamSigningKey
    reporters: list[TeamPrivateKey]
    staff: list[tuple[str, TeamPrivateKey]]
    reports: int
    with_reporter_key: int
    links: int
    # report id -> (data key, index of the reporter key pair or None): the verification sample
    samples: dict[str, tuple[bytes, int | None]]
    link_samples: list[tuple[str, str, bytes]]  # (link id, report id, inner layer)
    generate_s: float = 0.0


async def scratch(backend: str, workdir: Path) -> tuple[str, Callable[[], Awaitable[None]] | None]:
    from console_inbox import scratch_database

    try:
        return await scratch_database(backend, workdir)
    except (OSError, asyncio.TimeoutError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # asyncpg's own errors (authentication, server not ready)
        if type(exc).__module__.startswith("asyncpg"):
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None
        raise


def _pg_dropper(url: str) -> Callable[[], Awaitable[None]]:
    """What drops the throwaway PostgreSQL database of ``url``."""
    name = url.rsplit("/", 1)[1]

    async def dropper() -> None:
        import asyncpg

        from console_inbox import PG

        conn = await asyncpg.connect(**PG, database="postgres", timeout=5)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    return dropper


async def build_dataset(backend: str, n: int, workdir: Path, seed: int) -> Dataset:
    """The data set, made in a child process (so that this process's memory figures are the
    rotation's, not the generator's). ``Unreachable`` if PostgreSQL does not answer."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_build_child, args=(sender, backend, n, str(workdir), seed))
    child.start()
    sender.close()
    try:
        outcome, payload = await asyncio.get_running_loop().run_in_executor(None, receiver.recv)
    except EOFError:
        outcome, payload = "error", f"the generator process died (exit status {child.exitcode})"
    finally:
        await asyncio.get_running_loop().run_in_executor(None, child.join)
    if outcome == "unreachable":
        raise Unreachable(payload)
    if outcome != "ok":
        raise RuntimeError(f"the data set could not be made: {payload}")
    p = payload
    return Dataset(
        p["url"], Path(p["console_dir"]), _pg_dropper(p["url"]) if backend == "postgresql" else None,
        TeamPrivateKey.from_bytes(p["old"]), TeamSigningKey.from_bytes(p["signing"]),
        [TeamPrivateKey.from_bytes(raw) for raw in p["reporters"]],
        [(user_id, TeamPrivateKey.from_bytes(raw)) for user_id, raw in p["staff"]],
        p["reports"], p["with_reporter_key"], p["links"], p["samples"], p["link_samples"], p["generate_s"],
    )


def _build_child(sender: Any, backend: str, n: int, workdir: str, seed: int) -> None:
    """In the generator process: make the data set, send it back as plain values (the
    key classes refuse pickling; these are throwaway keys of a scratch database)."""
    try:
        ds = asyncio.run(_build(backend, n, Path(workdir), seed))
    except Unreachable as exc:
        sender.send(("unreachable", str(exc)))
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    sender.send(("ok", {
        "url": ds.url, "console_dir": str(ds.console_dir), "old": ds.old.to_bytes(),
        "signing": ds.signing.to_bytes(), "reporters": [key.to_bytes() for key in ds.reporters],
        "staff": [(user_id, key.to_bytes()) for user_id, key in ds.staff], "reports": ds.reports,
        "with_reporter_key": ds.with_reporter_key, "links": ds.links, "samples": ds.samples,
        "link_samples": ds.link_samples, "generate_s": ds.generate_s,
    }))


async def _build(backend: str, n: int, workdir: Path, seed: int) -> Dataset:
    started = time.perf_counter()
    rng = random.Random(seed)
    url, dropper = await scratch(backend, workdir)
    try:
        await upgrade_database(url)
        console_dir = workdir / "console"
        engine = create_console_engine(url, console_dir)
        try:
            await prepare_console_store(engine)
            with ProcessPoolExecutor(max_workers=os.cpu_count(),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                ds = await _fill(engine, url, console_dir, dropper, n, rng, pool)
        finally:
            await engine.dispose()
    except BaseException:
        if dropper is not None:
            await dropper()
        raise
    ds.generate_s = time.perf_counter() - started
    return ds


async def _fill(engine: Any, url: str, console_dir: Path, dropper: Any, n: int, rng: random.Random,
                pool: ProcessPoolExecutor) -> Dataset:
    from console_inbox import _designations

    old, signing = TeamPrivateKey.generate(), TeamSigningKey.generate()
    public = old.public_key()
    reporters = [TeamPrivateKey.generate() for _ in range(REPORTER_KEY_PAIRS)]
    reporter_publics = [key.public_key().to_bytes() for key in reporters]
    loop = asyncio.get_running_loop()
    ids = [secrets.token_hex(16) for _ in range(n)]
    keys = [new_data_key() for _ in range(n)]
    jobs = [
        loop.run_in_executor(pool, _wrap_chunk, public.to_bytes(), list(zip(ids[s : s + CHUNK], keys[s : s + CHUNK])))
        for s in range(0, n, CHUNK)
    ]
    designations = _designations(rng, n)
    every = max(1, n // SAMPLE)
    samples: dict[str, tuple[bytes, int | None]] = {}
    link_samples: list[tuple[str, str, bytes]] = []
    with_reporter, links = 0, 0
    for chunk, job in enumerate(jobs):
        wraps = await job
        rows, link_rows = [], []
        for offset, wrapped in enumerate(wraps):
            index = chunk * CHUNK + offset
            report_id = ids[index]
            age = int(rng.triangular(0, 730, 30))
            kind = "corruption" if rng.random() < 0.75 else "complaint"
            status = "received" if age < 3 else rng.choice(STATUSES)
            # The oldest tenth predates migration 0007: no reporter public key.
            reporter = rng.randrange(REPORTER_KEY_PAIRS) if rng.random() < REPORTER_KEY_SHARE else None
            with_reporter += reporter is not None
            rows.append({
                "id": report_id, "designation": designations[index], "kind": kind,
                "category": rng.choice(CATEGORIES) if kind == "corruption" else None,
                "service": rng.choice(SERVICES) if kind == "complaint" else None,
                "sector": rng.choice(SECTORS), "governorate": rng.choice(GOVERNORATES),
                "status": status, "outcome": "substantiated" if status == "closed" else None,
                "created_on": TODAY - dt.timedelta(days=age),
                "team_key_id": public.key_id, "wrapped_key_team": wrapped,
                "wrapped_key_reporter": secrets.token_bytes(60), "receipt_lookup": secrets.token_bytes(32),
                "reporter_public_key": None if reporter is None else reporter_publics[reporter],
                "key_epoch": 0,
            })
            if index % every == 0:
                samples[report_id] = (keys[index], reporter)
            if rng.random() < LINK_SHARE:
                for _ in range(rng.choice((1, 1, 1, 2))):
                    link_id, inner = secrets.token_hex(16), secrets.token_bytes(rng.randint(40, 70))
                    link_rows.append({
                        "id": link_id, "report_id": report_id, "created_on": TODAY,
                        "sealed_link": seal_to_key(public, LINK_LABEL, (link_id, report_id), inner),
                    })
                    if len(link_samples) < LINK_SAMPLE and rng.random() < 0.2:
                        link_samples.append((link_id, report_id, inner))
        async with engine.begin() as conn:
            await conn.execute(Report.__table__.insert(), rows)
            if link_rows:
                await conn.execute(NotificationLink.__table__.insert(), link_rows)
        links += len(link_rows)
    staff = [(secrets.token_hex(16), TeamPrivateKey.generate()) for _ in range(2)]
    async with engine.begin() as conn:
        await conn.execute(SystemSetting.__table__.insert(), [
            {"name": SETTING_TEAM_PUBLIC_KEY, "value": public.to_bytes()},
            {"name": SETTING_TEAM_KEY_ID, "value": public.key_id.encode("ascii")},
        ])
        await conn.execute(StaffUser.__table__.insert(), [
            {"id": user_id, "username": f"member{i}", "role": ("admin", "caseworker")[i], "state": "active",
             "locale": "ar", "created_at": NOW, "enrolled_at": NOW, "generation": 0, "totp_last_step": 0,
             "public_key": key.public_key().to_bytes(),
             "key_mac": staff_key_mac(BENCH_SECRET, user_id, ("admin", "caseworker")[i], key.public_key().to_bytes())}
            for i, (user_id, key) in enumerate(staff)
        ])
        await conn.execute(TeamKeyGrant.__table__.insert(), [
            {"user_id": user_id, "team_key_id": old.key_id, "granted_by": staff[0][0], "granted_at": NOW,
             "sealed": grant_team_key(old, key.public_key(), user_id)}
            for user_id, key in staff
        ])
    # What a live database has after a while (autovacuum on PostgreSQL), and no WAL left.
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
        async with engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA main.wal_checkpoint(TRUNCATE)")
            await conn.exec_driver_sql("PRAGMA console.wal_checkpoint(TRUNCATE)")
    else:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")
    return Dataset(url, console_dir, dropper, old, signing, reporters, staff, n, with_reporter, links,
                   samples, link_samples)


async def clone(ds: Dataset, backend: str, workdir: Path) -> Dataset:
    """A copy of ``ds``'s database (and console store) for one more run."""
    if backend == "sqlite":
        workdir.mkdir()
        source = Path(ds.url.split("///", 1)[1])
        shutil.copy2(source, workdir / source.name)
        shutil.copytree(ds.console_dir, workdir / "console")
        url = f"sqlite+aiosqlite:///{workdir / source.name}"
        return dataclasses.replace(ds, url=url, console_dir=workdir / "console", dropper=None)
    import asyncpg

    from console_inbox import PG

    name, template = f"nazaha_bench_{secrets.token_hex(4)}", ds.url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(**PG, database="postgres", timeout=5)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await admin.close()
    url = f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    return dataclasses.replace(ds, url=url, dropper=_pg_dropper(url))


# -- the measurement ------------------------------------------------------------------------


def _status_kb(field: str) -> float:
    """A VmRSS/VmHWM figure of this process in MB (Linux); NaN elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@dataclasses.dataclass
class Probe:
    """Timings collected by the wrappers around the service's steps during one run."""

    crypto: list[float] = dataclasses.field(default_factory=list)  # _rekey per batch (worker thread)
    batch_ends: list[tuple[float, int]] = dataclasses.field(default_factory=list)  # on_batch
    links: float = 0.0
    resealed: int = 0
    scrub: float = 0.0


@contextlib.contextmanager
def instrumented(probe: Probe):
    """Time ``_rekey``, ``_reseal_links`` and ``forget`` of the rotation service (module
    globals looked up at call time); put the originals back afterwards."""
    rekey, reseal, forget = key_rotation._rekey, key_rotation._reseal_links, key_rotation.forget

    def timed_rekey(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return rekey(*args, **kwargs)
        finally:
            probe.crypto.append(time.perf_counter() - start)

    async def timed_reseal(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = await reseal(*args, **kwargs)
            probe.resealed = result[0]
            return result
        finally:
            probe.links = time.perf_counter() - start

    async def timed_forget(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await forget(*args, **kwargs)
        finally:
            probe.scrub = time.perf_counter() - start

    key_rotation._rekey, key_rotation._reseal_links, key_rotation.forget = timed_rekey, timed_reseal, timed_forget
    try:
        yield probe
    finally:
        key_rotation._rekey, key_rotation._reseal_links, key_rotation.forget = rekey, reseal, forget


def _fit(values: list[float]) -> tuple[float, float]:
    """Least squares ``values[k] ~ a + b k``."""
    if len(values) < 2:
        return (values[0] if values else 0.0), 0.0
    ks = range(len(values))
    mean_k, mean_v = statistics.fmean(ks), statistics.fmean(values)
    var = sum((k - mean_k) ** 2 for k in ks)
    b = sum((k - mean_k) * (v - mean_v) for k, v in zip(ks, values)) / var
    return mean_v - b * mean_k, b


async def rotate(ds: Dataset, batch_size: int) -> dict[str, Any]:
    """One rotation of ``ds`` (start + run), measured and then verified."""
    from console_inbox import busy_seconds

    engine = create_console_engine(ds.url, ds.console_dir)
    sm = create_sessionmaker(engine)
    try:
        async with engine.connect() as conn:  # the pool's first connection, as a running console has
            await conn.execute(text("SELECT 1"))
        new = TeamPrivateKey.generate()
        actor = ds.staff[0][0]
        probe = Probe()
        gc.collect()
        rss_before = _status_kb("VmRSS")
        _reset_peak()
        machine_before, ours_before = busy_seconds()
        cpu_before = time.process_time()
        t0 = time.perf_counter()
        started = await start_rotation(
            sm, ds.old, ds.signing, new, TeamSigningKey.generate(), console_secret=BENCH_SECRET, generation=0,
            actor_id=actor,
        )
        t1 = time.perf_counter()
        with instrumented(probe):
            final = await run_rotation(
                sm, ds.old, console_secret=BENCH_SECRET, actor_id=actor, batch_size=batch_size,
                on_batch=lambda count: probe.batch_ends.append((time.perf_counter(), count)),
            )
        t2 = time.perf_counter()
        cpu = time.process_time() - cpu_before
        machine_after, ours_after = busy_seconds()
        peak = _status_kb("VmHWM")
        batches = [end - begin for (end, _), begin in zip(probe.batch_ends, [t1] + [e for e, _ in probe.batch_ends])]
        rekeyed = sum(count for _, count in probe.batch_ends)
        run_s = t2 - t1
        crypto = probe.crypto[: len(batches)]
        database = [b - c for b, c in zip(batches, crypto)]
        tenth = max(1, len(batches) // 10)
        a, b = _fit(database)
        result = {
            "reports": ds.reports, "with_reporter_key": ds.with_reporter_key, "links": ds.links,
            "batch_size": batch_size, "start_s": t1 - t0, "reports_total_at_start": started.reports_total,
            "run_s": run_s, "reports_per_s": rekeyed / run_s if run_s else float("nan"), "rekeyed": rekeyed,
            "batches": len(batches), "batches_s": sum(batches), "crypto_s": sum(crypto),
            "database_s": sum(database), "links_s": probe.links, "links_resealed": probe.resealed,
            "scrub_s": probe.scrub,
            "finish_s": run_s - sum(batches) - probe.links,  # links excluded; grants, audit, scrub included
            "batch_p50_ms": statistics.median(batches) * 1000 if batches else float("nan"),
            "batch_max_ms": max(batches) * 1000 if batches else float("nan"),
            "batch_first_tenth_ms": statistics.fmean(batches[:tenth]) * 1000 if batches else float("nan"),
            "batch_last_tenth_ms": statistics.fmean(batches[-tenth:]) * 1000 if batches else float("nan"),
            "database_per_batch_fit_ms": (a * 1000, b * 1000),
            "cpu_cores": cpu / run_s if run_s else float("nan"),
            "other_cores": max(0.0, ((machine_after - machine_before) - (ours_after - ours_before)) / (t2 - t0)),
            "rss_before_mb": rss_before, "peak_rss_mb": peak, "peak_added_mb": peak - rss_before,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "failed": final.failed,
        }
        result["verified"] = await verify(ds, sm, new, final)
    finally:
        await engine.dispose()
    return result


def estimate(result: dict[str, Any], target: int = 100_000) -> float:
    """Seconds for ``target`` reports at the same batch size: crypto, links and the
    finish scaled linearly, the batches' database time from its fit a + b k per batch k
    (it grows with the number of rows already re-keyed)."""
    n, size = result["reports"], result["batch_size"]
    a, b = (value / 1000 for value in result["database_per_batch_fit_ms"])
    b = max(0.0, b)  # a small run's fit may slope down by noise
    batches = -(-target // size)
    database = batches * a + b * batches * (batches - 1) / 2
    linear = target / n
    return result["start_s"] * linear + result["crypto_s"] * linear + database + (
        result["links_s"] + result["finish_s"]
    ) * linear


# -- the verification -----------------------------------------------------------------------


async def verify(ds: Dataset, sm: Any, new: TeamPrivateKey, final: Any) -> dict[str, int]:
    """Raise :class:`Defect` unless the rotation did its whole job (outside the timing)."""
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    async with sm() as session:
        total = await session.scalar(select(func.count()).select_from(Report))
        under_new = await session.scalar(
            select(func.count()).select_from(Report).where(Report.team_key_id == new.key_id)
        )
        at_epoch_1 = await session.scalar(select(func.count()).select_from(Report).where(Report.key_epoch == 1))
        chain_rows = await session.scalar(select(func.count()).select_from(CaseKeyEpoch))
        check(total == ds.reports, f"{total} reports instead of {ds.reports}")
        check(under_new == ds.reports, f"{ds.reports - (under_new or 0)} reports not under the new key id")
        check(at_epoch_1 == ds.with_reporter_key, f"{at_epoch_1} reports at epoch 1, expected {ds.with_reporter_key}")
        check(chain_rows == ds.with_reporter_key, f"{chain_rows} case key epoch rows, expected {ds.with_reporter_key}")
        check(final.finished and final.failed == 0, f"rotation not finished cleanly (failed {final.failed})")
        rotation = await session.scalar(select(KeyRotation).order_by(KeyRotation.id.desc()).limit(1))
        check(rotation is not None and rotation.finished_at is not None, "the rotation row is not finished")

        rows = (await session.execute(
            select(Report.id, Report.wrapped_key_team, Report.key_epoch).where(Report.id.in_(list(ds.samples)))
        )).all()
        epochs: dict[str, list[CaseKeyEpoch]] = {}
        for row in (await session.scalars(select(CaseKeyEpoch).where(CaseKeyEpoch.report_id.in_(list(ds.samples))))).all():
            epochs.setdefault(row.report_id, []).append(row)
        opened = reporter_opened = 0
        check(len(rows) == len(ds.samples), "sampled reports missing")
        for report_id, wrapped, epoch in rows:
            data_key, reporter = ds.samples[report_id]
            try:
                keys = team_epoch_keys(report_id, bytes(wrapped), epoch, epochs.get(report_id, []), new)
            except CryptoError as exc:
                check(False, f"a sampled report does not open with the new key ({type(exc).__name__})")
                continue
            check(keys[0] == data_key, "a sampled report's epoch 0 key is not its original data key")
            check(len(keys) == (2 if reporter is not None else 1), "a sampled report has the wrong number of epochs")
            opened += 1
            if reporter is not None:
                try:
                    mine = unwrap_case_key_for_reporter(
                        bytes(epochs[report_id][0].wrapped_reporter), ds.reporters[reporter], report_id, 1
                    )
                except (CryptoError, KeyError) as exc:
                    check(False, f"a reporter epoch key does not open with the reporter key ({type(exc).__name__})")
                    continue
                check(mine == keys[-1], "the reporter's epoch key is not the team's")
                reporter_opened += 1
            try:
                unwrap_with_team(bytes(wrapped), ds.old, report_id, epoch)
                check(False, "the old team key still opens a report")
            except UnknownKeyId:
                pass

        links = (await session.execute(select(NotificationLink.id, NotificationLink.report_id, NotificationLink.sealed_link))).all()
        check(len(links) == ds.links, f"{len(links)} links instead of {ds.links}")
        check(all(wrapped_key_id(bytes(s)) == new.key_id for _, _, s in links), "links left under the old key")
        by_id = {link_id: bytes(sealed) for link_id, _, sealed in links}
        links_opened = 0
        for link_id, report_id, inner in ds.link_samples:
            try:
                check(open_from_key(new, LINK_LABEL, (link_id, report_id), by_id[link_id]) == inner,
                      "a link's inner layer changed")
                links_opened += 1
            except (CryptoError, KeyError) as exc:
                check(False, f"a sampled link does not open with the new key ({type(exc).__name__})")

        grants = (await session.execute(select(TeamKeyGrant.user_id, TeamKeyGrant.team_key_id, TeamKeyGrant.sealed))).all()
        check(sorted((u, k) for u, k, _ in grants) == sorted((u, new.key_id) for u, _ in ds.staff),
              "grants are not exactly the new key's, one per member")
        staff_keys = dict(ds.staff)
        for user_id, key_id, sealed in grants:
            try:
                check(open_team_key_grant(staff_keys[user_id], user_id, key_id, bytes(sealed)).key_id == new.key_id,
                      "a grant holds another key")
            except (CryptoError, KeyError) as exc:
                check(False, f"a new grant does not open ({type(exc).__name__})")
    if problems:
        raise Defect("; ".join(sorted(set(problems))))
    return {"reports_under_new_key": under_new, "sample_opened": opened, "sample_reporter_opened": reporter_opened,
            "links_under_new_key": len(links), "links_opened": links_opened, "grants": len(grants)}


# -- the report -----------------------------------------------------------------------------


def describe(label: str, r: dict[str, Any]) -> None:
    per_report_ms = r["crypto_s"] / max(1, r["rekeyed"]) * 1000
    a, b = r["database_per_batch_fit_ms"]
    print(f"\n== {label}: {r['reports']:,} reports, batch {r['batch_size']}")
    print(f"start_rotation: {r['start_s'] * 1000:.0f} ms (counted {r['reports_total_at_start']:,} reports "
          "under the old key, 2 grants of the new key, key published)")
    print(f"run_rotation: {r['run_s']:.1f} s, {r['reports_per_s']:,.0f} reports/s "
          f"({r['rekeyed']:,} re-keyed in {r['batches']} batches)")
    print(f"  batches {r['batches_s']:.1f} s = crypto (worker thread) {r['crypto_s']:.1f} s "
          f"+ database and the rest {r['database_s']:.1f} s; crypto {per_report_ms:.2f} ms a report "
          f"(one core's ceiling: {1000 / per_report_ms:,.0f} reports/s; this run reached "
          f"{r['reports_per_s'] / (1000 / per_report_ms):.2f} of it)")
    print(f"  one batch (one write transaction): p50 {r['batch_p50_ms']:.0f} ms, max {r['batch_max_ms']:.0f} ms; "
          f"first tenth {r['batch_first_tenth_ms']:.0f} ms, last tenth {r['batch_last_tenth_ms']:.0f} ms "
          f"(ratio {r['batch_last_tenth_ms'] / r['batch_first_tenth_ms']:.2f}); database time of batch k "
          f"~ {a:.1f} + {b:.4f} k ms")
    print(f"  links: {r['links_s']:.2f} s ({r['links_resealed']:,} re-sealed); finish (old grants deleted, "
          f"audit, then WAL truncation or VACUUM {r['scrub_s']:.2f} s): {r['finish_s']:.2f} s")
    print(f"  CPU of this process {r['cpu_cores']:.2f} cores; other programs kept {r['other_cores']:.2f} cores busy")
    if r["other_cores"] > 0.2:
        print(f"WARNING: other programs kept {r['other_cores']:.2f} cores busy: the figures are skewed; "
              "run again on an idle machine")
    print(f"  memory: RSS {r['rss_before_mb']:.0f} MB before, peak {r['peak_rss_mb']:.0f} MB during the rotation "
          f"(+{r['peak_added_mb']:.0f} MB); ru_maxrss of the whole run so far {r['ru_maxrss_mb']:.0f} MB")
    v = r["verified"]
    print(f"  verified: {v['reports_under_new_key']:,} reports under the new key id; {v['sample_opened']} sampled "
          f"reports open with the new key (epoch 0 = original data key), {v['sample_reporter_opened']} of them "
          f"with a new epoch key that opens with the reporter key; {v['links_under_new_key']:,} links under the "
          f"new key ({v['links_opened']} sampled open); {v['grants']} grants, of the new key only")


async def main_async(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    results: dict[str, Any] = {"backend": args.backend, "python": platform.python_version(), "cpus": os.cpu_count()}
    print(f"Team-key rotation benchmark on {args.backend}: Python {platform.python_version()}, {os.cpu_count()} CPUs. "
          f"Reports: {REPORTER_KEY_SHARE:.0%} with a reporter public key ({REPORTER_KEY_PAIRS} reporter key pairs "
          f"made and reused: the rotation still makes one HPKE encapsulation per report), the rest without one "
          f"(stored before migration 0007); {LINK_SHARE:.0%} with one or two notification links; "
          "2 staff members holding grants.")
    with tempfile.TemporaryDirectory(prefix="nazaha-bench-", dir=args.dir) as tmp:
        try:
            ds = await build_dataset(args.backend, args.reports, Path(tmp) / "main", seed=10)
        except Unreachable as exc:
            print(f"PostgreSQL at 127.0.0.1:5432 is not reachable ({exc}): benchmark skipped.", file=sys.stderr)
            print("SKIPPED: PostgreSQL not reachable")
            return 0
        print(f"data: {ds.reports:,} reports ({ds.with_reporter_key:,} with a reporter public key), {ds.links:,} "
              f"links, generated and inserted in {ds.generate_s:.1f} s (not measured)")
        try:
            main = await rotate(ds, args.batch_size)
        finally:
            if ds.dropper is not None:
                await ds.dropper()
        describe(f"{args.backend}", main)
        guess = estimate(main) if main["batches"] >= FIT_BATCHES else None
        linear = 100_000 / main["reports_per_s"]
        print(f"\n{ds.reports / 1000:g}k rotation: {main['run_s']:.1f} s, {main['reports_per_s']:,.0f} reports/s "
              f"(+ start {main['start_s']:.2f} s); estimate for 100,000 reports: "
              + (f"{guess:.0f} s (batches' growth fitted; linear from this rate: {linear:.0f} s)" if guess is not None
                 else f"{linear:.0f} s linear from this rate (too few batches to fit their growth: a low bound)")
              + f"; peak RSS added {main['peak_added_mb']:.0f} MB")
        results["main"] = dict(main, estimate_100k_s=guess)

        if args.sweep_reports > 0 and sizes:
            base = await build_dataset(args.backend, args.sweep_reports, Path(tmp) / "sweep", seed=11)
            sweep = {}
            try:
                for i, size in enumerate(sizes):
                    copy = await clone(base, args.backend, Path(tmp) / f"sweep-{i}")
                    try:
                        sweep[size] = await rotate(copy, size)
                    finally:
                        if copy.dropper is not None:
                            await copy.dropper()
            finally:
                if base.dropper is not None:
                    await base.dropper()
            print(f"\n== batch size, {args.sweep_reports:,} reports on {args.backend} (a copy of one data set each):")
            print(f"{'batch':>6} {'run s':>7} {'reports/s':>10} {'batch p50 ms':>13} {'max ms':>7} {'crypto s':>9} "
                  f"{'db s':>6} {'vs ' + str(sizes[0]):>7}")
            first = sweep[sizes[0]]["reports_per_s"]
            for size, r in sweep.items():
                print(f"{size:>6} {r['run_s']:>7.1f} {r['reports_per_s']:>10,.0f} {r['batch_p50_ms']:>13.0f} "
                      f"{r['batch_max_ms']:>7.0f} {r['crypto_s']:>9.1f} {r['database_s']:>6.1f} "
                      f"{r['reports_per_s'] / first:>7.2f}")
            results["sweep"] = sweep
    if args.json:
        print(json.dumps(results, default=str))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=key_rotation.BATCH_SIZE,
                        help=f"of the main run (default: the service's, {key_rotation.BATCH_SIZE})")
    parser.add_argument("--sweep-reports", type=int, default=10_000, help="reports of the batch size runs (0: none)")
    parser.add_argument("--batch-sizes", default="100,200,500")
    parser.add_argument("--dir", default=None, help="where the temporary SQLite files go")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except Defect as exc:
        print(f"DEFECT: the rotation's result is wrong, the figures measure nothing: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
