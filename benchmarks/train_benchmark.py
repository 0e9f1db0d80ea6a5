"""Import masks-small into a fresh data home, train with the default config, print one JSON line of figures.

    python benchmarks/train_benchmark.py [--data DIR] [--weights FILE] [--compare-full-size] [--config JSON]

--data and --weights default to MASKDET_TEST_DATA / MASKDET_BACKBONE_WEIGHTS, then ../shared/...
--compare-full-size also runs plain MTCNN on every imported photo at full size (slow) and reports how
many faces it finds, to check that detection on downscaled copies loses none.
The data home and models go to a temporary folder (kept with --keep, printed in the JSON).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from home import add_shared_arguments, fresh_home


def full_size_faces(store) -> int:
    """Faces found by MTCNN on the full-size photos, with facenet-pytorch's default settings."""
    from facenet_pytorch import MTCNN
    from tqdm import tqdm

    mtcnn = MTCNN(keep_all=True, min_face_size=20, post_process=False, device="cpu")
    found = 0
    for record in tqdm(store.faces(), desc="full-size MTCNN", file=sys.stderr):
        boxes, _ = mtcnn.detect(store.load_image(record))
        found += boxes is not None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_arguments(parser)
    parser.add_argument("--config", help="JSON object of TrainConfig overrides")
    parser.add_argument("--compare-full-size", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data home and models")
    args = parser.parse_args()

    workdir = fresh_home("maskdet-bench-")
    from maskdet.console import tqdm_progress
    from maskdet.core.settings import load_settings
    from maskdet.data.store import Store
    from maskdet.runs.execute import execute_run
    from maskdet.training.config import TrainConfig
    from maskdet.vision.faces import FaceDetector

    settings = load_settings()
    store = Store(settings)
    started = time.monotonic()
    report = store.import_folder(Path(args.data), FaceDetector(), tqdm_progress("import"))
    import_seconds = time.monotonic() - started
    offered = report.summary()["added"] + report.summary()["duplicates"] + report.summary()["rejected"]
    figures = {
        "import_seconds": round(import_seconds, 1),
        "import_images_per_second": round(offered / import_seconds, 1),
        "images_added": len(report.added), "exact_duplicates": len(report.duplicates),
        "faces_found": len(report.added) - len(report.no_face),
        "near_duplicate_groups": len({r.dup_group for r in store.faces()}),
    }
    if args.compare_full_size:
        figures["faces_found_full_size"] = full_size_faces(store)

    config = TrainConfig.from_dict({**json.loads(args.config or "{}"), "backbone_weights": args.weights})
    result = execute_run(store, config, settings.models_dir)
    timings, test = result["timings"], result["test"]
    figures.update({
        "run_id": result["run_id"],
        "seconds": {stage: round(timings[stage], 1)
                    for stage in ("crops", "features", "head", "finetune", "export", "total") if stage in timings},
        "feature_images_per_second": round(timings["features_images_per_second"], 1),
        "train_seconds_excluding_import": round(timings["total"], 1),
        "test_images": test["num_samples"], "test_accuracy": round(test["accuracy"], 4),
        "test_macro_f1": round(test["macro_f1"], 4), "test_errors": [m["name"] for m in test["misclassified"]],
        "onnx_parity": result["onnx"]["parity"],
        "onnx_ms_per_face_batch1": round(result["onnx"]["ms_per_image_batch1"], 2),
        "int8": ({k: result["int8"][k] for k in ("bytes", "ms_per_image_batch1", "test_accuracy_delta")}
                 if "int8" in result else None),
        "onnx_bytes": result["onnx"].get("bytes"),
        "side_by_side": {name: result[name]["timing"] for name in ("onnx", "int8") if "timing" in result.get(name, {})},
        "workdir": str(workdir) if args.keep else None,
    })
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
