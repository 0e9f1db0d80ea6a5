"""Metrics: the runs table, one run in detail (with its class confidence threshold chosen and saved, and its
misclassified faces relabelled, deleted or opened in the Dataset gallery), two runs side by side, and a run scored on
an uploaded zip (class folders, or a set with face boxes) whose photos or faces can then be imported."""

import math

import altair as alt
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

import ui
from maskdet.core.text import plural
from maskdet.runs.active import active_run, run_rows, run_threshold, set_threshold, threshold_scores
from maskdet.runs.compare import NOISE_RATIO, compare_runs
from maskdet.runs.edits import delete_faces, misclassified_faces, relabel_faces
from maskdet.data.annotations import FORMAT_NAMES
from maskdet.runs.scoring import (GALLERY_SIZE, boxed_upload, evaluate_boxed_zip, evaluate_zip, import_evaluated_zip,
                                  mistake_photos, run_classifier)
from maskdet.runs.views import RunRecord, finished_runs, history_points, per_class_rows, read_history, roc_points
from maskdet.serving.box_evaluation import default_counts_as
from ui.box_report import GALLERY_COLUMNS, show_box_evaluation

ui.page_setup("Metrics")
st.title("Metrics")

PERCENT = st.column_config.NumberColumn(format="%.3f")
state = st.session_state


def roc_chart(report: dict) -> alt.Chart | None:
    points = roc_points(report)
    if not points:
        return None
    curves = alt.Chart(pd.DataFrame(points)).mark_line(interpolate="step-after").encode(
        x=alt.X("fpr:Q", title="false positive rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=5)),
        y=alt.Y("tpr:Q", title="true positive rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(tickCount=5)),
        color=alt.Color("class:N", title=None, scale=alt.Scale(scheme=ui.LINE_SCHEME),
                        legend=alt.Legend(orient="bottom", direction="vertical")), order="order:Q",
        tooltip=["class", "fpr", "tpr"])
    chance = alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})).mark_line(
        color="grey", strokeDash=[4, 4]).encode(x="fpr:Q", y="tpr:Q")
    return (chance + curves).properties(height=360)  # the legend below takes about 40 px


def threshold_rule(threshold: float | None) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"threshold": [threshold] if threshold is not None else []})).mark_rule(
        color="black", strokeDash=[4, 4]).encode(x="threshold:Q", tooltip=["threshold:Q"])


def histogram_chart(bins: list[dict], label: str, threshold: float | None) -> alt.Chart:
    """One class's test faces by top probability, correct and wrong stacked; the threshold as a dashed rule."""
    bars = alt.Chart(pd.DataFrame(bins)).mark_bar().encode(
        x=alt.X("from:Q", bin="binned", title="top class probability", scale=alt.Scale(domain=[bins[0]["from"], 1])),
        x2="to:Q", y=alt.Y("faces:Q", title="test faces", stack=True),
        color=alt.Color("outcome:N", title=None, scale=alt.Scale(domain=["correct", "wrong"],
                                                                 range=["#2e9e43", "#d62728"]),
                        legend=alt.Legend(orient="bottom")),
        tooltip=["from", "to", "outcome", "faces"])
    return (bars + threshold_rule(threshold)).properties(title=f"{label}: confidence", height=240)


def threshold_curves_chart(curves: list[dict], label: str, threshold: float | None) -> alt.Chart:
    """One class's precision, recall and uncertain share against the threshold."""
    lines = alt.Chart(pd.DataFrame(curves)).transform_fold(
        ["precision", "recall", "uncertain"], as_=["measure", "value"]).mark_line().encode(
        x=alt.X("threshold:Q", title="threshold", scale=alt.Scale(zero=False)),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", title=None, scale=alt.Scale(scheme=ui.LINE_SCHEME),
                        legend=alt.Legend(orient="bottom")),
        tooltip=["threshold:Q", "measure:N", alt.Tooltip("value:Q", format=".3f")])
    return (lines + threshold_rule(threshold)).properties(title=f"{label}: at each threshold", height=240)


