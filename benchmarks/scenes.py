"""Real scenes: train with the defaults on masks-small, score every boxed face of masks-scenes-dev; prints one JSON
line.

    python benchmarks/scenes.py [--data DIR] [--scenes DIR] [--weights FILE] [--tiny N]

Imports masks-small (--data) into a fresh data home, trains with the defaults, and scores --scenes (masks-scenes-dev:
a measuring set, never imported or trained on) the way `maskdet evaluate` scores a set with face boxes: faces found
and precision overall and by face size, found faces classified right (with the confusion matrix), end to end, and
AP@0.5 per class with mAP, at IoU 0.4 and 0.5, a mask worn wrongly counted as without_mask. Side by side in one run:
the product with the shipped "masked" networks (ONet fine-tuned on masked faces) and with facenet-pytorch's original
ones, each importing masks-small, training and scoring with its own, and the live pipeline's fps with each run's int8
model on live_benchmark.py's clip (300 frames of one to four faces). Then, with facenet's networks, a three-class
model: masks-small plus an empty mask_incorrect class, trained with the automatic synthetic-mask rules (masks drawn
worn right into with_mask, worn wrongly into mask_incorrect, and the masked twins' real masks moved into
mask_incorrect), scored on the set's three classes, with per-class recall, precision and AP@0.5 on the found faces and
the 3x3 confusion matrix beside the two-class model's on the same faces, and beside a three-class model trained with
the two drawn rules only. --three-classes-only skips the masked networks and the live fps; --tiny N scores the first
N photos only (the suite's smoke test).
"""

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from home import add_shared_arguments, default_path, fresh_home


def figures(scores: dict) -> dict:
    """The headline figures of one IoU threshold."""
    keep = ("faces", "found", "predictions", "recall", "precision", "found_right", "end_to_end", "ap", "map",
            "by_size", "by_class", "confusion")
    return {key: scores[key] for key in keep}


def class_figures(scores: dict, classes: list[str]) -> dict:
    """Per class (the model's), classification on the found faces (recall, precision from the confusion matrix) and
    AP; accuracy on the found faces."""
    confusion = scores["confusion"]
    rows = {}
    for k, label in enumerate(classes):
        truth, said = sum(confusion[k]), sum(row[k] for row in confusion)
        rows[label] = {"found": truth, "recall": round(confusion[k][k] / truth, 4) if truth else None,
                       "precision": round(confusion[k][k] / said, 4) if said else None,
                       "ap": scores["ap"].get(label)}
    found = sum(map(sum, confusion))
    right = sum(confusion[k][k] for k in range(len(classes)))
    return {"classes": classes, "per_class": rows, "accuracy": round(right / found, 4) if found else None,
            "confusion": confusion}


def live_fps(model: Path, clip: list) -> dict:
    """The live pipeline (the Live page's, with the model's own detector settings) on the benchmark clip: fps over
    all frames, and over the frames where it classified four faces."""
    from live_benchmark import run
    from maskdet.serving.classifier import load_classifier
    from maskdet.serving.live import LivePipeline, LiveSettings

    classifier = load_classifier(model)
    results = run(LivePipeline(classifier, LiveSettings.of_model(classifier)), clip)
    four = [r.timings_ms["total"] for r in results if len(r.predictions) == 4]
    return {"model": model.name, "frames": len(results),
            "fps": round(1000 / np.mean([r.timings_ms["total"] for r in results]), 1),
            "fps_four_faces": round(1000 / np.mean(four), 1) if four else None}


