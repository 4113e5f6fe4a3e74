"""`make demo` says what it is doing while it installs, and Ctrl+C stops the demo quietly;
the first administrator's invitation link it prints leads, over HTTP, to a signed-in admin."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.console_support import STAFF_PASSWORD, csrf_of, totp_secret_of

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


class Demo:
    """`nazaha demo` as a child process; a thread collects its output, so that the pipe never
    fills while the test talks to the console."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "var"
        self.console_port = _free_port()
        env = {
            **os.environ,
            "NAZAHA_DATA_DIR": str(self.data_dir),
            "NAZAHA_SANDBOX_PORT": str(_free_port()),
            "NAZAHA_CONSOLE_PORT": str(self.console_port),
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("NAZAHA_BOT_TOKEN", "NAZAHA_TELEGRAM_API_URL", "NAZAHA_KDF_PROFILE", "NAZAHA_CONSOLE_URL"):
            env.pop(name, None)
        self.lines: list[str] = []
        self.started = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from nazaha.bot.cli import main; main(['demo'])"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "Press Ctrl+C" in line:
                self.started.set()
        self.started.set()  # ended: whoever waits looks at the output

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_started(self, timeout: float = 240.0) -> None:
        if not self.started.wait(timeout) or self.proc.poll() is not None:
            pytest.fail("the demo did not start:\n" + self.output)

    def stop(self) -> int:
        """Ctrl+C, then the exit status."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SecureCookieBrowser:
    """HTTP to the console on http://127.0.0.1 with its ``Secure`` cookies (a browser sends
    them to localhost; httpx sends them only over https, so they are kept and sent here)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=120.0,
                                 headers={"Accept-Language": "en"})
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        response = self.http.request(method, path, headers=headers, **kwargs)
        self.http.cookies.clear()
        for header in response.headers.get_list("set-cookie"):
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                assert morsel["secure"] and morsel["httponly"], header
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.request("POST", path, data=data)

    def wait_listening(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/login")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.http.close()


@pytest.mark.e2e
def test_the_demo_invitation_link_enrols_the_first_administrator(tmp_path):
    demo = Demo(tmp_path)
    browser = None
    try:
        demo.wait_started()
        link = re.search(r"^  (http://127\.0\.0\.1:(\d+)/invite/\S+)$", demo.output, re.M)
        assert link, demo.output
        assert int(link.group(2)) == demo.console_port
        passphrase = (demo.data_dir / "demo-passphrase.txt").read_text(encoding="utf-8").strip()
        assert passphrase not in demo.output  # the demo says where it is, never what it is
        browser = SecureCookieBrowser(f"http://127.0.0.1:{demo.console_port}")
        browser.wait_listening()
        path = "/" + link.group(1).split("/", 3)[3]

        # The enrolment form, with the team passphrase field of the first administrator.
        page = browser.get(path)
        assert page.status_code == 200, page.text
        assert 'name="password"' in page.text and 'name="team_passphrase"' in page.text
        answer = browser.post(path, {"csrf": csrf_of(page.text), "password": STAFF_PASSWORD,
                                     "password_again": STAFF_PASSWORD, "team_passphrase": passphrase})
        assert answer.status_code == 303 and answer.headers["location"] == "/enrol", answer.text

        # The TOTP step, at real time: the admin is then signed in and holds the team key.
        page = browser.get("/enrol")
        assert page.status_code == 200
        code = pyotp.TOTP(totp_secret_of(page.text)).now()
        done = browser.post("/enrol", {"csrf": csrf_of(page.text), "code": code})
        assert done.status_code == 303 and done.headers["location"] == "/cases", done.text
        inbox = browser.get("/cases")
        assert inbox.status_code == 200 and 'action="/logout"' in inbox.text
        assert browser.get("/users").status_code == 200  # an administrator's page
        assert browser.get(path).status_code == 404  # the link is used up
    finally:
        if browser is not None:
            browser.close()
        try:
            code = demo.stop()
        finally:
            demo.kill()
    text = demo.output
    assert code == 0, text
    assert "ERROR" not in text and "Traceback" not in text, text
    assert "Nazaha demo stopped." in text