def show_threshold(run: dict) -> None:
    """Choose the run's class confidence threshold on its test faces, and save it with the run."""
    if "threshold-notice" in st.session_state:
        st.success(st.session_state.pop("threshold-notice"))
    scores = ui.attempt(threshold_scores, store, run)
    if scores is None:
        return
    saved = run_threshold(run)
    st.caption("A face whose top class probability is below the threshold is labelled uncertain: the Live page, "
               "`maskdet predict` and the bundle's script start from the threshold saved here. Per class, on the "
               f"{len(scores.targets)} test faces: the **precision** of the faces labelled with it, the **recall** of "
               "its faces and the share of its faces left **uncertain**.")
    left, right, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
    value = left.number_input("Class confidence threshold", value=saved, step=0.01, format="%.2f",
                              key=f"threshold-{run['id']}", help=f"Between 0 and 1; saved with this run: {saved:g}.")
    rows = ui.attempt(scores.at, value)  # a value outside 0-1 shows why
    if right.button("Save threshold", type="primary", key="threshold-save", disabled=rows is None):
        stored = ui.attempt(set_threshold, store, run["id"], value)
        if stored is not None:
            st.session_state["threshold-notice"] = (f"Saved: Live and predict now start from {stored:g} for run "
                                                    f"{run['id']}.")
            st.rerun()
    if rows is None:
        st.info(f"Nothing was saved: run {run['id']} keeps its threshold of {saved:g}.")
    else:
        st.dataframe(rows, hide_index=True, key="threshold-table",
                     column_order=("class", "precision", "recall", "uncertain", "labelled", "support"),
                     column_config={"precision": PERCENT, "recall": PERCENT, "uncertain": PERCENT,
                                    "labelled": st.column_config.NumberColumn(help="faces given this class")})
    histogram, curves = scores.histogram(), scores.curves()
    shown = float(value) if rows is not None else None
    columns = st.columns(min(3, len(scores.labels)))
    for index, label in enumerate(scores.labels):
        with columns[index % len(columns)]:
            st.altair_chart(histogram_chart([b for b in histogram if b["class"] == label], label, shown),
                            width="stretch", key=f"threshold-histogram-{index}")
            st.altair_chart(threshold_curves_chart([c for c in curves if c["class"] == label], label, shown),
                            width="stretch", key=f"threshold-curves-{index}")


def show_report(report: dict, key: str, drawn: dict[str, int] | None = None) -> None:
    """Accuracy, confusion matrix and per-class table of a classification report (`drawn`: its faces that are
    drawings, by class)."""
    columns = st.columns(4)
    columns[0].metric("accuracy", f"{report['accuracy']:.3f}")
    columns[1].metric("macro F1", f"{report['macro_f1']:.3f}")
    columns[2].metric("ROC AUC", f"{report['roc_auc']:.3f}" if report.get("roc_auc") is not None else "n/a",
                      help="n/a when the images hold only one class; for more than two classes, the mean of each "
                           "class's AUC against the others")
    columns[3].metric("images", report["num_samples"])
    row = st.container(horizontal=True, gap="large")  # side by side where both fit, else the table below
    left, right = row.container(width=360), row.container(width="content")
    with left:
        st.markdown("**Confusion matrix** (rows: true class, columns: predicted)")
        st.altair_chart(ui.confusion_chart(report["labels"], report["confusion_matrix"]), width="stretch",
                        key=f"{key}-confusion")
    with right:
        st.markdown("**Per class**")
        st.dataframe(per_class_rows(report, drawn), hide_index=True, key=f"{key}-per-class", width="content",
                     column_config={"precision": PERCENT, "recall": PERCENT, "f1": PERCENT})


def show_mistakes(run: dict) -> None:
    report = RunRecord.of(run).test
    mistakes = ui.attempt(misclassified_faces, store, run)
    if mistakes is None:
        return
    if not mistakes:
        st.success(f"No mistakes: every one of the {report['num_samples']} test faces was classified correctly.")
        return
    total = len(report["misclassified"])
    st.caption(f"{total} of {report['num_samples']} test faces misclassified"
               + (f"; the {len(mistakes)} most confident mistakes are shown." if total > len(mistakes) else ".")
               + " Each crop is what the model saw; the score is its probability for the wrong class. Tick faces to "
               "relabel or delete them or open them in the Dataset gallery: that changes the dataset, which "
               "the next training uses, not this run, whose figures stay as they were.")
    if "mistakes-notice" in state:
        st.success(state.pop("mistakes-notice"))
    generation = state.get("mistakes-generation", 0)  # a new one clears the ticks after an action
    keys = {m.image_id: f"mistake-{generation}-{m.image_id}" for m in mistakes if m.image_id is not None}
    actions = st.container()
    chosen = []
    columns = st.columns(6)
    for index, mistake in enumerate(mistakes):
        with columns[index % 6]:
            caption = (f"true {ui.literal(mistake.true)} ({mistake.true_score:.2f}), "
                       f"predicted {ui.literal(mistake.predicted)} ({mistake.score:.2f})")
            if mistake.label not in (None, mistake.true):
                caption += f" · now {ui.literal(mistake.label)} in the dataset"
            if mistake.crop is not None:
                st.image(ui.inline(mistake.crop), caption=caption)
            else:
                st.caption(f"{caption}. {ui.literal(mistake.note)}")
            ui.file_name(mistake.name)
            # a face deleted since it was ticked stays ticked, so that the action says what became of it
            if mistake.image_id in keys and st.checkbox("Select", key=keys[mistake.image_id],
                                                        disabled=mistake.label is None):
                chosen.append(mistake.image_id)
    with actions:
        mistake_actions(chosen, [keys[m.image_id] for m in mistakes if m.label is not None])