def three_class_model(store, annotated, weights: str, rules: list | None, what: str) -> dict:
    """A model trained on the store's three classes with these synthetic-mask rules (None: the automatic ones), scored
    on the set's three classes: the rules' views, per-class figures on the found faces, mAP."""
    from maskdet.console import tqdm_progress
    from maskdet.runs.execute import execute_run
    from maskdet.serving.box_evaluation import evaluate_boxes
    from maskdet.serving.classifier import load_classifier
    from maskdet.training.config import TrainConfig

    started = time.monotonic()
    result = execute_run(store, TrainConfig(backbone_weights=weights, synthetic_masks=rules),
                         store.settings.models_dir)
    seconds = time.monotonic() - started
    classifier = load_classifier(store.settings.models_dir / result["run_id"] / "model.onnx")
    three = evaluate_boxes(annotated, classifier, store.settings.max_pixels, None,
                           tqdm_progress(f"evaluate scenes (three classes, {what})"))
    return {"training_seconds": round(seconds, 1),
            "rules": [{key: rule[key] for key in ("source", "target", "worn", "mask_from", "views")}
                      for rule in result["synthetic_masks"]["rules"]],
            "masks_small_test_accuracy": round(result["test"]["accuracy"], 4), "counts_as": three["counts_as"],
            "iou_0.4": {**class_figures(three["iou_0.4"], classifier.labels), "found_faces": three["iou_0.4"]["found"],
                        "map": three["iou_0.4"]["map"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_arguments(parser)
    parser.add_argument("--scenes", default=default_path("MASKDET_SCENES_DEV_DATA",
                                                         "../shared/datasets/masks-scenes-dev"))
    parser.add_argument("--tiny", type=int, help="score only the first N photos (a smoke test)")
    parser.add_argument("--three-classes-only", action="store_true",
                        help="skip the masked networks and the live fps: facenet's two-class model and the three-class "
                             "ones only")
    args = parser.parse_args()

    workdir = fresh_home("maskdet-scenes-")
    from maskdet.console import tqdm_progress
    from maskdet.core.settings import load_settings
    from maskdet.data.annotations import read_annotated_folder
    from maskdet.data.store import Store
    from maskdet.runs.execute import execute_run
    from maskdet.serving.box_evaluation import evaluate_boxes
    from maskdet.serving.classifier import load_classifier
    from maskdet.training.config import TrainConfig
    from maskdet.vision.clip import clip_photos, make_clip
    from maskdet.vision.faces import FaceDetector
    from maskdet.vision.mask_rules import MaskRule

    annotated = read_annotated_folder(Path(args.scenes))
    if args.tiny:
        annotated.photos = annotated.photos[:args.tiny]
    clip = make_clip(clip_photos(Path(args.data)), 20 if args.tiny else 300)
    scored, stores = {}, {}
    network_sets = ("facenet",) if args.three_classes_only else ("masked", "facenet")
    for network_set in network_sets:  # the product with each: importing, training and scoring
        os.environ["MASKDET_HOME"] = str(workdir / network_set / "home")
        os.environ["MASKDET_MODELS"] = str(workdir / network_set / "models")
        settings = load_settings()
        store = stores[network_set] = Store(settings)
        store.import_folder(Path(args.data), FaceDetector(network_set=network_set),
                            tqdm_progress(f"import masks-small ({network_set})"))
        started = time.monotonic()
        result = execute_run(store, TrainConfig(backbone_weights=args.weights), settings.models_dir)
        seconds = time.monotonic() - started
        classifier = load_classifier(settings.models_dir / result["run_id"] / "model.onnx")
        started = time.monotonic()
        report = evaluate_boxes(annotated, classifier, settings.max_pixels, None,
                                tqdm_progress(f"evaluate scenes ({network_set})"),
                                FaceDetector.for_photos(replace(classifier.detector, networks=network_set)))
        scored[network_set] = {"training_seconds": round(seconds, 1),
                               "scoring_seconds": round(time.monotonic() - started, 1),
                               "masks_small_test_accuracy": round(result["test"]["accuracy"], 4),
                               "iou_0.4": figures(report["iou_0.4"]), "iou_0.5": figures(report["iou_0.5"])}
        int8 = settings.models_dir / result["run_id"] / "model.int8.onnx"
        if not args.three_classes_only:
            scored[network_set]["live"] = live_fps(int8 if int8.exists() else int8.with_name("model.onnx"), clip)
        if network_set == "facenet":
            two_class = class_figures(report["iou_0.4"], classifier.labels)
    store = stores["facenet"]  # its home is still the environment's
    store.add_label("mask_incorrect")
    three_class = {**three_class_model(store, annotated, args.weights, None, "automatic rules"),
                   "two_class_on_the_same_faces": two_class}
    drawn_rules = [MaskRule("without_mask", "with_mask"), MaskRule("without_mask", "mask_incorrect", "wrong")]
    three_class["drawn_rules_only"] = three_class_model(store, annotated, args.weights, drawn_rules, "drawn rules")
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"photos": report["photos_scored"], "faces": report["faces"], "counts_as": report["counts_as"],
                      "detector": report["detector"], "networks": scored, "three_classes": three_class}))


if __name__ == "__main__":
    main()
