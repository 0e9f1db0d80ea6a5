"""Images in, labelled faces out: detect, crop with the model's crop rule, classify in one batch, annotate."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskdet.core.classes import WITH_MASK, WITHOUT_MASK, WORN_WRONG, class_of_meaning
from maskdet.core.contract import UNCERTAIN
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage, decode_image
from maskdet.core.metrics import classification_report
from maskdet.data.importer import ImportReport
from maskdet.data.sources import Candidate, fill_batch, folder_candidates
from maskdet.data.store import Store
from maskdet.serving.classifier import OnnxClassifier
from maskdet.vision.faces import Face, FaceDetector, crop_face

PALETTE = [(46, 160, 67), (214, 39, 40), (31, 119, 180), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
MEANING_COLORS = {WITH_MASK: PALETTE[0], WITHOUT_MASK: PALETTE[1], WORN_WRONG: (255, 176, 0)}  # green, red, amber
UNCERTAIN_COLOR = (160, 160, 160)
LIGHT = 170  # a strip brighter than this (Rec. 601 luma) gets black text: amber; white stays on the others and grey
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class FacePrediction:
    box: tuple[float, float, float, float]
    face_probability: float
    label: str  # UNCERTAIN when the top probability is below the threshold
    probability: float
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return {"box": [round(v, 1) for v in self.box], "face_probability": round(self.face_probability, 4),
                "label": self.label, "probability": round(self.probability, 4),
                "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()}}


def classify_faces(image: np.ndarray, faces: list[Face], classifier: OnnxClassifier,
                   threshold: float = 0.0) -> list[FacePrediction]:
    """Classify the given faces of one image in a single batch."""
    if not faces:
        return []
    crops = np.stack([crop_face(image, face.box, classifier.rule) for face in faces])
    results = []
    for face, probs in zip(faces, classifier.predict(crops)):
        best = int(probs.argmax())
        label = classifier.labels[best] if probs[best] >= threshold else UNCERTAIN
        results.append(FacePrediction(face.box, face.probability, label, float(probs[best]),
                                      dict(zip(classifier.labels, map(float, probs)))))
    return results


def label_color(label: str, labels: list[str]) -> tuple[int, int, int]:
    """A class's colour among a model's `labels` by its meaning: with_mask green, without_mask red, worn_wrong amber
    (the first class of each meaning); the other classes take the palette's colours left, in order; uncertain grey."""
    meant = {name: color for meaning, color in MEANING_COLORS.items() if (name := class_of_meaning(labels, meaning))}
    if label in meant:
        return meant[label]
    if label not in labels:
        return UNCERTAIN_COLOR
    left = [color for color in PALETTE if color not in meant.values()]
    return left[[name for name in labels if name not in meant].index(label) % len(left)]