def acted(sentence: str | None) -> None:
    """After an action on the misclassified faces: its sentence above them, the ticks cleared, the gallery redrawn."""
    if sentence is not None:
        state["mistakes-notice"] = sentence
        state["mistakes-generation"] = state.get("mistakes-generation", 0) + 1
        st.rerun()


def mistake_actions(chosen: list[int], keys: list[str]) -> None:
    """Relabel, delete or open in the Dataset gallery the ticked faces."""
    labels = ui.attempt(store.labels) or []
    all_column, none_column, target_column, relabel_column, delete_column, open_column = st.columns(
        [1, 1, 1.5, 1.5, 1.5, 1.5], vertical_alignment="bottom")
    all_column.button("Select all", key="mistakes-all", on_click=ui.set_checkboxes, args=(keys, True),
                      disabled=not keys)
    none_column.button("Clear", key="mistakes-none", on_click=ui.set_checkboxes, args=(keys, False),
                       disabled=not chosen)
    target = ui.class_picker(target_column, "Relabel as", labels, "mistakes-label")
    if relabel_column.button(f"Relabel {len(chosen)} selected", key="mistakes-relabel",
                             disabled=not chosen or target is None):
        acted(ui.attempt(relabel_faces, store, chosen, target))
    if delete_column.button(f"Delete {len(chosen)} selected", key="mistakes-delete", disabled=not chosen,
                            help="Delete these faces from the dataset (a photo goes with its last face)."):
        acted(ui.attempt(delete_faces, store, chosen))
    if open_column.button(f"Open {len(chosen)} in Dataset", key="mistakes-open", disabled=not chosen,
                          help="Show their photos in the Dataset page's gallery, to fix their face boxes or classes."):
        present = ui.attempt(store.faces, ids=chosen)
        if present == []:
            st.error("Nothing to open: the selected faces have been deleted from the dataset meanwhile.")
        elif present:
            state["gallery_ids"] = [record.id for record in present]  # the Dataset page's gallery shows only these
            try:
                st.switch_page("pages/1_Dataset.py")
            except StreamlitAPIException:  # the page runs on its own (a page test): no other page to switch to
                st.info("Open Dataset in the sidebar: its gallery shows the selected photos.")


def show_run(run: dict) -> None:
    record = RunRecord.of(run)
    metrics, report = record.metrics, record.test
    took = f" in {record.duration_s:.0f} s" if record.duration_s is not None else ""
    st.caption(f"Settings: {record.settings}. Trained on {metrics.get('device', 'cpu')}{took}.")
    if metrics.get("random_init"):
        st.warning("This run trained from random weights (an experiment, not a pretrained model): "
                   "its scores say little about real use.")
    history = ui.attempt(read_history, store, run)
    if history is not None:
        st.subheader("Training curves")
        if history:
            points = history_points(history)
            left, right = st.columns(2)
            left.altair_chart(ui.curves_chart(points, "loss"), width="stretch", key="one-loss")
            right.altair_chart(ui.curves_chart(points, "accuracy"), width="stretch", key="one-accuracy")
            st.caption("Validation loss picks the weights kept (early stopping); accuracy on the train split "
                       "includes the augmented views.")
        else:
            st.info("This run recorded no epochs.")
    if report is None:
        st.info("This run has no test metrics: the split left the test set empty. Add images and train again.")
        return
    st.subheader("Test split")
    for label, count in record.drawn_test_faces.items():
        st.warning(f"{ui.literal(label)}: measured on drawings, not on real faces. Its {count} test faces are faces "
                   "of another class with a mask drawn by training, as the dataset has no real test face of it. "
                   "Import real photos of the class to measure it on real faces.")
    show_report(report, "one", record.drawn_test_faces)
    st.subheader("ROC curve")
    chart = roc_chart(report)
    left, right = st.columns(2)
    if chart is not None:
        left.altair_chart(chart, width="stretch", key="one-roc")
    right.caption("One curve per class (that class against the others) as its probability threshold moves; "
                  "the dashed diagonal is guessing. AUC 1.0 separates the classes perfectly.")
    st.subheader("Confidence threshold")
    show_threshold(run)
    st.subheader("Misclassified test faces")
    show_mistakes(run)


