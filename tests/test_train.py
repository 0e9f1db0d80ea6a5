"""End-to-end training: a tiny random-init run on generated pictures, registry statuses, cancellation,
reproducibility, and a real run on the shared photos with the shared ImageNet weights."""

import csv
import dataclasses
import json
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import uses_external_data

from maskdet.core.contract import Preprocess
from maskdet.core.disk_array import DiskArray
from maskdet.core.errors import Cancelled, TrainingError
from maskdet.core.settings import Settings
from maskdet.core.timing import Timing
from maskdet.data.store import Store
from maskdet.runs.execute import execute_run
from maskdet.serving.classifier import TIMING_ROUNDS, load_classifier
from maskdet.training import export
from maskdet.training.config import RANGED, TrainConfig
from maskdet.training.device import resolve_device
from maskdet.training.loops import class_weights, extract_features, seed_everything, train_head
from maskdet.training.model import MaskNet, build_model
from maskdet.training.progress import Callbacks
from maskdet.training.train import drawable_rules, scratch_bytes, train
from maskdet.training.views import (MASKED, MIN_VISIBLE, DrawRule, Views, add_drawn_faces, draw_view,
                                    feature_views, load_split, view_maker, visible_share)
from maskdet.vision.augment import AugmentConfig, build_train_pipeline
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.mask_rules import MaskRule, automatic_rules
from maskdet.vision.synth import MASK_STYLES, WRONG_PLACEMENTS
from tests.conftest import make_old_home, pattern_image, photo_pairs, write_dataset

LABELS = ["with_mask", "without_mask"]
TINY = TrainConfig(random_init=True, views_per_image=1, epochs=15, finetune_blocks=1, finetune_epochs=1,
                   input_size=96)
RUN_FILES = {"model.onnx", "model.int8.onnx", "model.pt", "config.json", "metrics.json", "history.json",
             "predictions.csv", "MODEL_CARD.md"}


def make_store(root: Path) -> Store:
    home = root / "home"
    return Store(Settings(home=home, models_dir=root / "models", database_url=f"sqlite:///{home / 'maskdet.db'}",
                          backbone_weights=None, max_pixels=40_000_000))


