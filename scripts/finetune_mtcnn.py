"""Fine-tune MTCNN's ONet on masked faces from masks-small and write the three networks and detector.json.

    python scripts/finetune_mtcnn.py --data DIR --out DIR [--tiny] [--seed N]

Writes mtcnn_pnet.onnx, mtcnn_rnet.onnx, mtcnn_onet.onnx (the model bundle's names; PNet is facenet's own) and
detector.json: the data counts, the settings and seed, the validation figures before and after, and the seconds taken
(see maskdet/training/detector_finetune.py). --tiny: a handful of photos and one short epoch (the test suite's run).
--data defaults to $MASKDET_TEST_DATA, else ../shared/datasets/masks-small.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from maskdet.bundle.mtcnn_cascade import NETWORK_FILES  # noqa: E402
from maskdet.training.detector_finetune import NETS, FinetuneSettings, finetune  # noqa: E402


def progress(items, what: str, total: int):
    return tqdm(items, desc=what, total=total, file=sys.stderr, leave=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("MASKDET_TEST_DATA")
                                                          or (ROOT / "../shared/datasets/masks-small").resolve()),
                        help="masks-small: with_mask/ and without_mask/ photos")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the networks and detector.json to")
    parser.add_argument("--tiny", action="store_true", help="a handful of photos and one short epoch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for folder in ("with_mask", "without_mask"):
        if not (args.data / folder).is_dir():
            parser.error(f"{args.data / folder} is not a folder: --data must be masks-small")

    settings = FinetuneSettings.tiny(args.seed) if args.tiny else FinetuneSettings(seed=args.seed)
    result = finetune(args.data, settings, progress)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, file in zip(NETS, NETWORK_FILES, strict=True):
        (args.out / file).write_bytes(result.models[name])
    report = {**result.report, "data_folder": str(args.data.resolve()), "files": list(NETWORK_FILES)}
    (args.out / "detector.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"out": str(args.out), "validation": report["validation"], "seconds": report["seconds"]}))


if __name__ == "__main__":
    main()
