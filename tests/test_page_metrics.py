"""The Metrics page (Streamlit AppTest) on a data home with two tiny trained runs, a failed and a cancelled one;
evaluating a run on uploaded zips (good, hostile, broken) through maskdet.runs.scoring.evaluate_zip; choosing a run's
class confidence threshold, which the Live page and `maskdet predict` then start from; and acting where the errors
are shown: relabelling, deleting or opening misclassified faces, importing the photos of an evaluated zip."""

import base64
import contextlib
import html
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
import streamlit_webrtc.component
from streamlit.testing.v1 import AppTest

from maskdet.cli import main
from maskdet.core.errors import StoreError
from maskdet.core.imageio import decode_image
from maskdet.core.settings import load_settings
from maskdet.core.timing import Timing, how_much
from maskdet.data.store import Store
from maskdet.runs.active import model_path, run_threshold, set_active_run, threshold_scores
from maskdet.runs.compare import PER_FACE, per_face_note, timing_note
from maskdet.runs.edits import misclassified_faces
from maskdet.runs.execute import execute_run
from maskdet.runs.scoring import (GALLERY_CROP, GALLERY_SIZE, boxed_upload, evaluate_boxed_zip, evaluate_zip,
                                  mistake_photos, scored_faces)
from maskdet.runs.views import RunRecord, read_history
from maskdet.serving.classifier import load_classifier
from maskdet.training.config import TrainConfig
from tests.conftest import data_home, encode, page_in_app, pattern_image, write_dataset, zip_bytes
from tests.test_annotations import voc
from ui import box_report

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "3_Metrics.py")
FAST = dict(random_init=True, views_per_image=1, epochs=5, input_size=96, quantize=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory, detector):
    """Two succeeded runs (different seeds and epochs), one failed, one cancelled; environment restored after."""
    root = tmp_path_factory.mktemp("metrics-page")
    with data_home(root) as env:
        store = Store(load_settings())
        store.import_folder(write_dataset(root / "data", 12), detector)
        first = execute_run(store, TrainConfig(**FAST), store.settings.models_dir)["run_id"]
        second = execute_run(store, TrainConfig(**{**FAST, "epochs": 4}, seed=1), store.settings.models_dir)["run_id"]
        set_active_run(store, second)  # tiny models may not beat chance, so none is active by itself
        failed = store.create_run(TrainConfig(**FAST).to_dict())
        store.update_run(failed, status="failed", error="Training needs at least two classes with images.")
        cancelled = store.create_run(TrainConfig(**FAST).to_dict())
        store.update_run(cancelled, status="cancelled")
        yield SimpleNamespace(root=root, store=store, first=first, second=second, failed=failed, cancelled=cancelled,
                              env=env)


@pytest.fixture
def page(home, monkeypatch):
    """The Metrics page, run once against the module's data home."""
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(PAGE, default_timeout=60).run()