def read_predictions(run_dir: Path) -> list[dict]:
    with open(run_dir / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def cut_test_crops(store: Store, size: int, margin: float = 1.25) -> tuple[list, np.ndarray]:
    """The test split's face crops, cut again with the crop rule (as a user of the exported model would)."""
    records = store.faces(split="test")
    rule = CropRule(margin, size)
    crops = np.stack([crop_face(store.load_image(r), r.face.box if r.face else None, rule) for r in records])
    return records, crops


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


# ---- the tiny run (shared by several tests) -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, detector):
    root = tmp_path_factory.mktemp("tiny")
    store = make_store(root)
    store.import_folder(write_dataset(root / "data", 12), detector)
    reports, written, update_run = [], [], store.update_run

    def record(run_id, **fields):  # the progress the registry was given, as the Train page reads it
        if fields.get("progress"):
            written.append(fields["progress"])
        return update_run(run_id, **fields)

    store.update_run = record
    result = execute_run(store, TINY, store.settings.models_dir, on_progress=reports.append)
    run_dir = store.settings.models_dir / result["run_id"]
    return SimpleNamespace(store=store, result=result, run_dir=run_dir, stages=[p.stage for p in reports],
                           reports=reports, written=written,
                           metrics=json.loads((run_dir / "metrics.json").read_text()))


def test_run_folder_holds_exactly_the_artefacts_and_no_staging(tiny):
    assert {p.name for p in tiny.run_dir.iterdir()} == RUN_FILES
    assert leftovers(tiny.store.settings.models_dir) == [tiny.result["run_id"]]  # no .<id>.tmp staging folder


def test_progress_went_through_every_stage_in_order(tiny):
    order = list(dict.fromkeys(tiny.stages))
    assert order == ["crops", "features", "head", "finetune", "evaluate", "export"]


def test_progress_names_the_export_tasks_and_bounds_the_early_stopping_stage(tiny):
    exports = [(p.step, p.steps, p.task) for p in tiny.reports if p.stage == "export"]
    tasks, rounds = export.EXPORT_TASKS, TIMING_ROUNDS
    assert exports == [(step, 5, task) for step, task in enumerate(tasks[:-1])] + [
        (4, 5, f"timing float32 and int8 side by side, round {number} of {rounds}") for number in range(1, rounds + 1)]
    # each task is written to the registry as it begins, with the time left in the stage and in all
    running = [p for p in tiny.written if p["stage"] != "done"]
    assert [p["task"] for p in running if p["stage"] == "export"] == [task for _, _, task in exports]
    assert all(p["left_seconds"] >= 0 and p["eta_seconds"] >= 0 for p in running)
    assert all(p["left_seconds"] >= p["eta_seconds"] for p in running if p["stage"] != "head")  # head: up to all epochs
    assert all(p["left_seconds"] > 0 for p in running if p["stage"] == "export")  # never "0 s left" while exporting
    heads = [p for p in tiny.reports if p.stage == "head"]
    assert heads and all(0 <= p.soonest_seconds <= p.eta_seconds for p in heads)
    assert heads[-1].eta_seconds == heads[-1].soonest_seconds == 0  # the last epoch: nothing left


def test_metrics_of_the_tiny_run(tiny):
    metrics = tiny.metrics
    assert {k: v for k, v in tiny.result.items() if k != "run_id"} == metrics
    assert metrics["labels"] == LABELS
    assert metrics["random_init"] is True and metrics["backbone"] == "random-init"
    counts = metrics["split_counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 24
    assert all(counts[split][label] >= 1 for split in ("train", "val", "test") for label in LABELS)
    parity = metrics["onnx"]["parity"]
    assert parity["images"] == sum(counts["test"].values())
    assert parity["same_argmax"] is True and parity["max_probability_difference"] < 1e-4
    assert metrics["int8"]["parity"]["images"] == parity["images"]
    assert metrics["int8"]["bytes"] < metrics["onnx"]["bytes"]
    for name in ("onnx", "int8"):  # timed side by side in rounds: the median (as older runs kept it) and its range
        for batch in (1, 32):
            timing = Timing.of_model(metrics[name], batch)
            assert timing.rounds == TIMING_ROUNDS and timing.low <= timing.median <= timing.high
            assert timing.median == metrics[name][f"ms_per_image_batch{batch}"] and timing.busy in (True, False, None)
    assert metrics["test"]["num_samples"] == parity["images"]
    assert 0 <= metrics["test"]["accuracy"] <= 1


def test_history_has_both_stages(tiny):
    history = json.loads((tiny.run_dir / "history.json").read_text())
    stages = [h["stage"] for h in history]
    assert set(stages) == {"head", "finetune"} and stages.index("finetune") > stages.index("head")
    assert 1 <= stages.count("head") <= TINY.epochs and stages.count("finetune") == TINY.finetune_epochs
    assert tiny.metrics["epochs_trained"] == {"head": stages.count("head"), "finetune": 1}
    assert all(np.isfinite([h["loss"], h["val_loss"]]).all() for h in history)


def test_config_and_model_card(tiny):
    config = json.loads((tiny.run_dir / "config.json").read_text())
    assert TrainConfig.from_dict(config["train"]) == TINY
    assert config["labels"] == LABELS and config["backbone"] == "random-init"
    assert config["preprocess"]["input_size"] == 96 and config["crop_rule"] == {"margin": 1.25, "size": 96}
    card = (tiny.run_dir / "MODEL_CARD.md").read_text()
    assert "RANDOM INIT" in card
    assert "Classes: with_mask, without_mask" in card
    assert "fine-tuned the last 1 blocks" in card
    assert f"Accuracy: {tiny.metrics['test']['accuracy']:.4f}" in card


def test_metrics_and_model_card_record_the_device_it_trained_on(tiny):
    used = resolve_device(TINY.device)  # the default: the CPU
    assert (tiny.metrics["device"], tiny.metrics["onnx_providers"]) == (used.torch.type, list(used.providers))
    card = (tiny.run_dir / "MODEL_CARD.md").read_text()
    assert f"- Trained on: {used.torch.type} (PyTorch), {', '.join(used.providers)} (onnxruntime)" in card
    if not torch.cuda.is_available():
        assert tiny.metrics["device"] == "cpu" and tiny.metrics["onnx_providers"] == ["CPUExecutionProvider"]


def test_predictions_csv_matches_the_test_split(tiny):
    rows = read_predictions(tiny.run_dir)
    test_records = {r.id: r for r in tiny.store.faces(split="test")}
    assert list(rows[0]) == ["image_id", "source_name", "true", "predicted", "p_with_mask", "p_without_mask",
                            "drawn", "drawn_from"]
    assert {int(r["image_id"]) for r in rows} == set(test_records)
    for row in rows:
        record = test_records[int(row["image_id"])]
        assert row["true"] == record.label and row["source_name"] == record.source_name
        p = [float(row["p_with_mask"]), float(row["p_without_mask"])]
        assert abs(sum(p) - 1) < 1e-5 and row["predicted"] == LABELS[int(np.argmax(p))]


def test_exported_onnx_loads_with_labels_and_a_dynamic_batch(tiny):
    classifier = load_classifier(tiny.run_dir / "model.onnx")
    assert classifier.labels == LABELS
    assert classifier.preprocess.input_size == 96 and classifier.rule == CropRule(1.25, 96)
    images = np.stack([pattern_image(seed, size=(96, 96)) for seed in range(5)])
    for batch in (images[:1], images):
        probabilities = classifier.predict(batch)
        assert probabilities.shape == (len(batch), 2) and probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(classifier.predict(images[:1]), classifier.predict(images)[:1], atol=1e-6)
    int8 = load_classifier(tiny.run_dir / "model.int8.onnx")
    assert int8.labels == LABELS and int8.predict(images).shape == (5, 2)


def test_onnx_files_are_self_contained(tiny):
    for name in ("model.onnx", "model.int8.onnx"):
        proto = onnx.load(str(tiny.run_dir / name), load_external_data=False)
        assert proto.graph.initializer and not any(uses_external_data(t) for t in proto.graph.initializer)
        onnx.checker.check_model(proto)
    assert not [p for p in tiny.run_dir.iterdir() if p.suffix == ".data" or "external" in p.name]


def test_model_pt_is_the_exported_model(tiny):
    model = MaskNet(2, Preprocess(input_size=96))
    model.load_state_dict(torch.load(tiny.run_dir / "model.pt", weights_only=True), strict=True)
    model.eval()
    images = np.stack([pattern_image(seed, size=(96, 96)) for seed in range(4)])
    with torch.no_grad():
        reference = torch.softmax(model(torch.from_numpy(images)), 1).numpy()
    onnx_probabilities = load_classifier(tiny.run_dir / "model.onnx").predict(images)
    np.testing.assert_allclose(onnx_probabilities, reference, atol=1e-5)


def test_random_init_model_output_depends_on_the_input(tiny):
    classifier = load_classifier(tiny.run_dir / "model.onnx")
    tints = [(55, -40, -40), (-40, -40, 55)]  # the two classes' tints in write_dataset
    images = np.stack([pattern_image(seed, size=(96, 96), tint=tints[seed % 2]) for seed in range(6)])
    probabilities = classifier.predict(images)
    assert np.ptp(probabilities[:, 0]) > 1e-3


def test_registry_records_a_succeeded_run(tiny):
    run = tiny.store.run(tiny.result["run_id"])
    assert run["status"] == "succeeded" and run["error"] is None
    assert run["artefact_dir"] == str(tiny.run_dir)
    assert run["metrics"] == tiny.metrics
    assert run["config"] == TINY.to_dict() | {"split": list(TINY.split)}
    assert run["started_at"] and run["finished_at"] and run["pid"] == os.getpid()
    assert run["progress"]["stage"] == "done"


def test_same_seed_same_data_gives_identical_results(tiny, tmp_path):
    again = tmp_path / "again"
    train(tiny.store, TINY, again)
    assert (again / "predictions.csv").read_text() == (tiny.run_dir / "predictions.csv").read_text()
    assert json.loads((again / "history.json").read_text()) == json.loads((tiny.run_dir / "history.json").read_text())
    first = torch.load(tiny.run_dir / "model.pt", weights_only=True)
    second = torch.load(again / "model.pt", weights_only=True)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_cancel_during_training_cleans_up(tiny, tmp_path):
    """Cancellation requested mid-run (while the staging folder exists) leaves nothing behind."""
    store, models_dir = tiny.store, tmp_path / "models"
    run_id = store.create_run(TINY.to_dict())
    staging = models_dir / f".{run_id}.tmp"
    seen = {"staging": False, "stages": []}

    def on_progress(progress):
        seen["stages"].append(progress.stage)
        if progress.stage == "head" and not store.run(run_id)["cancel_requested"]:
            seen["staging"] = staging.is_dir()
            store.update_run(run_id, cancel_requested=True)
            time.sleep(1.1)  # cancellation is polled at most once a second

    with pytest.raises(Cancelled):
        execute_run(store, TINY, models_dir, run_id, on_progress)
    assert seen["staging"], "the staging folder should exist while training"
    assert "export" not in seen["stages"]
    run = store.run(run_id)
    assert run["status"] == "cancelled" and run["finished_at"] and run["metrics"] is None
    assert leftovers(models_dir) == []


# ---- registry statuses on small function-scoped homes ----------------------------------------------

def test_cancel_requested_before_start(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 3), detector)
    run_id = store.create_run(TINY.to_dict())
    store.update_run(run_id, cancel_requested=True)
    with pytest.raises(Cancelled):
        execute_run(store, TINY, settings.models_dir, run_id)
    run = store.run(run_id)
    assert run["status"] == "cancelled" and run["finished_at"] and run["artefact_dir"] is None
    assert leftovers(settings.models_dir) == []


def test_only_one_class_with_images_fails_the_run(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 3, labels=("with_mask",)), detector)
    run_id = store.create_run(TINY.to_dict())
    with pytest.raises(TrainingError) as error:
        execute_run(store, TINY, settings.models_dir, run_id)
    assert "at least two classes" in str(error.value)
    run = store.run(run_id)
    assert run["status"] == "failed" and run["error"] == str(error.value)
    assert run["finished_at"] and run["metrics"] is None and run["artefact_dir"] is None
    assert leftovers(settings.models_dir) == []


