"""Widgets and text helpers the pages share: errors shown as sentences, runs tables, annotated photos, the legend of
their colours, class pickers, the gate in front of a webcam stream."""

import base64
import html
import io
import re
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from PIL import Image

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.runs.views import RunRecord
from maskdet.serving import media
from maskdet.serving.live import StreamSeats, rtc_configuration, stream_seats
from maskdet.serving.media import full_message
from maskdet.serving.predict import legend
from ui.resources import store


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
        "run": column.TextColumn("run", width="medium", pinned=True),  # in view when a table scrolls
        "when": column.TextColumn("created"),
        "status": column.TextColumn("status"),
        "active": column.CheckboxColumn("active", help="the model the live page uses"),
        "images": column.TextColumn("images", help="images used: train + validation + test", alignment="right"),
        "split": column.TextColumn("train / val / test"),
        "accuracy": column.TextColumn("accuracy", help="test split", alignment="right"),
        "macro_f1": column.TextColumn("macro F1", help="test split", alignment="right"),
        "duration_s": column.TextColumn("took", alignment="right"),
        "config": column.TextColumn("settings", width="large"),
        "note": column.TextColumn("note", width="large"),
    }


FIGURES = {"images": "{:d}", "split": "{}", "accuracy": "{:.3f}", "macro_f1": "{:.3f}", "duration_s": "{:.0f} s"}
NO_FIGURE = "\u2014"  # a figure a run has not got (cancelled, failed, still training): never a raw "None"


def run_figures(row: dict) -> dict:
    """A row of RunRecord.row with its figures written as the runs tables show them, a dash where there is none."""
    return {**row, **{name: NO_FIGURE if row.get(name) is None else shape.format(row[name])
                      for name, shape in FIGURES.items() if name in row}}


CHARACTER_PX = 7.2  # the width of a character of the tables' 14 px font, on the wide side
ONE_LINE = 600  # px: the widest a long text's column gets before its rows wrap it instead
WRAPPING_ROW = 84  # px: a row of this height wraps its texts onto three lines (Streamlit wraps above 64 px)


def text_width(texts) -> int:
    """Pixels a column needs to show the longest of these texts on one line."""
    return round(16 + CHARACTER_PX * max((len(str(text)) for text in texts if text), default=0))