def compare_caption(per_face: list[str]) -> str:
    """What the timing notes mean, with each run's ms per face and its range."""
    figures = f"{'; '.join(per_face)}. " if per_face else ""
    return (f"{figures}A run's ms per face is timed in rounds at the end of its training: b is faster or slower only "
            "when the two ranges do not overlap (\"within noise\" when they do; \"busy machine\": other work used the "
            "CPU meanwhile; \"one timing\": an older run, timed once). Training seconds are measured once: less than "
            f"{NOISE_RATIO:g}x apart is within noise.")


def show_compare(a: dict, b: dict) -> None:
    comparison = compare_runs(a, b)
    st.markdown(f"**a** = {a['id']}, **b** = {b['id']}")
    left, right = st.container(), st.container()  # one under the other: side by side, the note column is cut
    with left:
        st.markdown("**Key metrics**")
        st.dataframe(comparison["metrics"], hide_index=True, key="compare-metrics",
                     height=36 * (len(comparison["metrics"]) + 1) + 2,
                     column_config={**{name: st.column_config.NumberColumn(format="%.4g")
                                       for name in ("a", "b", "b - a")},
                                    "note": st.column_config.TextColumn("note", width="medium")})
        st.caption(compare_caption(comparison["per_face"]))
    with right:
        st.markdown("**Settings that differ**")
        if comparison["config"]:
            st.dataframe(comparison["config"], hide_index=True, key="compare-config")
        else:
            st.info("Both runs used the same settings (differences come from the data or the split).")
    points = []
    for run in (a, b):
        history = ui.attempt(read_history, store, run)
        points += history_points(history or [], run_id=run["id"])
    if points:
        left, right = st.columns(2)
        left.altair_chart(ui.curves_chart(points, "loss", color="run", dash="split"), width="stretch",
                          key="compare-loss")
        right.altair_chart(ui.curves_chart(points, "accuracy", color="run", dash="split"), width="stretch",
                           key="compare-accuracy")


def show_evaluation(report: dict) -> None:
    st.success(f"{report['run_id']} ({report['model_file']}) on {report['num_samples']} uploaded photos.")
    show_report(report, "evaluate")
    if report.get("no_face"):
        with_face = (f", {report['accuracy_face_found']:.3f} on the photos with a face"
                     if report.get("accuracy_face_found") is not None else "")
        st.warning(f"No face was found in {report['no_face']} of {report['num_samples']} photos; they were classified "
                   f"whole (accuracy {report['accuracy_no_face']:.3f} on them{with_face}), which lowers accuracy. Crop "
                   "them closer or check that they show a face.")
    if report.get("skipped_classes"):
        st.warning("Skipped photos in folders that are not the model's classes (below, with their counts). Rename "
                   f"those folders to one of {', '.join(report['labels'])} to include them.")
        st.text(", ".join(f"{name} ({count})" for name, count in report["skipped_classes"].items()))  # names as sent
    if report.get("rejected_files"):
        count = len(report["rejected_files"])
        with st.expander(f"{count} file{'s' if count > 1 else ''} skipped"):
            st.dataframe(report["rejected_files"], hide_index=True, key="evaluate-rejected")


@st.cache_data(max_entries=8, show_spinner="Reading the misclassified photos...")
def cached_mistake_photos(file_id: str, run_id: str, start: int, _data: bytes, _report: dict, max_pixels: int) -> list:
    """mistake_photos, cached by upload (its id is new each upload), run and page: a rerun reads no photo again."""
    return mistake_photos(_data, _report, start, max_pixels)


