"""Face detection (MTCNN: facenet-pytorch's networks in onnxruntime) and the one crop rule of training and live use.

Both are written in maskdet/bundle/ (mtcnn_cascade.py, crop_rule.py), which the model bundle ships: its
predict_onnx.py finds and crops faces with the same code."""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from maskdet.bundle.crop_rule import crop
from maskdet.bundle.mtcnn_cascade import MIN_FACE_SIDE, DetectorSettings, find_faces, image_faces, shrink
from maskdet.core.contract import CropRule
from maskdet.vision.mtcnn import OnnxMTCNN

# A photo's face search covers at most this many pixels (of the copies searched) a byte of its file as it arrived
# (compressed, in a zip), so that a small upload cannot buy minutes of CPU with thousands of nearly blank photos,
# while real photos are never cut short (docs/reliability.md "Bounded cost"; the figures: docs/performance.md).
SEARCH_PIXELS_PER_BYTE = 50


Landmarks = tuple[tuple[float, float], ...]  # five x, y points in image pixels, in MTCNN's order (see bundle/mtcnn_cascade.py)


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


def crop_face(image: np.ndarray, box, rule: CropRule) -> np.ndarray:
    """Cut the face out of an RGB array and resize it to rule.size; box None means use the whole image."""
    return crop(image, box, rule.margin, rule.size)


class FaceDetector:
    """MTCNN on a downscaled copy of each image. Images with no face found are retried at a larger size, then
    on a padded copy: a face that fills the frame (a masked close-up) has its box partly outside the photo, where
    MTCNN cannot place it; with a border of `pad_fraction` of the longer side on each side it can.

    min_face_size is in pixels of the downscaled copy (PNet cannot see faces under 12 pixels there). The networks
    (`network_set`, one of vision.mtcnn.NETWORKS) are loaded on the first detection, so work that ends before any
    photo is decoded, such as an import whose only file is rejected, never pays for them."""

    def __init__(self, detect_side: int = 160, fallback_side: int = 640, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), min_probability: float = 0.0,
                 pad_fraction: float = 0.25, network_set: str = "facenet"):
        self.detect_side = detect_side
        self.fallback_side = fallback_side
        self.min_probability = min_probability
        self.pad_fraction = pad_fraction
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.network_set = network_set  # one of vision.mtcnn.NETWORKS

    @classmethod
    def for_photos(cls, settings: DetectorSettings) -> "FaceDetector":
        """The detector a model's DetectorSettings describe: one search size (no larger fallback)."""
        return cls(settings.search_side, settings.search_side, settings.min_face_size, settings.thresholds,
                   settings.min_probability, settings.pad_fraction, settings.networks)

    @cached_property
    def mtcnn(self) -> OnnxMTCNN:
        return OnnxMTCNN(self.min_face_size, self.thresholds, network_set=self.network_set)

    def detect(self, images: list[np.ndarray], file_sizes: list[int] | None = None) -> list[list[Face]]:
        """All faces per image, largest first; with file_sizes (bytes each image arrived as), each search is
        bounded by SEARCH_PIXELS_PER_BYTE."""
        budgets = [SEARCH_PIXELS_PER_BYTE * size for size in file_sizes] if file_sizes else [float("inf")] * len(images)
        return [[Face(*face) for face in find_faces(self.mtcnn, image, self.detect_side, self.fallback_side,
                                                    self.pad_fraction, self.min_probability, budget)]
                for image, budget in zip(images, budgets, strict=True)]

    def track(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Where known faces are in a new frame (MTCNN's last stage on their previous boxes); lost ones drop out.

        A known face stays while that stage still scores it above its own threshold, even if below min_probability:
        fewer faces are lost between detections at the same box accuracy (docs/performance.md)."""
        small, scale = shrink(image, self.detect_side, self.mtcnn.resize)
        if not faces or min(small.shape[:2]) < MIN_FACE_SIDE:
            return []
        boxes = np.array([face.box for face in faces], np.float32) * scale
        threshold = self.mtcnn.thresholds[2]
        found = image_faces(*self.mtcnn.track(small, boxes, threshold), scale, 0, image.shape[1], image.shape[0],
                            threshold)
        return [Face(*face) for face in found]

    def largest_faces(self, images: list[np.ndarray], file_sizes: list[int] | None = None) -> list[Face | None]:
        return [faces[0] if faces else None for faces in self.detect(images, file_sizes)]
