"""Live pipeline speed on a generated clip: fps and p50/p95 milliseconds per stage, one JSON line.

    python benchmarks/live_benchmark.py [--model RUN_ID|file.onnx] [--int8] [--frames 100] [--detect-every 3]

The clip is built reproducibly from masks-small photos (MASKDET_TEST_DATA or ../shared/...): 640x480
frames with one to four faces that move and change size. Without --model, a maskdet model with random
weights at the default input size stands in (same speed as a trained one; --int8 quantises it, calibrated on
the clip's faces). Box accuracy of detecting every
n-th frame is compared with detecting on every frame (mean IoU of matched boxes, faces found).
"""

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskdet.core.contract import Preprocess  # noqa: E402
from maskdet.serving.classifier import OnnxClassifier, load_classifier
from maskdet.serving.live import LivePipeline, LiveSettings  # noqa: E402
from maskdet.training import export  # noqa: E402
from maskdet.training.model import MaskNet
from maskdet.vision.clip import clip_photos, make_clip  # noqa: E402
from maskdet.vision.faces import CropRule, box_iou, crop_face  # noqa: E402


def run(pipeline: LivePipeline, clip: list[np.ndarray]):
    pipeline.process(clip[0])  # warm-up
    pipeline.counters.frames = 0
    return [pipeline.process(frame)[1] for frame in clip]


def load_or_make_classifier(model: str | None, int8: bool, clip: list[np.ndarray]) -> OnnxClassifier:
    """A run's model (RUN_ID, or an .onnx file), its int8 file with `int8`; without `model`, a maskdet model with
    random weights at the default input size (same speed as a trained one), quantised on the clip's faces with
    `int8`. Shared by the live benchmarks."""
    if model and model.endswith(".onnx"):
        return load_classifier(Path(model))
    if model:
        from maskdet.cli import resolve_model
        from maskdet.data.store import Store

        return load_classifier(resolve_model(Store(), model, int8))
    preprocess = Preprocess()
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    rule = CropRule(size=preprocess.input_size)
    path = export.export_classifier(MaskNet(2, preprocess).eval(), path, ["with_mask", "without_mask"], preprocess,
                                    rule)
    if int8:
        detector = LivePipeline(load_classifier(path)).detector
        faces = [(frame, face) for frame in clip[::10] for face in detector.detect([frame])[0]]
        calibration = np.stack([crop_face(frame, face.box, rule) for frame, face in faces])
        path = export.quantize(path, path.with_name("model.int8.onnx"), calibration)
    return load_classifier(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--int8", action="store_true",
                        help="the run's model.int8.onnx (the Live page starts with it where the run timed it faster)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--detect-every", type=int, default=LiveSettings().detect_every)
    parser.add_argument("--detector", type=json.loads, default={},
                        help="JSON of DetectorSettings overrides, e.g. '{\"search_side\": 320}' (default: the model's)")
    parser.add_argument("--data", default=os.environ.get("MASKDET_TEST_DATA")
                        or str((ROOT / "../shared/datasets/masks-small").resolve()))
    args = parser.parse_args()
    clip = make_clip(clip_photos(Path(args.data)), args.frames)
    classifier = load_or_make_classifier(args.model, args.int8, clip)
    own = LiveSettings.of_model(classifier)
    settings = replace(own, detector=replace(own.detector, **args.detector), detect_every=args.detect_every)
    results = run(LivePipeline(classifier, settings), clip)
    reference = run(LivePipeline(classifier, replace(settings, detect_every=1)), clip)
    stages = {stage: [r.timings_ms[stage] for r in results] for stage in ("detect", "classify", "annotate", "total")}
    per_face = [r.timings_ms["classify"] / len(r.predictions) for r in results if r.predictions]
    ious = [max((box_iou(p.box, q.box) for q in ref.predictions), default=0.0)
            for r, ref in zip(results, reference) for p in r.predictions]
    print(json.dumps({
        "frames": len(clip), "detect_every": args.detect_every, "model": classifier.path.name,
        "detector": settings.detector.to_dict(),
        "fps": round(1000 / np.mean(stages["total"]), 1),
        "ms": {stage: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
               for stage, v in stages.items()},
        "fps_by_faces_in_frame": {n: round(1000 / np.mean([r.timings_ms["total"] for r in results
                                                           if len(r.predictions) == n]), 1)
                                  for n in sorted({len(r.predictions) for r in results})},
        "classify_ms_per_face_p50": round(float(np.median(per_face)), 2) if per_face else None,
        "faces_per_frame": round(float(np.mean([len(r.predictions) for r in results])), 2),
        "faces_per_frame_full_rate_detection": round(float(np.mean([len(r.predictions) for r in reference])), 2),
        "mean_iou_with_full_rate_detection": round(float(np.mean(ious)), 3) if ious else None,
        "full_rate_detection_fps": round(1000 / np.mean([r.timings_ms["total"] for r in reference]), 1),
    }))


if __name__ == "__main__":
    main()
