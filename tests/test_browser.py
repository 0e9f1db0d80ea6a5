"""The dashboard in a real browser: Streamlit on a free localhost port, Debian's Chromium driven by Playwright.

Screenshots go to test-output/browser/ (or $MASKDET_TEST_OUTPUT/browser/).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
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


@pytest.fixture(scope="module")
def output_dir() -> Path:
    folder = Path(os.environ.get("MASKDET_TEST_OUTPUT", ROOT / "test-output")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard on a free port with its own empty data home; yields (base url, environment)."""
    root = tmp_path_factory.mktemp("browser")
    env = {**os.environ, "MASKDET_HOME": str(root / "home"), "MASKDET_MODELS": str(root / "models")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health")
        yield f"http://127.0.0.1:{port}", env
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("MASKDET_REQUIRE_SHARED") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    yield page
    context.close()


def open_page(page, url: str, heading: str):
    """Open a dashboard page and wait until the script has finished running and the heading is shown."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


def assert_no_traceback(page) -> None:
    """Neither a traceback nor Streamlit's redacted "This app has encountered an error" box."""
    assert page.locator("[data-testid='stException']").count() == 0
    content = page.content()
    assert "Traceback" not in content and "encountered an error" not in content


def test_home_page_with_an_empty_data_home(server, page, output_dir):
    url, _ = server
    open_page(page, url, "maskdet: face-mask detection studio")
    page.get_by_text("No images yet").wait_for()
    for label in ("Dataset", "Train", "Metrics", "Models"):
        assert page.get_by_role("link", name=label).count() >= 1
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "home-empty.png"), full_page=True)


def upload_photos(page, files: list[Path], label: str) -> None:
    """Dataset page, "Upload photos" tab: choose the class, add the files, import, wait for the report."""
    page.get_by_role("tab", name="Upload photos").click()
    choose(page, "Class for these photos", label)
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="Photos").first
    uploader.locator("input[type=file]").set_input_files([str(f) for f in files])
    page.get_by_role("button", name=f"Import {len(files)} photos into {label}").click()
    page.get_by_text(f"Import finished: added {len(files)} photos").wait_for(timeout=120_000)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by its label."""
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_the_analysts_loop(server, page, output_dir, shared_data, backbone_weights):
    """Upload photos, train, read the metrics, download the ONNX model and run it."""
    import numpy as np
    import onnxruntime as ort

    url, _ = server
    open_page(page, f"{url}/Dataset", "Dataset")
    pairs = sorted(p.stem for p in (shared_data / "without_mask").glob("*.jpg")
                   if p.stem.isdigit() and (shared_data / "with_mask" / f"{p.stem}-with-mask.jpg").exists())[:12]
    upload_photos(page, [shared_data / "with_mask" / f"{n}-with-mask.jpg" for n in pairs], "with_mask")
    upload_photos(page, [shared_data / "without_mask" / f"{n}.jpg" for n in pairs], "without_mask")
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "dataset.png"), full_page=True)

    open_page(page, f"{url}/Train", "Train a model")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("finished in").first.wait_for(timeout=240_000)
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "train.png"), full_page=True)

    open_page(page, f"{url}/Metrics", "Metrics")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stMetricValue']").first.wait_for(timeout=60_000)
    page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # let the remaining charts draw before the screenshot
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "metrics.png"), full_page=True)

    open_page(page, f"{url}/Models", "Models")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download model.onnx").click()
    path = output_dir / "downloaded-model.onnx"
    download.value.save_as(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[1]
    probabilities = session.run(None, {"images": np.zeros((2, size, size, 3), np.uint8)})[0]
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    page.get_by_role("button", name="Download bundle").wait_for(timeout=60_000)
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "models.png"), full_page=True)

    open_page(page, url, "maskdet: face-mask detection studio")
    page.get_by_text("Active model").first.wait_for()
    page.screenshot(path=str(output_dir / "home-trained.png"), full_page=True)
