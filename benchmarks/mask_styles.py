"""Generalisation probe: does a model still see a mask when the mask is not masks-small's light-blue surgical one?

masks-small's "with mask" photos are pixel-aligned copies of "without mask" photos with one pasted mask.
The difference of each pair segments the mask; this script repaints it in other styles (black, white, red,
navy, stripes, checks, printed pattern, grey cloth), keeping the original shading, and scores a trained
model on those faces (re-detected with MTCNN, as in real use) and on the unmasked twins. Only pairs
whose images are in the run's test split are used, so the model never saw either photo.

    python benchmarks/mask_styles.py [--model RUN_ID|path.onnx] [--save-examples out.png]
Prints one JSON line: accuracy per style, overall masked accuracy, unmasked accuracy.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskdet.cli import resolve_model  # noqa: E402
from maskdet.data.store import Store  # noqa: E402
from maskdet.serving.classifier import load_classifier  # noqa: E402
from maskdet.vision.faces import FaceDetector, crop_face  # noqa: E402


def mask_region(masked: np.ndarray, plain: np.ndarray) -> np.ndarray | None:
    """Pixels where the pasted mask differs from the unmasked twin, cleaned into one solid region."""
    if masked.shape != plain.shape:
        return None
    region = np.abs(masked.astype(int) - plain.astype(int)).sum(2) > 60
    region = ndimage.binary_fill_holes(ndimage.binary_closing(ndimage.binary_opening(region, iterations=2), iterations=3))
    return region if 0.02 < region.mean() < 0.5 else None


def texture(style: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An RGB fill of the given height/width for one mask style."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    solid = {"black": (25, 25, 28), "white": (235, 235, 230), "red": (170, 30, 40), "navy": (25, 35, 80)}
    if style in solid:
        return np.broadcast_to(np.array(solid[style], float), (h, w, 3)).copy()
    if style == "stripes":
        band = ((yy // max(2, h // 40)) % 2)[..., None]
        return np.where(band, np.array([200, 60, 60.0]), np.array([240, 240, 240.0]))
    if style == "checks":
        cell = max(3, w // 30)
        band = (((yy // cell) + (xx // cell)) % 2)[..., None]
        return np.where(band, np.array([40, 40, 40.0]), np.array([150, 120, 80.0]))
    if style == "pattern":
        blobs = ndimage.gaussian_filter(rng.random((h, w)), sigma=max(1, w / 80)) > 0.5
        return np.where(blobs[..., None], np.array([230, 180, 40.0]), np.array([60, 20, 90.0]))
    if style == "grey_cloth":
        return 110 + 25 * rng.standard_normal((h, w, 1)).repeat(3, 2)
    raise ValueError(style)


STYLES = ["black", "white", "red", "navy", "stripes", "checks", "pattern", "grey_cloth"]


def repaint(masked: np.ndarray, region: np.ndarray, style: str, rng) -> np.ndarray:
    """Fill the mask region with a style, modulated by the original mask's shading (folds, ear loops stay)."""
    luminance = masked.astype(float).mean(2, keepdims=True)
    shading = luminance / max(np.percentile(luminance[region], 90), 1)
    painted = np.clip(texture(style, region.shape, rng) * np.clip(shading, 0.4, 1.2), 0, 255)
    out = masked.copy()
    out[region] = painted[region].astype(np.uint8)
    return out


def test_pairs(store: Store) -> list[tuple]:
    """(masked record, plain record) pairs named N-with-mask / N whose images are both in the test split."""
    by_name = {r.source_name.split("/")[-1]: r for r in store.faces(split="test")}
    pairs = []
    for name, record in by_name.items():
        match = re.fullmatch(r"(.+)-with-mask(\.\w+)", name)
        if match and f"{match[1]}{match[2]}" in by_name and record.label != by_name[f"{match[1]}{match[2]}"].label:
            pairs.append((record, by_name[f"{match[1]}{match[2]}"]))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run id or .onnx (default: latest run)")
    parser.add_argument("--mask-label", default="with_mask")
    parser.add_argument("--save-examples", help="write a PNG strip of repainted faces")
    args = parser.parse_args()
    store = Store()
    classifier = load_classifier(resolve_model(store, args.model))
    detector = FaceDetector()
    rng = np.random.default_rng(0)
    mask_index = classifier.labels.index(args.mask_label)
    correct = {style: [] for style in ["original", *STYLES]}
    plain_correct, examples = [], []
    for masked_record, plain_record in test_pairs(store):
        masked, plain = store.load_image(masked_record), store.load_image(plain_record)
        region = mask_region(masked, plain)
        if region is None:
            continue
        variants = {"original": masked, **{s: repaint(masked, region, s, rng) for s in STYLES}}
        faces = detector.largest_faces([*variants.values(), plain])
        crops = [crop_face(image, face.box if face else None, classifier.rule)
                 for image, face in zip([*variants.values(), plain], faces)]
        predictions = classifier.predict(np.stack(crops)).argmax(1)
        for style, prediction in zip(variants, predictions[:-1]):
            correct[style].append(int(prediction == mask_index))
        plain_correct.append(int(predictions[-1] != mask_index))
        if len(examples) < 4:
            examples.append(np.concatenate(crops, axis=1))
    restyled = [c for style in STYLES for c in correct[style]]
    result = {"pairs": len(plain_correct), "model": str(classifier.path),
              "masked_accuracy_per_style": {s: round(float(np.mean(v)), 4) if v else None for s, v in correct.items()},
              "restyled_masked_accuracy": round(float(np.mean(restyled)), 4) if restyled else None,
              "unmasked_accuracy": round(float(np.mean(plain_correct)), 4) if plain_correct else None}
    result["restyled_balanced_accuracy"] = round((result["restyled_masked_accuracy"] + result["unmasked_accuracy"]) / 2, 4) \
        if plain_correct else None
    if args.save_examples and examples:
        Image.fromarray(np.concatenate(examples, axis=0)).save(args.save_examples)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
