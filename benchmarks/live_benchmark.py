"""Live pipeline speed on a generated clip: fps and p50/p95 milliseconds per stage, one JSON line.

    python benchmarks/live_benchmark.py [--model RUN_ID|file.onnx] [--frames 100] [--detect-every 3]

The clip is built reproducibly from masks-small photos (MASKDET_TEST_DATA or ../shared/...): 640x480
frames with one to four faces that move and change size. Without --model, a maskdet model with random
weights at the default input size stands in (same speed as a trained one). Box accuracy of detecting every
n-th frame is compared with detecting on every frame (mean IoU of matched boxes, faces found).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskdet import export  # noqa: E402
from maskdet.faces import CropRule  # noqa: E402
from maskdet.live import LivePipeline, LiveSettings  # noqa: E402
from maskdet.model import MaskNet, Preprocess  # noqa: E402


def make_clip(photos: list[Path], frames: int, seed: int = 0) -> list[np.ndarray]:
    """640x480 frames: 1-4 faces (the count changes every second) drifting across and growing/shrinking."""
    rng = np.random.default_rng(seed)
    faces = [Image.open(p).convert("RGB") for p in photos]
    clip = []
    for index in range(frames):
        count = 1 + (index // 25) % 4
        frame = Image.new("RGB", (640, 480), (70, 90, 80))
        for k in range(count):
            t = index / 25
            size = int(150 + 50 * np.sin(t * 1.3 + k))
            x = int((k * 160 + 40 * np.sin(t + k * 2)) % (640 - size))
            y = int(140 + 60 * np.cos(t * 0.8 + k))
            face = faces[(k + index // 25) % len(faces)].resize((size, int(size * 1.2)))
            frame.paste(face, (x, min(y, 480 - face.height)))
        pixels = np.asarray(frame).astype(np.int16) + rng.integers(-4, 5, (480, 640, 3))
        clip.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return clip


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def run(pipeline: LivePipeline, clip: list[np.ndarray]):
    pipeline.process(clip[0])  # warm-up
    pipeline.counters.frames = 0
    return [pipeline.process(frame)[1] for frame in clip]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--detect-every", type=int, default=LiveSettings().detect_every)
    parser.add_argument("--data", default=os.environ.get("MASKDET_TEST_DATA")
                        or str((ROOT / "../shared/datasets/masks-small").resolve()))
    args = parser.parse_args()
    photos = sorted((Path(args.data) / "without_mask").glob("*.jpg"))[:3] + \
        sorted((Path(args.data) / "with_mask").glob("*-with-mask.jpg"))[:3]
    clip = make_clip(photos, args.frames)
    if args.model:
        from maskdet.cli import resolve_model
        from maskdet.store import Store

        classifier = export.load_classifier(resolve_model(Store(), args.model))
    else:
        preprocess = Preprocess()
        path = Path(tempfile.mkdtemp()) / "model.onnx"
        model = MaskNet(2, preprocess).eval()
        classifier = export.load_classifier(export.export_classifier(model, path, ["with_mask", "without_mask"],
                                                                     preprocess, CropRule(size=preprocess.input_size)))
    settings = LiveSettings(detect_every=args.detect_every)
    results = run(LivePipeline(classifier, settings), clip)
    reference = run(LivePipeline(classifier, LiveSettings(detect_every=1)), clip)
    stages = {stage: [r.timings_ms[stage] for r in results] for stage in ("detect", "classify", "annotate", "total")}
    per_face = [r.timings_ms["classify"] / len(r.predictions) for r in results if r.predictions]
    ious = [max((iou(p.box, q.box) for q in ref.predictions), default=0.0)
            for r, ref in zip(results, reference) for p in r.predictions]
    print(json.dumps({
        "frames": len(clip), "detect_every": args.detect_every,
        "fps": round(1000 / np.mean(stages["total"]), 1),
        "ms": {stage: {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
               for stage, v in stages.items()},
        "classify_ms_per_face_p50": round(float(np.median(per_face)), 2) if per_face else None,
        "faces_per_frame": round(float(np.mean([len(r.predictions) for r in results])), 2),
        "faces_per_frame_full_rate_detection": round(float(np.mean([len(r.predictions) for r in reference])), 2),
        "mean_iou_with_full_rate_detection": round(float(np.mean(ious)), 3) if ious else None,
        "full_rate_detection_fps": round(1000 / np.mean([r.timings_ms["total"] for r in reference]), 1),
    }))


if __name__ == "__main__":
    main()
