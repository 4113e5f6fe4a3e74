"""Console export benchmark: CSV and XLSX of the inbox's triage metadata over 100,000 cases.

    .venv/bin/python bench/console_export.py [--cases 100000] [--backend sqlite]
        [--dir DIR] [--json]

The data set is the console inbox benchmark's (bench/console_inbox.py: its generator and
bulk insert, same seed). Each export is made by ``nazaha.services.case_export.build_export``
(what ``POST /cases/export.csv|.xlsx`` runs, in Arabic) in a fresh child process, twice:

* **time**: wall-clock seconds from the first query to the file's bytes, and the child's
  peak resident set (VmHWM, reset just before the export) over its size before: what the
  export added to the process at its peak;
* **memory**: the same export under ``tracemalloc``, for the peak of Python allocations
  (tracemalloc slows the run: its time is not reported).

Exports: an admin's of every case, and a caseworker's of every case they may see.
It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FORMATS = ("csv", "xlsx")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb(reset: bool = False) -> float:
    """This process's peak resident set (VmHWM, Linux), optionally reset to the current size
    first. Not ``ru_maxrss``: a child started by the parent inherits the parent's (hundreds of
    MB of generated rows). NaN where /proc is missing."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return float("nan")


async def child(url: str, console_dir: str, fmt: str, role: str, user_id: str, trace: bool) -> dict[str, Any]:
    """One export in this process; its figures."""
    import tracemalloc

    from console_inbox import TODAY

    from nazaha.admin import i18n
    from nazaha.admin.routes.exports import wording
    from nazaha.services.access import Viewer
    from nazaha.services.case_export import build_export, export_tmpdir
    from nazaha.services.deadlines import DeadlineRules
    from nazaha.services.inbox_filter import InboxFilter
    from nazaha.storage.console_db import create_console_engine
    from nazaha.storage.database import create_sessionmaker

    i18n.set_locale("ar")
    engine = create_console_engine(url, Path(console_dir))
    sm = create_sessionmaker(engine)
    rules = DeadlineRules(acknowledge_days=7, feedback_months=3, due_soon_days=2)
    viewer = Viewer(user_id, role)
    async with sm() as session:  # connect and load everything once: not part of the export
        await session.execute(__import__("sqlalchemy").text("SELECT 1"))
    tmpdir = export_tmpdir(Path(console_dir)) if fmt == "xlsx" else None
    rss_before = _peak_rss_mb(reset=True)
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    async with sm() as session, session.begin():
        content, rows = await build_export(session, viewer, InboxFilter(), fmt, TODAY, rules, wording(),
                                           tmpdir=tmpdir, right_to_left=True)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    await engine.dispose()
    return {"rows": rows, "bytes": len(content), "seconds": seconds, "rss_before_mb": rss_before,
            "rss_after_mb": _peak_rss_mb(), "traced_peak_mb": peak}


def run_child(url: str, console_dir: Path, fmt: str, role: str, user_id: str, trace: bool) -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", url, str(console_dir), fmt, role, user_id]
    if trace:
        args.append("--trace")
    done = subprocess.run(args, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(done.stdout.strip().splitlines()[-1])


async def prepare(backend: str, tables: dict, workdir: Path) -> tuple[str, Any]:
    from console_inbox import fill, scratch_database

    from nazaha.storage.console_db import create_console_engine, prepare_console_store
    from nazaha.storage.migrations import upgrade_database

    url, dropper = await scratch_database(backend, workdir)
    await upgrade_database(url)
    engine = create_console_engine(url, workdir / "console")
    try:
        await prepare_console_store(engine)
        await fill(engine, tables)
    finally:
        await engine.dispose()
    return url, dropper


async def main_async(args: argparse.Namespace) -> int:
    from console_inbox import busy_seconds, generate

    start = time.perf_counter()
    tables, _team, facts = generate(args.cases)
    generated = time.perf_counter() - start
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nazaha-bench-", dir=args.dir) as tmp:
        for backend in backends:
            workdir = Path(tmp) / backend
            workdir.mkdir()
            url, dropper = await prepare(backend, tables, workdir)
            try:
                figures = []
                for who, role, user_id in (("admin, every case", "admin", facts["admin"]),
                                           ("caseworker, every case they may see", "caseworker", facts["caseworker"])):
                    for fmt in FORMATS:
                        machine_before, ours_before = busy_seconds()
                        children_before = _children_cpu()
                        started = time.perf_counter()
                        timed = run_child(url, workdir / "console", fmt, role, user_id, trace=False)
                        machine_after, ours_after = busy_seconds()
                        elapsed = time.perf_counter() - started
                        ours = (ours_after - ours_before) + (_children_cpu() - children_before)
                        traced = run_child(url, workdir / "console", fmt, role, user_id, trace=True)
                        figures.append({
                            "who": who, "format": fmt, **timed, "traced_peak_mb": traced["traced_peak_mb"],
                            # the child's process start included (imports): a slight underestimate
                            "other_cores": min(os.cpu_count() or 1, max(0.0, ((machine_after - machine_before) - ours) / elapsed)),
                        })
                results[backend] = figures
            finally:
                if dropper is not None:
                    await dropper()
    print(f"Console export benchmark: {args.cases:,} cases, {platform.python_version()}, {os.cpu_count()} CPUs; "
          f"rows generated in {generated:.1f} s")
    for backend, figures in results.items():
        print(f"\n== {backend}")
        print(f"{'export':<44} {'rows':>8} {'MB':>7} {'s':>7} {'RSS +MB':>8} {'traced MB':>10} {'other cores':>12}")
        for f in figures:
            print(f"{f['who'] + ', ' + f['format']:<44} {f['rows']:>8,} {f['bytes'] / 2**20:>7.1f} {f['seconds']:>7.2f} "
                  f"{f['rss_after_mb'] - f['rss_before_mb']:>8.1f} {f['traced_peak_mb']:>10.1f} {f['other_cores']:>12.2f}")
    if args.json:
        print(json.dumps({"cases": args.cases, "results": results}))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, console_dir, fmt, role, user_id = sys.argv[2:7]
        print(json.dumps(asyncio.run(child(url, console_dir, fmt, role, user_id, "--trace" in sys.argv))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--dir", default=None, help="where the temporary SQLite files go")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
