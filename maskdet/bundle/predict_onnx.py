"""Find the faces in photos and classify each with a maskdet ONNX model. Needs only onnxruntime, numpy and Pillow.

    python predict_onnx.py [--model model.onnx] [--threshold 0.6] photo.jpg [more photos or folders ...]

Prints the JSON of `python -m maskdet --json predict`: per image its faces, largest first, each with its box,
face_probability, label, probability and probabilities; an unreadable file gets an "error" instead. Faces are found
as maskdet predict finds them: MTCNN (mtcnn_cascade.py) with the detector settings in the model's metadata (the
size of the copy searched, the smallest face, the thresholds, the most faces kept), and cropped by the model's crop
rule (crop_rule.py). See README.md.
"""

import argparse
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

from crop_rule import crop
from mtcnn_cascade import NETWORK_FILES, Cascade, DetectorSettings, find_faces, session
from pixels import FORMATS, file_size_problem, image_files, scans_problem, to_rgb

HERE = Path(__file__).resolve().parent
UNCERTAIN = "uncertain"  # the label of a face whose top probability is below --threshold
DEFAULT_THRESHOLD = 0.6  # --threshold of a model whose metadata has no class_threshold (maskdet's default)
MAX_FILE_BYTES = 64 * 2**20  # a photo file read whole: far above any camera's JPEG (maskdet's import cap too)


class Classifier:
    """A maskdet ONNX model with its labels, crop rule, class confidence threshold and detector settings (from the
    model's metadata)."""

    def __init__(self, path: Path):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels = json.loads(meta["labels"])
        rule = json.loads(meta["crop_rule"])
        self.margin, self.size = float(rule["margin"]), int(rule["size"])
        self.threshold = float(meta.get("class_threshold", DEFAULT_THRESHOLD))
        self.detector = DetectorSettings.of_model(meta)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, labels) for uint8 RGB face crops (N, size, size, 3)."""
        return self.session.run(None, {self.session.get_inputs()[0].name: crops})[0]


def decode(path: str) -> np.ndarray:
    """RGB uint8 pixels as maskdet reads them: EXIF orientation applied, any mode to 8-bit RGB (pixels.py)."""
    problem = file_size_problem(Path(path), MAX_FILE_BYTES)
    if problem:
        raise ValueError(problem)
    data = Path(path).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a truncated file is an error, not a half-grey picture
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        problem = scans_problem(data) if image.format in ("JPEG", "MPO") else None
        if problem:
            raise ValueError(problem)
        image.load()
        image = ImageOps.exif_transpose(image)
    return np.asarray(to_rgb(image))


def predict(image: np.ndarray, cascade: Cascade, classifier: Classifier, threshold: float) -> list[dict]:
    """The faces of one image, classified in one batch."""
    settings = classifier.detector
    faces = find_faces(cascade, image, settings.search_side, settings.search_side, settings.pad_fraction,
                       settings.min_probability)[:settings.max_faces]
    if not faces:
        return []
    crops = np.stack([crop(image, box, classifier.margin, classifier.size) for box, _, _ in faces])
    results = []
    for (box, face_probability, _), probabilities in zip(faces, classifier.predict(crops)):
        best = int(probabilities.argmax())
        results.append({"box": [round(v, 1) for v in box], "face_probability": round(face_probability, 4),
                        "label": classifier.labels[best] if probabilities[best] >= threshold else UNCERTAIN,
                        "probability": round(float(probabilities[best]), 4),
                        "probabilities": {label: round(float(p), 4)
                                          for label, p in zip(classifier.labels, probabilities)}})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--model", default=str(HERE / "model.onnx"), help="a maskdet ONNX model (model.int8.onnx too)")
    parser.add_argument("--threshold", type=float, help="below this probability a face is 'uncertain' (default: the "
                        f"model's class_threshold metadata, {DEFAULT_THRESHOLD} without one)")
    args = parser.parse_args()
    try:
        names = image_files(args.images)
    except FileNotFoundError as error:
        parser.error(str(error))
    classifier = Classifier(Path(args.model))
    threshold = classifier.threshold if args.threshold is None else args.threshold
    cascade = Cascade(*(session(HERE / name) for name in NETWORK_FILES), classifier.detector.min_face_size,
                      classifier.detector.thresholds)
    results = []
    for name in names:
        try:
            image = decode(name)
        except Exception as error:  # whatever Pillow cannot read becomes that image's error
            results.append({"image": name, "error": f"not a readable image ({error})"})
            continue
        results.append({"image": name, "faces": predict(image, cascade, classifier, threshold)})
    print(json.dumps({"model": args.model, "labels": classifier.labels, "threshold": threshold, "images": results},
                     indent=2))


if __name__ == "__main__":
    main()
