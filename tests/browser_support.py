"""What the browser tests share: the dashboard served on a free localhost port, Debian's Chromium through Playwright,
and page helpers. Screenshots go to test-output/browser/ (or $MASKDET_TEST_OUTPUT/browser/)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("MASKDET_TEST_OUTPUT", ROOT / "test-output")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Server:
    url: str
    env: dict[str, str]
    log: Path  # the server's stdout and stderr

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def dashboard(root: Path):
    """The dashboard on a free port with the data home root/home and models root/models; yields a Server."""
    env = {**os.environ, "MASKDET_HOME": str(root / "home"), "MASKDET_MODELS": str(root / "models")}
    port = free_port()
    log = root / f"server-{port}.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless",
             "true", "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        yield Server(f"http://127.0.0.1:{port}", env, log)
    finally:
        stop(process, 10)


def stop(process: subprocess.Popen, timeout: float) -> None:
    """Ask a child process to stop (SIGTERM); kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def chromium(extra_flags: list[str] = []):
    """Debian's Chromium, headless, through Playwright (skipped when missing, a failure on CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("MASKDET_REQUIRE_SHARED") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS + extra_flags)
        yield browser
        browser.close()


@contextmanager
def new_page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()


def open_page(page, url: str, heading: str):
    """Open a dashboard page and wait until the script has finished running and the heading is shown."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    wait_for_script(page)


def wait_for_script(page) -> None:
    """Wait until the script run an interaction started has finished: Streamlit marks its app element with the run
    state at once, while its "running" status widget only shows once a run has taken half a second."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=60_000)


def assert_no_traceback(page) -> None:
    """Neither a traceback nor Streamlit's redacted "This app has encountered an error" box."""
    assert page.locator("[data-testid='stException']").count() == 0
    content = page.content()
    assert "Traceback" not in content and "encountered an error" not in content