def test_a_run_whose_crops_and_features_would_not_fit_on_the_disk_is_refused_before_writing(
        store, settings, tmp_path, detector, monkeypatch):
    store.import_folder(write_dataset(tmp_path / "d", 5), detector)
    needed = scratch_bytes({"train": 6, "val": 2, "test": 2}, TINY, [])
    assert needed == 10 * 96 * 96 * 3 + (6 * 2 + 4) * 1280 * 4  # TINY: 96 px crops, one view besides the clean one
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**5, 10**5))
    with pytest.raises(TrainingError) as error:
        execute_run(store, dataclasses.replace(TINY, split=(0.6, 0.2, 0.2)), settings.models_dir)
    assert str(error.value) == (f"Training 10 photos needs about 0.4 MB of free disk for its crops and features while "
                                f"it runs, in {settings.models_dir}; 0.1 MB are free. Free some space, or set "
                                "MASKDET_MODELS to a folder on a larger disk.")
    assert store.runs()[0]["error"] == str(error.value) and leftovers(settings.models_dir) == []
    default = TrainConfig()  # 100,000 photos at the default settings, drawn masks included: about 10 GB
    assert 9.5e9 < scratch_bytes({"train": 70_000, "val": 15_000, "test": 15_000}, default,
                                 [DrawRule(1, 0, ("right",), 0.25, ["surgical"])]) < 10.5e9


