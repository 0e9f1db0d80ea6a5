"""Real faces: train on masks-small, score on photos of real people in real masks; prints one JSON line.

    python benchmarks/real_masks.py [--data DIR] [--real DIR] [--weights FILE] [--detection]

Imports masks-small (--data) into a fresh data home and trains two models on it, side by side in one run: the
defaults, and the defaults without the augmentations added for real faces (synthetic masks and the real-photo
degradations). Each is scored on --real (masks-real-dev: a measuring set, never imported or trained on) the way
`maskdet evaluate` scores a folder: accuracy, macro F1, recall per class, ROC AUC, the face-found rate, and the
accuracy on photos with a face found and on those classified whole. --detection adds the face-found rates of
both sets with and without the padded retry, and the masks-small photos where only the retry found a face.
"""

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from home import add_shared_arguments, default_path, fresh_home

NEW_AUGMENTATIONS = ("downscale", "jpeg", "motion_blur")


def scores(report: dict, seconds: float) -> dict:
    """The figures of one model on the real photos."""
    recall = {row["label"]: round(row["recall"], 4) for row in report["per_class"]}
    rounded = lambda value: None if value is None else round(value, 4)
    return {"accuracy": rounded(report["accuracy"]), "macro_f1": rounded(report["macro_f1"]), "recall": recall,
            "roc_auc": rounded(report["roc_auc"]), "face_found_rate": rounded(report["face_found_rate"]),
            "accuracy_face_found": rounded(report["accuracy_face_found"]),
            "accuracy_no_face": rounded(report["accuracy_no_face"]), "photos": report["num_samples"],
            "training_seconds": round(seconds, 1)}


def detection_figures(data: Path, real: Path) -> dict:
    """Faces found with and without the padded retry: on both sets by the import detector, on the live benchmark's
    clip by the Live page's."""
    from maskdet.core.imageio import decode_image
    from maskdet.data.sources import folder_candidates
    from maskdet.serving.live import LiveSettings
    from maskdet.vision.clip import clip_photos, make_clip
    from maskdet.vision.faces import FaceDetector

    live = LiveSettings()

    def detector(name: str, pad: float) -> FaceDetector:
        if name == "live_clip":  # as the Live page builds it
            return FaceDetector.for_photos(replace(live.detector, pad_fraction=pad))
        return FaceDetector(pad_fraction=pad)

    sets = {name: {c.name: decode_image(c.read(), 40_000_000) for c in folder_candidates(folder)[0]}
            for name, folder in (("masks_small", data), ("real", real))}
    sets["live_clip"] = {f"frame {i}": frame for i, frame in enumerate(make_clip(clip_photos(data), 300))}
    figures = {}
    for name, images in sets.items():
        found = {}
        for pad in (0.0, 0.25):
            faces = detector(name, pad)
            found[pad] = {key: len(faces.detect([image])[0]) for key, image in images.items()}
        figures[name] = {"images": len(images),
                         "face_found_rate_without_retry": round(sum(map(bool, found[0.0].values())) / len(images), 4),
                         "face_found_rate": round(sum(map(bool, found[0.25].values())) / len(images), 4),
                         "faces_without_retry": sum(found[0.0].values()), "faces": sum(found[0.25].values()),
                         "found_only_by_retry": sorted(k for k in images if found[0.25][k] and not found[0.0][k])}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_arguments(parser)
    parser.add_argument("--real", default=default_path("MASKDET_REAL_DEV_DATA", "../shared/datasets/masks-real-dev"))
    parser.add_argument("--detection", action="store_true", help="also report face-found rates with/without retry")
    args = parser.parse_args()

    workdir = fresh_home("maskdet-real-")
    from maskdet.console import tqdm_progress
    from maskdet.core.settings import load_settings
    from maskdet.data.store import Store
    from maskdet.runs.execute import execute_run
    from maskdet.serving.classifier import load_classifier
    from maskdet.serving.predict import evaluate_folder
    from maskdet.training.config import TrainConfig
    from maskdet.vision.faces import FaceDetector

    settings = load_settings()
    store = Store(settings)
    store.import_folder(Path(args.data), FaceDetector(), tqdm_progress("import masks-small"))
    defaults = TrainConfig(backbone_weights=args.weights).to_dict()
    without_new = {**defaults, "synthetic_masks": {**defaults["synthetic_masks"], "enabled": False},
                   "augment": {**defaults["augment"],
                               **{name: {**defaults["augment"][name], "enabled": False} for name in NEW_AUGMENTATIONS}}}
    figures = {}
    for name, config in (("defaults", defaults), ("without_new_augmentations", without_new)):
        started = time.monotonic()
        result = execute_run(store, TrainConfig.from_dict(config), settings.models_dir)
        seconds = time.monotonic() - started
        classifier = load_classifier(settings.models_dir / result["run_id"] / "model.onnx")
        report = evaluate_folder(Path(args.real), FaceDetector(), classifier, settings.max_pixels,
                                 tqdm_progress(f"evaluate {name}"))
        figures[name] = {**scores(report, seconds), "masks_small_test_accuracy": round(result["test"]["accuracy"], 4),
                         "synthetic_views": (result["synthetic_masks"] or {}).get("views", 0)}
    if args.detection:
        figures["detection"] = detection_figures(Path(args.data), Path(args.real))
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