def legend(labels: list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of each of a model's classes, then of uncertain: what the boxes drawn on its faces mean."""
    return [(name, label_color(name, labels)) for name in [*labels, UNCERTAIN]]


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on a light strip (amber, where white would fade), white on the others."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > LIGHT else (255, 255, 255)


@dataclass(frozen=True)
class TextStyle:
    """Text on a filled strip (white, or black on a light one), sized for the image (OpenCV's font: about 30x faster
    than PIL's, live needs it)."""

    scale: float
    thickness: int
    pad: int

    @classmethod
    def for_image(cls, image: np.ndarray) -> "TextStyle":
        scale = max(0.5, min(image.shape[:2]) / 800)
        return cls(scale, max(1, round(scale * 1.5)), max(3, round(scale * 6)))

    def size(self, text: str) -> tuple[int, int]:
        """Width and height of the strip."""
        (width, height), baseline = cv2.getTextSize(text, FONT, self.scale, self.thickness)
        return width + 2 * self.pad, height + baseline + 2 * self.pad

    def draw(self, image: np.ndarray, text: str, x: int, y: int, background: tuple[int, int, int]) -> None:
        """The strip with its top-left corner at x, y, in place."""
        width, height = self.size(text)
        baseline = cv2.getTextSize(text, FONT, self.scale, self.thickness)[1]
        cv2.rectangle(image, (x, y), (x + width - 1, y + height - 1), background, cv2.FILLED)
        cv2.putText(image, text, (x + self.pad, y + height - self.pad - baseline), FONT, self.scale,
                    text_color(background), self.thickness, cv2.LINE_AA)


Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, the corner x2, y2 outside


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_places(boxes: list[Box], sizes: list[tuple[int, int]], image_size: tuple[int, int],
                 keep_clear: list[Box] = ()) -> list[tuple[int, int]]:
    """The top-left corner of each face's label strip (`sizes`: width, height), placed in order so that none covers
    another or an area kept clear (the live stats in the top-left corner), and each stays inside the image: above its
    face box; below it when there is no room above (the image's top edge, or the area kept clear), or inside its top
    when there is none below either; then moved down past whatever it would still cover, a label placed before it
    included (a crowded photo). Only a strip that would leave the image at the bottom is let overlap."""
    width, height = image_size
    placed: list[Box] = []
    for (x1, y1, _, y2), (strip_width, strip_height) in zip(boxes, sizes):
        x = max(0, min(x1, width - strip_width))
        y = y1 - strip_height
        if y < 0 or any(overlaps((x, y, x + strip_width, y1), clear) for clear in keep_clear):
            y = y2 + 2 if y2 + 2 + strip_height <= height else max(0, y1)  # 1 px between the box and its label
        taken = [*keep_clear, *placed]
        while (below := [box[3] for box in taken if overlaps((x, y, x + strip_width, y + strip_height), box)]) \
                and max(below) + strip_height <= height:
            y = max(below)
        y = min(y, max(0, height - strip_height))
        placed.append((x, y, x + strip_width, y + strip_height))
    return [(box[0], box[1]) for box in placed]


def draw_predictions(image: np.ndarray, predictions: list[FacePrediction], labels: list[str],
                     numbered: bool = False, keep_clear: list[Box] = ()) -> None:
    """Draw on an RGB array in place: each face box in its class colour, and its label and probability on a strip
    placed by label_places (above the box where it fits); numbered: each label starts with the face's number (1
    first), as in a table of the faces. `keep_clear`: areas no label covers."""
    style = TextStyle.for_image(image)
    line = max(2, round(min(image.shape[:2]) / 240))
    texts = [(f"{number}: " if numbered else "") + f"{prediction.label} {prediction.probability:.0%}"
             for number, prediction in enumerate(predictions, start=1)]
    boxes = [tuple(round(v) for v in prediction.box) for prediction in predictions]
    colors = [label_color(prediction.label, labels) for prediction in predictions]
    for color, (x1, y1, x2, y2) in zip(colors, boxes):
        for inset in range(line):  # the line grows inwards, so the box stays the face box
            cv2.rectangle(image, (x1 + inset, y1 + inset), (x2 - inset, y2 - inset), color, 1)
    places = label_places(boxes, [style.size(text) for text in texts], (image.shape[1], image.shape[0]), keep_clear)
    for color, text, (x, y) in zip(colors, texts, places):  # after every box: a strip is never crossed
        style.draw(image, text, x, y, color)


def annotate(image: np.ndarray, predictions: list[FacePrediction], labels: list[str]) -> np.ndarray:
    """An annotated copy of a photo, its faces numbered in the order of `predictions` (as its table lists them)."""
    canvas = image.copy()
    draw_predictions(canvas, predictions, labels, numbered=True)
    return canvas


def predict_image(data: bytes, detector: FaceDetector, classifier: OnnxClassifier, max_pixels: int,
                  threshold: float = 0.0, max_faces: int | None = None) -> tuple[np.ndarray, list[FacePrediction]]:
    """Decode an image file and classify its faces (at most max_faces, by default the model's detector settings',
    largest first)."""
    image = decode_image(data, max_pixels)
    faces = detector.detect([image], [len(data)])[0][:classifier.detector.max_faces if max_faces is None else max_faces]
    return image, classify_faces(image, faces, classifier, threshold)


def evaluate_folder(folder: Path, detector: FaceDetector, classifier: OnnxClassifier, max_pixels: int,
                    progress=None) -> dict:
    """Score a model on a folder of class sub-folders, cropping each photo's largest face like training does."""
    candidates, rejected = folder_candidates(folder)
    unknown = sorted({c.label for c in candidates} - set(classifier.labels))
    if unknown:
        raise StoreError(f"Folder classes not known to the model: {', '.join(unknown)}. "
                         f"The model's classes: {', '.join(classifier.labels)}.")
    if not candidates:
        raise StoreError(f"No images found in class folders under {folder}.")
    return evaluate_candidates(candidates, rejected, detector, classifier, max_pixels, progress)


def read_for_scoring(entry, candidate: Candidate, max_pixels: int, rejected: list[tuple[str, str]]):
    """A file to score decoded, as fill_batch takes it: ((entry, its image, the bytes it arrived as), the bytes a batch
    holds for it), or None when it cannot be read (it joins `rejected` with the reason)."""
    try:
        data = candidate.read()
        image = decode_image(data, max_pixels, candidate.arrived_size(data))
    except (BadImage, OSError) as error:
        rejected.append((candidate.name, str(error)))
        return None
    return (entry, image, candidate.arrived_size(data)), len(data) + image.nbytes


def evaluate_candidates(candidates: list[Candidate], rejected: list[tuple[str, str]], detector: FaceDetector,
                        classifier: OnnxClassifier, max_pixels: int, progress=None) -> dict:
    """Score a model on labelled files (labels among the model's), in batches of 32 photos or MAX_BATCH_BYTES of files
    and pixels (as an import's); unreadable ones join `rejected`. The report's `names` are the photos scored, in the
    order its misclassified indices count; each misclassified photo has the `box` of the face it was classified on
    (None: no face found, the whole photo was)."""
    names, targets, probabilities, found, boxes = [], [], [], [], []
    done = 0
    while done < len(candidates):
        decoded, taken = fill_batch(candidates[done:done + 32],
                                    lambda candidate: read_for_scoring(candidate, candidate, max_pixels, rejected))
        done += taken
        batch = [candidate for candidate, _, _ in decoded]
        images = [image for _, image, _ in decoded]
        sizes = [size for _, _, size in decoded]
        faces = detector.largest_faces(images, sizes)
        found += [face is not None for face in faces]
        boxes += [[round(float(v), 1) for v in face.box] if face else None for face in faces]
        crops = np.stack([crop_face(image, face.box if face else None, classifier.rule)
                          for image, face in zip(images, faces)]) if images else np.zeros((0,))
        if len(images):
            probabilities.append(classifier.predict(crops))
        names += [c.name for c in batch]
        targets += [classifier.labels.index(c.label) for c in batch]
        if progress:
            progress(done, len(candidates))
    if not targets:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in rejected[-3:])
        raise StoreError(f"None of the images could be read ({reasons}).")
    report = classification_report(targets, np.concatenate(probabilities), classifier.labels, names)
    for mistake in report["misclassified"]:
        mistake["box"] = boxes[mistake["index"]]
    found = np.array(found)
    correct = np.concatenate(probabilities).argmax(1) == np.array(targets)
    report["no_face"] = int((~found).sum())
    report["face_found_rate"] = float(found.mean())
    report["accuracy_face_found"] = float(correct[found].mean()) if found.any() else None
    report["accuracy_no_face"] = float(correct[~found].mean()) if (~found).any() else None
    report["rejected_files"] = [{"name": n, "reason": r} for n, r in rejected]
    report["names"] = names
    return report


def evaluated_photos(candidates: list[Candidate], report: dict, errors_only: bool) -> list[Candidate]:
    """Those of the files given to an evaluation that it scored: only the misclassified ones, or all."""
    wanted = {m["name"] for m in report["misclassified"]} if errors_only else set(report["names"])
    return [candidate for candidate in candidates if candidate.name in wanted]


def import_evaluated(store: Store, candidates: list[Candidate], report: dict, detector: FaceDetector,
                     errors_only: bool, progress=None) -> ImportReport:
    """Import the misclassified (or all scored) photos of an evaluation into the dataset under their true label (their
    folder), with the store's import rules (hashes, near-duplicate groups, rejection reasons)."""
    return store.import_into_classes(evaluated_photos(candidates, report, errors_only), detector, progress)
