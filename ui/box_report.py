"""The Metrics page's view of a model scored on photos with face boxes: finding and classifying figures at the IoU the
viewer picks, the confusion matrix, a PR curve per class, and galleries of the faces missed and misclassified, each
addable to the dataset in one click."""

import json

import altair as alt
import pandas as pd
import streamlit as st

from maskdet.core.text import plural
from maskdet.data.annotations import FORMAT_NAMES
from maskdet.data.store import Store
from maskdet.runs.scoring import GALLERY_SIZE, ScoredFace, import_scored_face, scored_faces
from maskdet.serving.box_evaluation import IOUS
from ui.charts import LINE_SCHEME, below, confusion_chart
from ui.resources import detector
from ui.widgets import attempt, file_name, inline, literal, verbatim

GALLERY_COLUMNS = 4  # wide enough for "Add as without_mask" at 1280 px
RATE = st.column_config.NumberColumn(format="%.3f")


def figure(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def pr_chart(curves: dict[str, dict]) -> alt.Chart:
    """Each class's precision against recall (the precision envelope its AP is the area under)."""
    points = [{"class": label, "recall": r, "precision": p} for label, curve in curves.items()
              for r, p in zip(curve["recall"], curve["precision"])]
    return alt.Chart(pd.DataFrame(points, columns=["class", "recall", "precision"])).mark_line(
        interpolate="step-after").encode(
        x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=5)),
        y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=5)),
        color=alt.Color("class:N", title=None, scale=alt.Scale(scheme=LINE_SCHEME), legend=below()),
        tooltip=["class", alt.Tooltip("recall:Q", format=".2f"), alt.Tooltip("precision:Q", format=".3f")]
    ).properties(height=300)


def show_box_evaluation(store: Store, report: dict, upload) -> None:
    """A box report (serving/box_evaluation.py) of the uploaded zip `upload`."""
    counted = "".join(f"; {literal(name)} faces count as {target}" for name, target in report["counts_as"].items())
    st.success(f"{report['run_id']} ({report['model_file']}) on {plural(report['photos_scored'], 'photo')} with "
               f"{plural(report['faces'], 'annotated face')} ({FORMAT_NAMES[report['format']]}){counted}.")
    iou = st.radio("Match found faces to annotated ones at IoU", IOUS, horizontal=True, key="box-iou",
                   help="A found face counts as an annotated face when their boxes overlap at least this much "
                        "(intersection over union), one to one. Annotated boxes are often drawn around the head, "
                        "taller than the detector's: 0.4 is fairer to the detector, 0.5 is the usual detection rule.")
    scores = report[f"iou_{iou}"]
    columns = st.columns(5)
    columns[0].metric("faces found", figure(scores["recall"]),
                      help=f"{scores['found']} of the {scores['faces']} annotated faces have a found face on them.")
    columns[1].metric("precision", figure(scores["precision"]),
                      help=f"{scores['found']} of the {scores['predictions']} faces found are annotated faces.")
    columns[2].metric("found faces right", figure(scores["found_right"]),
                      help="Of the annotated faces found, the share the model classified as their class.")
    columns[3].metric("end to end", figure(scores["end_to_end"]),
                      help="Of all annotated faces, the share found and classified right (a face missed is wrong).")
    columns[4].metric("mAP", figure(scores["map"]),
                      help="The mean over the model's classes of AP (VOC all-point: the area under the class's "
                           "precision-recall curve), each face found scored its face probability times its class "
                           "probability.")
    left, right = st.columns(2)
    with left:
        st.markdown("**By face size** (the annotated box's shorter side)")
        st.dataframe([{"face size": band, **row} for band, row in scores["by_size"].items()], hide_index=True,
                     key="box-by-size", column_config={"recall": RATE, "found_right": RATE})
        st.markdown("**By class** (the set's classes)")
        rows = [{"class": label, **row, "AP": scores["ap"].get(label)} for label, row in scores["by_class"].items()]
        st.dataframe(rows, hide_index=True, key="box-by-class",
                     column_config={"recall": RATE, "found_right": RATE,
                                    "AP": st.column_config.NumberColumn(format="%.3f", help="the model's classes")})
    with right:
        st.markdown("**Confusion matrix of the faces found** (rows: true class, columns: predicted)")
        st.altair_chart(confusion_chart(report["labels"], scores["confusion"]), width="stretch", key="box-confusion")
    st.markdown("**Precision-recall curve per class**")
    st.altair_chart(pr_chart(scores["curves"]), width="stretch", key="box-pr")
    if "box-notice" in st.session_state:
        st.success(st.session_state.pop("box-notice"))
    if upload is None or upload.file_id != st.session_state.get("evaluation-file"):
        st.info("The evaluated zip is no longer uploaded: upload it again and evaluate it to see and add its faces.")
    else:
        for kind, title, none in (("misses", "Faces not found", "Every annotated face was found."),
                                  ("wrongs", "Faces found but misclassified",
                                   "Every face found was classified right.")):
            show_faces(store, report, upload, iou, kind, title, none)
    for key, title in (("rejected_files", "file skipped"), ("left_out_boxes", "box left out")):
        if report[key]:
            with st.expander(plural(len(report[key]), title)):
                st.dataframe(report[key], hide_index=True, key=f"box-{key}")