def test_missing_backbone_weights_fail_the_run_with_the_message(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 3), detector)
    config = TrainConfig(backbone_weights=str(tmp_path / "missing.pth"), input_size=64)
    with pytest.raises(Exception) as error:
        execute_run(store, config, settings.models_dir)
    [run] = store.runs()
    assert run["status"] == "failed"
    assert run["error"] == str(error.value) == f"Backbone weights file not found: {tmp_path / 'missing.pth'}."
    assert leftovers(settings.models_dir) == []


# ---- config ---------------------------------------------------------------------------------------

def test_train_config_round_trip_and_unknown_keys():
    config = TrainConfig(epochs=3, split=(0.6, 0.2, 0.2), labels=["a", "b"], random_init=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"Unknown training setting\(s\): bogus, epoch\."):
        TrainConfig.from_dict({"epoch": 3, "bogus": 1})
    with pytest.raises(ValueError, match="Unknown augmentation"):
        TrainConfig.from_dict({"augment": {"zoom": {}}})


@pytest.mark.parametrize("data, message", [
    ({"split": [0.7, 0.2, 0.3]}, "add up to 1.20"),
    ({"split": [0.0, 0.5, 0.5]}, "train above 0"),
    ({"split": [1.2, -0.1, -0.1]}, "non-negative"),
    ({"split": [0.5, 0.5]}, "'split' must be three shares [train, validation, test] that add up to 1, got [0.5, 0.5]."),
    ({"epochs": 0}, "'epochs' must be a whole number from 1 to 1000, got 0."),
    ({"epochs": "ten"}, "'epochs' must be a whole number from 1 to 1000, got \"ten\"."),
    ({"epochs": 2.5}, "'epochs' must be a whole number from 1 to 1000, got 2.5."),
    ({"crop_margin": 0}, "'crop_margin' must be a number from 1 to 3, got 0."),
    ({"input_size": 8}, "'input_size' must be a whole number from 32 to 512, got 8."),
    ({"views_per_image": -1}, "'views_per_image' must be a whole number from 0 to 32, got -1."),
    ({"batch_size": 0}, "'batch_size' must be a whole number from 1 to 1024, got 0."),
    ({"learning_rate": True}, "'learning_rate' must be a number from 1e-05 to 1, got true."),
    ({"learning_rate": float("nan")}, "'learning_rate' must be a number from 1e-05 to 1, got NaN."),
    ({"finetune_blocks": 18}, "'finetune_blocks' must be a whole number from 0 to 17, got 18."),
    ({"seed": -1}, "'seed' must be a whole number from 0 to 2147483647, got -1."),
    ({"quantize": "yes"}, "'quantize' must be true or false, got \"yes\"."),
    ({"labels": "with_mask"}, "'labels' must be null (every class with images) or a list of two or more different "
                              "class names, got \"with_mask\"."),
    ({"labels": ["with_mask", "with_mask"]}, "'labels' must be null"),
    ({"labels": ["with_mask", 3]}, "'labels' must be null"),
    ({"backbone_weights": 5}, "'backbone_weights' must be a weights file path or null, got 5."),
    ({"augment": ["flip"]}, "'augment' must be an object of augmentations"),
    ([{"epochs": 3}], "A training config must be a JSON object of settings, like {\"epochs\": 20}; "
                      "got [{\"epochs\": 3}]."),
    ("epochs", "A training config must be a JSON object"),
])
def test_train_config_refuses_settings_that_make_no_sense(data, message):
    with pytest.raises(ValueError) as error:
        TrainConfig.from_dict(data)
    assert message in str(error.value)


def test_every_numeric_setting_has_a_range_and_help_and_its_bounds_are_accepted():
    assert set(RANGED) == {name for name, value in TrainConfig().to_dict().items()
                           if isinstance(value, (int, float)) and not isinstance(value, bool)}
    for name, spec in RANGED.items():
        low, high = spec.metadata["range"]
        assert low <= spec.default <= high and spec.metadata["help"].endswith("."), name
        assert getattr(TrainConfig.from_dict({name: low}), name) == low
        assert getattr(TrainConfig.from_dict({name: high}), name) == high
    assert TrainConfig.from_dict({"learning_rate": 1}).learning_rate == 1.0  # a JSON whole number for a float setting
    with pytest.raises(ValueError, match="'patience' must be a whole number from 1 to 1000, got 0"):
        TrainConfig(patience=0)  # built in Python, checked the same way


# ---- real photos and real ImageNet weights ----------------------------------------------------------

