"""Safe by default: the dashboard stays on this machine unless told otherwise, and beyond it every browser session
signs in with MASKDET_PASSWORD before it sees anything."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from maskdet.core.access import (PASS_SECONDS, TICKET_SECONDS, is_local, listen_problem, new_pass, new_ticket,
                                 pass_is_valid, redeem_ticket)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("address, local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("192.168.1.20", False), ("myhost", False)])
def test_which_addresses_keep_the_dashboard_on_this_machine(address, local):
    assert is_local(address) is local
    assert (listen_problem(address, None) is None) is local
    assert listen_problem(address, "secret") is None


def test_a_ticket_is_good_once_and_for_a_minute():
    ticket, late = new_ticket(now=1000.0), new_ticket(now=1000.0)
    assert redeem_ticket(ticket, now=1000.0 + TICKET_SECONDS)
    assert not redeem_ticket(ticket, now=1001.0)  # used up
    assert not redeem_ticket(late, now=1001.0 + TICKET_SECONDS) and not redeem_ticket(late, now=1001.0)
    assert not redeem_ticket("made-up") and not redeem_ticket("")


def test_a_pass_holds_for_its_password_until_it_ends_and_cannot_be_forged():
    value = new_pass("correct horse", now=1000.0)
    assert pass_is_valid(value, "correct horse", now=1000.0 + PASS_SECONDS - 1)
    assert not pass_is_valid(value, "correct horse", now=1000.0 + PASS_SECONDS)
    assert not pass_is_valid(value, "another password", now=1001.0)  # a new password signs every browser out
    until, _, signature = value.partition(".")
    assert not pass_is_valid(f"{int(until) + 3600}.{signature}", "correct horse", now=1001.0)  # extended by hand
    for forged in (None, "", "x", f"{until}.", f".{signature}", f"{until}.{'0' * 64}", 42):
        assert not pass_is_valid(forged, "correct horse", now=1001.0)


def access_check(address: str, password: str | None, **settings: str) -> subprocess.CompletedProcess:
    """What `make run ADDRESS=...` runs before starting Streamlit."""
    env = {k: v for k, v in os.environ.items() if k != "MASKDET_PASSWORD"}
    env.update(settings, PYTHONPATH=str(ROOT))
    if password:
        env["MASKDET_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "maskdet.core.access", address], env=env, capture_output=True,
                          text=True, timeout=60)


def test_listening_beyond_this_machine_without_a_password_is_refused():
    refused = access_check("0.0.0.0", None)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: Not listening on 0.0.0.0 without a password")
    assert access_check("0.0.0.0", "secret").returncode == 0 and access_check("127.0.0.1", None).returncode == 0
    assert 'address = "127.0.0.1"' in (ROOT / ".streamlit" / "config.toml").read_text()


@pytest.mark.parametrize("name, value", [("MASKDET_LIVE_STREAMS", "two"), ("MASKDET_LIVE_STREAMS", "0"),
                                         ("MASKDET_MAX_PIXELS", "-5")])
def test_a_setting_that_cannot_be_read_stops_the_start_with_a_sentence(name, value):
    refused = access_check("127.0.0.1", None, **{name: value})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr == f"error: {name} must be a whole number of at least 1, not '{value}'.\n"


@pytest.mark.parametrize("page", ["app.py", "pages/5_Live.py"])
def test_a_setting_that_cannot_be_read_stops_every_page_with_its_sentence(page, settings, monkeypatch):
    monkeypatch.setenv("MASKDET_LIVE_STREAMS", "two")
    at = AppTest.from_file(str(ROOT / page), default_timeout=60).run()
    assert not at.exception
    assert [error.value for error in at.error] == [
        "MASKDET_LIVE_STREAMS must be a whole number of at least 1, not 'two'. Fix it and restart the dashboard."]
    assert not at.title  # nothing else of the page


@pytest.mark.parametrize("page", ["app.py", "pages/1_Dataset.py", "pages/4_Models.py"])
def test_with_a_password_a_session_sees_only_the_sign_in_until_it_gives_it(page, settings, monkeypatch):
    monkeypatch.setenv("MASKDET_PASSWORD", "correct horse")
    at = AppTest.from_file(str(ROOT / page), default_timeout=60).run()
    assert [t.value for t in at.title] == ["Sign in to maskdet"] and [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe and not at.sidebar.children  # no page content, not even the links
    at.text_input(key="sign-in-password").input("wrong")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."] and [t.value for t in at.title] == ["Sign in to maskdet"]
    at.text_input(key="sign-in-password").input("correct horse")
    at.button[0].click().run()
    assert "Sign in to maskdet" not in [t.value for t in at.title] and len(at.title) == 1 and not at.error


def test_without_a_password_there_is_no_sign_in(settings, monkeypatch):
    monkeypatch.delenv("MASKDET_PASSWORD", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert [t.value for t in at.title] == ["maskdet: face-mask detection studio"]


@pytest.fixture
def listening_everywhere():
    """The dashboard as `streamlit run app.py --server.address 0.0.0.0` starts it, without make's check."""
    previous = streamlit_config.get_option("server.address")
    streamlit_config.set_option("server.address", "0.0.0.0")
    yield
    streamlit_config.set_option("server.address", previous)


@pytest.mark.parametrize("page", ["app.py", "pages/1_Dataset.py", "pages/5_Live.py"])
def test_listening_beyond_this_machine_without_a_password_every_page_shows_only_the_refusal(
        page, settings, monkeypatch, listening_everywhere):
    """Hostile files, round two (G): the refusal lived only in the Makefile."""
    monkeypatch.delenv("MASKDET_PASSWORD", raising=False)
    at = AppTest.from_file(str(ROOT / page), default_timeout=60).run()
    assert not at.exception
    assert [error.value for error in at.error] == [
        "Not listening on 0.0.0.0 without a password: anyone who reaches the port could delete classes and runs. Set "
        "MASKDET_PASSWORD (every browser then signs in with it), or keep the default 127.0.0.1 and reach the dashboard "
        "through an SSH tunnel. Then restart the dashboard."]
    assert not at.title and not at.sidebar.children and not at.image


def test_listening_beyond_this_machine_with_a_password_asks_for_it(settings, monkeypatch, listening_everywhere):
    monkeypatch.setenv("MASKDET_PASSWORD", "correct horse")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert [t.value for t in at.title] == ["Sign in to maskdet"] and not at.error