def show_evaluation_mistakes(report: dict, upload) -> None:
    """The misclassified photos of an evaluated zip of class folders, most confident first, a page at a time: the face
    the model classified, the file, its class, the class said and the model's probability for it."""
    mistakes = report["misclassified"]
    st.subheader(f"Misclassified photos ({len(mistakes)})")
    if not mistakes:
        st.success(f"Every one of the {report['num_samples']} photos was classified right.")
        return
    if upload is None or upload.file_id != state.get("evaluation-file"):
        st.info("The evaluated zip is no longer uploaded: upload it again and evaluate it to see its misclassified "
                "photos.")
        return
    pages = math.ceil(len(mistakes) / GALLERY_SIZE)
    if state.get("evaluate-mistakes-page", 1) > pages:
        state["evaluate-mistakes-page"] = pages
    page = (st.columns([1, 5])[0].number_input("Page", 1, pages, step=1, key="evaluate-mistakes-page") if pages > 1
            else 1)
    start = (page - 1) * GALLERY_SIZE
    shown = min(GALLERY_SIZE, len(mistakes) - start)
    st.caption(("Most confident first" + (f", {start + 1} to {start + shown} of {len(mistakes)}" if pages > 1 else "")
                + ". Each picture is the face the model classified (the whole photo where it found none). The "
                "probability is the model's for the class it said, from 0 to 1: near 1, it was sure of the wrong "
                "class; near 0.5, it hesitated."))
    photos = ui.attempt(cached_mistake_photos, upload.file_id, report["run_id"], start, upload.getvalue(), report,
                        store.settings.max_pixels) or []
    columns = st.columns(GALLERY_COLUMNS)
    for index, photo in enumerate(photos):
        with columns[index % GALLERY_COLUMNS]:
            said = ui.literal(photo.predicted)
            caption = (f"true {ui.literal(photo.truth)} · said {said} · the model's probability of {said} "
                       f"{photo.probability:.2f}" + ("" if photo.face_found else " · no face found: the whole photo"))
            if photo.picture is not None:
                st.image(ui.inline(photo.picture), caption=caption)
            else:
                st.caption(f"{caption} · {photo.note}")
            ui.file_name(photo.name)


def counts_as_step(run_id: str, format: str, set_classes: list[str]) -> dict[str, str] | None:
    """How each class of a set with face boxes that the model lacks counts (a selectbox each), or None until each is
    chosen."""
    classifier = ui.attempt(run_classifier, store, run_id)
    if classifier is None:
        return None
    labels, defaults = classifier.labels, default_counts_as(set_classes, classifier.labels)
    missing = [name for name in set_classes if name not in labels]
    st.info(f"A {FORMAT_NAMES[format]} set with the classes {ui.literal(', '.join(set_classes))}."
            + (" Say how the faces of each class the model does not have count:" if missing else ""))
    chosen = {name: st.selectbox(f"Faces of {ui.literal(name)} count as", labels, key=f"counts-as-{name}",
                                 index=labels.index(defaults[name]) if name in defaults else None,
                                 placeholder="choose one of the model's classes") for name in missing}
    return chosen if None not in chosen.values() else None


def show_import(report: dict, upload) -> None:
    """Import the evaluated photos (the misclassified ones, or all) into the dataset under their folder's class."""
    st.subheader("Add these photos to the dataset")
    st.caption("Each photo goes into the class of its folder (its true label), with the usual import rules: a photo "
               "already in the dataset is skipped, near-duplicates are grouped, unreadable files are rejected with "
               "the reason. The next training uses them.")
    if upload is None or upload.file_id != state.get("evaluation-file"):
        st.info("The evaluated zip is no longer uploaded: upload it again and evaluate it to import its photos.")
        return
    wrong, scored = len(report["misclassified"]), report["num_samples"]
    buttons = st.container(horizontal=True)  # side by side where they fit, else one under the other
    errors_only = None
    if buttons.button(f"Import the {plural(wrong, 'misclassified photo')}", key="evaluate-import-errors",
                      disabled=not wrong):
        errors_only = True
    if buttons.button(f"Import all {plural(scored, 'photo')}", key="evaluate-import-all"):
        errors_only = False
    if errors_only is not None:
        detector = ui.attempt(ui.detector)
        if detector is not None:
            bar = st.progress(0.0, text="Finding faces...")
            state["evaluation-import"] = ui.attempt(  # the upload is read again in place: its bytes are not copied
                import_evaluated_zip, store, upload.getvalue(), report, detector, errors_only,
                lambda done, total: bar.progress(done / max(total, 1), text=f"Imported {done} of {total} photos"))
            bar.empty()
    if state.get("evaluation-import") is not None:
        show_import_report(state["evaluation-import"])