@pytest.fixture(scope="module")
def real(tmp_path_factory, shared_data, backbone_weights, detector):
    """~40 faces per class from the shared dataset, chosen as N.jpg / N-with-mask.jpg pairs spread over it."""
    numbers = sorted(int(p.stem) for p in (shared_data / "without_mask").glob("*.jpg")
                     if p.stem.isdigit() and (shared_data / "with_mask" / f"{p.stem}-with-mask.jpg").exists())
    chosen = numbers[::max(1, len(numbers) // 40)][:40]
    assert len(chosen) == 40
    root = tmp_path_factory.mktemp("real")
    for label, pattern in (("with_mask", "{}-with-mask.jpg"), ("without_mask", "{}.jpg")):
        (root / "data" / label).mkdir(parents=True)
        for number in chosen:
            shutil.copy(shared_data / label / pattern.format(number), root / "data" / label)
    store = make_store(root)
    report = store.import_folder(root / "data", detector)
    config = TrainConfig(backbone_weights=str(backbone_weights), views_per_image=2, finetune_blocks=0)
    result = execute_run(store, config, store.settings.models_dir)
    return SimpleNamespace(store=store, result=result, report=report, weights=backbone_weights,
                           run_dir=store.settings.models_dir / result["run_id"])


def test_real_photos_reach_high_test_accuracy(real):
    assert real.report.summary()["added"] == 80
    metrics = real.result
    assert metrics["backbone"] == f"file:{real.weights.name}"
    assert metrics["random_init"] is False and metrics["epochs_trained"]["finetune"] == 0
    assert metrics["test"]["num_samples"] >= 8
    assert metrics["test"]["accuracy"] >= 0.9
    parity = metrics["onnx"]["parity"]
    assert parity["same_argmax"] and parity["max_probability_difference"] < 1e-4
    assert metrics["int8"]["test_accuracy"] >= 0.85 and metrics["int8"]["parity"]["argmax_disagreements"] <= 1
    assert "RANDOM INIT" not in (real.run_dir / "MODEL_CARD.md").read_text()


def test_near_duplicate_pairs_never_straddle_splits(real):
    records = real.store.faces()
    splits_of_group = defaultdict(set)
    for record in records:
        assert record.split in ("train", "val", "test")
        splits_of_group[record.dup_group].add(record.split)
    assert all(len(splits) == 1 for splits in splits_of_group.values())
    groups_of_pair = defaultdict(set)
    for record in records:
        groups_of_pair[re.search(r"(\d+)(-with-mask)?\.jpg$", record.source_name).group(1)].add(record.dup_group)
    joined = sum(len(groups) == 1 for groups in groups_of_pair.values())
    assert joined >= 30, f"only {joined} of 40 pasted-mask pairs were recognised as near-duplicates"


def test_exported_model_reproduces_test_predictions_from_its_metadata(real):
    """Cutting the test crops again with the crop rule from the ONNX metadata gives the training run's numbers."""
    classifier = load_classifier(real.run_dir / "model.onnx")
    records, crops = cut_test_crops(real.store, classifier.rule.size, classifier.rule.margin)
    assert all(r.face is not None for r in records)
    probabilities = classifier.predict(crops)
    rows = {int(r["image_id"]): r for r in read_predictions(real.run_dir)}
    expected = np.array([[float(rows[r.id]["p_with_mask"]), float(rows[r.id]["p_without_mask"])] for r in records])
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    targets = np.array([LABELS.index(r.label) for r in records])
    assert (probabilities.argmax(1) == targets).mean() >= 0.9


# ---- synthetic masks --------------------------------------------------------------------------------

def test_synthetic_masks_settings_round_trip():
    rules = [MaskRule("bare", "masked", probability=0.5, styles=["cloth", "gaiter"]),
             MaskRule("bare", "worn_wrong", worn="wrong")]
    config = TrainConfig(synthetic_masks=rules)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({}).synthetic_masks is None  # automatic
    assert TrainConfig.from_dict({"synthetic_masks": []}).synthetic_masks == []


def test_the_single_rule_setting_of_older_runs_still_reads():
    read = lambda old: TrainConfig.from_dict({"synthetic_masks": old}).synthetic_masks  # noqa: E731
    assert read({"enabled": False, "source": None, "target": None, "probability": 0.25, "styles": ["cloth"]}) == []
    assert read({"enabled": True, "source": None, "target": None, "probability": 0.25, "styles": ["cloth"]}) is None
    assert read({"enabled": True, "source": "bare", "target": "masked", "probability": 0.5, "styles": ["cloth"]}) == [
        MaskRule("bare", "masked", "right", 0.5, ["cloth"])]


@pytest.mark.parametrize("masks, message", [
    ([{"source": "a", "target": "b", "probability": 1.5}], "rule 1: probability must be a number between 0 and 1"),
    ([{"source": "a", "target": "b", "styles": ["surgical", "hat"]}], "styles must be a non-empty list of: surgical"),
    ([{"source": "a", "target": "b", "styles": []}], "non-empty list"),
    ([{"source": "a", "target": "b"}, {"source": "a", "target": "a"}], "rule 2: the source and target classes must"),
    ([{"source": 3, "target": "b"}], "source must be a class name"),
    ([{"source": "a"}], "needs a source class .* and a target class"),
    ([{"source": "a", "target": "b", "worn": "sideways"}], "worn must be one of right, wrong"),
    ([{"source": "a", "target": "b", "mask_from": "photo"}], "mask_from must be one of drawing, twin"),
    ([{"source": "a", "target": "b", "mask_from": "twin"}], "a twin's mask worn right is the twin's own photo"),
    ([{"source": "a", "target": "b", "colour": "red"}], r"Unknown setting\(s\) in synthetic_masks rule 1: colour"),
    (["surgical"], "rule 1 must be an object"),
    ("surgical", "must be null \\(automatic\\), or a list of rules"),
    ({"enabled": True, "colour": "red"}, r"Unknown synthetic_masks setting\(s\): colour"),
])
def test_synthetic_masks_settings_reject_bad_values(masks, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"synthetic_masks": masks})


def test_automatic_rules_follow_the_class_names():
    assert automatic_rules(["with_mask", "without_mask"]) == [MaskRule("without_mask", "with_mask", "right")]
    assert automatic_rules(["masked", "bare"]) == []
    assert automatic_rules(["mask_weared_incorrect", "with_mask", "without_mask"]) == [
        MaskRule("without_mask", "with_mask", "right"), MaskRule("without_mask", "mask_weared_incorrect", "wrong"),
        MaskRule("without_mask", "mask_weared_incorrect", "wrong", 1.0, mask_from="twin")]
    assert automatic_rules(["without_mask", "mask_incorrect"]) == [MaskRule("without_mask", "mask_incorrect", "wrong")]
    assert automatic_rules(["with_mask", "mask_incorrect"]) == []  # nothing to draw on


def test_a_rule_naming_a_class_that_does_not_exist_fails_the_run(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "data", 6), detector)
    config = dataclasses.replace(TINY, synthetic_masks=[MaskRule("bare", "with_mask")])
    with pytest.raises(TrainingError, match="rule 1 \\(bare → with_mask, mask worn right\\) names the class 'bare', "
                                            "which the dataset does not have. Classes: with_mask, without_mask"):
        execute_run(store, config, settings.models_dir)
    assert store.runs()[0]["status"] == "failed" and "'bare'" in store.runs()[0]["error"]
    outside = dataclasses.replace(TINY, labels=["with_mask", "without_mask"],
                                  synthetic_masks=[MaskRule("without_mask", "spare", worn="wrong")])
    store.add_label("spare")
    with pytest.raises(TrainingError, match="names a class this run does not train"):
        execute_run(store, outside, settings.models_dir)


