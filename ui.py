"""Small helpers shared by the Streamlit pages: cached store and detector, error display, run labels, curves."""

import re
from collections.abc import Callable
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.access import password_matches
from maskdet.core.settings import Settings, load_settings
from maskdet.data.store import Store


@st.cache_resource(show_spinner=False)
def _store(settings: Settings) -> Store:
    return Store(settings)


def store() -> Store:
    """The store of the current settings (one per data home, shared by all sessions of this server)."""
    return _store(load_settings())


@st.cache_resource(show_spinner="Loading the face detector...")
def detector():
    from maskdet.vision.faces import FaceDetector

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


def run_columns() -> dict:
    """How the runs tables (Home, Metrics, Models) show the columns of RunRecord.row: names, formats and help."""
    column = st.column_config
    return {
        "run": column.TextColumn("run", width="medium"),
        "when": column.TextColumn("created"),
        "status": column.TextColumn("status"),
        "active": column.CheckboxColumn("active", help="the model the live page uses"),
        "images": column.NumberColumn("images", help="images used: train + validation + test"),
        "split": column.TextColumn("train / val / test"),
        "accuracy": column.NumberColumn("accuracy", format="%.3f", help="test split"),
        "macro_f1": column.NumberColumn("macro F1", format="%.3f", help="test split"),
        "duration_s": column.NumberColumn("took", format="%.0f s"),
        "config": column.TextColumn("settings", width="large"),
        "note": column.TextColumn("note", width="large"),
    }


def runs_dataframe(rows: list[dict], columns: tuple[str, ...], key: str) -> None:
    """Rows of RunRecord.row as a table of the given columns, shown as run_columns says."""
    shown = run_columns()
    st.dataframe(rows, hide_index=True, key=key, column_order=columns, width="stretch",
                 column_config={name: shown[name] for name in columns})


def run_caption(run: dict) -> str:
    """A one-line description of a run for select boxes."""
    from maskdet.runs.views import RunRecord

    return RunRecord.of(run).caption()


