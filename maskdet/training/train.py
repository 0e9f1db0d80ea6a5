"""Training one model, the stages of maskdet.training.progress.STAGES in turn: face crops, frozen-backbone features, a
head trained on them, optional fine-tuning, evaluation on the test split and ONNX export."""

import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskdet.bundle.mtcnn_cascade import DetectorSettings
from maskdet.core.contract import Preprocess
from maskdet.core.errors import TrainingError
from maskdet.core.metrics import classification_report
from maskdet.data.store import Store
from maskdet.training import export
from maskdet.training.artefacts import (face_names, model_card, synthesis_summary, write_drawn_mistakes, write_json,
                                        write_predictions)
from maskdet.training.config import TrainConfig
from maskdet.training.device import resolve_device
from maskdet.training.loops import (class_weights, extract_features, finetune, predict_probabilities, seed_everything,
                                    train_head)
from maskdet.training.model import FEATURE_DIM, build_model, calibrate_batchnorm
from maskdet.training.progress import Callbacks, Progress
from maskdet.training.views import (DrawRule, add_drawn_faces, load_split, resolve_rules, twin_candidates,
                                    twin_class_name)
from maskdet.vision.faces import CropRule, FaceDetector
from maskdet.vision.mask_rules import MaskRule, automatic_rules


def choose_rules(store: Store, config: TrainConfig) -> tuple[list[str], list[MaskRule]]:
    """The labels to train on and the synthetic-mask rules among them. Each label needs at least 2 faces, or a rule
    that draws its faces; a rule's classes must exist (automatic rules only apply where they do)."""
    counts = store.label_counts()
    rules = config.synthetic_masks
    if rules is None:  # drawn on faces the run trains on, into a class it trains on or an empty one
        rules = [rule for rule in automatic_rules(list(counts)) if counts[rule.source] and (
            config.labels is None or {rule.source, rule.target} <= set(config.labels))]
    for number, rule in enumerate(rules, start=1):
        missing = [name for name in (rule.source, rule.target) if name not in counts]
        if missing:
            raise TrainingError(f"Synthetic-mask rule {number} ({rule.text()}) names the class {missing[0]!r}, which "
                                f"the dataset does not have. Classes: {', '.join(counts) or 'none'}.")
    drawn = {rule.target for rule in rules}
    labels = config.labels or [name for name, count in counts.items() if count > 0 or name in drawn]
    missing = [name for name in labels if name not in counts]
    if missing:
        raise TrainingError(f"Unknown label(s): {', '.join(missing)}.")
    outside = [f"rule {number} ({rule.text()})" for number, rule in enumerate(rules, start=1)
               if not {rule.source, rule.target} <= set(labels)]
    if outside:
        raise TrainingError(f"Synthetic-mask {', '.join(outside)} names a class this run does not train "
                            f"({', '.join(labels)}): train its classes too, or remove the rule.")
    if len(labels) < 2:
        raise TrainingError("Training needs at least two classes with images. Import images for another class.")
    too_few = [f"{name} ({counts[name]})" for name in labels if counts[name] < 2 and name not in drawn]
    if too_few:
        raise TrainingError(f"Each class needs at least 2 images; too few in: {', '.join(too_few)}.")
    return labels, rules


