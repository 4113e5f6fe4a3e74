"""Report throughput benchmark: N simulated citizens file reports through the emulator.

    .venv/bin/python bench/report_throughput.py [--users 200] [--kdf production|testing]
        [--rounds 3] [--think 0.3] [--arrival 4] [--json]

One run, everything on 127.0.0.1:
* the sandbox Bot API emulator (``SandboxServer``) in this process, hosting two bots;
* ``nazaha init`` then ``nazaha bot`` (a subprocess, long polling) in a temporary data dir;
* ``bench/empty_bot.py`` (a subprocess): an aiogram bot with one message and one callback
  handler that answer with a fixed one-button message: the baseline.

Latency of one update = from the control-API call that creates it (send text / press a
button) until the bot's answer to *that* update is visible in the chat (the message carrying
the next step's button, the "received (N characters)" notice, or the receipt), waited for
with the emulator's long-poll endpoint.

Phases (same client code for all, each user does its steps one after the other):
1. saturation rounds (``--rounds``, default 3), alternating and ending with a baseline:
   baseline, ordinary, baseline, ordinary, ..., baseline.
   * baseline: N users x 11 updates against the empty bot, all users at once (closed loop);
   * ordinary: N fresh users x the same 11 updates against Nazaha (/report ... up to the
     review screen), all at once.
   Ratio = Nazaha updates/s / baseline updates/s over all rounds; each round's own ratio
   (against the two baseline runs around it) is printed too, to show the spread;
2. reports: N fresh users complete a report (11 ordinary steps + the submit tap), waiting
   ``--think`` seconds (default 0.3) between their steps like people reading. They do not
   all start at once: user i starts at i / ``--arrival`` seconds (default 4 users/s, a
   fixed workload), so submissions (Argon2id, in the bot's KDF thread) run while other
   users are in their ordinary steps. Gives reports/s (N / phase wall time), ordinary and
   submit latencies, and the ordinary p99 of the steps that overlapped an in-flight
   submission (target < 150 ms), next to the p99 of the steps that did not.

Closed-loop latencies of the saturation phases are queueing times (N users each always waiting for
an answer): they are printed for information only. The run is bounded (``--budget``):
users still busy at a phase's deadline are stopped and counted as unfinished.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nazaha.sandbox.client import SandboxClient
from nazaha.sandbox.server import SandboxServer

HERE = Path(__file__).resolve().parent
NAZAHA_TOKEN = "700001:BENCH-nazaha-throughput-000000000"
BASELINE_TOKEN = "700002:BENCH-empty-aiogram-bot-000000000"
PASSPHRASE = "benchmark passphrase, not a secret"
RECEIPT_RE = re.compile(r"\b\d{4} \d{4} \d{4} \d{4} \d{4}\b")
DESCRIPTION = "The clerk at the licensing office asked for 300 shekels to stamp my building permit."
FAILURE_TEXTS = ("Sorry, something went wrong", "You are sending messages very quickly")
TARGET_RATIO = 0.5
TARGET_P99_MS = 150.0
STEP_TIMEOUT = 60.0  # seconds, ordinary step
SUBMIT_TIMEOUT = 150.0  # a submission may queue behind many others for the KDF thread

Message = dict[str, Any]
Match = Callable[[Message], bool]


# ---- what a user does ---------------------------------------------------------------------


def buttons(message: Message) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def has_button(data: str) -> Match:
    return lambda m: data in buttons(m)


def notice_with(fragment: str) -> Match:
    return lambda m: not buttons(m) and fragment in (m.get("text") or "")


def is_receipt(m: Message) -> bool:
    return bool(m.get("protect_content")) and RECEIPT_RE.search(m.get("text") or "") is not None


@dataclass(frozen=True)
class Step:
    action: str  # "text" (send text) or "press" (tap the newest button carrying this data)
    payload: str
    # The answer to this update: a bot message matching it. For a step that leads to the
    # next question, ``screens`` are (screen number, match) of the question expected next and
    # of the later ones (a later one means the flow skipped a question, which is followed).
    answer: Match | None = None
    screens: tuple[tuple[int, Match], ...] = ()
    kind: str = "ordinary"  # or "submit"
    at: int = -1  # the screen (question) this step answers; -1: before any

    def reached(self, message: Message) -> int | None:
        """None if ``message`` is not the answer; else the screen it shows (-1: not a screen)."""
        if self.answer is not None:
            return -1 if self.answer(message) else None
        return next((number for number, match in self.screens if match(message)), None)


# The report, built from the flow itself so that the benchmark follows the questions the bot
# really asks: the safety notice (first report of a user), the corruption questions, the
# review. Choices: these values when offered, else the first option.
PREFERRED = {"category": "bribery", "sector": "ministry", "governorate": "hebron", "when": "last_month",
             "contact": "anonymous", "notify": "none"}


def build_report_steps() -> tuple[list[Step], list[str]]:
    from nazaha.flows import report_flow as flow

    sequence = [flow.Step.SAFETY, *flow.QUESTIONS[flow.Kind.CORRUPTION], flow.Step.REVIEW]

    def screen(step: Any) -> Match:
        if step in flow.CHOICES:
            prefix = f"f:{step}:"
            return lambda m: any(d.startswith(prefix) for d in buttons(m))
        if step is flow.Step.REVIEW:
            return has_button("n:submit")
        if step is flow.Step.SAFETY:
            return has_button("n:continue")
        return has_button("n:done")  # description, evidence and other open steps

    def leading_to(index: int) -> tuple[tuple[int, Match], ...]:
        return tuple((j, screen(sequence[j])) for j in range(index, len(sequence)))

    steps = [Step("text", "/report", screens=leading_to(0))]
    for index, step in enumerate(sequence[:-1]):
        if step is flow.Step.SAFETY:
            steps.append(Step("press", "n:continue", screens=leading_to(index + 1), at=index))
        elif step in flow.CHOICES:
            options = flow.CHOICES[step]
            value = PREFERRED.get(str(step), options[0])
            value = value if value in options else options[0]
            steps.append(Step("press", f"f:{step}:{value}", screens=leading_to(index + 1), at=index))
        elif step is flow.Step.DESCRIPTION:
            # Answered by the "received (N characters so far)" notice, then Done.
            steps.append(Step("text", DESCRIPTION, answer=notice_with(f"({len(DESCRIPTION)} "), at=index))
            steps.append(Step("press", "n:done", screens=leading_to(index + 1), at=index))
        else:  # e.g. the optional evidence step: skip it with Done
            steps.append(Step("press", "n:done", screens=leading_to(index + 1), at=index))
    steps.append(Step("press", "n:submit", answer=is_receipt, kind="submit", at=len(sequence) - 1))
    return steps, [str(s) for s in sequence]


REPORT_STEPS, SCREENS = build_report_steps()
ORDINARY_STEPS = [s for s in REPORT_STEPS if s.kind == "ordinary"]
# The baseline: the same updates in the same order (texts and taps), each answered by the
# empty bot's one-button message.
BASELINE_STEPS = [Step(s.action, s.payload if s.action == "text" else "b:next", answer=has_button("b:next"))
                  for s in ORDINARY_STEPS]


class StepFailed(Exception):
    pass


@dataclass
class Sample:
    kind: str
    start: float
    end: float

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1000.0


class User:
    """One simulated citizen: sends an update, waits (long poll) for the answer to it."""

    def __init__(self, client: SandboxClient, token: str, user_id: int) -> None:
        self.client = client
        self.token = token
        self.user_id = user_id
        self.seen = 0  # newest message id in this chat we know of
        self.button_at: dict[str, int] = {}  # callback data -> newest bot message carrying it

    async def do(self, step: Step) -> tuple[Sample, int]:
        timeout = SUBMIT_TIMEOUT if step.kind == "submit" else STEP_TIMEOUT
        if step.action == "press" and step.payload not in self.button_at:
            raise StepFailed(f"no button {step.payload!r} to press")
        start = time.perf_counter()
        if step.action == "text":
            sent = await self.client.send_text(self.user_id, step.payload, token=self.token)
            self.seen = max(self.seen, sent["message_id"])
        else:
            await self.client.press(self.user_id, self.button_at[step.payload], step.payload, token=self.token)
        reached = await self._wait_for(step, timeout)
        return Sample(step.kind, start, time.perf_counter()), reached

    async def _wait_for(self, step: Step, timeout: float) -> int:
        deadline = time.perf_counter() + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise StepFailed(f"no answer to {step.payload[:20]!r} within {timeout:.0f}s")
            try:
                new = await self.client.wait_for_bot_messages(self.user_id, self.seen, remaining, token=self.token)
            except TimeoutError:
                continue
            reached: int | None = None
            for message in new:
                self.seen = max(self.seen, message["message_id"])
                for data in buttons(message):
                    self.button_at[data] = message["message_id"]
                text = message.get("text") or ""
                if any(text.startswith(f) for f in FAILURE_TEXTS):
                    raise StepFailed(f"bot answered {text[:40]!r} to {step.payload[:20]!r}")
                if reached is None:
                    reached = step.reached(message)
            if reached is not None:
                return reached


# ---- measuring ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def cpu_seconds(pid: int | None) -> float:
    """User+system CPU of a process (all threads); this process if pid is None."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine (all processes, all cores) since boot."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