def test_a_rule_from_a_class_without_landmarks_fails_with_a_sentence(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "data", 6), detector)  # generated pictures: no faces
    config = dataclasses.replace(TINY, synthetic_masks=[MaskRule("without_mask", "with_mask")])
    with pytest.raises(TrainingError, match="no training photo of 'without_mask' has a face with landmarks"):
        execute_run(store, config, settings.models_dir)
    automatic = execute_run(store, dataclasses.replace(TINY, finetune_blocks=0), settings.models_dir)
    assert automatic["synthetic_masks"]["rules"] == []  # automatic: nothing to draw on is not an error, but
    store.add_label("mask_incorrect")  # a class made of drawings only needs faces to draw on
    with pytest.raises(TrainingError, match="rule 2 \\(without_mask → mask_incorrect, mask worn wrongly\\): no "
                                            "training photo"):
        execute_run(store, dataclasses.replace(TINY, finetune_blocks=0), settings.models_dir)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, shared_data, detector):
    """12 masks-small photo pairs (a face and the same face with a pasted mask) in a data home, split."""
    root = tmp_path_factory.mktemp("pairs")
    for name in photo_pairs(shared_data)[:12]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (root / "data" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_data / label / file, root / "data" / label / file)
    store = make_store(root)
    store.import_folder(root / "data", detector)
    store.assign_splits((0.6, 0.2, 0.2), seed=0)
    return store


def load_splits(store: Store, folder: Path, size: int = 96) -> dict:
    """The store's splits with their crops in files in folder."""
    rule = CropRule(1.25, size)
    return {name: load_split(store, store.faces(split=name), LABELS, rule, Callbacks(), 0, 0, folder / f"{name}.u8")
            for name in ("train", "val", "test")}


def test_drawn_mask_views_come_from_training_faces_and_keep_their_group(pairs, tmp_path):
    splits = load_splits(pairs, tmp_path)
    rules = [DrawRule(source=1, target=0, placements=("right",), probability=1.0, styles=list(MASK_STYLES))]
    train_split = splits["train"]
    views = feature_views(train_split, 3, rules, seed=0)
    masked = views.indices[views.kinds == MASKED]
    eligible = [i for i, r in enumerate(train_split.records) if r.label == "without_mask" and r.face.landmarks]
    assert len(eligible) >= 4 and sorted(masked.tolist()) == sorted(eligible * 3)  # probability 1: every view
    assert (views.targets(train_split, rules)[views.kinds == MASKED] == 0).all()  # trained as with_mask
    held_out = {r.dup_group for name in ("val", "test") for r in splits[name].records}
    assert held_out and not {train_split.records[i].dup_group for i in masked} & held_out
    drawn = view_maker(train_split, Views(masked[:4], views.kinds[views.kinds == MASKED][:4], np.zeros(4, int)),
                       build_train_pipeline(AugmentConfig.from_dict({}), 96, seed=0), rules, seed=0)(slice(0, 4))
    assert drawn.shape == (4, 96, 96, 3)


