"""maskdet.runs without training: table rows, chart data, comparisons, the active model, deleting runs, the
misclassified gallery and zip checks, on runs written by hand into a fresh data home."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from maskdet.core.errors import StoreError
from maskdet.core.metrics import classification_report
from maskdet.core.text import now
from maskdet.core.timing import Timing
from maskdet.runs.active import (active_is_chosen, active_run, live_model_path, not_active_reason, passed_over,
                                 run_rows, set_active_run)
from maskdet.runs.compare import TIMINGS, compare_runs, config_differences, per_face_note, timing_note
from maskdet.runs.edits import delete_faces, misclassified_faces, relabel_faces
from maskdet.runs.lifecycle import delete_run, log_path
from maskdet.runs.scoring import evaluate_zip, import_evaluated_zip
from maskdet.runs.views import (RunRecord, confusion_cells, history_points, model_files, per_class_rows, read_history,
                                read_predictions, roc_points)
from maskdet.training.config import TrainConfig
from tests.conftest import encode, overlapping_zip, pattern_image, zip_bytes

LABELS = ["with_mask", "without_mask"]


def report_for(targets, probabilities, names=None) -> dict:
    return classification_report(np.array(targets), np.array(probabilities, float), LABELS, names)


GOOD = report_for([0, 1], [[0.9, 0.1], [0.2, 0.8]])  # beats chance
REPORT = report_for([0, 0, 1, 1], [[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]],
                    ["with_mask/a.jpg", "with_mask/b.jpg", "without_mask/c.jpg", "without_mask/d.jpg"])
HISTORY = [{"stage": "head", "epoch": 1, "loss": 0.9, "accuracy": 0.5, "val_loss": 0.8, "val_accuracy": 0.5},
           {"stage": "head", "epoch": 2, "loss": 0.7, "accuracy": 0.7, "val_loss": 0.6, "val_accuracy": 0.75},
           {"stage": "finetune", "epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.5, "val_accuracy": 1.0}]


def metrics_for(report: dict | None = REPORT, random_init: bool = False) -> dict:
    return {"labels": LABELS, "random_init": random_init, "test": report,
            "split_counts": {"train": {"with_mask": 8, "without_mask": 8}, "val": {"with_mask": 2, "without_mask": 2},
                             "test": {"with_mask": 2, "without_mask": 2}},
            "onnx": {"bytes": 3 * 2**20, "ms_per_image_batch1": 4.0,
                     "parity": {"images": 4, "same_argmax": True, "argmax_disagreements": 0,
                                "max_probability_difference": 2e-7}},
            "int8": {"bytes": 2**20, "test_accuracy": 0.5, "test_accuracy_delta": 0.0, "ms_per_image_batch1": 3.0,
                     "parity": {"images": 4, "same_argmax": False, "argmax_disagreements": 1,
                                "max_probability_difference": 0.2}},
            "timings": {"total": 12.5}, "epochs_trained": {"head": 2, "finetune": 1}}


def fake_run(store, status: str = "succeeded", config: TrainConfig | None = None, files: bool = True,
             started="2026-01-02T10:00:00+00:00", finished="2026-01-02T10:01:05+00:00", **fields) -> dict:
    """A registry run (and for succeeded runs a run folder with model and metrics files) written by hand."""
    config = config or TrainConfig()
    run_id = store.create_run(config.to_dict())
    folder = store.settings.models_dir / run_id
    if status == "succeeded":
        fields = {"metrics": metrics_for(), "artefact_dir": str(folder), **fields}
        if files:
            folder.mkdir(parents=True)
            (folder / "model.onnx").write_bytes(b"not really onnx")
            (folder / "history.json").write_text(json.dumps(HISTORY))
            (folder / "config.json").write_text(json.dumps({"train": config.to_dict(), "labels": LABELS,
                                                            "crop_rule": {"margin": 1.25, "size": 64}}))
    created = f"2026-01-02T09:{len(store.runs()):02d}:00+00:00"  # distinct: the registry orders by creation time
    store.update_run(run_id, status=status, created_at=created, started_at=started, finished_at=finished, **fields)
    return store.run(run_id)


# ---- table rows --------------------------------------------------------------------------------------------

def test_row_of_a_succeeded_run(store):
    run = fake_run(store, config=TrainConfig(input_size=96, views_per_image=2, finetune_blocks=1, seed=3))
    record = RunRecord.of(run)
    row = record.row(active=True)
    assert row["run"] == run["id"] and row["status"] == "succeeded" and row["active"] is True
    assert row["when"].endswith("UTC") and row["when"][:4].isdigit()
    assert row["images"] == 24 and row["split"] == "16 / 4 / 4"
    assert row["accuracy"] == REPORT["accuracy"] == 0.5 and row["macro_f1"] == REPORT["macro_f1"]
    assert row["duration_s"] == 65
    assert row["config"] == "96 px, 2 views, fine-tune 1 blocks, lr 0.001, seed 3"
    assert row["note"] == ""
    assert record.caption() == f"{run['id']} (succeeded, accuracy 0.500)"
    assert record.summary() == {"id": run["id"], "status": "succeeded", "created_at": run["created_at"][:19] + ".000+00:00",
                                "accuracy": 0.5, "macro_f1": REPORT["macro_f1"], "duration_s": 65, "error": None}


def test_rows_of_failed_cancelled_running_and_experimental_runs(store):
    failed = fake_run(store, "failed", error="Training needs at least two classes with images.")
    cancelled = fake_run(store, "cancelled")
    experiment = fake_run(store, config=TrainConfig(random_init=True, quantize=False),
                          metrics=metrics_for(random_init=True))
    empty_test = fake_run(store, metrics=metrics_for(report=None))
    running = fake_run(store, "running", finished=None, progress={"stage": "features", "step": 40, "steps": 120})
    rows = {row["run"]: row for row in run_rows(store)}
    assert len(rows) == 5
    assert rows[failed["id"]]["note"] == "Training needs at least two classes with images."
    assert rows[failed["id"]]["accuracy"] is None and rows[failed["id"]]["images"] is None
    assert rows[cancelled["id"]]["note"].startswith("Cancelled")
    assert rows[running["id"]]["note"] == "features 40/120" and rows[running["id"]]["duration_s"] is None
    assert "random init" in rows[experiment["id"]]["note"].lower()
    assert rows[experiment["id"]]["config"].endswith("random init, no int8")
    assert "test set empty" in rows[empty_test["id"]]["note"]
    assert not any(row["active"] for row in rows.values())  # at chance or without test scores: none is by itself


# ---- chart and table data ------------------------------------------------------------------------------------

def test_history_points_count_epochs_across_stages():
    points = history_points(HISTORY, run_id="r1")
    assert len(points) == 3 * 4
    finetune = [p for p in points if p["stage"] == "finetune"]
    assert {p["epoch"] for p in finetune} == {3} and {p["stage_epoch"] for p in finetune} == {1}
    assert {(p["metric"], p["split"]) for p in points} == {(m, s) for m in ("loss", "accuracy")
                                                           for s in ("train", "validation")}
    assert all(p["run"] == "r1" for p in points)
    val_loss = [p["value"] for p in points if p["metric"] == "loss" and p["split"] == "validation"]
    assert val_loss == [0.8, 0.6, 0.5]


def test_confusion_cells_per_class_rows_and_roc_points():
    cells = {(c["true"], c["predicted"]): c for c in confusion_cells(REPORT)}
    assert cells[("with_mask", "with_mask")]["count"] == 1 and cells[("with_mask", "without_mask")]["share"] == 0.5
    assert sum(c["count"] for c in cells.values()) == 4
    rows = per_class_rows(REPORT)
    assert [r["class"] for r in rows] == LABELS + ["macro average"]
    assert rows[-1]["f1"] == REPORT["macro_f1"] and rows[-1]["support"] == 4
    points = roc_points(REPORT)
    assert {p["class"].split(" ")[0] for p in points} == set(LABELS)
    assert all("AUC" in p["class"] for p in points)
    assert all(0 <= p["fpr"] <= 1 and 0 <= p["tpr"] <= 1 for p in points)


def test_compare_lines_up_metrics_and_lists_config_differences(store):
    a = fake_run(store, config=TrainConfig(seed=0, input_size=160))
    b = fake_run(store, config=TrainConfig(seed=1, input_size=160, augment=TrainConfig().augment),
                 metrics={**metrics_for(GOOD), "labels": LABELS})
    b_config = dict(b["config"])
    b_config["augment"] = {**b_config["augment"], "flip": {**b_config["augment"]["flip"], "probability": 0.2}}
    comparison = compare_runs(a, {**b, "config": b_config})
    metrics = {row["metric"]: row for row in comparison["metrics"]}
    assert metrics["test accuracy"]["a"] == 0.5 and metrics["test accuracy"]["b"] == 1.0
    assert metrics["test accuracy"]["b - a"] == 0.5
    assert metrics["ONNX MB"]["a"] == 3.0 and metrics["epochs trained"]["a"] == 3
    assert {row["setting"] for row in comparison["config"]} == {"seed", "augment.flip.probability"}
    assert config_differences(a["config"], a["config"]) == []
    assert config_differences({"split": (0.7, 0.15, 0.15)}, {"split": [0.7, 0.15, 0.15]}) == []


# ---- the active model --------------------------------------------------------------------------------------

def test_a_worse_run_never_becomes_active_by_itself_and_says_so(store):
    first = fake_run(store, metrics=metrics_for(GOOD))  # accuracy 1.0
    worse = fake_run(store, metrics=metrics_for({**REPORT, "accuracy": 0.75}))
    assert active_run(store)["id"] == first["id"] and passed_over(store, first) is None
    assert passed_over(store, worse) == (f"Run {worse['id']} scored 0.750, below the active model's 1.000 (run "
                                         f"{first['id']}): it was not made active.")
    as_good = fake_run(store, metrics=metrics_for(GOOD))
    assert active_run(store)["id"] == as_good["id"]  # at least as good: the newer one takes over
    set_active_run(store, first["id"])  # chosen by hand: a newer better run does not take over
    better = fake_run(store, metrics=metrics_for(GOOD))
    assert active_run(store)["id"] == first["id"]
    assert passed_over(store, better) == (f"Run {better['id']} was not made the active model: run {first['id']} was "
                                          "chosen as the active model on the Models page.")
    chance = fake_run(store)
    assert passed_over(store, chance).endswith("is no better than chance (0.500 with 2 classes).")


def test_active_model_defaults_to_latest_usable_run_and_persists_a_choice(store):
    assert active_run(store) is None
    older = fake_run(store, metrics=metrics_for(GOOD))
    newer = fake_run(store, metrics=metrics_for(GOOD))
    fake_run(store, "failed", error="boom")
    assert active_run(store)["id"] == newer["id"] and not active_is_chosen(store, active_run(store))
    set_active_run(store, older["id"])
    assert store.get_setting("active_run") == older["id"]
    assert active_run(store)["id"] == older["id"] and active_is_chosen(store, active_run(store))
    (store.settings.models_dir / older["id"] / "model.onnx").unlink()  # its model file went missing
    assert active_run(store)["id"] == newer["id"]


def test_a_run_at_chance_or_without_test_scores_never_becomes_active_by_itself(store):
    good = fake_run(store, metrics=metrics_for(GOOD))
    chance = fake_run(store)  # 2 of 4 right with 2 classes
    empty = fake_run(store, metrics=metrics_for(report=None))
    three_classes = {**REPORT, "labels": ["a", "b", "c"]}  # the same 0.5 beats a third
    assert not_active_reason(good) is None
    assert not_active_reason({"metrics": metrics_for(three_classes)}) is None
    assert not_active_reason(chance) == "its test accuracy 0.500 is no better than chance (0.500 with 2 classes)"
    assert not_active_reason(empty) == ("it has no test scores (its test split was empty), so nothing shows it "
                                        "beats guessing")
    assert active_run(store)["id"] == good["id"]  # the newer runs are passed over
    set_active_run(store, chance["id"])  # an analyst can still choose one
    assert active_run(store)["id"] == chance["id"] and active_is_chosen(store, active_run(store))


def test_only_a_succeeded_run_with_a_model_can_be_active(store):
    failed = fake_run(store, "failed", error="boom")
    missing = fake_run(store, files=False)
    for run_id, phrase in ((failed["id"], "only a finished run"), (missing["id"], "no model.onnx"),
                           ("20990101-000000-abcdef", "No run with id")):
        with pytest.raises(StoreError, match=phrase):
            set_active_run(store, run_id)
    assert store.get_setting("active_run") is None


# ---- model files -------------------------------------------------------------------------------------------

def test_model_files_carry_size_parity_and_test_metrics(store):
    run = fake_run(store)
    (Path(run["artefact_dir"]) / "model.int8.onnx").write_bytes(b"int8")
    files = model_files(store, run)
    assert [f["file"] for f in files] == ["model.onnx", "model.int8.onnx"]
    onnx, int8 = files
    assert onnx["bytes"] == len(b"not really onnx") and onnx["parity_ok"] is True
    assert onnx["parity"].startswith("Same class as PyTorch on all 4 test faces")
    assert onnx["test_accuracy"] == 0.5 and onnx["macro_f1"] == REPORT["macro_f1"]
    assert int8["parity_ok"] is False and int8["parity"].startswith("Differs from PyTorch on 1 of 4")
    assert int8["test_accuracy_delta"] == 0.0 and int8["ms_per_face"] == 3.0
    # an older run's files were timed once each: one figure, no comparison of int8 with float32
    assert int8["timing"] == Timing.read(3.0) and int8["versus_float32"] == "" and onnx["versus_float32"] == ""


def timed(metrics: dict, float32: Timing, int8: Timing) -> dict:
    """metrics whose model files were timed side by side in rounds, as training now times them."""
    return {**metrics, "onnx": {**metrics["onnx"], "timing": {"batch1": float32.to_dict()}},
            "int8": {**metrics["int8"], "timing": {"batch1": int8.to_dict()}}}


@pytest.mark.parametrize("int8, says", [
    (Timing(2.3, 2.1, 2.6, 7, False), "1.8x faster than float32"),  # ranges apart
    (Timing(3.9, 3.5, 4.4, 7, False), "as fast as float32 within measurement noise"),  # 3.5 < 3.8: they overlap
    (Timing(10.5, 9.8, 11.0, 7, True), "2.6x slower than float32"),  # both met the same busy machine
])
def test_int8_is_called_faster_than_float32_only_when_their_ranges_are_apart(store, int8, says):
    float32 = Timing(4.1, 3.8, 4.4, 7, int8.busy)
    run = fake_run(store, metrics=timed(metrics_for(), float32, int8))
    (Path(run["artefact_dir"]) / "model.int8.onnx").write_bytes(b"int8")
    onnx, quantised = model_files(store, run)
    assert onnx["timing"] == float32 and quantised["timing"] == int8
    assert quantised["versus_float32"] == says and onnx["versus_float32"] == ""


def test_the_live_page_starts_with_the_int8_model_while_it_kept_the_accuracy_and_was_measured_faster(store):
    float32 = Timing(4.1, 3.8, 4.4, 7, False)
    run = fake_run(store, metrics=timed(metrics_for(), float32, Timing(2.3, 2.1, 2.6, 7, False)))
    folder = Path(run["artefact_dir"])
    assert live_model_path(store, run) == folder / "model.onnx"  # no int8 file
    (folder / "model.int8.onnx").write_bytes(b"int8")
    assert live_model_path(store, run) == folder / "model.int8.onnx"  # delta 0.0, ranges apart
    worse = {**run["metrics"], "int8": {**run["metrics"]["int8"], "test_accuracy_delta": -0.02}}
    assert live_model_path(store, {**run, "metrics": worse}) == folder / "model.onnx"
    unmeasured = {**run["metrics"], "int8": {**run["metrics"]["int8"], "test_accuracy_delta": None}}
    assert live_model_path(store, {**run, "metrics": unmeasured}) == folder / "model.onnx"
    for int8 in (Timing(3.9, 3.5, 4.4, 7, False), Timing(5.7, 5.5, 6.1, 7, False)):  # within the noise; slower
        assert live_model_path(store, {**run, "metrics": timed(metrics_for(), float32, int8)}) == folder / "model.onnx"
    older = metrics_for()  # timed once each (3.0 against 4.0 ms): not established
    assert live_model_path(store, {**run, "metrics": older}) == folder / "model.onnx"


# ---- deleting a run ----------------------------------------------------------------------------------------

def test_delete_removes_row_folder_log_and_active_choice(store):
    keep, doomed = fake_run(store, metrics=metrics_for(GOOD)), fake_run(store)
    set_active_run(store, doomed["id"])
    log = log_path(store.settings, doomed["id"])
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("training log")
    delete_run(store, doomed["id"])
    assert [r["id"] for r in store.runs()] == [keep["id"]]
    assert sorted(p.name for p in store.settings.models_dir.iterdir()) == [".logs", keep["id"]]
    assert not log.exists()
    assert store.get_setting("active_run") is None and active_run(store)["id"] == keep["id"]


def test_delete_a_failed_run_without_folder_and_refuse_a_live_one(store):
    failed = fake_run(store, "failed", error="boom")
    delete_run(store, failed["id"])
    assert store.runs() == []
    live = fake_run(store, "running", finished=None, pid=os.getpid(), heartbeat_at=now())
    with pytest.raises(StoreError, match="still training: cancel it"):
        delete_run(store, live["id"])
    assert store.run(live["id"])["status"] == "running"
    with pytest.raises(StoreError, match="No run with id"):
        delete_run(store, "20990101-000000-abcdef")


def test_delete_never_touches_a_folder_outside_the_models_folder(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(b"keep me")
    run = fake_run(store, artefact_dir=str(outside))
    delete_run(store, run["id"])
    assert (outside / "model.onnx").read_bytes() == b"keep me"
    assert not (store.settings.models_dir / run["id"]).exists() and store.runs() == []


# ---- reading a run's files -----------------------------------------------------------------------------------

def test_missing_or_broken_run_files_are_sentences(store):
    run = fake_run(store)
    assert read_history(store, run) == HISTORY
    (Path(run["artefact_dir"]) / "history.json").write_text("{broken")
    with pytest.raises(StoreError, match=r"history\.json cannot be read.*train again\."):
        read_history(store, run)
    with pytest.raises(StoreError, match=r"has no predictions\.csv .*delete the run on the Models page"):
        read_predictions(store, run)


def test_misclassified_gallery_crops_the_faces_and_survives_deleted_photos(store, detector):
    store.add_image(encode(pattern_image(1)), "with_mask", "with_mask/b.jpg", detector)
    store.add_image(encode(pattern_image(2)), "without_mask", "without_mask/d.jpg", detector)
    ids = {r.source_name: r.id for r in store.faces()}
    run = fake_run(store)
    lines = ["image_id,source_name,true,predicted,p_with_mask,p_without_mask",
             '90,"with_mask/a.jpg",with_mask,with_mask,0.9,0.1',
             f'{ids["with_mask/b.jpg"]},"with_mask/b.jpg",with_mask,without_mask,0.3,0.7',
             '91,"without_mask/c.jpg",without_mask,without_mask,0.2,0.8',
             f'{ids["without_mask/d.jpg"]},"without_mask/d.jpg",without_mask,with_mask,0.6,0.4']
    (Path(run["artefact_dir"]) / "predictions.csv").write_text("\n".join(lines) + "\n")
    mistakes = misclassified_faces(store, run)
    assert [(m.name, m.true, m.predicted) for m in mistakes] == [
        ("with_mask/b.jpg", "with_mask", "without_mask"), ("without_mask/d.jpg", "without_mask", "with_mask")]
    assert mistakes[0].score == pytest.approx(0.7) and mistakes[0].true_score == pytest.approx(0.3)
    assert all(m.crop.shape == (64, 64, 3) for m in mistakes)  # the run's crop rule (size 64)
    store.delete_faces([ids["with_mask/b.jpg"]])
    mistakes = misclassified_faces(store, run)
    assert mistakes[0].crop is None and "no longer in the dataset" in mistakes[0].note
    assert mistakes[1].crop is not None


def test_a_run_without_mistakes_has_an_empty_gallery(store):
    perfect = report_for([0, 1], [[0.9, 0.1], [0.2, 0.8]])
    assert misclassified_faces(store, fake_run(store, metrics=metrics_for(perfect))) == []


def test_evaluate_zip_refuses_bad_uploads_with_a_sentence(store, tmp_path):
    run = fake_run(store)
    for data in (b"", b"PK\x03\x04 truncated", b"just some text"):
        with pytest.raises(StoreError, match="^The upload is not a readable zip archive. Zip a folder"):
            evaluate_zip(store, run["id"], data, detector=None)
    failed = fake_run(store, "failed", error="boom")
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("with_mask/a.jpg", encode(pattern_image(1)))
    with pytest.raises(StoreError, match="choose a succeeded run"):
        evaluate_zip(store, failed["id"], archive.read_bytes(), detector=None)


def test_evaluate_zip_refuses_a_zip_bomb_before_reading_it(store):
    with pytest.raises(StoreError, match="^The zip's entries overlap one another, which only a zip bomb does"):
        evaluate_zip(store, fake_run(store)["id"], overlapping_zip(1000), detector=None)


# ---- acting on mistakes: relabel, delete, import the photos of an evaluation ----------------------------------

def test_relabelling_and_deleting_faces_say_what_happened_also_when_some_are_gone(store, detector):
    for seed, label in ((1, "with_mask"), (2, "with_mask"), (3, "without_mask")):
        store.add_image(encode(pattern_image(seed)), label, f"{label}/{seed}.jpg", detector)
    one, two, three = (record.id for record in store.faces())
    assert relabel_faces(store, [one, two], "without_mask") == (
        "2 faces relabelled as without_mask; the next training uses them (this run's figures stay as they were).")
    assert [record.label for record in store.faces()] == ["without_mask"] * 3
    with pytest.raises(StoreError) as error:
        relabel_faces(store, [one], "mask_chin")
    assert str(error.value) == ("The class mask_chin is no longer in the dataset (deleted meanwhile?): nothing was "
                                "relabelled. Choose another class.")
    store.delete_faces([two])  # in another tab
    assert relabel_faces(store, [one, two], "with_mask") == (
        "1 face relabelled as with_mask; the next training uses it (this run's figures stay as they were). 1 face "
        "had been deleted from the dataset meanwhile.")
    assert relabel_faces(store, [two], "with_mask") == (
        "Nothing was relabelled: 1 face had been deleted from the dataset meanwhile.")
    assert delete_faces(store, [one, two]) == (
        "1 face deleted from the dataset; the next training goes without it (this run's figures stay as they were). "
        "1 face had been deleted from the dataset meanwhile.")
    assert delete_faces(store, [one]) == (
        "Nothing was deleted: 1 face had been deleted from the dataset meanwhile.")
    assert [record.id for record in store.faces()] == [three]


def test_training_seconds_closer_than_twice_are_within_measurement_noise(store):
    assert timing_note(8.3, 15.5) == "within noise"  # two identical runs, measured
    assert timing_note(15.5, 8.3) == "within noise"
    assert timing_note(5.0, 12.0) == "b 2.4x slower" and timing_note(12.0, 5.0) == "b 2.4x faster"
    assert timing_note(None, 3.0) == "" and timing_note(0.0, 3.0) == ""
    a, b = fake_run(store), fake_run(store, metrics={**metrics_for(), "timings": {"total": 40.0}})
    comparison = compare_runs(a, b)
    notes = {row["metric"]: row["note"] for row in comparison["metrics"]}
    assert notes["training seconds"] == "b 3.2x slower"  # 12.5 and 40
    assert notes["ONNX ms per face (batch 1)"] == "one timing"  # older runs: a single figure each, not compared
    assert comparison["per_face"] == ["a: 4.0 ms per face (one measurement)", "b: 4.0 ms per face (one measurement)"]
    assert {note for metric, note in notes.items() if metric not in TIMINGS} == {""}


def test_per_face_timings_differ_only_when_their_ranges_do_not_overlap():
    a = Timing(2.3, 2.1, 2.6, 7, False)
    assert per_face_note(a, Timing(7.9, 7.5, 8.4, 7, False)) == "b 3.4x slower"  # ranges apart
    assert per_face_note(Timing(7.9, 7.5, 8.4, 7, False), a) == "b 3.4x faster"
    assert per_face_note(a, Timing(2.9, 2.5, 3.3, 7, False)) == "within noise"  # 2.5 < 2.6
    assert per_face_note(Timing(2.3, 2.25, 2.35, 7, False), Timing(2.4, 2.37, 2.45, 7, False)) == "b 4% slower"
    assert per_face_note(a, Timing(7.9, 2.4, 9.0, 7, False)) == "within noise"  # a wide range takes in a's
    assert per_face_note(a, Timing(7.9, 7.5, 8.4, 7, True)) == "busy machine"  # measured while busy: no verdict
    assert per_face_note(a, Timing.read(7.9)) == "one timing"  # the 7.9 against 2.3: an older single figure
    assert per_face_note(a, None) == "" and per_face_note(None, a) == ""


def test_compare_puts_each_runs_range_beside_the_note(store):
    a = fake_run(store, metrics=timed(metrics_for(), Timing(2.3, 2.1, 2.6, 7, False), Timing(2.0, 1.9, 2.2, 7, False)))
    b = fake_run(store, metrics=timed(metrics_for(), Timing(2.4, 2.2, 2.9, 7, True), Timing(2.0, 1.9, 2.2, 7, True)))
    comparison = compare_runs(a, b)
    notes = {row["metric"]: row["note"] for row in comparison["metrics"]}
    assert notes["ONNX ms per face (batch 1)"] == "busy machine"
    assert comparison["per_face"] == ["a: 2.3 ms per face (2.1–2.6, median of 7)",
                                      "b: 2.4 ms per face (2.2–2.9, median of 7, measured while busy)"]


def test_importing_the_photos_of_an_evaluated_zip_keeps_the_import_rules(store, detector):
    names = ["with_mask/a.jpg", "with_mask/b.jpg", "without_mask/c.jpg", "without_mask/d.jpg"]
    photos = {name: encode(pattern_image(seed)) for seed, name in enumerate(names)}
    data = zip_bytes({**photos, "with_mask/notes.txt": b"skipped by the evaluation"})
    report = {**REPORT, "names": names}  # b and d misclassified
    imported = import_evaluated_zip(store, data, report, detector, errors_only=True)
    assert (imported.added, imported.duplicates, imported.rejected) == (
        ["with_mask/b.jpg", "without_mask/d.jpg"], [], [])
    assert {r.source_name: r.label for r in store.faces()} == {"with_mask/b.jpg": "with_mask",
                                                                "without_mask/d.jpg": "without_mask"}
    store.delete_label("without_mask")  # in another tab, before importing the rest
    imported = import_evaluated_zip(store, data, report, detector, errors_only=False)
    assert (imported.added, imported.duplicates) == (["with_mask/a.jpg"], ["with_mask/b.jpg"])
    reason = "its class without_mask is not in the dataset (deleted meanwhile?): add the class, then import it again"
    assert imported.rejected == [("without_mask/c.jpg", reason), ("without_mask/d.jpg", reason)]
    assert store.label_counts() == {"with_mask": 2}  # the deleted class is not made again
    assert import_evaluated_zip(store, data, {**report, "misclassified": []}, detector, True).summary() == {
        "added": 0, "faces": 0, "duplicates": 0, "rejected": 0, "no_face": 0, "left_out": 0}
