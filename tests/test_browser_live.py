"""The Live page in a real browser: Chromium's fake camera plays a clip of masks-small faces, the stream goes through
WebRTC to the server's pipeline and back; the server's own figures (the stats block it renders, the summary line it
logs) show that frames were processed and faces classified. Also: an uploaded video comes back playable, and the
Dataset page's webcam capture stores shots from the same fake camera.

Screenshots: test-output/browser/live-*.png.
"""

import re
import time
from pathlib import Path

import pytest

from maskdet.core.settings import load_settings
from maskdet.data.store import Store
from maskdet.vision.clip import clip_photos, make_clip, write_y4m
from tests.browser_support import (assert_no_traceback, chromium, dashboard, new_page, open_page, screenshot_dir,
                                   wait_for_script)
from tests.conftest import video_bytes

TIMEOUT = 180  # seconds; generous for a 2-core CI machine


@pytest.fixture(scope="module")
def clip(tmp_path_factory, shared_data) -> Path:
    """50 frames (one, then two faces) as the fake camera's Y4M file at a webcam's 30 fps; Chromium loops it."""
    return write_y4m(make_clip(clip_photos(shared_data), 50), tmp_path_factory.mktemp("clip") / "faces.y4m", fps=30)


@pytest.fixture(scope="module")
def server(trained_home):
    """The dashboard on the data home with the trained model (the active run)."""
    with dashboard(trained_home.root) as server:
        yield server


@pytest.fixture(scope="module")
def browser(clip):
    with chromium(["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={clip}"]) as browser:
        yield browser


@pytest.fixture
def page(browser):
    with new_page(browser) as page:
        yield page


def metric(page, label: str) -> float:
    """The value of one of the page's st.metric elements (0 while it is not shown)."""
    element = page.locator("[data-testid='stMetric']").filter(has_text=label)
    if element.count() == 0:
        return 0
    return float(element.first.locator("[data-testid='stMetricValue']").inner_text())


def wait_until(condition, what: str, seconds: float = TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds} s")
        time.sleep(1)


def test_the_camera_stream_is_classified_on_the_server(server, page):
    output = screenshot_dir()
    open_page(page, f"{server.url}/Live", "Live")
    assert_no_traceback(page)
    component = page.frame_locator("iframe[title*='streamlit_webrtc']")
    component.get_by_role("button", name="START").click(timeout=60_000)

    wait_until(lambda: metric(page, "frames processed") >= 45 and metric(page, "faces classified") > 0,
               "45 frames processed with faces classified, in the page's stats block")
    video = component.locator("video")
    element = video.element_handle(timeout=60_000)
    element.owner_frame().wait_for_function("v => v.readyState >= 2", arg=element, timeout=60_000)  # a frame shown
    width, height = video.evaluate("v => [v.videoWidth, v.videoHeight]")
    assert width >= 160 and width * 3 == height * 4  # 640x480, or less when WebRTC adapts to a busy CPU
    page.wait_for_timeout(1000)  # a few more annotated frames
    video.screenshot(path=str(output / "live-video.png"))
    page.screenshot(path=str(output / "live-page.png"))
    assert metric(page, "with_mask") + metric(page, "without_mask") > 0
    assert_no_traceback(page)

    # The fps shown (the overlay's figure, over the last 3 s) against frames processed over wall clock: 6 s of them,
    # against the mean of the two figures shown over those 6 s (the rate moves while the CPU is shared).
    began, first = time.monotonic(), metric(page, "frames processed")
    page.wait_for_timeout(3000)
    halfway = metric(page, "fps")
    page.wait_for_timeout(3000)
    shown = (halfway + metric(page, "fps")) / 2
    delivered = (metric(page, "frames processed") - first) / (time.monotonic() - began)
    (output / "live-fps.txt").write_text(f"fps shown {shown:.1f}, frames processed over wall clock {delivered:.1f}, "
                                         f"frames dropped {metric(page, 'frames dropped'):.0f}\n")
    assert shown == pytest.approx(delivered, rel=0.25)

    component.get_by_role("button", name="STOP").click()
    pattern = re.compile(r"live stream ended: (\d+) frames, (\d+) dropped, (\d+) detections, (\d+) faces classified")
    wait_until(lambda: pattern.search(server.output()), "the server's log line for the stopped stream", 60)
    frames, dropped, detections, faces = map(int, pattern.search(server.output()).groups())
    assert frames >= 45 and 0 < detections < frames and faces > 0 and dropped >= 0


def test_an_uploaded_video_comes_back_playable(server, page, shared_data, tmp_path):
    """The annotated video (H.264 mp4) plays in Chromium."""
    source = tmp_path / "walk.mp4"
    source.write_bytes(video_bytes(make_clip(clip_photos(shared_data), 10)))
    open_page(page, f"{server.url}/Live", "Live")
    page.get_by_role("tab", name="No camera? Upload a photo or video").click()
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="A photo or a short video")
    uploader.locator("input[type=file]").set_input_files(str(source))
    page.get_by_role("button", name="Annotate the video").click(timeout=60_000)
    player = page.locator("[data-testid='stVideo']")
    player.wait_for(timeout=TIMEOUT * 1000)
    wait_for_script(page)
    # Played, so frames were decoded (not just a header read); asked again should a rerun replace the element.
    page.wait_for_function("""() => {
        const v = document.querySelector("[data-testid='stVideo']");
        if (v === null || v.error !== null) return v !== null;
        if (v.paused && v.currentTime === 0) { v.muted = true; v.play().catch(() => {}); }
        return v.currentTime > 0;
    }""", timeout=60_000)
    assert player.evaluate("v => [v.videoWidth, v.videoHeight, v.duration > 0.5, v.error]") == [640, 480, True, None]
    page.get_by_role("button", name="Download the annotated video").wait_for()
    assert_no_traceback(page)
    player.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot_dir() / "live-upload.png"))


def test_webcam_shots_go_into_the_dataset(browser, tmp_path, monkeypatch):
    """st.camera_input on the Dataset page with the fake camera: each shot is stored in the class, face found."""
    with dashboard(tmp_path) as server, new_page(browser) as page:
        for key in ("MASKDET_HOME", "MASKDET_MODELS"):
            monkeypatch.setenv(key, server.env[key])
        store = Store(load_settings())
        for label in ("with_mask", "without_mask"):
            store.add_label(label)
        open_page(page, f"{server.url}/Dataset", "Dataset")
        page.get_by_role("tab", name="Webcam").click()
        page.get_by_text("Use the webcam").click()
        for shot in (1, 2):
            # The camera shows frames, and each fresh camera has played for longer than the last: Chromium's fake
            # camera restarts its clip, so two shots at the same moment would be the same picture (a duplicate).
            page.wait_for_function("shot => { const v = document.querySelector(\"[data-testid='stCameraInput'] "
                                   "video\"); return v?.readyState >= 2 && v.currentTime >= shot; }",
                                   arg=shot, timeout=60_000)
            page.locator("[data-testid='stCameraInput']").get_by_role("button", name="Take Photo").click()
            page.get_by_text(f"Stored capture {shot} in with_mask (face found)").wait_for(timeout=TIMEOUT * 1000)
            wait_for_script(page)
        assert_no_traceback(page)
        page.screenshot(path=str(screenshot_dir() / "dataset-webcam.png"))
        assert store.label_counts() == {"with_mask": 2, "without_mask": 0}