def show_faces(store: Store, report: dict, upload, iou: float, kind: str, title: str, none: str) -> None:
    """One gallery (missed or misclassified faces), each face with a button that adds it to the dataset."""
    total = len(report[f"iou_{iou}"][kind])
    st.subheader(f"{title} ({total})")
    if not total:
        st.success(none)
        return
    order = "largest" if kind == "misses" else "most confident"
    st.caption(("" if total <= GALLERY_SIZE else f"The {GALLERY_SIZE} {order} of them. ") +
               "Add a face to the dataset, its photo with it, under the class it counted as: the next training "
               "learns from it." + (" The figure after the class said is the model's probability for it."
                                    if kind == "wrongs" else ""))
    faces = attempt(cached_scored_faces, upload.file_id, report["run_id"], json.dumps(report["counts_as"]), iou, kind,
                    upload.getvalue(), report, store.settings.max_pixels)
    labels = attempt(store.labels) or []
    columns = st.columns(GALLERY_COLUMNS)
    for index, face in enumerate(faces or []):
        with columns[index % GALLERY_COLUMNS]:
            show_face(store, face, kind, labels, upload)


@st.cache_data(max_entries=8, show_spinner="Reading the faces from the upload...")
def cached_scored_faces(file_id: str, run_id: str, counts_as: str, iou: float, kind: str, _data: bytes, _report: dict,
                        max_pixels: int) -> list[ScoredFace]:
    """scored_faces, cached by upload (its id is new each upload), run, classes' mapping, IoU and gallery: a rerun
    (a face added, another IoU and back) decodes no photo again."""
    return scored_faces(_data, _report, iou, kind, max_pixels)


def show_face(store: Store, face: ScoredFace, kind: str, labels: list[str], upload) -> None:
    counts = f" (counts as {face.counted_as})" if face.counted_as != face.truth else ""
    said = f" · said {face.predicted} ({face.probability:.2f})" if face.predicted else " · not found"
    caption = f"face {face.number} of {face.faces_in_photo} · {literal(face.truth)}{counts}{said}"
    if face.crop is not None:
        st.image(inline(face.crop), caption=caption)
    else:
        st.caption(f"{caption}: {literal(face.note)}")
    file_name(face.photo)
    missing = face.counted_as not in labels
    if st.button(f"Add as {face.counted_as}", key=f"box-add-{kind}-{face.photo}-{face.number}", disabled=missing,
                 help=f"The dataset has no class {face.counted_as}: add it on the Dataset page first." if missing
                 else "Add this face and its photo to the dataset."):
        finder = attempt(detector)
        added = finder and attempt(import_scored_face, store, upload.getvalue(), face, finder, verbatim)
        if added:
            st.session_state["box-notice"] = added.message
            st.rerun()
