"""The dashboard in a real browser: Streamlit on a free localhost port, Debian's Chromium driven by Playwright.

Screenshots go to test-output/browser/ (or $MASKDET_TEST_OUTPUT/browser/).
"""

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser_support import (assert_no_traceback, chromium, dashboard, new_page, open_page, screenshot_dir,
                                   wait_for_script)
from tests.conftest import photo_pairs


@pytest.fixture(scope="module")
def output_dir() -> Path:
    return screenshot_dir()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard with its own empty data home."""
    with dashboard(tmp_path_factory.mktemp("browser")) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser):
    with new_page(browser) as page:
        yield page


def test_home_page_with_an_empty_data_home(server, page, output_dir):
    url = server.url
    open_page(page, url, "maskdet: face-mask detection studio")
    page.get_by_text("No images yet").wait_for()
    for label in ("Dataset", "Train", "Metrics", "Models"):  # waited for: count() alone raced the page's drawing
        page.get_by_role("link", name=label).first.wait_for()
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "home-empty.png"), full_page=True)


def test_the_sidebar_names_the_home_page_home_on_every_page(server, page):
    """Deep-linked pages run without app.py; their sidebar still lists "Home", never the script name "app"."""
    open_page(page, f"{server.url}/Models", "Models")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_role("link", name="Live").wait_for()
    names = [text.split()[-1] for text in sidebar.get_by_role("link").all_inner_texts()]  # after the icon's name
    assert names == ["Home", "Dataset", "Train", "Metrics", "Models", "Live"]
    assert page.get_by_test_id("stSidebarNav").count() == 0  # Streamlit's own list, which says "app", is off
    sidebar.get_by_role("link", name="Home").click()
    page.get_by_role("heading", name="maskdet: face-mask detection studio").wait_for(timeout=60_000)


def test_every_page_loads_only_from_the_dashboard(server, page):
    """On a closed network anything fetched from another host fails: every request stays on the dashboard's."""
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    for path, heading in (("", "maskdet: face-mask detection studio"), ("/Dataset", "Dataset"), ("/Train", "Train"),
                          ("/Metrics", "Metrics"), ("/Models", "Models"), ("/Live", "Live")):
        open_page(page, f"{server.url}{path}", heading)
    page.wait_for_timeout(1000)  # the favicon and fonts load after the heading
    elsewhere = sorted({url for url in requested if not url.startswith((server.url, "data:", "blob:"))})
    assert requested and not elsewhere


def fetched_without_the_session(address: str) -> int:
    """The HTTP status of a URL fetched outside the browser: no cookie, no session."""
    try:
        with urllib.request.urlopen(address, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def upload_photos(page, files: list[Path], label: str) -> None:
    """Dataset page, "Upload photos" tab: choose the class, add the files, import, wait for the report."""
    page.get_by_role("tab", name="Upload photos").click()
    choose(page, "Class for these photos", label)
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="Photos").first
    uploader.locator("input[type=file]").set_input_files([str(f) for f in files])
    page.get_by_role("button", name=f"Import {len(files)} photos into {label}").click(timeout=120_000)
    page.get_by_text(f"Import finished: added {len(files)} photos").wait_for(timeout=120_000)


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by its label."""
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_script(page)  # let the rerun the choice started finish before the next interaction


def test_the_analysts_loop(server, page, output_dir, shared_data, backbone_weights, monkeypatch):
    """Upload photos, train, read the metrics, relabel the test split's mistake and train again, download the ONNX
    model and run it.

    Four masked photos go in as without_mask by mistake; with these photos and the default seed, one of them
    (110-with-mask.jpg) lands in the test split, where the model calls it with_mask: the mistake to fix."""
    import numpy as np
    import onnxruntime as ort

    from maskdet.core.settings import load_settings
    from maskdet.data.store import Store

    url = server.url
    open_page(page, f"{url}/Dataset", "Dataset")
    pairs = photo_pairs(shared_data)
    mislabelled = [shared_data / "with_mask" / f"{n}-with-mask.jpg" for n in pairs[12:16]]
    upload_photos(page, [shared_data / "with_mask" / f"{n}-with-mask.jpg" for n in pairs[:12]], "with_mask")
    upload_photos(page, [shared_data / "without_mask" / f"{n}.jpg" for n in pairs[:12]] + mislabelled, "without_mask")
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "dataset.png"), full_page=True)

    open_page(page, f"{url}/Train", "Train a model")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("finished in").first.wait_for(timeout=240_000)
    page.get_by_text("Training curves of this run").click()
    page.locator("[data-testid='stVegaLiteChart']").nth(1).wait_for()  # loss and accuracy, train and validation
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "train.png"), full_page=True)

    open_page(page, f"{url}/Metrics", "Metrics")
    page.get_by_text("Confusion matrix").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stMetricValue']").first.wait_for(timeout=60_000)
    page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1500)  # let the remaining charts draw before the screenshot
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "metrics.png"), full_page=True)

    page.get_by_title("110-with-mask.jpg").wait_for(timeout=60_000)  # the file name under its face
    page.get_by_text("true without_mask", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("Select", exact=True).first.click()
    choose(page, "Relabel as", "with_mask")
    page.get_by_role("button", name="Relabel 1 selected").click()
    page.get_by_text("1 face relabelled as with_mask").wait_for(timeout=60_000)
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "metrics-relabelled.png"), full_page=True)
    for name in ("MASKDET_HOME", "MASKDET_MODELS"):
        monkeypatch.setenv(name, server.env[name])
    store = Store(load_settings())
    assert [r.label for r in store.faces() if r.source_name == "110-with-mask.jpg"] == ["with_mask"]

    open_page(page, f"{url}/Train", "Train a model")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text(", stage ").first.wait_for(timeout=60_000)  # the new run's progress
    page.get_by_text("finished in").first.wait_for(timeout=240_000)
    first, second = sorted(store.runs(), key=lambda run: run["created_at"])
    assert first["status"] == second["status"] == "succeeded"
    assert not any(m["name"] == "110-with-mask.jpg" and m["true"] == "without_mask"
                   for m in second["metrics"]["test"]["misclassified"])  # trained with its label fixed

    media = []
    page.on("request", lambda request: media.append(request.url) if "/media/" in request.url else None)
    open_page(page, f"{url}/Models", "Models")
    page.get_by_role("button", name="Download bundle").wait_for(timeout=60_000)
    assert not [address for address in media if address.endswith((".onnx", ".zip"))]  # nothing at an open URL yet
    with page.expect_download() as download:
        page.get_by_role("button", name="Download model.onnx").click()
    path = output_dir / "downloaded-model.onnx"
    download.value.save_as(str(path))
    assert fetched_without_the_session(download.value.url) == 200  # Streamlit's media URLs answer anyone...
    for _ in range(2):
        open_page(page, f"{url}/Models", "Models")
    assert fetched_without_the_session(download.value.url) == 404  # ...until two script runs have ended
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[1]
    probabilities = session.run(None, {"images": np.zeros((2, size, size, 3), np.uint8)})[0]
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    page.get_by_role("button", name="Download bundle").wait_for(timeout=60_000)
    assert_no_traceback(page)
    page.screenshot(path=str(output_dir / "models.png"), full_page=True)

    open_page(page, url, "maskdet: face-mask detection studio")
    page.locator("[data-testid='stDataFrame']").wait_for()  # the latest runs: the end of the page
    wait_for_script(page)
    assert page.get_by_role("link", name="Try it live").is_visible()
    page.screenshot(path=str(output_dir / "home-trained.png"), full_page=True)
