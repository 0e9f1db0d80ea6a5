"""Dataset page: add photos (upload, zip, webcam), manage classes, browse and fix the gallery (classes and face
boxes), read the warnings.

Everything lives in the store, so several tabs see the same data; session_state only keeps widget bookkeeping
(uploader and camera keys, the last import report, one-off messages).
"""

import hashlib
import math
from datetime import datetime
from pathlib import Path

import streamlit as st
from PIL import Image, ImageDraw, ImageFont
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import ui
from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.text import plural
from maskdet.data import insights
from maskdet.data.annotations import FORMAT_NAMES
from maskdet.data.importer import ImportReport, annotated_zip_classes
from maskdet.serving import capture

ui.page_setup("Dataset")
st.title("Dataset")
st.caption("Face photos sorted into classes. MTCNN finds the face in each photo as it comes in; "
           "training uses the face crop.")

PAGE_SIZE = 24
COLUMNS = 6
BLUE, ORANGE = (33, 118, 210), (245, 124, 0)  # the faces MTCNN finds; the box being set
STRIP = 6  # latest burst captures shown beside the camera
NEW_CLASS, SKIP = "\x00new", "\x00skip"  # the mapping step's two choices that are not a class of the dataset
state = st.session_state


# ---- small UI helpers (no ML logic) ------------------------------------------------------------------------
def attempt_call(action, *args):
    """ui.attempt for calls that may return None: (True, result) on success, (False, None) after an error."""
    boxed = ui.attempt(lambda: (action(*args),))
    return (True, boxed[0]) if boxed else (False, None)


def flash(where: str, kind: str, text: str) -> None:
    """Keep a message to show after the next rerun, next to the widgets that caused it."""
    state[f"flash_{where}"] = (kind, text)


def show_flash(where: str) -> None:
    kind, text = state.pop(f"flash_{where}", (None, None))
    if kind:
        getattr(st, kind)(text)


def bump(key: str) -> None:
    """Give a widget a fresh key (an empty uploader or camera, cleared checkboxes) on the next run."""
    state[key] = state.get(key, 0) + 1


