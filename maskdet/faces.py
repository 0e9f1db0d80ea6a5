"""Face detection (MTCNN: facenet-pytorch's networks in onnxruntime) and the one crop rule of training and live use."""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .mtcnn import MIN_FACE_SIDE, OnnxMTCNN


@dataclass(frozen=True)
class CropRule:
    """A square crop around the face box, `margin` times its longer side, kept inside the image."""

    margin: float = 1.25
    size: int = 160


Landmarks = tuple[tuple[float, float], ...]  # five x, y points in image pixels, in MTCNN's order (see mtcnn.py)


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    probability: float
    landmarks: Landmarks | None = None

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def box_iou(a, b) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def square_crop_box(box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The crop rule: square of side margin * longer face side, centred on the face, clamped to the image."""
    x1, y1, x2, y2 = box
    side = min(max(x2 - x1, y2 - y1) * margin, width, height)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    side_px = max(1, round(side))
    left_px, top_px = round(left), round(top)
    return left_px, top_px, min(left_px + side_px, width), min(top_px + side_px, height)


def crop_face(image: np.ndarray, box, rule: CropRule) -> np.ndarray:
    """Cut the face out of an RGB array and resize it to rule.size; box None means use the whole image."""
    height, width = image.shape[:2]
    if box is None:
        region = image
    else:
        left, top, right, bottom = square_crop_box(box, width, height, rule.margin)
        region = image[top:bottom, left:right]
    return np.asarray(Image.fromarray(region).resize((rule.size, rule.size), Image.BILINEAR))


def _shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """Downscale so the longer side is at most `side`; return the array and the scale applied."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def pad_border(image: np.ndarray, pad: int) -> np.ndarray:
    """The image on a canvas `pad` pixels larger on every side, filled with the image's mean colour."""
    fill = [float(v) for v in image.reshape(-1, image.shape[2]).mean(axis=0)]
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)


class FaceDetector:
    """MTCNN on a downscaled copy of each image. Images with no face found are retried at a larger size, then
    on a padded copy: a face that fills the frame (a masked close-up) has its box partly outside the photo, where
    MTCNN cannot place it; with a border of `pad_fraction` of the longer side on each side it can.

    min_face_size is in pixels of the downscaled copy (PNet cannot see faces under 12 pixels there)."""

    def __init__(self, detect_side: int = 160, fallback_side: int = 640, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), min_probability: float = 0.0,
                 pad_fraction: float = 0.25):
        self.detect_side = detect_side
        self.fallback_side = fallback_side
        self.min_probability = min_probability
        self.pad_fraction = pad_fraction
        self.mtcnn = OnnxMTCNN(min_face_size, thresholds)

    def _faces(self, boxes: np.ndarray, probabilities: np.ndarray, landmarks: np.ndarray, scale: float,
               image: np.ndarray, min_probability: float, pad: int = 0) -> list[Face]:
        """Boxes of the downscaled (and padded) copy mapped back to the image, clipped, weak ones dropped, largest
        first."""
        height, width = image.shape[:2]
        faces = []
        for box, probability, points in zip(boxes / scale - pad, probabilities, landmarks / scale - pad):
            x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
            if probability >= min_probability and x2 - x1 >= 2 and y2 - y1 >= 2:
                faces.append(Face((x1, y1, x2, y2), float(probability),
                                  tuple((float(x), float(y)) for x, y in points)))
        return sorted(faces, key=lambda face: face.area, reverse=True)

    def _detect_one(self, image: np.ndarray, side: int, pad: int = 0) -> list[Face]:
        small, scale = _shrink(pad_border(image, pad) if pad else image, side)
        if min(small.shape[:2]) < MIN_FACE_SIDE:
            return []
        return self._faces(*self.mtcnn.detect(small), scale, image, self.min_probability, pad)

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """All faces per image, largest first."""
        results = []
        for image in images:
            faces = self._detect_one(image, self.detect_side)
            if not faces and max(image.shape[:2]) > self.detect_side and self.fallback_side > self.detect_side:
                faces = self._detect_one(image, self.fallback_side)
            if not faces and self.pad_fraction > 0:
                faces = self._detect_one(image, self.detect_side, round(max(image.shape[:2]) * self.pad_fraction))
            results.append(faces)
        return results

    def track(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Where known faces are in a new frame (MTCNN's last stage on their previous boxes); lost ones drop out.

        A known face stays while that stage still scores it above its own threshold, even if below min_probability:
        measured on the live benchmark clip, this loses fewer faces between detections at the same box accuracy."""
        small, scale = _shrink(image, self.detect_side)
        if not faces or min(small.shape[:2]) < MIN_FACE_SIDE:
            return []
        boxes = np.array([face.box for face in faces], np.float32) * scale
        threshold = min(self.min_probability, self.mtcnn.thresholds[2])
        return self._faces(*self.mtcnn.track(small, boxes, threshold), scale, image, threshold)

    def largest_faces(self, images: list[np.ndarray]) -> list[Face | None]:
        return [faces[0] if faces else None for faces in self.detect(images)]