def runs_dataframe(rows: list[dict], columns: tuple[str, ...], key: str) -> None:
    """Rows of RunRecord.row as a table of the given columns, shown as run_columns says. A long text (the settings, a
    failed run's error in the note) is never cut: its column is as wide as it, up to ONE_LINE; a longer one makes the
    rows tall enough to wrap it onto three lines of a column a third as wide (at least "large", at most Streamlit's
    widest)."""
    shown = run_columns()
    config = {name: shown[name] for name in columns}
    needed = {name: text_width(row.get(name) for row in rows) for name in ("config", "note") if name in columns}
    wrapped = max(needed.values(), default=0) > ONE_LINE
    for name, width in needed.items():
        config[name] = {**config[name], "width": min(max(width // 3 + 16 if wrapped else width, 400), 1000)}
    st.dataframe([run_figures(row) for row in rows], hide_index=True, key=key, column_order=columns, width="stretch",
                 column_config=config, row_height=WRAPPING_ROW if wrapped else None)


def run_caption(run: dict) -> str:
    """A one-line description of a run for select boxes."""
    return RunRecord.of(run).caption()


PHOTO_TYPES = sorted(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)  # what the photo uploaders accept


def show_annotated_photo(result, name: str, key: str, no_face_hint: str = "") -> None:
    """A media.AnnotatedPhoto: the picture, the table of its faces (numbered as on the picture) and its download."""
    st.image(inline(result.png), caption=f"{literal(name)}, annotated", width=min(720, result.width))
    if result.predictions:
        st.dataframe(media.prediction_rows(result.predictions), hide_index=True, key=f"{key}-faces",
                     column_config={"face": st.column_config.NumberColumn("face", pinned=True)})
    else:
        st.info(f"No face found. {no_face_hint}".strip())
    if result.faces_found > len(result.predictions):
        st.caption(f"{result.faces_found} faces found; the {len(result.predictions)} largest were classified "
                   "(Max faces).")
    st.download_button("Download the annotated photo", result.png, file_name=f"{Path(name).stem}-annotated.png",
                       mime="image/png", key=f"{key}-download", on_click="ignore", icon=":material/download:")


def class_legend(labels: list[str]) -> None:
    """What the colours of the boxes drawn on faces mean: a swatch and the name of each of the model's classes, then
    uncertain."""
    items = "".join(f'<span style="white-space: nowrap"><span style="display: inline-block; width: 0.9em; '
                    f'height: 0.9em; border-radius: 2px; vertical-align: -0.1em; background: rgb{color}"></span> '
                    f'{html.escape(name)}</span>' for name, color in legend(labels))
    st.html(f'<div style="display: flex; flex-wrap: wrap; gap: 0.25rem 1rem">{items}</div>')


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


NAME_PART = 18  # the longest run of a file name between separators that a narrow column shows whole
NAME_BREAKS = re.compile(r"(?<=[/\\_\-. ])")  # after a path separator, "_", "-", "." or a space


def file_name_html(name: str, longest: int | None = NAME_PART) -> str:
    """A file name from a user as HTML-escaped text that wraps after a path separator, "_", "-", "." or a space, never
    inside a word: a run between them longer than `longest` characters is cut short in its middle (None: never)."""
    def shortened(part: str) -> str:
        if longest is None or len(part) <= longest:
            return part
        tail = (longest - 1) // 2
        return f"{part[:longest - 1 - tail]}\u2026{part[-tail:]}"
    return "<wbr>".join(html.escape(shortened(part)) for part in NAME_BREAKS.split(" ".join(name.splitlines())) if part)


def file_names(names: list[str], longest: int | None = NAME_PART, container=None) -> None:
    """File names from a user in small plain text (never read as Markdown or HTML), wrapped only between words
    (file_name_html), each with its full name as its tooltip."""
    items = ", ".join(f'<span title="{html.escape(name, quote=True)}">{file_name_html(name, longest)}</span>'
                      for name in names)
    (container or st).html(f'<div style="font-size: 0.875rem; overflow-wrap: break-word">{items}</div>')


def file_name(name: str, container=None) -> None:
    """One file name, as file_names shows them (a long one cut short, its full name in the tooltip)."""
    file_names([name], container=container)


def verbatim(text: str) -> str:
    """Text (a file name from an upload) as a Markdown code span: shown as it is, never read as Markdown."""
    text = " ".join(text.splitlines())
    ticks = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{ticks} {text} {ticks}"


def stream_gate(holder: object, stream: str, meanwhile: str, key: str) -> tuple[dict, StreamSeats] | None:
    """A webcam stream's ICE servers and seats, or None after saying why it cannot start: MASKDET_ICE_SERVERS cannot
    be read, or every seat is taken by other streams (then with a Try again button). `stream` names what is off
    ("Bursts are"), `meanwhile` says what works instead."""
    ice = attempt(rtc_configuration, store().settings.ice_servers)
    if ice is None:
        st.info(f"{stream} off until MASKDET_ICE_SERVERS is fixed and the dashboard restarted. {meanwhile}")
        return None
    seats = stream_seats(store().settings.live_streams)
    if not seats.open_for(holder, time.perf_counter()):
        st.warning(f"{full_message(seats)[0]} {meanwhile} (The limit is MASKDET_LIVE_STREAMS: more streams than cores "
                   "slow every stream down.)")
        st.button("Try again", key=key)
        return None
    return ice, seats


def inline(picture) -> str:
    """A picture (an RGB array, a PIL image, or PNG bytes) as a data URI for st.image. Photos are shown this way, never
    through Streamlit's media URLs, which answer anyone who has the URL, signed in or not; nor can a picture go missing
    when a click interrupts a rerun while a fragment keeps the session busy."""
    if isinstance(picture, bytes):
        return "data:image/png;base64," + base64.b64encode(picture).decode("ascii")
    buffer = io.BytesIO()
    (picture if isinstance(picture, Image.Image) else Image.fromarray(picture)).save(buffer, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