def no_crash(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(node) -> list[dict]:
    """Vega-Lite specs (Altair charts) under an element-tree node, datasets inlined."""
    specs = []
    for chart in node.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        spec["datasets_rows"] = sum(pa.ipc.open_stream(d.data.data).read_all().num_rows for d in chart.proto.datasets)
        specs.append(spec)
    return specs


def frame_with(node, column: str):
    """The first dataframe (as pandas) under a node that has this column (st.dataframe has no key in AppTest)."""
    return next(frame.value for frame in node.dataframe if column in frame.value.columns)


def class_zip(per_class: int = 3, start: int = 500) -> bytes:
    """A zip of class folders of generated photos the runs have never seen."""
    tints = {"with_mask": (55, -40, -40), "without_mask": (-40, -40, 55)}
    return zip_bytes({f"photos/{label}/img{start + i}.jpg": encode(pattern_image(start + 100 * k + i, tint=tint))
                      for k, (label, tint) in enumerate(tints.items()) for i in range(per_class)})


# ---- empty home ----------------------------------------------------------------------------------------------

def test_empty_home_says_so_and_points_to_training(settings):
    at = page_in_app("pages/3_Metrics.py")
    no_crash(at)
    assert at.title[0].value == "Metrics"
    assert "No training runs yet" in at.info[0].value
    assert [link.proto.label for link in at.main.get("page_link")] == ["Train a model"]
    assert not at.dataframe and not at.tabs


# ---- the runs table ----------------------------------------------------------------------------------------

def test_runs_table_lists_every_run_with_status_accuracy_and_errors(page, home):
    no_crash(page)
    assert not page.error
    table = frame_with(page, "duration_s").set_index("run")
    assert set(table.index) == {home.first, home.second, home.failed, home.cancelled}
    for run_id in (home.first, home.second):
        run = home.store.run(run_id)
        assert table.loc[run_id, "status"] == "succeeded"
        assert table.loc[run_id, "accuracy"] == f'{run["metrics"]["test"]["accuracy"]:.3f}'
        assert table.loc[run_id, "macro_f1"] == f'{run["metrics"]["test"]["macro_f1"]:.3f}'
        assert table.loc[run_id, "images"] == "24" and table.loc[run_id, "duration_s"].endswith(" s")
        assert table.loc[run_id, "config"].startswith("96 px, 1 views, head only")
    assert table.loc[home.failed, "status"] == "failed"
    assert table.loc[home.failed, "note"] == "Training needs at least two classes with images."
    assert table.loc[home.cancelled, "status"] == "cancelled" and table.loc[home.cancelled, "accuracy"] == "\u2014"
    assert table.loc[home.cancelled, "split"] == table.loc[home.failed, "macro_f1"] == "\u2014"  # never "None"
    assert table["active"].sum() == 1 and table.loc[home.second, "active"]  # the chosen one


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# ---- one run -----------------------------------------------------------------------------------------------

def test_one_run_shows_curves_confusion_matrix_per_class_roc_and_mistakes(page, home):
    tab = page.tabs[0]
    assert tab.label == "One run"
    assert tab.selectbox(key="metrics-run").value == home.second  # the active (latest) run by default
    record = RunRecord.of(home.store.run(home.second))
    assert f"Settings: {record.settings}. Trained on cpu in {record.duration_s:.0f} s." in [c.value for c in tab.caption]
    specs = charts(tab)
    titles = [spec.get("title") for spec in specs]
    assert "loss" in titles and "accuracy" in titles
    assert len(specs) == 8  # loss, accuracy, confusion matrix, ROC; per class a confidence histogram and its curves
    report = home.store.run(home.second)["metrics"]["test"]
    per_class = frame_with(tab, "class")
    assert list(per_class["class"]) == report["labels"] + ["macro average"]
    assert per_class["f1"].iloc[-1] == pytest.approx(report["macro_f1"])
    metric_values = {m.label: m.value for m in tab.metric}
    assert metric_values["accuracy"] == f"{report['accuracy']:.3f}"
    wrong = report["misclassified"]
    if wrong:  # the gallery: one cropped face per mistake, captioned with the scores
        captions = [caption for image in tab.image for caption in image.captions]
        assert len(captions) == len(wrong)
        assert sorted(names(tab)) == sorted(m["name"] for m in wrong)  # each below its face
        assert f"predicted {wrong[0]['predicted']} ({wrong[0]['score']:.2f}" in captions[0]
    else:
        assert any("No mistakes" in s.value for s in tab.success)


def colour_scales(spec: dict) -> dict[str, str]:
    """{field: colour scheme} of the colour encodings of a chart and its layers."""
    found = {}
    for part in [spec, *spec.get("layer", [])]:
        color = part.get("encoding", {}).get("color", {})
        if "field" in color:
            found[color["field"]] = color.get("scale", {}).get("scheme")
    return found


def test_the_lines_of_each_chart_have_distinct_hues(page):
    """Streamlit's default palette starts with two blues: the charts name their schemes instead."""
    specs = {str(spec.get("title")): colour_scales(spec) for spec in charts(page.tabs[0])}
    assert specs["loss"] == specs["accuracy"] == {"split": "category10"}  # as on the Train page (ui.curves_chart)
    assert next(scales for scales in specs.values() if "class" in scales) == {"class": "dark2"}  # the ROC curves
    assert {scales["measure"] for title, scales in specs.items() if title.endswith("at each threshold")} == {"dark2"}


def test_choosing_another_run_shows_its_figures(page, home):
    page.selectbox(key="metrics-run").set_value(home.first).run()
    no_crash(page)
    report = home.store.run(home.first)["metrics"]["test"]
    assert {m.label: m.value for m in page.tabs[0].metric}["macro F1"] == f"{report['macro_f1']:.3f}"
    history = read_history(home.store, home.store.run(home.first))
    loss_chart = next(spec for spec in charts(page.tabs[0]) if spec.get("title") == "loss")
    assert loss_chart["datasets_rows"] == 2 * len(history)  # train and validation loss per epoch


def test_a_run_whose_folder_vanished_is_a_sentence_not_a_crash(page, home):
    folder = home.store.settings.models_dir / home.first
    hidden = folder.with_name("hidden-for-test")
    folder.rename(hidden)
    try:
        page.selectbox(key="metrics-run").set_value(home.first).run()
        no_crash(page)
        errors = [e.value for e in page.error]
        assert errors and all("Models page or train again" in e for e in errors)
    finally:
        hidden.rename(folder)


# ---- compare -------------------------------------------------------------------------------------------------

def test_compare_two_runs_side_by_side(page, home):
    tab = page.tabs[1]
    assert tab.selectbox(key="compare-a").value == home.first and tab.selectbox(key="compare-b").value == home.second
    metrics = frame_with(tab, "metric").set_index("metric")
    first, second = (home.store.run(r)["metrics"]["test"] for r in (home.first, home.second))
    assert metrics.loc["test accuracy", "a"] == pytest.approx(first["accuracy"])
    assert metrics.loc["test accuracy", "b"] == pytest.approx(second["accuracy"])
    assert metrics.loc["macro F1", "b - a"] == pytest.approx(second["macro_f1"] - first["macro_f1"])
    differences = frame_with(tab, "setting").set_index("setting")
    assert set(differences.index) == {"seed", "epochs"}
    assert (differences.loc["epochs", "a"], differences.loc["epochs", "b"]) == ("5", "4")
    seconds = metrics.loc["training seconds", "a"], metrics.loc["training seconds", "b"]
    assert metrics.loc["training seconds", "note"] == timing_note(*seconds) != ""
    # ms per face: the medians side by side, a note by their ranges, and each run's range in the caption
    per_face = [Timing.of_model(home.store.run(run)["metrics"]["onnx"]) for run in (home.first, home.second)]
    assert (metrics.loc[PER_FACE, "a"], metrics.loc[PER_FACE, "b"]) == pytest.approx([t.median for t in per_face])
    assert metrics.loc[PER_FACE, "note"] == per_face_note(*per_face) in (
        "within noise", "busy machine", f"b {how_much(per_face[0].median / per_face[1].median)} faster",
        f"b {how_much(per_face[1].median / per_face[0].median)} slower")
    [caption] = [c.value for c in tab.caption if "ms per face" in c.value]
    assert f"a: {per_face[0].text()}; b: {per_face[1].text()}." in caption
    assert "b is faster or slower only when the two ranges do not overlap" in caption
    assert metrics.loc["test accuracy", "note"] == ""
    assert "Training seconds are measured once: less than 2x apart is within noise." in caption
    specs = charts(tab)
    assert len(specs) == 2 and all(spec["encoding"]["color"]["field"] == "run" for spec in specs)
    page.selectbox(key="compare-a").set_value(home.second).run()
    assert any("two different runs" in i.value for i in page.tabs[1].info)


# ---- evaluate on an uploaded zip -------------------------------------------------------------------------------

def test_evaluate_an_uploaded_zip_on_the_page(page, home):
    tab = page.tabs[2]
    assert tab.button(key="evaluate-start").disabled  # nothing uploaded yet
    page.file_uploader(key="evaluate-zip").upload("new.zip", class_zip(), "application/zip")
    page.run()
    page.button(key="evaluate-start").click().run()
    no_crash(page)
    tab = page.tabs[2]
    assert not tab.error
    assert any("on 6 uploaded photos" in s.value for s in tab.success)
    assert {m.label for m in tab.metric} >= {"accuracy", "macro F1", "images"}
    assert list(frame_with(tab, "class")["support"]) == [3, 3, 6]
    assert len(charts(tab)) == 1  # the confusion matrix
    accuracy = next(m.value for m in tab.metric if m.label == "accuracy")
    assert [w.value for w in tab.warning] == [  # generated pictures: no faces
        f"No face was found in 6 of 6 photos; they were classified whole (accuracy {float(accuracy):.3f} on them), "
        "which lowers accuracy. Crop them closer or check that they show a face."]


def test_a_bad_upload_on_the_page_is_a_sentence(page):
    page.file_uploader(key="evaluate-zip").upload("photos.zip", b"this is not a zip", "application/zip")
    page.run()
    page.button(key="evaluate-start").click().run()
    no_crash(page)
    assert [e.value for e in page.tabs[2].error] == [
        "The upload is not a readable zip archive. Zip a folder of class folders (for example with_mask/ and "
        "without_mask/) and upload that."]


def pair_zip(pairs: int, start: int = 700) -> bytes:
    """Each generated photo twice, under with_mask and under without_mask: whatever the model says of a pair, one of
    the two is misclassified. `pairs` mistakes in 2 x `pairs` photos."""
    return zip_bytes({f"set/{label}/pair_{start + i}.jpg": encode(pattern_image(start + i))
                      for i in range(pairs) for label in ("with_mask", "without_mask")})


def shown_pictures(node) -> list:
    """The pictures under a node as arrays, read from the data URIs the page sends them as."""
    urls = [image.url for element in node.image for image in element.proto.imgs]
    assert all(url.startswith("data:image/jpeg;base64,") for url in urls)  # never a Streamlit media URL
    return [decode_image(base64.b64decode(url.split(",", 1)[1]), 10**8) for url in urls]


def test_the_misclassified_photos_of_an_evaluated_zip_are_shown_with_what_the_model_said(page, home):
    at = evaluated(page, pair_zip(3))
    tab = at.tabs[2]
    assert not tab.error
    report = at.session_state["evaluation"]
    mistakes = report["misclassified"]
    assert len(mistakes) == 3 and all(m["box"] is None for m in mistakes)  # generated photos: no face found
    assert "Misclassified photos (3)" in [h.value for h in tab.subheader]
    assert any(c.value.startswith("Most confident first. Each picture is the face the model classified") and
               "The probability is the model's for the class it said, from 0 to 1" in c.value for c in tab.caption)
    assert image_captions(tab) == [
        f"true {m['true']} · said {m['predicted']} · the model's probability of {m['predicted']} {m['score']:.2f} · "
        "no face found: the whole photo" for m in mistakes]
    assert names(tab) == name_tooltips(tab) == [m["name"] for m in mistakes]  # most confident first
    archive = zipfile.ZipFile(io.BytesIO(pair_zip(3)))
    for picture, mistake in zip(shown_pictures(tab), mistakes):  # each is its photo (no face: the whole of it)
        photo = decode_image(archive.read(mistake["name"]), 10**8)
        assert picture.shape == photo.shape and abs(picture.astype(int) - photo).mean() < 8
    assert not any("score" in frame.value.columns for frame in tab.dataframe)  # the bare table is gone


def test_more_misclassified_photos_than_a_page_are_shown_a_page_at_a_time(page):
    at = evaluated(page, pair_zip(26))
    tab = at.tabs[2]
    assert not tab.error
    mistakes = at.session_state["evaluation"]["misclassified"]
    assert len(mistakes) == 26 and GALLERY_SIZE == 24
    assert "Misclassified photos (26)" in [h.value for h in tab.subheader]
    assert len(tab.image) == 24 and sorted(names(tab)) == sorted(m["name"] for m in mistakes[:24])  # 4 columns
    assert any(c.value.startswith("Most confident first, 1 to 24 of 26.") for c in tab.caption)
    at.number_input(key="evaluate-mistakes-page").set_value(2).run()
    no_crash(at)
    tab = at.tabs[2]
    assert not tab.error
    assert len(tab.image) == 2 and names(tab) == [m["name"] for m in mistakes[24:]]  # one in each of 2 columns
    assert any(c.value.startswith("Most confident first, 25 to 26 of 26.") for c in tab.caption)
    assert image_captions(tab)[0].endswith(f"the model's probability of {mistakes[24]['predicted']} "
                                           f"{mistakes[24]['score']:.2f} · no face found: the whole photo")

    at.file_uploader(key="evaluate-zip").upload("other.zip", pair_zip(1), "application/zip").run()  # not evaluated
    assert "The evaluated zip is no longer uploaded: upload it again and evaluate it to see its misclassified " \
           "photos." in [i.value for i in at.tabs[2].info]
    assert not at.tabs[2].image


def test_mistake_photos_show_the_face_the_model_classified(home, detector, shared_data):
    face = sorted((shared_data / "with_mask").glob("*.jpg"))[0].read_bytes()
    data = zip_bytes({f"real/{label}/face.jpg": face for label in ("with_mask", "without_mask")})
    report = evaluate_zip(home.store, home.first, data, detector)
    [mistake] = report["misclassified"]
    assert mistake["box"] == pytest.approx(detector.largest_faces([decode_image(face, 10**8)])[0].box, abs=0.1)
    [photo] = mistake_photos(data, report, 0, home.store.settings.max_pixels)
    assert (photo.name, photo.truth, photo.predicted, photo.probability, photo.face_found) == (
        mistake["name"], mistake["true"], mistake["predicted"], mistake["score"], True)
    assert photo.picture.shape == (GALLERY_CROP.size, GALLERY_CROP.size, 3) and not photo.note
    [gone] = mistake_photos(zip_bytes({"other/with_mask/x.jpg": face}), report, 0, home.store.settings.max_pixels)
    assert gone.picture is None and gone.note == "it cannot be read from the upload again"
    assert mistake_photos(data, report, 1, home.store.settings.max_pixels) == []


def test_evaluate_zip_scores_the_model_and_reports_skipped_entries(home, detector):
    entries = zipfile.ZipFile(io.BytesIO(class_zip())).namelist()
    data = zip_bytes({**{name: zipfile.ZipFile(io.BytesIO(class_zip())).read(name) for name in entries},
                      "../escape.jpg": encode(pattern_image(1)),
                      "photos/with_mask/notes.txt": b"not an image",
                      "photos/with_mask/._img500.jpg": b"AppleDouble junk",
                      "photos/cover.jpg": encode(pattern_image(4)),  # parent folder: not a class
                      "photos/mask_incorrect/x.jpg": encode(pattern_image(5)),  # a class the model lacks
                      "loose.jpg": encode(pattern_image(2))})
    report = evaluate_zip(home.store, home.first, data, detector)
    assert report["num_samples"] == 6 and report["run_id"] == home.first and report["model_file"] == "model.onnx"
    assert [c["support"] for c in report["per_class"]] == [3, 3]
    assert 0 <= report["accuracy"] <= 1 and len(report["confusion_matrix"]) == 2
    skipped = {item["name"]: item["reason"] for item in report["rejected_files"]}
    assert set(skipped) == {"../escape.jpg", "photos/with_mask/notes.txt", "loose.jpg", "photos/cover.jpg",
                            "photos/mask_incorrect/x.jpg"}
    assert "escapes" in skipped["../escape.jpg"] and "class folder" in skipped["loose.jpg"]
    assert skipped["photos/with_mask/notes.txt"] == "not an image file"
    assert skipped["photos/cover.jpg"] == "'photos' is not one of the model's classes"
    assert report["skipped_classes"] == {"photos": 1, "mask_incorrect": 1}
    assert all(m["name"] in entries for m in report["misclassified"])  # names as in the zip
    same = evaluate_zip(home.store, home.first, class_zip(), detector)
    assert same["accuracy"] == report["accuracy"]  # the junk entries changed nothing


@pytest.mark.parametrize("entries, phrase", [
    ({"photos/mask_incorrect/a.jpg": encode(pattern_image(3))}, "classes not known to the model: mask_incorrect"),
    ({"readme.txt": b"hello"}, "No images found in the zip"),
    ({"photos/readme.txt": b"hello"}, "No images found in the zip"),
    ({}, "No images found in the zip"),
    ({"with_mask/a.jpg": b"\xff\xd8 broken jpeg"}, "None of the images could be read"),
])
def test_evaluate_zip_mistakes_are_sentences(home, detector, entries, phrase):
    with pytest.raises(StoreError) as error:
        evaluate_zip(home.store, home.first, zip_bytes(entries), detector)
    message = str(error.value)
    assert phrase in message and "\n" not in message and "Traceback" not in message


# ---- the class confidence threshold --------------------------------------------------------------------------

THRESHOLD_COLUMNS = ["class", "precision", "recall", "uncertain", "labelled", "support"]


def threshold_table(node) -> list[tuple]:
    """The per-class table at the chosen threshold, as the page shows it (NaN: no face to measure on)."""
    frame = frame_with(node, "uncertain")[THRESHOLD_COLUMNS]
    return [tuple(None if pd_isna(value) else value for value in row) for row in frame.itertuples(index=False)]


def expected_table(home, run_id: str, threshold: float) -> list[tuple]:
    rows = threshold_scores(home.store, home.store.run(run_id)).at(threshold)
    return [tuple(row[column] for column in THRESHOLD_COLUMNS) for row in rows]


def predict(photo: Path, *flags: str) -> dict:
    """`maskdet --json predict photo` in this process (the page's environment), as its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--json", "predict", str(photo), *flags]) == 0
    return json.loads(out.getvalue())


def live_page(monkeypatch) -> AppTest:
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)  # renders under AppTest
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)
    return AppTest.from_file(str(Path(PAGE).with_name("5_Live.py")), default_timeout=60).run()


def test_the_threshold_section_shows_the_figures_at_the_chosen_threshold(page, home):
    run_id = home.first
    page.selectbox(key="metrics-run").set_value(run_id).run()
    no_crash(page)
    tab = page.tabs[0]
    widget = tab.number_input(key=f"threshold-{run_id}")
    assert widget.label == "Class confidence threshold" and widget.value == run_threshold(home.store.run(run_id))
    scores = threshold_scores(home.store, home.store.run(run_id))
    assert f"on the {len(scores.targets)} test faces" in " ".join(c.value for c in tab.caption)
    assert threshold_table(tab) == expected_table(home, run_id, widget.value)
    widget.set_value(0.83).run()
    no_crash(page)
    tab = page.tabs[0]
    assert threshold_table(tab) == expected_table(home, run_id, 0.83)
    assert threshold_table(tab)[-1][0] == "all faces"
    specs = {spec["title"]: spec for spec in charts(tab) if ": " in str(spec.get("title"))}
    assert set(specs) == {f"{label}: {kind}" for label in scores.labels for kind in ("confidence", "at each threshold")}
    assert all(spec["datasets_rows"] == 20 + 1 for title, spec in specs.items() if title.endswith("confidence"))
    assert all(spec["datasets_rows"] == 50 + 1 for title, spec in specs.items() if title.endswith("threshold"))
    rules = [layer for spec in specs.values() for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
    assert len(rules) == 4  # the chosen threshold on every chart
    assert not page.tabs[0].error


def test_a_threshold_outside_0_1_is_a_sentence_and_nothing_is_saved(page, home):
    run_id = home.first
    model = model_path(home.store, home.store.run(run_id))
    before = (home.store.run(run_id)["metrics"], model.read_bytes())
    page.selectbox(key="metrics-run").set_value(run_id).run()
    for value in (1.5, -0.1, 1.0):
        page.number_input(key=f"threshold-{run_id}").set_value(value).run()
        no_crash(page)
        tab = page.tabs[0]
        assert [e.value for e in tab.error] == [
            f"The confidence threshold must be a number between 0 and 1 (not included), such as 0.6; {value!r} is not."]
        assert [i.value for i in tab.info] == [
            f"Nothing was saved: run {run_id} keeps its threshold of {run_threshold(home.store.run(run_id)):g}."]
        assert tab.button(key="threshold-save").disabled
        assert not any("uncertain" in frame.value.columns for frame in tab.dataframe)
    assert (home.store.run(run_id)["metrics"], model.read_bytes()) == before


def test_the_threshold_saved_on_metrics_is_where_live_and_predict_start(page, home, monkeypatch, shared_data):
    """The analyst picks a threshold just above a real face's top probability: predict then calls it uncertain."""
    run_id = home.second  # the active model: the Live page's and predict's default
    photo = shared_data / "without_mask" / "100.jpg"
    before = predict(photo)
    assert before["threshold"] == run_threshold(home.store.run(run_id))
    [face] = before["images"][0]["faces"]
    assert face["probability"] < 0.97  # a tiny random-init model: room above its answer
    chosen = round((face["probability"] + 1) / 2, 2)

    page.number_input(key=f"threshold-{run_id}").set_value(chosen).run()
    assert threshold_table(page.tabs[0]) == expected_table(home, run_id, chosen)
    page.button(key="threshold-save").click().run()
    no_crash(page)
    assert [s.value for s in page.tabs[0].success] == [
        f"Saved: Live and predict now start from {chosen:g} for run {run_id}."]
    assert page.number_input(key=f"threshold-{run_id}").value == chosen
    assert not page.tabs[0].error
    run = home.store.run(run_id)
    assert run_threshold(run) == chosen
    assert load_classifier(model_path(home.store, run)).class_threshold == chosen
    assert AppTest.from_file(PAGE, default_timeout=60).run().number_input(key=f"threshold-{run_id}").value == chosen

    live = live_page(monkeypatch)
    assert not live.exception
    assert live.selectbox(key="live-model").value == str(model_path(home.store, run))
    assert live.slider(key="live-threshold").value == chosen

    result = predict(photo)
    assert result["threshold"] == chosen and result["images"][0]["faces"][0]["label"] == "uncertain"
    labelled = predict(photo, "--threshold", "0.5")["images"][0]["faces"][0]
    assert labelled["label"] == max(labelled["probabilities"], key=labelled["probabilities"].get)


# ---- acting on mistakes: relabel, delete, open in the gallery; importing an evaluated zip --------------------------

@pytest.fixture
def scratch(home, tmp_path, monkeypatch):
    """A copy of the module's data home (its runs' model folders shared, read only), for tests that change the
    dataset; the environment points at it. Its run is the module's run with the most misclassified test faces."""
    shutil.copytree(Path(home.env["MASKDET_HOME"]), tmp_path / "home")
    monkeypatch.setenv("MASKDET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MASKDET_MODELS", home.env["MASKDET_MODELS"])
    monkeypatch.delenv("MASKDET_DATABASE_URL", raising=False)
    store = Store(load_settings())
    run = max((store.run(run_id) for run_id in (home.first, home.second)),
              key=lambda run: len(RunRecord.of(run).test["misclassified"]))
    mistakes = misclassified_faces(store, run)
    assert len(mistakes) >= 2, "the tiny runs are expected to misclassify some test faces"
    set_active_run(store, run["id"])  # the page's default run
    return SimpleNamespace(store=store, run=run, mistakes=mistakes)


def ticked(at: AppTest, *mistakes) -> AppTest:
    """Tick these misclassified faces' boxes (before any action: generation 0)."""
    for mistake in mistakes:
        at.checkbox(key=f"mistake-0-{mistake.image_id}").check()
    return at.run()


def image_captions(node) -> list[str]:
    return [caption for image in node.image for caption in image.captions]


def names(node) -> list[str]:
    """The file names ui.file_name shows (HTML that wraps only between words), as text; each name's tooltip is it in
    full."""
    return [html.unescape(re.sub(r"<[^>]+>", "", element.value)) for element in node.html]


def name_tooltips(node) -> list[str]:
    return [html.unescape(title) for element in node.html for title in re.findall(r'title="([^"]*)"', element.value)]


def test_relabel_then_delete_misclassified_faces_from_metrics(scratch):
    first, second = scratch.mistakes[:2]
    target = first.predicted  # the model was right, the label wrong: a typical fix
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert at.button(key="mistakes-relabel").disabled  # nothing ticked yet
    ticked(at, first, second)
    assert at.button(key="mistakes-relabel").label == "Relabel 2 selected"
    at.selectbox(key="mistakes-label").set_value(target)
    at.button(key="mistakes-relabel").click().run()
    no_crash(at)
    assert [s.value for s in at.tabs[0].success] == [
        f"2 faces relabelled as {target}; the next training uses them (this run's figures stay as they were)."]
    assert {record.label for record in scratch.store.faces(ids=[first.image_id, second.image_id])} == {target}
    assert scratch.store.run(scratch.run["id"])["metrics"] == scratch.run["metrics"]  # the run is as it was
    assert f"now {target} in the dataset" in image_captions(at.tabs[0])[names(at.tabs[0]).index(first.name)]
    assert not at.checkbox(key=f"mistake-1-{first.image_id}").value  # the ticks are cleared

    at.checkbox(key=f"mistake-1-{first.image_id}").check().run()
    at.button(key="mistakes-delete").click().run()
    no_crash(at)
    assert [s.value for s in at.tabs[0].success] == [
        "1 face deleted from the dataset; the next training goes without it (this run's figures stay as they were)."]
    assert scratch.store.faces(ids=[first.image_id]) == []
    shown = [c.value for c in at.tabs[0].caption if c.value.startswith("true ")] + image_captions(at.tabs[0])
    assert any(c.startswith(f"true {first.true}") and "no longer in the dataset" in c for c in shown)
    assert first.name in names(at.tabs[0])
    assert at.checkbox(key=f"mistake-2-{first.image_id}").disabled  # nothing left to act on


def test_a_photo_or_a_class_deleted_meanwhile_is_a_sentence_and_nothing_is_lost(scratch):
    first, second = scratch.mistakes[:2]
    scratch.store.add_label("mask_chin")
    at = ticked(AppTest.from_file(PAGE, default_timeout=60).run(), first, second)
    at.selectbox(key="mistakes-label").set_value("mask_chin").run()
    scratch.store.delete_label("mask_chin")  # in another tab
    at.button(key="mistakes-relabel").click().run()
    no_crash(at)
    assert [e.value for e in at.tabs[0].error] == [
        "The class mask_chin is no longer in the dataset (deleted meanwhile?): nothing was relabelled. Choose another "
        "class."]
    assert {r.id: r.label for r in scratch.store.faces(ids=[first.image_id, second.image_id])} == {
        first.image_id: first.label, second.image_id: second.label}  # nothing was changed
    assert at.checkbox(key=f"mistake-0-{first.image_id}").value  # the selection is kept

    scratch.store.delete_faces([second.image_id])  # in another tab
    at.selectbox(key="mistakes-label").set_value(first.true)
    at.button(key="mistakes-relabel").click().run()
    no_crash(at)
    assert [s.value for s in at.tabs[0].success] == [
        f"1 face relabelled as {first.true}; the next training uses it (this run's figures stay as they were). "
        "1 face had been deleted from the dataset meanwhile."]
    assert scratch.store.face(first.image_id).label == first.true


def test_open_misclassified_faces_in_the_dataset_gallery(scratch):
    first, second = scratch.mistakes[:2]
    at = page_in_app("pages/3_Metrics.py")
    ticked(at, first, second)
    at.button(key="mistakes-open").click().run()
    no_crash(at)
    assert at.title[0].value == "Dataset"
    assert [i.value for i in at.info] == ["Showing only the 2 photos opened from the Metrics page."]
    assert gallery_ids(at) == {first.image_id, second.image_id}
    at.switch_page("pages/1_Dataset.py").run()  # AppTest's next runs stay on the page it was switched to
    assert gallery_ids(at) == {first.image_id, second.image_id}
    at.button(key="gallery_show_all").click().run()
    assert not at.info
    assert gallery_ids(at) == {record.id for record in scratch.store.faces()[:24]}  # the first page of all


def gallery_ids(at: AppTest) -> set[int]:
    """The ids of the photos the Dataset page's gallery shows (its tick boxes are keyed pick_<round>_<id>)."""
    return {int(box.key.rsplit("_", 1)[1]) for box in at.checkbox if box.key.startswith("pick_")}


def evaluated(at: AppTest, data: bytes) -> AppTest:
    """The page after uploading a zip and pressing Evaluate."""
    at.file_uploader(key="evaluate-zip").upload("new.zip", data, "application/zip")
    at.run()
    at.button(key="evaluate-start").click().run()
    no_crash(at)
    return at


def twin_zip() -> bytes:
    """class_zip plus a copy of one with_mask photo filed under without_mask: whatever the model says of the two
    copies, one of them is misclassified. 7 photos, 6 different files."""
    photos = zipfile.ZipFile(io.BytesIO(class_zip()))
    entries = {name: photos.read(name) for name in photos.namelist()}
    return zip_bytes({**entries, "photos/without_mask/twin.jpg": entries["photos/with_mask/img500.jpg"]})


def test_import_the_misclassified_then_all_photos_of_an_evaluated_zip(scratch):
    before = len(scratch.store.faces())
    at = evaluated(AppTest.from_file(PAGE, default_timeout=60).run(), twin_zip())
    report = at.session_state["evaluation"]
    wrong = sorted(m["name"] for m in report["misclassified"])
    assert report["num_samples"] == 7 and wrong
    errors_button, all_button = at.button(key="evaluate-import-errors"), at.button(key="evaluate-import-all")
    assert errors_button.label == f"Import the {len(wrong)} misclassified photo{'s' if len(wrong) > 1 else ''}"
    assert all_button.label == "Import all 7 photos"

    errors_button.click().run()
    no_crash(at)
    tab = at.tabs[2]
    assert f"Imported: {len(wrong)} photo{'s' if len(wrong) > 1 else ''} added to the dataset ({len(wrong)} with no " \
           "face found: used whole), 0 already there, 0 rejected." in [s.value for s in tab.success]
    table = frame_with(tab, "result")
    assert sorted(table["file"]) == wrong and set(table["result"]) == {"added"}
    added = [r for r in scratch.store.faces() if r.source_name in wrong]
    assert len(scratch.store.faces()) == before + len(wrong)
    assert sorted((r.source_name, r.label) for r in added) == sorted((m["name"], m["true"])
                                                                      for m in report["misclassified"])

    at.button(key="evaluate-import-all").click().run()
    no_crash(at)
    tab = at.tabs[2]
    assert f"Imported: {6 - len(wrong)} photo{'s' if 6 - len(wrong) != 1 else ''} added to the dataset " \
           f"({6 - len(wrong)} with no face found: used whole), {len(wrong) + 1} already there, 0 rejected." in \
           [s.value for s in tab.success]
    assert len(scratch.store.faces()) == before + 6  # the twin is one file
    assert set(frame_with(tab, "result")["result"]) == {"added", "already in the dataset"}


def test_importing_into_a_class_deleted_meanwhile_says_so_and_the_upload_stays(scratch):
    at = evaluated(AppTest.from_file(PAGE, default_timeout=60).run(), class_zip())
    scratch.store.delete_label("without_mask")  # in another tab, after the evaluation
    at.button(key="evaluate-import-all").click().run()
    no_crash(at)
    tab = at.tabs[2]
    assert "Imported: 3 photos added to the dataset (3 with no face found: used whole), 0 already there, 3 rejected." \
        in [w.value for w in tab.warning]
    rejected = frame_with(tab, "result").set_index("file")["result"]
    assert rejected["photos/without_mask/img500.jpg"] == (
        "rejected: its class without_mask is not in the dataset (deleted meanwhile?): add the class, then import it "
        "again")
    assert scratch.store.labels() == ["with_mask"]  # not made again behind the user's back

    scratch.store.add_label("without_mask")
    at.button(key="evaluate-import-all").click().run()  # the upload is still there: try again
    no_crash(at)
    assert "Imported: 3 photos added to the dataset (3 with no face found: used whole), 3 already there, 0 rejected." \
        in [s.value for s in at.tabs[2].success]
    assert scratch.store.label_counts() == {"with_mask": 12 + 3, "without_mask": 3}


# ---- evaluate on a set with face boxes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boxed_zip(shared_data, detector) -> bytes:
    """Two masks-small photos as a PASCAL VOC set: each photo's face (where MTCNN finds it) under its folder's class,
    and on the first a small box in its corner, where there is no face, of a class the model lacks: a face the model
    misses. 3 annotated faces."""
    entries = {}
    for label in ("with_mask", "without_mask"):
        data = sorted((shared_data / label).glob("*.jpg"))[0].read_bytes()
        x1, y1, x2, y2 = (round(v) for v in detector.largest_faces([decode_image(data, 10**8)])[0].box)
        corner = [("mask_weared_incorrect", 3, 3, 30, 30)] if label == "with_mask" else []
        entries[f"images/{label}.jpg"] = data
        entries[f"annotations/{label}.xml"] = voc((label, x1 + 1, y1 + 1, x2, y2), *corner)
    return zip_bytes(entries)


def test_a_set_with_face_boxes_is_scored_face_by_face_and_a_missed_face_added_in_one_click(scratch, boxed_zip,
                                                                                         monkeypatch):
    before = len(scratch.store.faces())
    galleries = []  # each time a gallery's faces are cut from the upload's photos

    def counted(data, report, iou, kind, max_pixels):
        galleries.append((iou, kind))
        return scored_faces(data, report, iou, kind, max_pixels)

    monkeypatch.setattr(box_report, "scored_faces", counted)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.file_uploader(key="evaluate-zip").upload("scenes.zip", boxed_zip, "application/zip")
    at.run()
    tab = at.tabs[2]
    assert ("A PASCAL VOC set with the classes with_mask, mask_weared_incorrect, without_mask. Say how the faces of "
            "each class the model does not have count:") in [i.value for i in tab.info]
    assert at.selectbox(key="counts-as-mask_weared_incorrect").value == "without_mask"  # a mask worn wrongly
    at.button(key="evaluate-start").click().run()
    no_crash(at)
    tab = at.tabs[2]
    assert not tab.error
    report = at.session_state["evaluation"]
    assert [s.value for s in tab.success] == [
        f"{scratch.run['id']} (model.onnx) on 2 photos with 3 annotated faces (PASCAL VOC); mask_weared_incorrect "
        "faces count as without_mask."]
    scores = report["iou_0.4"]
    assert (scores["faces"], scores["found"], [m["truth"] for m in scores["misses"]]) == (3, 2, [1])
    metrics = {m.label: m.value for m in tab.metric}
    assert metrics == {"faces found": "0.667", "precision": f"{scores['precision']:.3f}",
                       "found faces right": f"{scores['found_right']:.3f}",
                       "end to end": f"{scores['end_to_end']:.3f}", "mAP": f"{scores['map']:.3f}"}
    assert list(frame_with(tab, "face size")["faces"]) == [0, 1, 2]  # the corner box is 28 px
    by_class = frame_with(tab, "AP").set_index("class")
    assert list(by_class.index) == ["with_mask", "without_mask", "mask_weared_incorrect"]
    assert list(by_class["found"]) == [1, 1, 0]
    specs = charts(tab)
    assert len(specs) == 2  # the confusion matrix and the PR curves
    assert specs[1]["encoding"]["y"]["field"] == "precision" and specs[1]["datasets_rows"] > 0
    assert [h.value for h in tab.subheader] == ["Faces not found (1)",
                                                f"Faces found but misclassified ({len(scores['wrongs'])})"]
    missed = names(tab).index("images/with_mask.jpg")  # each face's photo, below its picture
    assert image_captions(tab)[missed] == "face 2 of 2 · mask_weared_incorrect (counts as without_mask) · not found"

    assert galleries == [(0.4, "misses"), (0.4, "wrongs")]
    add = at.button(key="box-add-misses-images/with_mask.jpg-2")
    assert add.label == "Add as without_mask"
    add.click().run()
    no_crash(at)
    assert "Added ` images/with_mask.jpg ` to without_mask with face 2's box." in [s.value for s in at.success]
    (added,) = [r for r in scratch.store.faces() if r.source_name == "images/with_mask.jpg"]
    assert len(scratch.store.faces()) == before + 1 and added.label == "without_mask"
    assert added.face.box == pytest.approx((2, 2, 30, 30))  # VOC counts pixels from 1; no face found there
    at.button(key="box-add-misses-images/with_mask.jpg-2").click().run()
    assert ("` images/with_mask.jpg ` is already in the dataset with face 2 as without_mask: nothing added."
            in [s.value for s in at.success])
    assert len(scratch.store.faces()) == before + 1

    at.radio(key="box-iou").set_value(0.5).run()
    no_crash(at)
    strict = report["iou_0.5"]
    assert {m.label: m.value for m in at.tabs[2].metric}["faces found"] == f"{strict['recall']:.3f}"
    at.radio(key="box-iou").set_value(0.4).run()
    assert galleries == [(0.4, "misses"), (0.4, "wrongs"), (0.5, "misses"), (0.5, "wrongs")]  # reruns decode none


def test_scored_faces_cut_each_face_from_its_photo_largest_missed_first(home, boxed_zip):
    report = evaluate_boxed_zip(home.store, home.first, boxed_zip)
    misses = scored_faces(boxed_zip, report, 0.4, "misses", home.store.settings.max_pixels)
    assert [(f.photo, f.number, f.faces_in_photo, f.truth, f.counted_as, f.predicted) for f in misses] == [
        ("images/with_mask.jpg", 2, 2, "mask_weared_incorrect", "without_mask", None)]
    assert misses[0].crop.shape == (GALLERY_CROP.size, GALLERY_CROP.size, 3)
    wrongs = scored_faces(boxed_zip, report, 0.4, "wrongs", home.store.settings.max_pixels)
    assert [f.probability for f in wrongs] == sorted((w["probability"] for w in report["iou_0.4"]["wrongs"]),
                                                     reverse=True)
    assert all(f.predicted != f.counted_as for f in wrongs)
    changed = zip_bytes({"images/other.jpg": b"x", "annotations/other.xml": voc(("with_mask", 1, 1, 9, 9))})
    (gone,) = scored_faces(changed, report, 0.4, "misses", home.store.settings.max_pixels)
    assert gone.crop is None and gone.note == "its photo cannot be read from the upload again"


def test_scoring_a_zip_of_class_folders_as_a_set_with_boxes_is_a_sentence(home):
    assert boxed_upload(class_zip()) is None and boxed_upload(b"not a zip") is None
    with pytest.raises(StoreError, match="holds no face boxes"):
        evaluate_boxed_zip(home.store, home.first, class_zip())
    with pytest.raises(StoreError, match="choose a succeeded run"):
        evaluate_boxed_zip(home.store, home.failed, class_zip())
