"""Small helpers shared by the Streamlit pages: cached store and detector, error display, run labels."""

from collections.abc import Callable

import streamlit as st
from streamlit.errors import StreamlitAPIException

from maskdet.settings import Settings, load_settings
from maskdet.store import Store


@st.cache_resource(show_spinner=False)
def _store(settings: Settings) -> Store:
    return Store(settings)


def store() -> Store:
    """The store of the current settings (one per data home, shared by all sessions of this server)."""
    return _store(load_settings())


@st.cache_resource(show_spinner="Loading the face detector...")
def detector():
    from maskdet.faces import FaceDetector

    return FaceDetector()


def attempt(action: Callable, *args, **kwargs):
    """Run a maskdet call; a user-facing error becomes an st.error sentence and None is returned."""
    try:
        return action(*args, **kwargs)
    except (ValueError, OSError) as error:
        st.error(str(error))
    except Exception as error:  # an unexpected failure: say what happened, never a traceback
        st.error(f"Something went wrong ({type(error).__name__}: {error}). Reload the page and try again.")
    return None


def run_caption(run: dict) -> str:
    """A one-line description of a run for select boxes."""
    test = (run.get("metrics") or {}).get("test") or {}
    accuracy = f", accuracy {test['accuracy']:.3f}" if test.get("accuracy") is not None else ""
    return f"{run['id']} ({run['status']}{accuracy})"


def link_to_train() -> None:
    """A link to the Train page (a hint instead when the page runs on its own, without the page registry)."""
    try:
        st.page_link("pages/2_Train.py", label="Train a model", icon=":material/model_training:")
    except StreamlitAPIException:
        st.markdown("Open **Train** in the sidebar to start one.")
