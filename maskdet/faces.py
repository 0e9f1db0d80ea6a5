"""Face detection (MTCNN from facenet-pytorch) and the one crop rule shared by training and live use."""

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class CropRule:
    """A square crop around the face box, `margin` times its longer side, kept inside the image."""

    margin: float = 1.25
    size: int = 160


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    probability: float

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


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
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)), scale


class FaceDetector:
    """MTCNN on downscaled copies, batched; images with no face found are retried at a larger size."""

    def __init__(self, detect_side: int = 160, fallback_side: int = 640, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), min_probability: float = 0.0):
        from facenet_pytorch import MTCNN

        self.detect_side = detect_side
        self.fallback_side = fallback_side
        self.min_probability = min_probability
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, thresholds=list(thresholds),
                           post_process=False, device="cpu")

    def _detect_batch(self, images: list[np.ndarray], side: int) -> list[list[Face]]:
        """Letterbox each image onto a side x side canvas, detect in one batch, map boxes back."""
        import torch

        canvases, scales = [], []
        for image in images:
            small, scale = _shrink(image, side)
            canvas = np.zeros((side, side, 3), np.uint8)
            canvas[: small.shape[0], : small.shape[1]] = small
            canvases.append(canvas)
            scales.append(scale)
        with torch.inference_mode():
            boxes, probs = self.mtcnn.detect(np.stack(canvases))
        results = []
        for image, scale, image_boxes, image_probs in zip(images, scales, boxes, probs):
            height, width = image.shape[:2]
            faces = []
            for box, prob in zip(image_boxes if image_boxes is not None else [], image_probs):
                if prob is None or prob < self.min_probability:
                    continue
                x1, y1, x2, y2 = (float(v) / scale for v in box)
                x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
                if x2 - x1 >= 2 and y2 - y1 >= 2:
                    faces.append(Face((x1, y1, x2, y2), float(prob)))
            results.append(sorted(faces, key=lambda face: face.area, reverse=True))
        return results

    def detect(self, images: list[np.ndarray]) -> list[list[Face]]:
        """All faces per image, largest first."""
        if not images:
            return []
        results = self._detect_batch(images, self.detect_side)
        for i, faces in enumerate(results):
            if not faces and max(images[i].shape[:2]) > self.detect_side and self.fallback_side > self.detect_side:
                results[i] = self._detect_batch([images[i]], self.fallback_side)[0]
        return results

    def largest_faces(self, images: list[np.ndarray]) -> list[Face | None]:
        return [faces[0] if faces else None for faces in self.detect(images)]