def test_a_drawn_only_class_gets_training_views_weights_and_drawn_test_faces(pairs, tmp_path):
    splits = load_splits(pairs, tmp_path)
    rules = [DrawRule(1, 0, ("right",), 0.5, list(MASK_STYLES)), DrawRule(1, 2, WRONG_PLACEMENTS, 0.5, ["cloth"])]
    views = feature_views(splits["train"], 4, rules, seed=0)
    targets = views.targets(splits["train"], rules)
    counts = np.bincount(targets, minlength=3)
    assert counts[2] == (views.rules == 1).sum() > 0 and (targets[views.rules == 0] == 0).all()
    weights = class_weights(targets, 3).numpy()
    np.testing.assert_allclose(weights, len(targets) / counts / 3, rtol=1e-6)  # drawn faces count
    test = splits["test"]
    bare = [i for i, r in enumerate(test.records) if r.label == "without_mask" and r.face.landmarks]
    size = len(test.crops)
    add_drawn_faces(test, rules, seed=0)  # class 0 has real test faces: only class 2 gets drawings
    assert len(test.crops) == len(test.targets) == len(test.records) == len(test.drawn) == size + len(bare)
    assert (test.targets[size:] == 2).all() and set(test.drawn[size:]) <= set(WRONG_PLACEMENTS)
    assert [r.id for r in test.records[size:]] == [test.records[i].id for i in bare]
    assert not np.array_equal(test.crops[size], test.crops[bare[0]])  # a mask drawn on the face


def test_masked_twins_are_found_in_their_split_and_their_masks_moved(pairs, tmp_path):
    """A bare face's twin is its pasted-mask photo in the same split; a twin rule draws only on faces with one,
    moving the twin's own mask (the bare face's eyes untouched); a drawn rule draws on every bare face as before."""
    rule = CropRule(1.25, 96)
    splits = {name: load_split(pairs, pairs.faces(split=name), LABELS, rule, Callbacks(), 0, 0,
                               tmp_path / f"{name}.u8", twin_class=0) for name in ("train", "val", "test")}
    found = 0
    for split in splits.values():
        masked = {(r.dup_group, r.width, r.height) for r in split.records if r.label == "with_mask"}
        same_photo = [i for i, r in enumerate(split.records) if r.label == "without_mask" and r.face.landmarks
                      and (r.dup_group, r.width, r.height) in masked]  # (some of the 12 'pairs' are two photos)
        with_twin = np.flatnonzero(split.twins >= 0)
        assert with_twin.tolist() == same_photo
        found += len(with_twin)
        for index in with_twin:  # the twin is the masked photo of the same group, cut with the bare face's box
            twin = next(r for r in split.records if r.label == "with_mask" and
                        r.dup_group == split.records[index].dup_group)
            expected = crop_face(pairs.load_image(twin), split.records[index].face.box, rule)
            np.testing.assert_array_equal(split.twin(index), expected)
    assert found >= 6
    train_split = splits["train"]
    twin_rule = DrawRule(1, 0, WRONG_PLACEMENTS, 1.0, list(MASK_STYLES), mask_from="twin")
    views = feature_views(train_split, 2, [twin_rule], seed=0)
    masked = views.indices[views.kinds == MASKED]
    assert sorted(masked.tolist()) == sorted(np.flatnonzero(train_split.twins >= 0).tolist() * 2)
    made = view_maker(train_split, views, lambda image: {"image": image}, [twin_rule], seed=0)(
        slice(0, len(views.indices)))[views.kinds == MASKED]
    for view, index in zip(made, masked):
        crop, points = train_split.crops[index], train_split.landmarks[index]
        assert visible_share(view, crop) >= MIN_VISIBLE
        top = int(points[:2, 1].min() - 0.3 * np.hypot(*(points[1] - points[0])))
        np.testing.assert_array_equal(view[:top], crop[:top])  # above the eyes, exactly the bare face
    test = splits["test"]  # a class made of drawings only: each face once, the class's rules in turn
    drawn_rule, moving_rule = (dataclasses.replace(twin_rule, target=2, mask_from=kind) for kind in ("drawing", "twin"))
    sources = [i for i, r in enumerate(test.records) if r.label == "without_mask" and r.face.landmarks]
    twinned = [i for i in sources if test.twins[i] >= 0]
    crops = {i: test.crops[i] for i in sources}
    add_drawn_faces(test, [drawn_rule, moving_rule], seed=0)
    assert test.drawn[len(test.drawn) - len(sources):] != [""] * len(sources) and len(test.records) == len(
        test.targets) == len(test.twins) == len(test.crops)
    new = {index: test.crops[len(test.crops) - len(sources) + k] for k, index in enumerate(sources)}
    moved = [i for i in twinned if np.array_equal(new[i], draw_view(
        crops[i], test.landmarks[i], moving_rule, sources.index(i), np.random.default_rng([0, 1, i]), test.twin(i))[0])]
    assert twinned and moved == [i for k, i in enumerate(sources) if i in twinned and k % 2 == 1]
    (tmp_path / "plain").mkdir()
    plain = load_splits(pairs, tmp_path / "plain")
    assert (plain["train"].twins == -1).all() and len(plain["train"].twin_crops) == 0  # no twin rule: none looked for