def show_import_report(imported) -> None:
    """What an import did: counts in a sentence, and each file with what happened to it (names as table cells, plain
    text)."""
    counts = imported.summary()
    faceless = f" ({counts['no_face']} with no face found: used whole)" if counts["no_face"] else ""
    sentence = (f"Imported: {plural(counts['added'], 'photo')} added to the dataset{faceless}, "
                f"{counts['duplicates']} already there, {counts['rejected']} rejected.")
    (st.success if counts["added"] and not counts["rejected"] else st.warning)(sentence)
    rows = ([{"file": name, "result": "added"} for name in imported.added]
            + [{"file": name, "result": "already in the dataset"} for name in imported.duplicates]
            + [{"file": name, "result": f"rejected: {reason}"} for name, reason in imported.rejected])
    if rows:
        st.dataframe(rows, hide_index=True, key="evaluate-import-report",
                     column_config={"result": st.column_config.TextColumn("result", width="large")})


store = ui.attempt(ui.store)
if store is None:
    st.stop()
rows = ui.attempt(run_rows, store)
if rows is None:
    st.stop()
if not rows:
    st.info("No training runs yet. Train a model first; its curves, confusion matrix and mistakes appear here.")
    ui.link_to_train()
    st.stop()

st.subheader("Runs")
ui.runs_dataframe(rows, ("run", "status", "active", "accuracy", "macro_f1", "config", "split", "duration_s", "note",
                         "when"), "runs-table")  # the settings before the wide note: readable without scrolling

finished = ui.attempt(finished_runs, store)
if finished is None:
    st.stop()
if not finished:
    st.info("No run has finished yet: the table shows each run's status and, for failed runs, why. "
            "Fix the cause and train again.")
    ui.link_to_train()
    st.stop()

by_id = {run["id"]: run for run in finished}
captions = {run_id: ui.run_caption(run) for run_id, run in by_id.items()}
ids = list(by_id)
active = ui.attempt(active_run, store)
default = ids.index(active["id"]) if active and active["id"] in by_id else 0

one_tab, compare_tab, evaluate_tab = st.tabs(["One run", "Compare two runs", "Evaluate on new photos"])

with one_tab:
    chosen = st.selectbox("Run", ids, index=default, format_func=captions.get, key="metrics-run")
    show_run(by_id[chosen])

with compare_tab:
    if len(ids) < 2:
        st.info("Only one run has finished. Train another (for example with other settings) to compare them.")
        ui.link_to_train()
    else:
        pair = st.container(horizontal=True)  # side by side where both captions fit, else one under the other
        run_a = pair.selectbox("Run a", ids, index=1, format_func=captions.get, key="compare-a", width=420)
        run_b = pair.selectbox("Run b", ids, index=0, format_func=captions.get, key="compare-b", width=420)
        if run_a == run_b:
            st.info("Choose two different runs.")
        else:
            show_compare(by_id[run_a], by_id[run_b])

with evaluate_tab:
    st.markdown("Score a run's model on photos it has never seen. Upload a **zip of class folders** (for example "
                "`with_mask/…jpg`, `without_mask/…jpg`; folder names must be the model's classes): each photo's "
                "largest face is cropped like in training. Or a zip of a **set with face boxes** (PASCAL VOC, YOLO or "
                "COCO, several labelled faces a photo): every face found is matched to the annotated ones.")
    target = st.selectbox("Model to evaluate", ids, index=default, format_func=captions.get, key="evaluate-run")
    upload = st.file_uploader("Zip of class folders or of a set with face boxes", type="zip", key="evaluate-zip")
    boxed = boxed_upload(upload.getvalue()) if upload is not None else None
    counts_as = counts_as_step(target, *boxed) if boxed else {}
    if st.button("Evaluate", type="primary", disabled=upload is None or counts_as is None, key="evaluate-start"):
        detector = None if boxed else ui.attempt(ui.detector)
        if boxed or detector is not None:
            bar = st.progress(0.0, text="Finding faces and classifying...")

            def shown(done: int, total: int) -> None:
                bar.progress(done / max(total, 1), text=f"Scored {done} of {total} photos")

            report = (ui.attempt(evaluate_boxed_zip, store, target, upload.getvalue(), counts_as, shown) if boxed
                      else ui.attempt(evaluate_zip, store, target, upload.getvalue(), detector, shown))
            bar.empty()
            state["evaluation"], state["evaluation-file"] = report, upload.file_id
            state.pop("evaluation-import", None)
            state.pop("evaluate-mistakes-page", None)
    report = state.get("evaluation")
    if report and report.get("run_id") in by_id:
        if "format" in report:
            show_box_evaluation(store, report, upload)
        else:
            show_evaluation(report)
            show_evaluation_mistakes(report, upload)
            show_import(report, upload)
