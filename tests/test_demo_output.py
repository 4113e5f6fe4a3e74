"""`make demo` says what it is doing while it installs, and Ctrl+C stops the demo quietly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_make_demo_announces_each_install_step(tmp_path):
    plan = subprocess.run(
        ["make", "-n", "demo", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout
    echoes = [line for line in plan.splitlines() if line.startswith("echo ")]
    assert any("Creating a Python environment" in e for e in echoes)
    assert any("Installing Nazaha" in e for e in echoes)
    assert any("Starting the demo" in e for e in echoes)
    # Each long command is preceded by a line saying what it is.
    lines = plan.splitlines()
    pip_install = next(i for i, line in enumerate(lines) if "pip install --quiet -e" in line)
    assert lines[pip_install - 1].startswith("echo ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
def test_ctrl_c_stops_the_demo_without_an_error(tmp_path):
    env = {
        **os.environ,
        "NAZAHA_DATA_DIR": str(tmp_path / "var"),
        "NAZAHA_SANDBOX_PORT": str(_free_port()),
        "NAZAHA_CONSOLE_PORT": str(_free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("NAZAHA_BOT_TOKEN", None)
    env.pop("NAZAHA_TELEGRAM_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nazaha.bot.cli import main; main(['demo'])"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if "Press Ctrl+C" in line:
                break
        else:
            pytest.fail("the demo did not start:\n" + "".join(out))
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(out)
    assert proc.returncode == 0, text
    assert "ERROR" not in text and "Traceback" not in text, text
    assert "Nazaha demo stopped." in text
    assert "/#key=" in text  # the chat page address carries this run's control key