def progress_callback(bar, verb: str):
    def update(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{verb}: {done} of {total} photos")
    return update


def names(files: list[str]) -> None:
    """File names from an upload, as plain text wrapped between words."""
    ui.file_names(files, longest=None)


def show_report(report) -> None:
    """The last import: added, duplicates (already in the dataset, or repeated within the upload), rejected with
    reasons, photos with no face found."""
    counts = report.summary()
    already = report.already_stored()
    parts = [f"added {plural(counts['added'], 'photo')}"
             + (f" with {plural(counts['faces'], 'face')}" if counts["faces"] != counts["added"] else "")]
    skipped = [f"{len(already)} already in the dataset"] if already else []
    skipped += [f"{len(report.repeated)} repeated within the upload"] if report.repeated else []
    if skipped:
        parts.append("skipped " + " and ".join(skipped))
    if counts["rejected"]:
        parts.append(f"rejected {counts['rejected']}")
    if counts["no_face"]:
        parts.append(f"no face found in {counts['no_face']} of the added")
    headline = "Import finished: " + ", ".join(parts) + "."
    (st.success if counts["added"] and not counts["rejected"] else st.warning)(headline)
    for column, (name, count) in zip(st.columns(5), (
            ("added", counts["added"]), ("already there", len(already)), ("repeated in upload", len(report.repeated)),
            ("rejected", counts["rejected"]), ("no face found", counts["no_face"]))):
        column.metric(name, count, help="Files of the upload with the same content as an earlier one of it: the "
                      "first was kept." if name == "repeated in upload" else None)
    if report.rejected:
        st.dataframe([{"file": name, "reason": reason} for name, reason in report.rejected], hide_index=True)
        photos = [name for name, _ in report.rejected if Path(name).suffix.lower() in IMAGE_SUFFIXES]
        st.caption("Rejected files were not added; each row says why."
                   + (" A damaged or oversized photo can often be opened and re-saved as JPEG or PNG (under the pixel "
                      "limit), then uploaded again." if photos else ""))
    if report.left_out:
        with st.expander(f"Face boxes left out ({len(report.left_out)})"):
            st.dataframe([{"photo": name, "reason": reason} for name, reason in report.left_out], hide_index=True)
            st.caption("The rest of each photo's faces were added. Fix the annotations and import the set again, or "
                       "add the faces on the Live page.")
    if report.no_face:
        with st.expander(f"Photos with no face found ({len(report.no_face)})"):
            names(report.no_face)
            st.caption("They are kept and used whole. Check them with the 'no face found' filter of the gallery "
                       "and delete the ones that are not face photos.")
    if already:
        with st.expander(f"Already in the dataset ({len(already)})"):
            names(already)
    if report.repeated:
        with st.expander(f"Repeated within the upload ({len(report.repeated)})"):
            st.dataframe([{"file": name, "same content as": first} for name, first in report.repeated],
                         hide_index=True)
            st.caption("Only the first of files with the same content is added.")


@st.cache_data(max_entries=1000, show_spinner=False)
def cached_thumbnail(_store, _record, sha256: str, face_box) -> object:
    """insights.thumbnail, cached by content (files are content-addressed) and face box."""
    return insights.thumbnail(_store, _record)


@st.cache_data(max_entries=100, show_spinner="Finding the faces in the photo...")
def cached_faces(_store, _record, sha256: str) -> list:
    """store.detect_faces, cached by content: the faces MTCNN finds in the photo, largest first."""
    return _store.detect_faces(_record, ui.detector())


def box_preview(image, faces: list, box, size: int = 480) -> Image.Image:
    """The photo with MTCNN's faces numbered in blue and the box being set in orange, fitted into size x size."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    line = max(2, round(max(picture.size) / 150))
    font = ImageFont.load_default(size=max(12, round(max(picture.size) / 20)))
    for number, face in enumerate(faces, start=1):
        draw.rectangle(face.box, outline=BLUE, width=line)
        draw.text((face.box[0] + 2 * line, face.box[1] + line), str(number), fill=BLUE, font=font)
    x1, y1, x2, y2 = box
    draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=ORANGE, width=line)
    picture.thumbnail((size, size))
    return picture


# ---- overview: counts and warnings --------------------------------------------------------------------------
store = ui.attempt(ui.store)
summary = ui.attempt(insights.summarize, store) if store else None
if summary is None:
    st.info("The data home could not be opened. Check MASKDET_HOME (or MASKDET_DATABASE_URL) and reload the page.")
    st.stop()
labels = list(summary.counts)
total = sum(summary.counts.values())

if labels:
    per_row = min(len(labels), COLUMNS)
    for start in range(0, len(labels), per_row):
        for column, label in zip(st.columns(per_row), labels[start:start + per_row]):
            column.metric(label, summary.counts[label])
            column.caption(f"{summary.no_face[label]} with no face found")
for warning in summary.warnings:
    st.warning(warning)
if total == 0:
    st.info("No photos yet. Add some below: upload photos into a class, upload a zip with one folder per class, "
            "or take photos with the webcam. From a terminal: `python -m maskdet import PATH`.")
elif not summary.warnings:
    st.success("No warnings: the dataset is ready for training.")

# ---- add photos ---------------------------------------------------------------------------------------------
st.header("Add photos")
if "import_report" in state:
    show_report(state["import_report"])
    if st.button("Hide the import report", key="hide_report"):
        del state["import_report"]
        st.rerun()

# Keyed and tracked, so the chosen tab stays chosen when a capture or an import changes the messages above it.
photos_tab, zip_tab, webcam_tab = st.tabs(["Upload photos", "Upload a zip", "Webcam"], key="add_tab", on_change="rerun")
with photos_tab:
    if not labels:
        st.info("Add a class first (Classes, below), then upload photos into it.")
    else:
        target = ui.class_picker(st, "Class for these photos", labels, "upload_label")
        files = st.file_uploader("Photos", type=ui.PHOTO_TYPES, accept_multiple_files=True,
                                 key=f"upload_photos_{state.get('upload_round', 0)}")
        if st.button(f"Import {plural(len(files or []), 'photo')} into {target}", key="import_photos",
                     type="primary", disabled=not files):
            detector = ui.attempt(ui.detector)
            if detector is not None:
                bar = st.progress(0.0, text="Finding faces...")
                uploads = [(file.name, file.getvalue()) for file in files]
                report = ui.attempt(store.add_images, uploads, target, detector,
                                    progress_callback(bar, "Finding faces"))
                bar.empty()
                if report is not None:
                    state["import_report"] = report
                    bump("upload_round")
                    st.rerun()


def class_mapping(set_classes: list[str], format: str) -> dict[str, str | None]:
    """Asks which dataset class each of an annotated zip's classes that the dataset lacks goes into (or a new class of
    its name, or skip it); classes the dataset has go into themselves."""
    missing = [name for name in set_classes if name not in labels]
    st.info(f"A {FORMAT_NAMES[format]} set with the classes {', '.join(set_classes)}."
            + (" Choose where each class the dataset does not have goes:" if missing else
               " Each of them is a class of the dataset already."))
    mapping = {}
    for name in missing:
        options = [*labels, NEW_CLASS, SKIP]
        choice = st.selectbox(f"Faces of {name}", options, index=options.index(NEW_CLASS), key=f"map_{name}",
                              format_func=lambda option, name=name: f"a new class {name}" if option == NEW_CLASS
                              else "skip them" if option == SKIP else f"into {option}")
        mapping[name] = name if choice == NEW_CLASS else None if choice == SKIP else choice
    return mapping


with zip_tab:
    st.caption("A .zip with one folder per class, for example with_mask/photo1.jpg and without_mask/photo2.jpg "
               "(folders may be nested; the folder holding a photo is its class; new classes are created), or a "
               "labelled set with face boxes: PASCAL VOC, YOLO or COCO, several faces a photo.")
    archive = st.file_uploader("Zip of class folders or of a set with face boxes", type=["zip"],
                               key=f"upload_zip_{state.get('upload_round', 0)}")
    described = ui.attempt(annotated_zip_classes, archive.getvalue()) if archive is not None else None
    mapping = class_mapping(described[1], described[0]) if described else {}
    if st.button("Import the zip", key="import_zip", type="primary", disabled=archive is None):
        detector = ui.attempt(ui.detector)
        if detector is not None:
            bar = st.progress(0.0, text="Reading the zip...")
            report = ui.attempt(store.import_zip, archive.getvalue(), detector,
                                progress_callback(bar, "Finding faces"), mapping)
            bar.empty()
            if report is None:
                st.info("Nothing was imported from this file. Upload a .zip whose folders are the classes "
                        "(for example with_mask/ and without_mask/) holding JPEG or PNG photos, or a PASCAL VOC, "
                        "YOLO or COCO set.")
            else:
                state["import_report"] = report
                bump("upload_round")
                st.rerun()


def start_burst(shots: int, interval: float, label: str) -> None:
    state["burst"].start(shots, interval, f"webcam-{datetime.now():%Y%m%d-%H%M%S}")
    state["burst_label"], state["burst_report"] = label, ImportReport()


def burst_capture(label: str) -> None:
    """N shots at an interval from the webcam stream, each stored as it comes (st.camera_input takes one photo a click,
    so the stream comes through streamlit-webrtc), the latest shown beside the camera with their face boxes."""
    burst = state.setdefault("burst", capture.Burst())
    gate = ui.stream_gate(burst, "Bursts are", "Take photos one per click meanwhile.", key="burst_try_again")
    if gate is None:
        return
    ice, seats = gate
    camera_column, strip_column = st.columns(2)
    with camera_column:
        shots_column, every_column = st.columns(2)
        shots = shots_column.number_input("Shots", 1, capture.MAX_SHOTS, 10, key="burst_shots")
        every = every_column.number_input("Seconds between shots", capture.MIN_INTERVAL, 10.0, 1.0, 0.1,
                                          key="burst_every")
        if burst.running:
            st.button("Stop the burst", key="burst_stop", on_click=burst.stop)
        else:
            st.button(f"Capture {plural(shots, 'shot')} every {every:g} s into {label}", key="burst_start",
                      type="primary", on_click=start_burst, args=(shots, every, label))
        ui.attempt(webrtc_streamer, key="dataset-burst", mode=WebRtcMode.SENDRECV, rtc_configuration=ice,
                   server_rtc_configuration=ice,
                   media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                   video_frame_callback=capture.frame_callback(burst, seats))
    with strip_column:
        burst_progress(burst)


def burst_progress(burst) -> None:
    """Store the shots taken since the last look (twice a second while a burst runs) and show the latest."""
    @st.fragment(run_every=0.5 if burst.running else None)
    def block() -> None:
        shots, label = burst.collect(), state.get("burst_label")
        if shots:
            detector = ui.attempt(ui.detector)
            stored = ui.attempt(capture.store_shots, store, shots, label, detector) if detector else None
            if stored:
                state["burst_report"].merge(stored[0])
                state["burst_latest"] = ([r.id for r in reversed(stored[1])] + state.get("burst_latest", []))[:STRIP]
        if burst.running:
            st.caption(f"Shot {burst.taken} of {burst.shots}, {burst.interval:g} s apart" +
                       ("" if burst.taken else ": waiting for the camera (press START)") + ".")
        report = state.get("burst_report")
        if report is not None and (report.added or report.duplicates or report.rejected):
            no_face = f", no face found in {len(report.no_face)}" if report.no_face else ""
            already = f"; {len(report.duplicates)} already in the dataset" if report.duplicates else ""
            (st.success if not report.rejected else st.warning)(
                f"Stored {plural(len(report.added), 'shot')} in {label}{no_face}{already}.")
            for name, reason in report.rejected:
                st.text(f"Not stored: {name}: {reason}")
        latest = sorted(ui.attempt(store.faces, ids=state.get("burst_latest", [])) or [], key=lambda r: -r.id)
        for start in range(0, len(latest), 3):
            for column, record in zip(st.columns(3), latest[start:start + 3]):
                picture = ui.attempt(cached_thumbnail, store, record, record.sha256,
                                     record.face.box if record.face else None)
                if picture is not None:
                    column.image(ui.inline(picture), caption="face found" if record.face else "no face found")
        if not latest:
            st.caption("The latest captures show here, with the face box training will use.")
        if shots and not burst.running:
            st.rerun()  # the burst is over: stop looking twice a second
    block()


def show_last_capture(last: capture.Capture | None) -> None:
    """The last photo taken one per click: the stored photo with the face box training will use and its class, or why
    nothing was stored."""
    if last is None:
        st.caption("The photo you take shows here once stored, with the face box training will use.")
        return
    if not last.stored:
        st.info(last.reason)
        return
    present = ui.attempt(store.faces, ids=[record.id for record in last.faces])
    if present == []:
        st.caption("The last photo has been deleted from the dataset since.")
    for record in present or []:
        picture = ui.attempt(cached_thumbnail, store, record, record.sha256, record.face.box if record.face else None)
        if picture is not None:
            st.image(ui.inline(picture), caption=f"In {ui.literal(record.label)}: " + (
                "face found (green box)" if record.face else "no face found, the whole photo is used"))
    found = ("no face found; delete it in the gallery if your face was hidden" if not last.faces[0].face
             else "face found")
    st.success(f"Stored capture {state.get('camera_count', 0)} in {last.label} ({found}). Take the next one.")


def one_photo_capture(label: str) -> None:
    """st.camera_input: each photo stored as it is taken, then a fresh camera; the last one shown beside it."""
    # "Use the webcam" keeps its setting while Bursts are shown (a widget not drawn loses its state)
    state.setdefault("camera_on", state.get("camera_wanted", False))
    state["camera_wanted"] = camera_on = st.toggle(
        "Use the webcam", key="camera_on", help="Each photo you take is stored straight away; the camera is then "
                                                "ready again.")
    st.caption(f"Captured this session: {state.get('camera_count', 0)}")
    if not camera_on:
        return
    camera_column, last_column = st.columns([3, 2])
    with camera_column:
        camera_key = f"camera_{state.get('camera_round', 0)}"
        shot = st.camera_input("Take a photo", key=camera_key)
        st.caption("After each photo the camera starts again: press Take Photo once it shows a picture. A press "
                   "before that takes no photo (the browser has no picture to give yet), so nothing is stored.")
    if shot is not None:
        data = shot.getvalue()
        # Per camera and photo: a rerun never adds a shot twice, and a fresh camera's shot that repeats the last one
        # (a still scene) still gets its answer.
        handled = (camera_key, hashlib.sha256(data).hexdigest())
        if handled != state.get("camera_handled"):
            state["camera_handled"] = handled  # set before storing
            name = f"webcam-{datetime.now():%Y%m%d-%H%M%S}.jpg"
            detector = ui.attempt(ui.detector)
            last = state.get("camera_last")
            stored = ui.attempt(capture.store_photo, store, data, name, label, detector,
                                last.sha256 if last else None) if detector else None
            if stored is not None:
                state["camera_count"] = state.get("camera_count", 0) + stored.stored
                state["camera_last"] = stored
                bump("camera_round")
                st.rerun()
    with last_column:
        show_last_capture(state.get("camera_last"))


with webcam_tab:
    if not labels:
        st.info("Add a class first (Classes, below), then capture photos into it.")
    else:
        camera_label = ui.class_picker(st, "Class for the captures", labels, "camera_label")
        if st.radio("Capture", ["One photo per click", "Bursts"], horizontal=True, key="camera_mode",
                    help="Bursts: a number of shots at an interval, taken from the camera stream.") == "Bursts":
            burst_capture(camera_label)
        else:
            one_photo_capture(camera_label)

# ---- classes ------------------------------------------------------------------------------------------------
st.header("Classes")
show_flash("classes")
add_column, rename_column, delete_column = st.columns(3)
with add_column:
    with st.form("add_class", clear_on_submit=True, border=False):
        new_label = st.text_input("New class", placeholder="e.g. mask_below_nose", key="new_class")
        if st.form_submit_button("Add class"):
            ok, name = attempt_call(store.add_label, new_label)
            if ok and name in labels:
                flash("classes", "info", f"The class {name} is in the dataset already: nothing was added.")
                st.rerun()
            elif ok:
                flash("classes", "success", f"Added the class {name}. Add photos to it above.")
                st.rerun()
with rename_column:
    if labels:
        with st.form("rename_class", clear_on_submit=True, border=False):
            old_label = st.selectbox("Class to rename", labels, key="rename_from")
            renamed = st.text_input("New name", key="rename_to")
            if st.form_submit_button("Rename class"):
                ok, _ = attempt_call(store.rename_label, old_label, renamed)
                if ok:
                    flash("classes", "success", f"Renamed {old_label} to {renamed.strip()}.")
                    st.rerun()
with delete_column:
    if labels:
        doomed = st.selectbox("Class to delete", labels, key="delete_label")
        count = summary.counts.get(doomed, 0)
        confirmed = st.checkbox(f"Yes, delete {doomed} and its {plural(count, 'photo')}",
                                key=f"confirm_delete_{doomed}", wrap=True)
        if st.button("Delete class", key="delete_class", disabled=not confirmed):
            ok, removed = attempt_call(store.delete_label, doomed)
            if ok:
                flash("classes", "success", f"Deleted the class {doomed} and its {plural(removed, 'photo')}.")
                st.rerun()

# ---- gallery ------------------------------------------------------------------------------------------------
st.header("Gallery")
show_flash("gallery")


def reset_page() -> None:
    state.pop("gallery_page", None)


filter_column, face_column, page_column = st.columns([2, 2, 1])
shown_label = filter_column.selectbox("Show", [None, *labels], key="gallery_label", on_change=reset_page,
                                      format_func=lambda value: "All classes" if value is None else value)
only_no_face = face_column.toggle("Only photos with no face found", key="gallery_no_face", on_change=reset_page,
                                  wrap=True)
opened = state.get("gallery_ids")  # photos opened from the Metrics page's misclassified faces: only those are shown
shown = {"label": shown_label, "no_face": True if only_no_face else None, "ids": opened}
shown_count = ui.attempt(store.count_faces, **shown) or 0
if opened is not None:
    note_column, all_column = st.columns([4, 1], vertical_alignment="center")
    note_column.info(f"Showing only the {plural(len(opened), 'photo')} opened from the Metrics page.")
    if all_column.button("Show all photos", key="gallery_show_all"):
        del state["gallery_ids"]
        reset_page()
        st.rerun()
pages = max(1, math.ceil(shown_count / PAGE_SIZE))
if state.get("gallery_page", 1) > pages:
    state["gallery_page"] = pages
page = page_column.number_input("Page", min_value=1, max_value=pages, step=1, key="gallery_page")
page_records = ui.attempt(store.faces, **shown, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE) or []
photo_faces = ui.attempt(store.photo_faces, {record.photo_id for record in page_records}) or {}
generation = state.get("gallery_generation", 0)
pick_keys = {record.id: f"pick_{generation}_{record.id}" for record in page_records}

if not shown_count:
    st.info("No photos with no face found." if only_no_face else "No photos here yet.")
else:
    st.caption(f"{plural(shown_count, 'photo')}, page {page} of {pages}. Green boxes are the faces training uses. "
               "Tick one photo to fix its face box, below the gallery.")
actions = st.container()
selected = []
for start in range(0, len(page_records), COLUMNS):
    for column, record in zip(st.columns(COLUMNS), page_records[start:start + COLUMNS]):
        with column:
            try:
                picture = cached_thumbnail(store, record, record.sha256, record.face.box if record.face else None)
            except Exception:
                picture = None
            siblings = photo_faces.get(record.photo_id, [record.id])
            caption = ui.literal(record.label) + (" · box set by hand" if record.face_source == "manual" else
                                                  "" if record.face else " · no face found") + (
                f" · face {siblings.index(record.id) + 1} of {len(siblings)} in its photo" if len(siblings) > 1 else "")
            if picture is None:
                st.caption(f"{caption}: the file could not be read; delete it and upload the photo again.")
            else:
                st.image(ui.inline(picture), caption=caption)
            ui.file_name(record.source_name)  # plain text wrapped between words, a long one cut short
            if st.checkbox("Select", key=pick_keys[record.id]):
                selected.append(record.id)


if page_records:
    with actions:
        bar = st.container(horizontal=True, vertical_alignment="bottom")  # wraps onto a second row when narrow
        keys = list(pick_keys.values())
        bar.button("Select page", key="select_page", on_click=ui.set_checkboxes, args=(keys, True))
        bar.button("Clear selection", key="clear_selection", on_click=ui.set_checkboxes, args=(keys, False))
        move_to = ui.class_picker(bar, "Move selected to", labels, "move_to", width=220)
        if bar.button(f"Move {len(selected)} selected", key="move_selected", disabled=not selected):
            ok, _ = attempt_call(store.relabel, selected, move_to)
            if ok:
                bump("gallery_generation")
                flash("gallery", "success", f"Moved {plural(len(selected), 'face')} to {move_to}.")
                st.rerun()
        with bar.popover(f"Delete {len(selected)} selected", disabled=not selected):
            st.write(f"Delete {plural(len(selected), 'face')} from the dataset? A photo goes with its last face. "
                     "This cannot be undone (a backup can bring them back).")
            if st.button(f"Yes, delete {plural(len(selected), 'face')}", key="delete_selected", type="primary"):
                ok, _ = attempt_call(store.delete_faces, selected)
                if ok:
                    bump("gallery_generation")
                    flash("gallery", "success", f"Deleted {plural(len(selected), 'face')}.")
                    st.rerun()


# ---- one photo's face box ------------------------------------------------------------------------------------
def box_changed(message: str) -> None:
    """Fresh box inputs on the next run, which says what happened (also when the photo has left the gallery's
    filter)."""
    bump("box_round")
    flash("face_box", "success", message)
    st.rerun()


def face_box_editor(record) -> None:
    """Pick one of the faces MTCNN finds in the photo, or set its box by hand (four numbers, previewed in orange)."""
    image = ui.attempt(store.load_image, record)
    if image is None:
        return
    faces = ui.attempt(cached_faces, store, record, record.sha256) or []
    name, manual = ui.verbatim(record.source_name), record.face_source == "manual"
    picture_column, controls = st.columns([3, 2])
    with controls:
        st.text(record.source_name)
        st.caption(f"{record.width} x {record.height} pixels. Training uses " + (
            "the box set by hand." if manual else "the face MTCNN found at import." if record.face else
            "the whole photo: MTCNN found no face at import."))
        if faces:
            st.write("The faces MTCNN finds (blue, largest first):")
            for number, face in enumerate(faces, start=1):
                in_use = record.face is not None and face.box == record.face.box
                if st.button(f"Use face {number}" + (" (in use)" if in_use else ""), key=f"use_face_{number}",
                             disabled=in_use):
                    if attempt_call(store.set_face, record.id, face)[0]:
                        box_changed(f"Face {number} of {name} picked; training will use it.")
        else:
            st.caption("MTCNN finds no face in this photo: set the box by hand.")
        st.write("The box by hand (orange), in pixels of the photo:")
        start = record.face.box if record.face else (record.width / 4, record.height / 4, record.width * 3 / 4,
                                                     record.height * 3 / 4)
        keys = f"box_{record.id}_{state.get('box_round', 0)}"
        box = tuple(column.number_input(side, value=round(value), step=1, key=f"{keys}_{side.lower()}")
                    for column, side, value in zip(st.columns(2) + st.columns(2), ("Left", "Top", "Right", "Bottom"),
                                                   start))
        buttons = st.container(horizontal=True)  # side by side where they fit, else one under the other
        if buttons.button("Save this box", key="save_box", type="primary"):
            if attempt_call(store.set_face_box, record.id, box)[0]:
                box_changed(f"Face box of {name} set by hand; training will use it.")
        if buttons.button("Use the whole photo", key="whole_photo"):
            if attempt_call(store.set_face_box, record.id, (0, 0, record.width, record.height))[0]:
                box_changed(f"Face box of {name} set to the whole photo; training will use it.")
        if st.button("Forget the box set by hand", key="reset_box", disabled=not manual,
                     help="Training uses what MTCNN found at import again."):
            ok, reset = attempt_call(store.reset_face, record.id)
            if ok:
                box_changed(f"Face box of {name} reset; training will use " +
                            ("the face MTCNN found." if reset.face else "the whole photo (MTCNN found no face)."))
    picture_column.image(ui.inline(box_preview(image, faces, box)),
                         caption="Blue: the faces MTCNN finds, numbered. Orange: the box of the four numbers.")


st.subheader("Fix a face box")
show_flash("face_box")
if len(selected) == 1:
    face_box_editor(next(record for record in page_records if record.id == selected[0]))
else:
    st.caption("Tick one face in the gallery to fix its box: for a photo where no face was found, or where the "
               "wrong face was taken, pick one of the faces MTCNN finds in it or set the box by hand. Training uses "
               "that box until you forget it.")