def drawable_rules(rules: list[MaskRule], train_records: list, explicit: bool) -> list[MaskRule]:
    """The rules whose source class has a training face with landmarks to draw on (and a masked twin, for a rule
    moving twins' masks). Without one, a rule the config names, or one that makes a class of drawings only, is
    refused in a sentence; an automatic one is left out (and an automatic twin rule whenever no face has a twin)."""
    twins = twin_candidates(train_records, twin_class_name(list(dict.fromkeys(r.label for r in train_records))))
    kept = []
    for number, rule in enumerate(rules, start=1):
        faces = [r for r in train_records if r.label == rule.source and r.face and r.face.landmarks]
        if rule.mask_from == "twin" and not any(r.id in twins for r in faces):
            if explicit:
                raise TrainingError(f"Synthetic-mask rule {number} ({rule.text()}): no training face of "
                                    f"{rule.source!r} has a masked twin (the same photo with a mask on, in the "
                                    "with_mask class). Use masks drawn from the landmarks, or remove the rule.")
        elif faces:
            kept.append(rule)
        elif explicit or not any(r.label == rule.target for r in train_records):
            raise TrainingError(f"Synthetic-mask rule {number} ({rule.text()}): no training photo of "
                                f"{rule.source!r} has a face with landmarks to draw a mask on (photos where no face "
                                "was found are skipped). Import photos with visible faces, or remove the rule.")
    return kept


