"""The Live page when the browser refuses the camera: Chromium without the fake-UI flag denies the permission prompt.
Its own module because Playwright runs one browser at a time and test_browser_live's browser grants the camera.

Screenshot: test-output/browser/live-denied.png.
"""

import pytest

from tests.browser_support import assert_no_traceback, chromium, dashboard, new_page, open_page, screenshot_dir
from tests.test_browser_live import metric


@pytest.fixture(scope="module")
def page(trained_home):
    with dashboard(trained_home.root) as server, chromium(["--use-fake-device-for-media-stream",
                                                           "--deny-permission-prompts"]) as browser:
        with new_page(browser) as page:
            page.goto(server.url)
            yield page


def test_a_denied_camera_gets_the_browsers_reason_and_our_advice(page):
    open_page(page, f"{page.url}Live", "Live")
    component = page.frame_locator("iframe[title*='streamlit_webrtc']")
    component.get_by_role("button", name="START").click(timeout=60_000)
    component.get_by_text("NotAllowedError: Permission denied").wait_for(timeout=60_000)
    page.screenshot(path=str(screenshot_dir() / "live-denied.png"))
    assert page.get_by_text("If you blocked the camera").is_visible()
    assert component.get_by_role("button", name="START").is_visible()
    assert metric(page, "frames processed") == 0
    assert_no_traceback(page)