@dataclass
class PhaseResult:
    name: str
    users: int
    wall: float
    samples: list[Sample]
    completed: int
    errors: list[str]
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, per process

    def latencies(self, kind: str) -> list[float]:
        return [s.ms for s in self.samples if s.kind == kind]

    def rate(self, kind: str = "ordinary") -> float:
        return len(self.latencies(kind)) / self.wall if self.wall > 0 else math.nan

    def split_by_submissions(self) -> tuple[list[float], list[float]]:
        """Ordinary-step latencies: (overlapping an in-flight submission, not overlapping any)."""
        merged: list[list[float]] = []
        for s in sorted((s for s in self.samples if s.kind == "submit"), key=lambda s: s.start):
            if merged and s.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], s.end)
            else:
                merged.append([s.start, s.end])
        starts = [m[0] for m in merged]
        during: list[float] = []
        outside: list[float] = []
        for s in self.samples:
            if s.kind != "ordinary":
                continue
            i = bisect.bisect_right(starts, s.end) - 1  # last interval starting before the step ended
            (during if i >= 0 and merged[i][1] >= s.start else outside).append(s.ms)
        return during, outside


async def run_phase(name: str, client: SandboxClient, token: str, steps: list[Step], users: int,
                    processes: dict[str, int | None], deadline: float, arrival: float | None = None,
                    think: float = 0.0, language_code: str = "en") -> PhaseResult:
    """``users`` fresh users each run ``steps`` in order, concurrently.

    ``arrival`` None: all start at once; else user i starts at i / arrival seconds. Users
    still busy at ``deadline`` (time.perf_counter()) are stopped and reported unfinished.
    ``think``: seconds a user waits between receiving an answer and its next update.
    """
    people = await asyncio.gather(*(client.create_user(first_name=f"Citizen{i}", language_code=language_code,
                                                       token=token) for i in range(users)))
    samples: list[Sample] = []
    errors: list[str] = []
    completed = 0

    async def citizen(index: int, user: User) -> None:
        nonlocal completed
        if arrival:
            await asyncio.sleep(index / arrival)  # the staggered start, not a polling loop
        try:
            position = 0
            while position < len(steps):
                if think and position:
                    await asyncio.sleep(think)  # the user reading and thinking, not polling
                sample, screen = await user.do(steps[position])
                samples.append(sample)
                position += 1
                if screen >= 0:  # go on from the question the bot asked (a skipped one is skipped)
                    position = next((i for i, s in enumerate(steps) if s.at == screen), len(steps))
            completed += 1
        except (StepFailed, OSError, asyncio.TimeoutError) as exc:  # aiohttp errors are OSErrors
            errors.append(f"{type(exc).__name__}: {exc}")

    cpu_before = {label: cpu_seconds(pid) for label, pid in processes.items()}
    machine_before = machine_busy_seconds()
    start = time.perf_counter()
    tasks = [asyncio.ensure_future(citizen(i, User(client, token, p["id"]))) for i, p in enumerate(people)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - start))
    finally:  # at the deadline, and when the run itself is cancelled (Ctrl+C, SIGTERM)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if pending:
        errors.extend([f"unfinished at the time budget ({len(pending)} users)"] * len(pending))
    wall = time.perf_counter() - start
    cpu = {label: (cpu_seconds(pid) - cpu_before[label]) / wall for label, pid in processes.items()}
    # Whatever else used the CPU meanwhile: other programs, kernel threads (disk flushes),
    # the hypervisor (steal time). A lot of it skews the figures.
    cpu["other"] = max(0.0, (machine_busy_seconds() - machine_before) / wall - sum(cpu.values()))
    return PhaseResult(name, users, wall, samples, completed, errors, cpu)