def test_an_explicit_twin_rule_without_twins_fails_with_a_sentence(pairs):
    records = pairs.faces(split="train")
    strangers = [r for r in records if r.label == "without_mask"] + [
        dataclasses.replace(r, dup_group=-r.dup_group - 1) for r in records if r.label == "with_mask"]
    rule = MaskRule("without_mask", "with_mask", "wrong", mask_from="twin")
    assert drawable_rules([rule], records, explicit=True) == [rule]
    with pytest.raises(TrainingError, match="rule 1 \\(without_mask → with_mask, mask worn wrongly, the twin's real "
                                            "mask\\): no training face of 'without_mask' has a masked twin"):
        drawable_rules([rule], strangers, explicit=True)
    assert drawable_rules([rule], strangers, explicit=False) == []  # an automatic one is left out


def test_synthesis_off_reproduces_the_plain_views_and_on_only_adds(pairs, tmp_path):
    splits = load_splits(pairs, tmp_path)
    model, _ = build_model(2, random_init=True, preprocess=Preprocess(input_size=96))
    config = TrainConfig(input_size=96, views_per_image=2)
    run = lambda rules: extract_features(model.eval(), splits, config, rules, tmp_path, Callbacks())  # noqa: E731
    plain = run([])
    never = run([DrawRule(1, 0, ("right",), 0.0, list(MASK_STYLES))])
    always = run([DrawRule(1, 0, ("right",), 1.0, list(MASK_STYLES))])
    plain_count = len(splits["train"].crops) * 3
    assert len(plain["train"]) == plain_count and (plain["train_rules"] == -1).all()
    for name in ("train", "train_targets", "val", "test"):
        np.testing.assert_array_equal(never[name][:], plain[name][:])
        np.testing.assert_array_equal(always[name][:len(plain[name])], plain[name])
    extra = always["train_targets"][plain_count:]
    assert len(extra) == 2 * sum(1 for r in splits["train"].records if r.label == "without_mask" and r.face.landmarks)
    assert (extra == 0).all()


def test_features_and_head_from_files_match_those_from_memory(pairs, tmp_path, backbone_weights):
    """Crops and features kept in files and read a batch at a time give the features and the head that arrays held in
    memory (the pipeline before files) give."""
    on_disk = load_splits(pairs, tmp_path)
    in_memory = {name: dataclasses.replace(split, crops=split.crops[:]) for name, split in on_disk.items()}
    config = TrainConfig(input_size=96, views_per_image=2, epochs=20, patience=20)
    results = []
    for splits, folder in ((on_disk, tmp_path / "on_disk"), (in_memory, tmp_path / "in_memory")):
        folder.mkdir()
        seed_everything(0)
        model, _ = build_model(2, backbone_weights, preprocess=Preprocess(input_size=96))
        features = extract_features(model.eval(), splits, config, [], folder, Callbacks())
        if splits is in_memory:
            features = {name: rows[:] for name, rows in features.items()}
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        history = train_head(model, features, splits, config, loss_fn, Callbacks())
        results.append(({name: rows[:] for name, rows in features.items()}, history, model.head.state_dict()))
    (disk_features, disk_history, disk_head), (memory_features, memory_history, memory_head) = results
    assert isinstance(on_disk["train"].crops, DiskArray) and len(disk_features["train"]) == 3 * len(in_memory["train"].crops)
    for name in ("train", "val", "test", "train_targets"):
        np.testing.assert_array_equal(disk_features[name], memory_features[name])
    figures = lambda history: [[epoch[key] for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")]
                               for epoch in history]
    assert len(disk_history) == 20
    np.testing.assert_allclose(figures(disk_history), figures(memory_history), rtol=1e-6)
    for name, weights in disk_head.items():
        torch.testing.assert_close(weights, memory_head[name], rtol=1e-6, atol=1e-7)


def test_an_old_data_home_without_landmarks_trains_with_synthetic_masks(tmp_path, shared_data, backbone_weights,
                                                                         detector):
    root = tmp_path / "old"
    for name in photo_pairs(shared_data)[12:24]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (root / "data" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(shared_data / label / file, root / "data" / label / file)
    make_store(root).import_folder(root / "data", detector)
    make_old_home(root / "home" / "maskdet.db")
    store = make_store(root)  # migrates: every stored face lacks landmarks until needed
    assert len(store.without_landmarks()) == 24 and all(r.face.landmarks is None for r in store.faces())
    config = TrainConfig(backbone_weights=str(backbone_weights), views_per_image=1, quantize=False,
                         synthetic_masks=[MaskRule("without_mask", "with_mask", probability=1.0)])
    stages = []
    result = execute_run(store, config, store.settings.models_dir, on_progress=lambda p: stages.append(p.stage))
    train_bare = [r for r in store.faces(split="train") if r.label == "without_mask"]
    assert "landmarks" in stages and all(r.face.landmarks for r in train_bare)
    assert result["synthetic_masks"]["rules"][0]["views"] == len(train_bare)
    assert result["test"]["accuracy"] >= 0.75
    assert "Synthetic masks: " in (store.settings.models_dir / result["run_id"] / "MODEL_CARD.md").read_text()
