"""With a password set, files the dashboard serves by URL (downloads, videos) go only to a signed-in browser: the
sign-in hands the browser a pass cookie, and Streamlit's media route answers without it 403 (hostile files, round
two: G). Real server, real Chromium."""

import urllib.error
import urllib.request

from browser_support import assert_no_traceback, chromium, dashboard, open_page, wait_for_script

HOME = "maskdet: face-mask detection studio"


def fetched(url: str, cookie: str | None = None) -> tuple[int, bytes]:
    """Status and body of a plain request, with only the given cookie."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def sign_in(page, url: str, password: str) -> None:
    open_page(page, url, "Sign in to maskdet")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name=HOME).wait_for(timeout=60_000)
    wait_for_script(page)


def test_downloads_answer_only_a_signed_in_browser(tmp_path, settings, monkeypatch):
    monkeypatch.setenv("MASKDET_PASSWORD", "correct horse")
    with dashboard(tmp_path) as server, chromium() as browser:
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        sign_in(page, server.url, "correct horse")
        for _ in range(50):  # the sidebar's image trades the ticket for the pass as the page shows
            passes = [cookie for cookie in context.cookies() if cookie["name"] == "maskdet_pass"]
            if passes:
                break
            page.wait_for_timeout(100)
        assert len(passes) == 1 and passes[0]["httpOnly"] and passes[0]["sameSite"] == "Strict"
        cookie = f"maskdet_pass={passes[0]['value']}"

        page.get_by_role("button", name="Prepare backup").click()
        wait_for_script(page)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download backup").click()
        url = download.value.url
        assert "/media/" in url and open(download.value.path(), "rb").read(2) == b"PK"
        assert fetched(url) == (403, b"Sign in to the dashboard first.")  # a URL from a log fetches nothing
        assert fetched(url, "maskdet_pass=1999999999.forged") == (403, b"Sign in to the dashboard first.")
        status, body = fetched(url, cookie)
        assert status == 200 and body[:2] == b"PK"
        assert fetched(f"{server.url}/api/maskdet/pass?ticket=made-up")[0] == 403

        again = context.new_page()  # the same browser, a reload or another tab: the pass signs it in
        open_page(again, server.url, HOME)
        assert_no_traceback(again)
        stranger = browser.new_context().new_page()  # another browser: the sign-in, nothing else
        open_page(stranger, server.url, "Sign in to maskdet")
        assert stranger.get_by_role("heading", name=HOME).count() == 0