# ---- processes ----------------------------------------------------------------------------


def nazaha_env(data_dir: Path, api_url: str, kdf: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAZAHA_")}
    env.update(
        NAZAHA_DATA_DIR=str(data_dir),
        NAZAHA_BOT_TOKEN=NAZAHA_TOKEN,
        NAZAHA_TELEGRAM_API_URL=api_url,
        NAZAHA_KDF_PROFILE=kdf,
        NAZAHA_LOG_LEVEL="WARNING",
        # Simulated users tap far faster than people: flood control must not interfere.
        NAZAHA_THROTTLE_RATE="100000",
        NAZAHA_THROTTLE_BURST="100000",
        PYTHONUNBUFFERED="1",
    )
    return env


class Children:
    """The bot subprocesses; all of them are stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        # cwd: the temporary dir, so that no .env file of the working directory applies.
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=log.parent)
        self.procs[name] = (proc, log)
        return proc

    def check_alive(self) -> None:
        for name, (proc, log) in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail(log)}")

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        for proc, _ in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def log_problems(path: Path) -> list[str]:
    return [line for line in tail(path, 10**7).splitlines() if " WARNING " in line or " ERROR " in line
            or "Traceback" in line]


async def settle(pid: int, limit: float = 15.0) -> None:
    """Wait (at most ``limit`` s) until a bot uses almost no CPU: after a phase was cut short,
    its last updates must not be processed while the next phase is measured."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


async def run_init(env: dict[str, str], passphrase_file: Path, cwd: Path) -> None:
    """``nazaha init`` (database, keys; the recovery file beside the passphrase file, out of
    the data dir); killed if the run is cancelled."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nazaha.bot", "init", "--passphrase-file", str(passphrase_file),
        "--recovery-file", str(passphrase_file.parent / "team-recovery.key"),
        env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"nazaha init failed:\n{output.decode(errors='replace')[-3000:]}")


async def wait_ready(client: SandboxClient, token: str, children: Children, timeout: float = 90.0) -> None:
    """The bot answers /start: it is polling. (The update waits in the emulator's queue.)"""
    user = await client.create_user(first_name="Probe", language_code="en", token=token)
    sent = await client.send_text(user["id"], "/start", token=token)
    deadline = time.monotonic() + timeout
    while True:
        children.check_alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError("a bot did not answer /start in time")
        with contextlib.suppress(TimeoutError):
            await client.wait_for_bot_message(user["id"], sent["message_id"], min(2.0, remaining), token=token)
            return


# ---- the run ------------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    children = Children()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nazaha-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "var"
        try:
            async with SandboxServer(host="127.0.0.1", port=0, default_token=NAZAHA_TOKEN) as server, \
                    SandboxClient(server.url, token=NAZAHA_TOKEN) as client:
                passphrase_file = tmp / "passphrase.txt"
                passphrase_file.write_text(PASSPHRASE)
                env = nazaha_env(data_dir, server.url, args.kdf)
                t0 = time.perf_counter()
                await run_init(env, passphrase_file, tmp)
                say(f"nazaha init ({args.kdf} KDF): {time.perf_counter() - t0:.1f}s")
                nazaha = children.start("nazaha bot", [sys.executable, "-m", "nazaha.bot", "bot"], env,
                                        tmp / "nazaha-bot.log")
                baseline = children.start(
                    "empty bot", [sys.executable, str(HERE / "empty_bot.py")],
                    {**env, "BENCH_BOT_TOKEN": BASELINE_TOKEN, "BENCH_API_URL": server.url},
                    tmp / "empty-bot.log")
                await asyncio.gather(wait_ready(client, NAZAHA_TOKEN, children),
                                     wait_ready(client, BASELINE_TOKEN, children))
                processes = {"bench": None, "nazaha": nazaha.pid, "baseline": baseline.pid}
                # Warm-up (not measured): first-use paths, connections, the KDF thread.
                warm = min(10, args.users)
                soon = time.perf_counter() + 60
                await run_phase("warm-up", client, BASELINE_TOKEN, BASELINE_STEPS, warm, processes, soon)
                warm_result = await run_phase("warm-up", client, NAZAHA_TOKEN, REPORT_STEPS, warm, processes, soon)
                if warm_result.errors:
                    raise RuntimeError(f"warm-up failed: {warm_result.errors[:3]}\n"
                                       f"{tail(tmp / 'nazaha-bot.log')}")
                # Like both bots, the emulator keeps its start-up objects out of full garbage
                # collections, which otherwise pause every answer now and then.
                gc.collect()
                gc.freeze()
                say("bots ready; measuring")

                # Saturation phases alternate, baseline first and last (B O B O ... B), so that
                # drift (other load on the machine) affects both sides alike; each ordinary
                # round is compared with the baseline runs on either side of it. Each phase may
                # use a share of what is left of the budget; the report phase the rest.
                end = started + args.budget
                plan = []
                for round_number in range(1, args.rounds + 1):
                    plan.append((f"baseline {round_number}", BASELINE_TOKEN, BASELINE_STEPS, None))
                    plan.append((f"ordinary {round_number}", NAZAHA_TOKEN, ORDINARY_STEPS, None))
                plan.append((f"baseline {args.rounds + 1}", BASELINE_TOKEN, BASELINE_STEPS, None))
                plan.append(("reports", NAZAHA_TOKEN, REPORT_STEPS, args.arrival))
                results = []
                for index, (name, token, steps, arrival) in enumerate(plan):
                    now = time.perf_counter()
                    left = len(plan) - 1 - index  # phases after this one, the report phase included
                    share = 1.0 if name == "reports" else 0.6 / (left + 1)
                    result = await run_phase(name, client, token, steps, args.users, processes,
                                             now + share * (end - now), arrival,
                                             args.think if name == "reports" else 0.0)
                    children.check_alive()
                    if result.errors:  # let the bot finish the updates still in flight
                        await settle(nazaha.pid if token == NAZAHA_TOKEN else baseline.pid)
                    say(f"  {name}: {result.wall:.1f}s, {len(result.samples)} updates, "
                        f"{len(result.errors)} errors; CPU (cores) "
                        + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu.items()))
                    results.append(result)
                problems = log_problems(tmp / "nazaha-bot.log")
        finally:
            children.stop_all()
    return summarise(args, results, problems)


async def run_with_sigterm(args: argparse.Namespace) -> dict[str, Any]:
    """Ctrl+C (SIGINT) and SIGTERM cancel the run, and the bots are stopped either way."""
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    return await benchmark(args)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def combined(name: str, phases: list[PhaseResult]) -> PhaseResult:
    """Several runs as one: all their updates over all their time."""
    return PhaseResult(name, phases[0].users, sum(p.wall for p in phases),
                       [s for p in phases for s in p.samples], sum(p.completed for p in phases),
                       [e for p in phases for e in p.errors])


def summarise(args: argparse.Namespace, phases: list[PhaseResult], problems: list[str]) -> dict[str, Any]:
    reports = phases[-1]
    baselines = phases[0:-1:2]
    ordinaries = phases[1:-1:2]
    ordinary = combined("ordinary", ordinaries)
    baseline = combined("baseline", baselines)
    ordinary_rate = ordinary.rate("ordinary")
    baseline_rate = baseline.rate("ordinary")
    ratio = ordinary_rate / baseline_rate if baseline_rate else math.nan
    round_ratios = []
    for o, before, after in zip(ordinaries, baselines, baselines[1:]):
        around = (before.rate("ordinary") + after.rate("ordinary")) / 2
        round_ratios.append(o.rate("ordinary") / around if around else math.nan)
    during, outside = reports.split_by_submissions()
    p99_during = percentile(during, 99)
    ord_lat = reports.latencies("ordinary")
    sub_lat = reports.latencies("submit")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "users": args.users,
        "kdf": args.kdf,
        "arrival_users_per_s": args.arrival,
        "think_s": args.think,
        "reports_per_s": reports.completed / reports.wall,
        "reports_wall_s": reports.wall,
        "reports_completed": reports.completed,
        "wall_s": {p.name: p.wall for p in phases},
        "ordinary_p50_ms": percentile(ord_lat, 50),
        "ordinary_p99_ms": percentile(ord_lat, 99),
        "ordinary_during_submit_p50_ms": percentile(during, 50),
        "ordinary_during_submit_p99_ms": p99_during,
        "ordinary_during_submit_count": len(during),
        "ordinary_no_submit_p50_ms": percentile(outside, 50),
        "ordinary_no_submit_p99_ms": percentile(outside, 99),
        "ordinary_no_submit_count": len(outside),
        "offered_load": (args.arrival * len(REPORT_STEPS) / ordinary_rate) if args.arrival and ordinary_rate else None,
        "submit_p50_ms": percentile(sub_lat, 50),
        "submit_p99_ms": percentile(sub_lat, 99),
        "ordinary_updates_per_s": ordinary_rate,
        "ordinary_steps_per_report": len(ORDINARY_STEPS),
        "baseline_updates_per_s": baseline_rate,
        "baseline_runs_updates_per_s": [b.rate("ordinary") for b in baselines],
        "ordinary_runs_updates_per_s": [o.rate("ordinary") for o in ordinaries],
        "ratio": ratio,
        "round_ratios": round_ratios,
        "saturated_ordinary_p50_ms": percentile(ordinary.latencies("ordinary"), 50),
        "saturated_ordinary_p99_ms": percentile(ordinary.latencies("ordinary"), 99),
        "saturated_baseline_p50_ms": percentile(baseline.latencies("ordinary"), 50),
        "saturated_baseline_p99_ms": percentile(baseline.latencies("ordinary"), 99),
        "cpu_cores": {p.name: p.cpu for p in phases},
        "errors": {p.name: len(p.errors) for p in phases},
        "first_errors": sorted({e for p in phases for e in p.errors})[:5],
        "bot_log_problems": len(problems),
        "ratio_pass": None if math.isnan(ratio) else ratio >= TARGET_RATIO,
        "p99_pass": None if math.isnan(p99_during) else p99_during < TARGET_P99_MS,
    }