def train(store: Store, config: TrainConfig, run_dir: Path, callbacks: Callbacks | None = None) -> dict:
    """Train, evaluate and export one model into run_dir (written to a temporary folder, renamed at the end)."""
    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    timings, started = {}, time.monotonic()
    labels, mask_rules = choose_rules(store, config)
    store.assign_splits(config.split, config.seed)
    rule = CropRule(config.crop_margin, config.input_size)
    for source in dict.fromkeys(mask_rule.source for mask_rule in mask_rules):
        fill_source_landmarks(store, source, callbacks)
    records = {name: [r for r in store.faces(split=name) if r.label in labels] for name in ("train", "val", "test")}
    if not records["train"]:
        raise TrainingError("The training split is empty; add more images.")
    mask_rules = drawable_rules(mask_rules, records["train"], explicit=config.synthetic_masks is not None)
    rules = resolve_rules(mask_rules, labels)
    twin_label = twin_class_name(labels)
    twin_class = labels.index(twin_label) if twin_label and any(r.mask_from == "twin" for r in rules) else None
    run_dir = Path(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        check_scratch_space(staging, faces_to_crop(records, mask_rules), config, rules)
        scratch = staging / "scratch"  # crops, features, ONNX graphs: inside staging, a killed run leaves one folder
        scratch.mkdir()
        total = sum(len(r) for r in records.values())
        splits, done = {}, 0
        for name, split_records in records.items():
            splits[name] = load_split(store, split_records, labels, rule, callbacks, total, done,
                                      scratch / f"crops-{name}.u8", twin_class)
            if name != "train":
                add_drawn_faces(splits[name], rules, config.seed)
            done += len(split_records)
        timings["crops"] = time.monotonic() - started
        model, backbone = build_model(len(labels), Path(config.backbone_weights) if config.backbone_weights else None,
                                      config.random_init, Preprocess(input_size=config.input_size))
        if config.random_init:
            calibrate_batchnorm(model, splits["train"].crops)
        model.eval()
        mark = time.monotonic()
        features = extract_features(model, splits, config, rules, scratch, callbacks)
        timings["features"] = time.monotonic() - mark
        weights = class_weights(features["train_targets"], len(labels)) if config.class_weights else None
        loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        timings["features_images_per_second"] = len(features["train_targets"]) + len(features["val"]) + len(
            features["test"])
        timings["features_images_per_second"] /= max(timings["features"], 1e-6)
        mark = time.monotonic()
        history = train_head(model, features, splits, config, loss_fn, callbacks)
        timings["head"] = time.monotonic() - mark
        if config.finetune_blocks > 0:
            mark = time.monotonic()
            history += finetune(model, splits, config, rules, loss_fn, scratch, callbacks)
            timings["finetune"] = time.monotonic() - mark
        model.cpu().eval()  # evaluation and export run on the CPU, wherever training ran
        callbacks.report(Progress("evaluate", 0, 1))
        test = splits["test"]
        probabilities = predict_probabilities(model, test.crops)
        report = classification_report(test.targets, probabilities, labels, face_names(test)) if len(
            test.targets) else None
        write_drawn_mistakes(staging / "drawn", test, report)
        mark = time.monotonic()
        preprocess = Preprocess(input_size=config.input_size)
        calibration = splits["train"].crops[np.random.default_rng(config.seed).permutation(len(records["train"]))[:128]]
        artefacts = export.export_run(model, staging, labels, preprocess, rule, test.crops, probabilities,
                                      test.targets, calibration, config.quantize,
                                      lambda done, total, task: callbacks.report(Progress("export", done, total, task=task)),
                                      DetectorSettings(networks=config.detector_networks))
        timings["export"] = time.monotonic() - mark
        shutil.rmtree(scratch)
        timings["total"] = time.monotonic() - started
        metrics = {
            "labels": labels, "backbone": backbone, "random_init": config.random_init,
            "split_counts": {name: {label: int((s.targets == i).sum()) for i, label in enumerate(labels)}
                             for name, s in splits.items()},
            "test": report, **artefacts, "timings": timings,
            "epochs_trained": {stage: sum(1 for h in history if h["stage"] == stage) for stage in ("head", "finetune")},
            "synthetic_masks": synthesis_summary(mask_rules, splits, features["train_rules"], labels),
            "device": device.torch.type, "onnx_providers": list(device.providers),
        }
        torch.save(model.state_dict(), staging / "model.pt")
        write_json(staging / "config.json", {"train": config.to_dict(), "labels": labels, "preprocess":
                                             preprocess.to_dict(), "crop_rule": asdict(rule), "backbone": backbone})
        write_json(staging / "history.json", history)
        write_json(staging / "metrics.json", metrics)
        write_predictions(staging / "predictions.csv", test, probabilities, labels)
        (staging / "MODEL_CARD.md").write_text(model_card(labels, config, metrics, backbone))
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(staging, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


def scratch_bytes(photos: dict[str, int], config: TrainConfig, rules: list[DrawRule]) -> int:
    """Disk a run's crops and features take while it trains, at most: a crop a face, a feature row a view."""
    drawn = config.views_per_image * sum(rule.probability for rule in rules)
    views = photos["train"] * (1 + config.views_per_image + drawn) + photos["val"] + photos["test"]
    crops = 2 if any(rule.mask_from == "twin" for rule in rules) else 1  # a masked twin's crop at most per face
    return crops * sum(photos.values()) * config.input_size ** 2 * 3 + math.ceil(views) * FEATURE_DIM * 4


def faces_to_crop(records: dict[str, list], rules: list[MaskRule]) -> dict[str, int]:
    """Per split, its faces and the drawn faces validation and test get (see views.add_drawn_faces)."""
    sizes = {}
    for name, split in records.items():
        drawn = {(rule.target, rule.source) for rule in rules if name != "train" and
                 all(r.label != rule.target for r in split)}  # each face once per class it is drawn into
        sources = [source for _, source in drawn]
        sizes[name] = len(split) + sum(sources.count(r.label) for r in split if r.face and r.face.landmarks)
    return sizes


def check_scratch_space(folder: Path, photos: dict[str, int], config: TrainConfig, rules: list[DrawRule]) -> None:
    """Refuse, before anything is written, a run whose crops and features would not fit on the disk of `folder`."""
    needed, free = scratch_bytes(photos, config, rules), shutil.disk_usage(folder).free
    if needed > free:
        raise TrainingError(f"Training {sum(photos.values()):,} photos needs about {disk_text(needed)} of free disk "
                            f"for its crops and features while it runs, in {folder.parent}; {disk_text(free)} are "
                            "free. Free some space, or set MASKDET_MODELS to a folder on a larger disk.")


def disk_text(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def fill_source_landmarks(store: Store, label: str, callbacks: Callbacks) -> None:
    """Landmarks for a source class's photos of a data home imported before maskdet stored them (once)."""
    ids = store.face_ids(label=label)
    if store.without_landmarks(ids):
        store.fill_landmarks(FaceDetector(), ids, lambda done, total: callbacks.report(Progress("landmarks", done, total)))
