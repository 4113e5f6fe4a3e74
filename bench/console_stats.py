"""Console statistics benchmark: the statistics page's figures for a one-year range over the
100,000 cases of the console inbox benchmark.

    .venv/bin/python bench/console_stats.py [--cases 100000] [--runs 30] [--backend sqlite]
        [--dir DIR] [--json]

Same generator and bulk fill as ``bench/console_inbox.py`` (reports, console rows with
acknowledgement and closing dates), plus 600 rows of purged cases' aggregates. Measures, a
fresh session each run: ``statistics()`` for the last twelve whole months (as an admin, and
as a caseworker), and the page's server work after it (the eight tables with suppression,
the timeliness figures) and the eight SVG charts (pygal) rendered once each. Target: the
figures and tables < 300 ms (p95) on SQLite.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import statistics as stats_module
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from console_inbox import TODAY, busy_seconds, fill, generate, percentile, scratch_database  # noqa: E402

from nazaha.admin.statistics_view import CHARTS, chart_svg, chart_table, timeliness  # noqa: E402
from nazaha.flows.choices import CATEGORIES, GOVERNORATES, SECTORS, SERVICES  # noqa: E402
from nazaha.services.access import Viewer  # noqa: E402
from nazaha.services.deadlines import DeadlineRules  # noqa: E402
from nazaha.services.statistics import statistics  # noqa: E402
from nazaha.storage.console_db import create_console_engine, prepare_console_store  # noqa: E402
from nazaha.storage.console_models import PurgedCaseAggregate  # noqa: E402
from nazaha.storage.database import create_sessionmaker  # noqa: E402
from nazaha.storage.migrations import upgrade_database  # noqa: E402

TARGET_MS = 300.0
FROM, TO = dt.date(2025, 12, 1), dt.date(2026, 11, 30)  # TODAY is 1 December 2026


def purged_rows(n: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        kind = "corruption" if rng.random() < 0.75 else "complaint"
        month = dt.date(2025, 3, 1) + dt.timedelta(days=rng.randint(0, 600))
        rows.append({
            "received_month": f"{month:%Y-%m}", "closed_month": f"{month:%Y-%m}", "kind": kind,
            "category": rng.choice(CATEGORIES) if kind == "corruption" else None,
            "service": rng.choice(SERVICES) if kind == "complaint" else None,
            "sector": rng.choice(SECTORS), "governorate": rng.choice(GOVERNORATES),
            "outcome": rng.choice(("substantiated", "not_substantiated", "out_of_scope")),
            "ack_days": rng.randint(0, 10), "close_days": rng.randint(10, 200), "count": rng.randint(1, 6),
        })
    return rows


async def measure(sm: Any, viewer: Viewer, runs: int) -> dict[str, Any]:
    rules = DeadlineRules()
    async with sm() as session:  # warm-up
        figures = await statistics(session, viewer, FROM, TO, TODAY, rules)
    service, page = [], []
    for _ in range(runs):
        async with sm() as session:
            start = time.perf_counter()
            figures = await statistics(session, viewer, FROM, TO, TODAY, rules)
            middle = time.perf_counter()
            [chart_table(figures, name, 5) for name in CHARTS]
            timeliness(figures, 5)
            end = time.perf_counter()
        service.append((middle - start) * 1000)
        page.append((end - start) * 1000)
    charts = []
    for name in CHARTS:
        start = time.perf_counter()
        chart_svg(chart_table(figures, name, 5), "ar")
        charts.append((time.perf_counter() - start) * 1000)
    return {
        "cases": figures.total, "purged": figures.purged,
        "statistics_p50_ms": stats_module.median(service), "statistics_p95_ms": percentile(service, 0.95),
        "page_p50_ms": stats_module.median(page), "page_p95_ms": percentile(page, 0.95),
        "chart_svg_max_ms": max(charts), "chart_svg_sum_ms": sum(charts),
    }


async def run(backend: str, tables: dict, facts: dict, args: argparse.Namespace, workdir: Path) -> dict:
    url, dropper = await scratch_database(backend, workdir)
    try:
        await upgrade_database(url)
        engine = create_console_engine(url, workdir / "console")
        try:
            await prepare_console_store(engine)
            async with engine.begin() as conn:
                await conn.execute(PurgedCaseAggregate.__table__.insert(), purged_rows(600))
            await fill(engine, tables)
            sm = create_sessionmaker(engine)
            machine_before, ours_before = busy_seconds()
            started = time.perf_counter()
            result = {
                "admin": await measure(sm, Viewer(facts["admin"], "admin"), args.runs),
                "caseworker": await measure(sm, Viewer(facts["caseworker"], "caseworker"), args.runs),
            }
            machine_after, ours_after = busy_seconds()
            result["other_cores"] = max(
                0.0, ((machine_after - machine_before) - (ours_after - ours_before)) / (time.perf_counter() - started)
            )
        finally:
            await engine.dispose()
    finally:
        if dropper is not None:
            await dropper()
    return result


async def main_async(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    tables, _team, facts = generate(args.cases)
    generated = time.perf_counter() - start
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results = {}
    with tempfile.TemporaryDirectory(prefix="nazaha-bench-", dir=args.dir) as tmp:
        for backend in backends:
            workdir = Path(tmp) / backend
            workdir.mkdir()
            results[backend] = await run(backend, tables, facts, args, workdir)
    print(f"Console statistics benchmark: {args.cases:,} cases, {platform.python_version()}, "
          f"{os.cpu_count()} CPUs; rows generated in {generated:.1f} s; range {FROM} to {TO}")
    for backend, result in results.items():
        print(f"\n== {backend} ({result['other_cores']:.2f} cores kept busy by other programs)")
        for who in ("admin", "caseworker"):
            r = result[who]
            verdict = "PASS" if r["page_p95_ms"] < TARGET_MS else "MISS"
            print(f"{who:<11} {r['cases']:>7,} cases ({r['purged']:,} purged): statistics p50 "
                  f"{r['statistics_p50_ms']:.1f} ms p95 {r['statistics_p95_ms']:.1f} ms; with the tables p95 "
                  f"{r['page_p95_ms']:.1f} ms ({verdict}); 8 charts {r['chart_svg_sum_ms']:.0f} ms "
                  f"(slowest {r['chart_svg_max_ms']:.0f} ms)")
    if args.json:
        print(json.dumps({"cases": args.cases, "results": results}, default=str))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
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
