"""Images in, labelled faces out: detect, crop with the model's crop rule, classify in one batch, annotate."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .evaluate import classification_report
from .export import OnnxClassifier
from .faces import Face, FaceDetector, crop_face
from .imageio import BadImage, decode_image
from .store import UNCERTAIN, Candidate, StoreError, folder_candidates

PALETTE = [(46, 160, 67), (214, 39, 40), (31, 119, 180), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
UNCERTAIN_COLOR = (160, 160, 160)


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
    return PALETTE[labels.index(label) % len(PALETTE)] if label in labels else UNCERTAIN_COLOR


def draw_predictions(canvas: Image.Image, predictions: list[FacePrediction], labels: list[str]) -> None:
    """Draw each face box in its class colour with the label and probability above it."""
    draw = ImageDraw.Draw(canvas)
    size = max(12, min(canvas.size) // 30)
    font = ImageFont.load_default(size=size)
    for prediction in predictions:
        color = label_color(prediction.label, labels)
        x1, y1, x2, y2 = prediction.box
        draw.rectangle((x1, y1, x2, y2), outline=color, width=max(2, size // 6))
        text = f"{prediction.label} {prediction.probability:.0%}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        height = bottom - top + 6
        ty = y1 - height if y1 - height >= 0 else y2 + 2 if y2 + 2 + height <= canvas.height else y1 + 2
        draw.rectangle((x1, ty, x1 + right - left + 8, ty + bottom - top + 6), fill=color)
        draw.text((x1 + 4, ty + 3 - (top - y1)), text, fill=(255, 255, 255), font=font)


def annotate(image: np.ndarray, predictions: list[FacePrediction], labels: list[str]) -> np.ndarray:
    """An annotated copy of an RGB array."""
    canvas = Image.fromarray(image)
    draw_predictions(canvas, predictions, labels)
    return np.asarray(canvas)


def predict_image(data: bytes, detector: FaceDetector, classifier: OnnxClassifier, max_pixels: int,
                  threshold: float = 0.0, max_faces: int = 20) -> tuple[np.ndarray, list[FacePrediction]]:
    """Decode an image file and classify its faces (at most max_faces, largest first)."""
    image = decode_image(data, max_pixels)
    faces = detector.detect([image])[0][:max_faces]
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


def evaluate_candidates(candidates: list[Candidate], rejected: list[tuple[str, str]], detector: FaceDetector,
                        classifier: OnnxClassifier, max_pixels: int, progress=None) -> dict:
    """Score a model on labelled files (labels among the model's); unreadable ones join `rejected`."""
    names, targets, probabilities, no_face = [], [], [], 0
    for start in range(0, len(candidates), 32):
        batch, images = [], []
        for candidate in candidates[start:start + 32]:
            try:
                images.append(decode_image(candidate.read(), max_pixels))
                batch.append(candidate)
            except (BadImage, OSError) as error:
                rejected.append((candidate.name, str(error)))
        faces = detector.largest_faces(images)
        no_face += sum(face is None for face in faces)
        crops = np.stack([crop_face(image, face.box if face else None, classifier.rule)
                          for image, face in zip(images, faces)]) if images else np.zeros((0,))
        if len(images):
            probabilities.append(classifier.predict(crops))
        names += [c.name for c in batch]
        targets += [classifier.labels.index(c.label) for c in batch]
        if progress:
            progress(min(start + 32, len(candidates)), len(candidates))
    if not targets:
        raise StoreError("None of the images could be read.")
    report = classification_report(targets, np.concatenate(probabilities), classifier.labels, names)
    report["no_face"] = no_face
    report["rejected_files"] = [{"name": n, "reason": r} for n, r in rejected]
    return report