PHOTO_TYPES = sorted(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # what the photo uploaders accept


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def classifier(path: str, stamp: float):
    """A model file, loaded once per version of the file (stamp: its mtime)."""
    from maskdet.serving.classifier import load_classifier

    return load_classifier(path)


@st.cache_resource(show_spinner=False, max_entries=8)
def photo_pipeline(path: str, stamp: float, settings):
    """The pipeline that annotates photos with a model file and LiveSettings (photos carry nothing from one to the
    next, so all sessions share it)."""
    from maskdet.serving import media
    from maskdet.serving.live import LivePipeline

    return LivePipeline(classifier(path, stamp), media.photo_settings(settings))


def show_annotated_photo(result, name: str, key: str, no_face_hint: str = "") -> None:
    """A media.AnnotatedPhoto: the picture, the table of its faces (numbered as on the picture) and its download."""
    from maskdet.serving import media

    st.image(result.png, caption=f"{literal(name)}, annotated", width=min(720, result.width))
    if result.predictions:
        st.dataframe(media.prediction_rows(result.predictions), hide_index=True, key=f"{key}-faces")
    else:
        st.info(f"No face found. {no_face_hint}".strip())
    if result.faces_found > len(result.predictions):
        st.caption(f"{result.faces_found} faces found; the {len(result.predictions)} largest were classified "
                   "(Max faces).")
    st.download_button("Download the annotated photo", result.png, file_name=f"{Path(name).stem}-annotated.png",
                       mime="image/png", key=f"{key}-download", on_click="ignore", icon=":material/download:")


def set_checkboxes(keys: list[str], value: bool) -> None:
    """Tick or clear the checkboxes with these widget keys (an on_click of "Select all" and "Clear")."""
    for key in keys:
        st.session_state[key] = value


def class_picker(container, label: str, labels: list[str], key: str, **kwargs) -> str | None:
    """A selectbox of the dataset's classes. A class deleted (in another tab) since it was chosen stays, marked
    "(deleted)", so that the action says it is gone rather than Streamlit silently choosing the first class."""
    chosen = st.session_state.get(key)
    options = labels + ([chosen] if chosen is not None and chosen not in labels else [])
    return container.selectbox(label, options, key=key, **kwargs,
                               format_func=lambda name: name if name in labels else f"{name} (deleted)")


def literal(text: str) -> str:
    """Text from a user (a file or class name) for places that read Markdown, such as image captions: the characters
    that make links, images, HTML, code, emphasis, headings, tables or LaTeX are escaped, so it shows as it is."""
    return re.sub(r"([\\`*\[\]<>#|~$])", r"\\\1", " ".join(text.splitlines()))


def verbatim(text: str) -> str:
    """Text (a file name from an upload) as a Markdown code span: shown as it is, never read as Markdown."""
    text = " ".join(text.splitlines())
    ticks = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{ticks} {text} {ticks}"


PAGES = [  # path, name, icon, what it is for (the home page's board)
    ("app.py", "Home", ":material/home:", "status and the next step"),
    ("pages/1_Dataset.py", "Dataset", ":material/photo_library:", "import photos, capture from the webcam, review"),
    ("pages/2_Train.py", "Train", ":material/model_training:", "settings, augmentation preview, live progress"),
    ("pages/3_Metrics.py", "Metrics", ":material/monitoring:", "curves, confusion matrix, mistakes, comparisons"),
    ("pages/4_Models.py", "Models", ":material/deployed_code:", "active model, ONNX and bundle downloads"),
    ("pages/5_Live.py", "Live", ":material/videocam:", "webcam detection in the browser, or a photo or video"),
]


def page_setup(title: str) -> None:
    """Page config, and the sidebar's links to every page (Streamlit's own list would call the home page "app")."""
    st.set_page_config(page_title=f"{title} · maskdet" if title != "Home" else "maskdet",
                       page_icon=":material/masks:", layout="wide")
    sign_in()
    with st.sidebar:
        for path, name, icon, _ in PAGES:
            link(path, name, icon)


def sign_in() -> None:
    """With MASKDET_PASSWORD set, a browser session sees nothing but this form until it gives the password. A setting
    that cannot be read stops every page with its sentence (`make run` refuses to start then; `streamlit run` does not
    check)."""
    try:
        password = load_settings().password
    except ValueError as error:
        st.error(f"{error} Fix it and restart the dashboard.")
        st.stop()
    if not password or st.session_state.get("signed_in"):
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


def link(page: str, label: str, icon: str, fallback: str = "") -> None:
    """A link to another page, or the fallback words when a page runs on its own (a page test: no page registry)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:
        if fallback:
            st.markdown(fallback)


def link_to_train() -> None:
    link("pages/2_Train.py", "Train a model", ":material/model_training:", "Open **Train** in the sidebar to start one.")


CURVE_SCHEME = "category10"  # train and validation (or two runs) in blue and orange; Streamlit's default: two blues


def curves_chart(points: list[dict], metric: str, color: str = "split", dash: str | None = None) -> alt.Chart:
    """Train and validation curves of one metric per epoch; a grey rule where fine-tuning starts."""
    data = pd.DataFrame([p for p in points if p["metric"] == metric])
    encoding = {"x": alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
                "y": alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
                "color": alt.Color(f"{color}:N", title=None, scale=alt.Scale(scheme=CURVE_SCHEME)),
                "tooltip": [alt.Tooltip(f, title=f) for f in data.columns if f not in ("metric",)]}
    if dash:
        encoding["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=None)
    chart = alt.Chart(data, title=metric).mark_line(point=True).encode(**encoding)
    starts = data[data["stage"] == "finetune"].groupby(color)["epoch"].min().reset_index() if len(data) else data
    if len(starts):
        starts["epoch"] = starts["epoch"] - 0.5
        chart += alt.Chart(starts).mark_rule(color="grey", strokeDash=[4, 4]).encode(
            x="epoch:Q", tooltip=[alt.Tooltip("epoch:Q", title="fine-tuning starts after epoch")])
    return chart.properties(height=260)