def print_report(r: dict[str, Any]) -> None:
    load = r["offered_load"]
    rows = [
        ("users", str(r["users"]), ""),
        ("KDF profile", r["kdf"], "Argon2id cost of the receipt key"),
        ("reports/s", fmt(r["reports_per_s"], 2),
         f"{r['reports_completed']} reports in {r['reports_wall_s']:.1f}s"
         + (f" ({r['users'] - r['reports_completed']} users unfinished)" if r['reports_completed'] < r['users'] else "")
         + "; users arriving "
         + (f"{fmt(r['arrival_users_per_s'], 1)}/s = {fmt(load * 100 if load else math.nan)}% of the measured "
            "ordinary capacity" if r["arrival_users_per_s"] else "all at once")),
        ("ordinary p50 / p99 ms", f"{fmt(r['ordinary_p50_ms'])} / {fmt(r['ordinary_p99_ms'])}",
         "report phase, all ordinary steps"),
        ("  while submitting", f"{fmt(r['ordinary_during_submit_p50_ms'])} / {fmt(r['ordinary_during_submit_p99_ms'])}",
         f"{r['ordinary_during_submit_count']} steps overlapping a submission; target p99 < {TARGET_P99_MS:.0f}: "
         + verdict(r["p99_pass"])),
        ("  no submission", f"{fmt(r['ordinary_no_submit_p50_ms'])} / {fmt(r['ordinary_no_submit_p99_ms'])}",
         f"{r['ordinary_no_submit_count']} steps overlapping none"),
        ("submit p50 / p99 ms", f"{fmt(r['submit_p50_ms'])} / {fmt(r['submit_p99_ms'])}", "tap to receipt"),
        ("ordinary updates/s", fmt(r["ordinary_updates_per_s"], 1),
         f"Nazaha, all users at once, {r['ordinary_steps_per_report']} steps each (runs: "
         + ", ".join(fmt(v, 0) for v in r["ordinary_runs_updates_per_s"])
         + f"); queueing p50/p99 {fmt(r['saturated_ordinary_p50_ms'])}/{fmt(r['saturated_ordinary_p99_ms'])} ms"),
        ("baseline updates/s", fmt(r["baseline_updates_per_s"], 1),
         "empty aiogram bot, same users x steps (runs: "
         + ", ".join(fmt(v, 0) for v in r["baseline_runs_updates_per_s"])
         + f"); p50/p99 {fmt(r['saturated_baseline_p50_ms'])}/{fmt(r['saturated_baseline_p99_ms'])} ms"),
        ("ratio", fmt(r["ratio"], 2), f"all rounds; each round against the baselines around it: "
         + ", ".join(fmt(v, 2) for v in r["round_ratios"]) + f"; target >= {TARGET_RATIO}: "
         + verdict(r["ratio_pass"])),
    ]
    width = max(len(k) for k, _, _ in rows)
    vwidth = max(len(v) for _, v, _ in rows)
    print(f"\nNazaha report throughput  ({r['date']}, {r['machine']})")
    for key, value, note in rows:
        print(f"  {key:<{width}}  {value:>{vwidth}}  {note}")
    for phase, shares in r["cpu_cores"].items():
        print(f"  CPU during {phase} phase ({r['wall_s'][phase]:.1f}s), in cores: "
              + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    busy = {phase: shares.get("other", 0.0) for phase, shares in r["cpu_cores"].items()}
    if max(busy.values(), default=0.0) > 0.3:
        print("  WARNING: other programs used the CPU during the run ("
              + ", ".join(f"{phase} {v:.2f} cores" for phase, v in busy.items())
              + "): the figures are skewed; run again on an idle machine")
    errors = sum(r["errors"].values())
    if errors or r["bot_log_problems"]:
        print(f"  errors: {r['errors']} {r['first_errors']}; warning/error lines in the bot log: "
              f"{r['bot_log_problems']}")
    print(f"  RESULT: ratio {verdict(r['ratio_pass'])}, ordinary p99 while submitting {verdict(r['p99_pass'])}"
          + ("  (some users did not finish: figures are partial)" if errors else ""))


def no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="simulated citizens per phase (default 200)")
    parser.add_argument("--kdf", choices=("production", "testing"), default="production",
                        help="Argon2id cost profile (default production: the real cost)")
    parser.add_argument("--arrival", type=float, default=4.0,
                        help="report phase: users starting per second (default 4; 0 = all at once)")
    parser.add_argument("--think", type=float, default=0.3,
                        help="report phase: seconds each user waits between its steps (default 0.3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="saturation rounds: baseline and Nazaha alternate this many times (default 3)")
    parser.add_argument("--budget", type=float, default=170.0,
                        help="seconds for the whole run; busy users are stopped at it (default 170)")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error("--users must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.arrival = args.arrival or None
    try:
        result = asyncio.run(run_with_sigterm(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; bots stopped", file=sys.stderr)
        return 130
    except (RuntimeError, asyncio.TimeoutError, TimeoutError) as exc:
        print(f"benchmark could not complete: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print_report(result)
    if args.json:
        print(json.dumps(no_nan(result), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
