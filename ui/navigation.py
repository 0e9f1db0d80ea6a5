"""Every page's frame: its config, the sign-in form when a password is set, and the links between pages."""

import time
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from maskdet.core.access import (PASS_COOKIE, PASS_SECONDS, listen_problem, new_ticket, pass_is_valid,
                                 password_matches)
from maskdet.core.settings import load_settings
from ui.server import PASS_PATH, base_path

FAVICON = Path(__file__).with_name("favicon.png")  # served by the dashboard itself: a material icon is fetched from
# Google's font host, which a closed network cannot reach
PAGES = [  # path, name, icon, what it is for (the home page's board)
    ("app.py", "Home", ":material/home:", "status and the next step"),
    ("pages/1_Dataset.py", "Dataset", ":material/photo_library:", "import photos, capture from the webcam, review"),
    ("pages/2_Train.py", "Train", ":material/model_training:", "settings, augmentation preview, live progress"),
    ("pages/3_Metrics.py", "Metrics", ":material/monitoring:", "curves, confusion matrix, mistakes, comparisons"),
    ("pages/4_Models.py", "Models", ":material/deployed_code:", "active model, ONNX and bundle downloads"),
    ("pages/5_Live.py", "Live", ":material/videocam:", "webcam detection in the browser, or a photo or video"),
]


STYLE = """<style>
[data-testid='stFileUploaderDropzoneInstructions'] span {white-space: normal; overflow: visible}
</style>"""  # Streamlit cuts an uploader's list of file types with an ellipsis on one line: let it wrap instead


def page_setup(title: str) -> None:
    """Page config, the page's style, and the sidebar's links to every page (Streamlit's own list would call the home
    page "app")."""
    st.set_page_config(page_title=f"{title} · maskdet" if title != "Home" else "maskdet",
                       page_icon=str(FAVICON), layout="wide")
    st.html(STYLE)
    sign_in()
    with st.sidebar:
        for path, name, icon, _ in PAGES:
            link(path, name, icon)


def sign_in() -> None:
    """With MASKDET_PASSWORD set, a browser session sees nothing but this form until it gives the password, or its
    browser holds the pass of an earlier sign-in (a reload, another tab). A setting that cannot be read, or a
    dashboard listening beyond this machine without a password, stops every page with its sentence: `make run`
    refuses to start then, and a dashboard started with `streamlit run` shows only the refusal."""
    try:
        password = load_settings().password
    except ValueError as error:
        st.error(f"{error} Fix it and restart the dashboard.")
        st.stop()
    problem = listen_problem(st.get_option("server.address") or "0.0.0.0", password)  # unset: every interface
    if problem:
        st.error(f"{problem} Then restart the dashboard.")
        st.stop()
    if not password:
        return
    if st.session_state.get("signed_in") or pass_is_valid(st.context.cookies.get(PASS_COOKIE), password):
        hand_pass()
        return
    st.title("Sign in to maskdet")
    with st.form("sign-in"):
        given = st.text_input("Password", type="password", key="sign-in-password")
        if st.form_submit_button("Sign in"):
            if password_matches(given, password):
                st.session_state["signed_in"] = True
                st.rerun()
            st.error("Wrong password.")
    st.stop()


def hand_pass() -> None:
    """Give this signed-in session's browser the pass cookie that downloads and videos ask for (ui/server.py), and
    again before it ends: an image the sidebar shows trades a one-use ticket for it."""
    if st.session_state.get("pass_until", 0) > time.time() + 3600:
        return
    st.session_state["signed_in"] = True
    st.session_state["pass_until"] = time.time() + PASS_SECONDS
    st.sidebar.html(f'<img src="{base_path()}/{PASS_PATH}?ticket={new_ticket()}" alt="" style="display:none">')


def link(page: str, label: str, icon: str, fallback: str = "") -> None:
    """A link to another page, or the fallback words when a page runs on its own (a page test: no page registry)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        if fallback:
            st.markdown(fallback)


def link_to_train() -> None:
    link("pages/2_Train.py", "Train a model", ":material/model_training:",
         "Open **Train** in the sidebar to start one.")
