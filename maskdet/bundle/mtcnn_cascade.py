"""MTCNN's cascade (image pyramid → PNet → NMS → RNet → ONet) in numpy over its three networks in onnxruntime,
and finding the faces of a whole photo with it. Needs only numpy and onnxruntime.

The same cascade as facenet_pytorch.MTCNN.detect. maskdet runs it with OpenCV's resize and NMS plugged in
(maskdet/vision/mtcnn.py: faster); the model bundle runs it with the numpy defaults here, which give the same results
within float rounding (resize_area is OpenCV's INTER_AREA, nms is OpenCV's NMSBoxes rule).
"""

import json
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np
import onnxruntime as ort

MIN_FACE_SIDE = 12  # PNet's receptive field
NETWORK_FILES = ("mtcnn_pnet.onnx", "mtcnn_rnet.onnx", "mtcnn_onet.onnx")  # their names in the model bundle
DETECTOR_KEY = "detector"  # a model's metadata entry holding its DetectorSettings as JSON
# The sets of networks: facenet-pytorch's pretrained three; or its PNet and RNet with ONet fine-tuned on masked faces
# (maskdet/vision/networks/, made by scripts/finetune_mtcnn.py). A model bundle ships its model's set.
NETWORK_SETS = ("facenet", "masked")


@dataclass(frozen=True)
class DetectorSettings:
    """How the faces of a photo are found: one set for `maskdet predict`, evaluate, the Live page and the bundle's
    script, written into each model's metadata so that a downloaded model finds the same faces as maskdet."""

    search_side: int = 640  # MTCNN searches a copy whose longer side is at most this many pixels
    min_face_size: int = 20  # the smallest face looked for, in pixels of that copy (MTCNN's window is 12)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # PNet's, RNet's and ONet's face probability
    min_probability: float = 0.0  # faces found with a lower face probability are dropped
    max_faces: int = 200  # faces kept per photo, largest first: a crowd photo's
    pad_fraction: float = 0.25  # none found: search again with a border of this fraction of the longer side
    networks: str = "facenet"  # one of NETWORK_SETS

    def __post_init__(self):
        problem = self.problem()
        if problem:
            raise ValueError(f"Detector settings: {problem}.")

    def problem(self) -> str | None:
        """What is out of range (None: nothing)."""
        if not (isinstance(self.search_side, int) and 64 <= self.search_side <= 4096):
            return f"search_side is {self.search_side!r}, not a whole number of pixels from 64 to 4096"
        if not (isinstance(self.min_face_size, int) and MIN_FACE_SIDE <= self.min_face_size <= self.search_side):
            return f"min_face_size is {self.min_face_size!r}, not from {MIN_FACE_SIDE} to search_side pixels"
        if not (len(self.thresholds) == 3 and all(isinstance(t, (int, float)) and 0 < t < 1 for t in self.thresholds)):
            return f"thresholds are {self.thresholds!r}, not three numbers between 0 and 1"
        if not (isinstance(self.min_probability, (int, float)) and 0 <= self.min_probability < 1):
            return f"min_probability is {self.min_probability!r}, not from 0 to below 1"
        if not (isinstance(self.max_faces, int) and 1 <= self.max_faces <= 1000):
            return f"max_faces is {self.max_faces!r}, not a whole number from 1 to 1000"
        if not (isinstance(self.pad_fraction, (int, float)) and 0 <= self.pad_fraction <= 1):
            return f"pad_fraction is {self.pad_fraction!r}, not from 0 to 1"
        if self.networks not in NETWORK_SETS:
            return f"networks is {self.networks!r}, not one of {', '.join(NETWORK_SETS)}"
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, values) -> "DetectorSettings":
        """Settings from a JSON object (those it leaves out keep their defaults); ValueError when it is not one."""
        names = {field.name for field in fields(cls)}
        if not isinstance(values, dict) or set(values) - names:
            raise ValueError(f"Detector settings must be an object with some of {', '.join(sorted(names))}.")
        if "thresholds" in values:
            thresholds = values["thresholds"]
            values = {**values, "thresholds": tuple(thresholds) if isinstance(thresholds, list) else thresholds}
        return cls(**values)

    @classmethod
    def of_model(cls, metadata: dict[str, str], parse: Callable = json.loads) -> "DetectorSettings":
        """A model's settings from its metadata (maskdet's defaults for a model exported without them); ValueError
        when they are not settings."""
        text = metadata.get(DETECTOR_KEY)
        return cls() if text is None else cls.from_dict(parse(text))


def session(model) -> ort.InferenceSession:
    """One network (ONNX bytes or a file path) in onnxruntime on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # faster than 2 for these small nets, and leaves a core free (docs/performance.md)
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def _axis_shape(axis: int, ndim: int) -> list[int]:
    return [-1 if dimension == axis else 1 for dimension in range(ndim)]


def _area_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Shrink one axis to `size` by averaging the input over each output pixel's span."""
    length = image.shape[axis]
    edges = np.arange(size + 1) * length / size
    starts = np.floor(edges).astype(np.int64)  # strictly increasing when shrinking
    fractions = (edges - starts).reshape(_axis_shape(axis, image.ndim))
    cut = fractions * np.take(image, np.minimum(starts, length - 1), axis)  # the part of a pixel before an edge
    return (np.add.reduceat(image, starts[:-1], axis) + np.diff(cut, axis=axis)) * (size / length)


def _two_tap_axis(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """OpenCV's INTER_AREA along one axis when the other is enlarged: each output pixel blends two neighbours (by
    their overlap with it when this axis is enlarged too)."""
    length = image.shape[axis]
    first = np.floor(np.arange(size) * (length / size)).astype(np.int64)
    weight = np.arange(1, size + 1) - (first + 1) * (size / length)
    weight = np.where((weight <= 0) | (first >= length - 1), 0.0, weight - np.floor(weight))
    first = np.minimum(first, length - 1)
    weight = weight.reshape(_axis_shape(axis, image.ndim))
    return np.take(image, first, axis) * (1 - weight) + np.take(image, np.minimum(first + 1, length - 1), axis) * weight


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's INTER_AREA resize: pixel-area averaging when both sides shrink, else two-tap blending; uint8 in, uint8
    out (halves rounded up, as OpenCV does when shrinking), float32 otherwise."""
    shrinking = width <= image.shape[1] and height <= image.shape[0]
    resize_axis = _area_axis if shrinking else _two_tap_axis
    resized = resize_axis(resize_axis(image.astype(np.float64), height, 0), width, 1)
    if image.dtype == np.uint8:
        return np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8)
    return resized.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first: a box goes when its overlap with a kept one is
    above threshold times their union (IoU, OpenCV's NMSBoxes rule) or times the smaller box's area."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        overlap = width * height
        base = np.minimum(area[best], area[rest]) if by_min else area[best] + area[rest] - overlap
        order = rest[overlap <= threshold * np.maximum(base, 1e-9)]
    return np.array(keep, dtype=np.int64)


def squared(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square around their centre (side = the longer side)."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def regress(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool = True) -> np.ndarray:
    """Apply a network's box regression (offsets in units of the box size)."""
    size = boxes[:, 2:4] - boxes[:, 0:2] + (1 if plus_one else 0)
    return boxes[:, :4] + offsets * np.concatenate([size, size], axis=1)


def no_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)


@dataclass
class Cascade:
    """Faces in one RGB image, like MTCNN.detect(landmarks=True): boxes (N, 4) as x1, y1, x2, y2, probabilities (N,)
    and landmarks (N, 5, 2) as x, y of the eyes, the nose tip and the mouth corners (in MTCNN's order: left eye,
    right eye, nose, left mouth corner, right mouth corner, left meaning the image's left).

    `resize(image, width, height)` must average pixel areas (resize_area); `iou_nms(boxes, scores, threshold)` must
    keep what nms keeps."""

    pnet: ort.InferenceSession
    rnet: ort.InferenceSession
    onet: ort.InferenceSession
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    resize: Callable[[np.ndarray, int, int], np.ndarray] = resize_area
    iou_nms: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = nms

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        normalised = (image.astype(np.float32) - 127.5) * 0.0078125
        boxes = self._proposals(normalised)
        if len(boxes):
            boxes = self._refine(normalised, boxes)
        if len(boxes):
            return self._final(normalised, boxes[:, :4], self.thresholds[2])
        return no_faces()

    def track(self, image: np.ndarray, boxes: np.ndarray,
              threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last stage alone on known boxes: where each face is in this image, and whether it is still there."""
        if len(boxes) == 0:
            return no_faces()
        return self._final((image.astype(np.float32) - 127.5) * 0.0078125, squared(np.asarray(boxes, np.float32)),
                           threshold)

    def _crops(self, image: np.ndarray, boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs (N, 3, side, side) cut from the normalised image, and which boxes gave a crop."""
        height, width = image.shape[:2]
        clipped = np.trunc(boxes).astype(np.int64)
        x1, y1 = np.maximum(clipped[:, 0], 1) - 1, np.maximum(clipped[:, 1], 1) - 1
        x2, y2 = np.minimum(clipped[:, 2], width), np.minimum(clipped[:, 3], height)
        valid = (x2 > x1) & (y2 > y1)
        patches = [self.resize(image[b:d, a:c], side, side) for a, b, c, d, ok in zip(x1, y1, x2, y2, valid) if ok]
        if not patches:
            return np.zeros((0, 3, side, side), np.float32), valid
        return np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2)), valid

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """PNet over the image pyramid: candidate boxes (N, 5) with scores, squared."""
        height, width = image.shape[:2]
        scale = MIN_FACE_SIDE / self.min_face_size
        found = []
        while min(height, width) * scale >= MIN_FACE_SIDE:
            level = self.resize(image, int(width * scale + 1), int(height * scale + 1))
            offsets, probability = self.pnet.run(None, {"image": level.transpose(2, 0, 1)[None]})
            rows, cols = np.nonzero(probability[0, 1] >= self.thresholds[0])
            if len(rows):
                corner = np.stack([cols, rows], axis=1).astype(np.float32)
                boxes = np.concatenate([np.floor((2 * corner + 1) / scale), np.floor((2 * corner + 12) / scale),
                                        probability[0, 1, rows, cols, None], offsets[0][:, rows, cols].T], axis=1)
                found.append(boxes[self.iou_nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= self.factor
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[self.iou_nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return np.concatenate([squared(regress(boxes[:, :4], boxes[:, 5:9], plus_one=False)), boxes[:, 4:5]], axis=1)

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """RNet: keep the boxes it scores above its threshold, regressed and squared, with their new scores."""
        inputs, valid = self._crops(image, boxes[:, :4], 24)
        boxes = boxes[valid]
        offsets, probability = self.rnet.run(None, {"image": inputs})
        keep = probability[:, 1] > self.thresholds[1]
        boxes, offsets, scores = boxes[keep], offsets[keep], probability[keep, 1]
        picked = self.iou_nms(boxes[:, :4], scores, 0.7)
        return np.concatenate([squared(regress(boxes[picked], offsets[picked])), scores[picked, None]], axis=1)

    def _final(self, image: np.ndarray, boxes: np.ndarray,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ONet: final boxes, probabilities and landmarks."""
        inputs, valid = self._crops(image, boxes, 48)
        boxes = boxes[valid]
        if len(boxes) == 0:
            return no_faces()
        offsets, points, probability = self.onet.run(None, {"image": inputs})
        keep = probability[:, 1] > threshold
        boxes, offsets, points, scores = boxes[keep], offsets[keep], points[keep], probability[keep, 1]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1  # landmarks are relative to the box before regression
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * size[:, None, :] + boxes[:, None, 0:2] - 1
        boxes = regress(boxes, offsets)
        picked = nms(boxes, scores, 0.7, by_min=True)
        return boxes[picked].astype(np.float32), scores[picked].astype(np.float32), landmarks[picked].astype(np.float32)


# ---- a whole photo: search a smaller (or padded) copy, map the faces back --------------------------------------

Detection = tuple[tuple[float, float, float, float], float, tuple[tuple[float, float], ...]]  # box, probability, landmarks


def shrunk_shape(height: int, width: int, side: int) -> tuple[int, int, float]:
    """Height and width of a copy whose longer side is at most `side`, and the scale applied."""
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return height, width, 1.0
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def shrink(image: np.ndarray, side: int, resize=resize_area) -> tuple[np.ndarray, float]:
    """A copy whose longer side is at most `side`, and the scale applied."""
    height, width, scale = shrunk_shape(*image.shape[:2], side)
    return (image, 1.0) if scale == 1.0 else (resize(image, width, height), scale)


def pad_border(image: np.ndarray, pad: int) -> np.ndarray:
    """The image on a canvas `pad` pixels larger on every side, filled with the image's mean colour."""
    height, width, channels = image.shape
    canvas = np.empty((height + 2 * pad, width + 2 * pad, channels), image.dtype)
    canvas[:] = np.round(image.reshape(-1, channels).mean(axis=0))
    canvas[pad:pad + height, pad:pad + width] = image
    return canvas


def image_faces(boxes: np.ndarray, probabilities: np.ndarray, landmarks: np.ndarray, scale: float, pad: int,
                width: int, height: int, min_probability: float = 0.0) -> list[Detection]:
    """Detections on a shrunk (and padded) copy mapped back to the width x height image, clipped to it, weak or
    degenerate ones dropped, largest first."""
    faces = []
    for box, probability, points in zip(boxes / scale - pad, probabilities, landmarks / scale - pad):
        x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
        x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
        if probability >= min_probability and x2 - x1 >= 2 and y2 - y1 >= 2:
            faces.append(((x1, y1, x2, y2), float(probability), tuple((float(x), float(y)) for x, y in points)))
    return sorted(faces, key=lambda face: (face[0][2] - face[0][0]) * (face[0][3] - face[0][1]), reverse=True)


def faces_on_copy(cascade: Cascade, image: np.ndarray, side: int, pad: int = 0,
                  min_probability: float = 0.0) -> list[Detection]:
    """The faces of an RGB image found on a copy padded by `pad` pixels of its mean colour on every side (0: none)
    and shrunk so that its longer side is at most `side`."""
    small, scale = shrink(pad_border(image, pad) if pad else image, side, cascade.resize)
    if min(small.shape[:2]) < MIN_FACE_SIDE:
        return []
    return image_faces(*cascade.detect(small), scale, pad, image.shape[1], image.shape[0], min_probability)


def find_faces(cascade: Cascade, image: np.ndarray, side: int, fallback_side: int, pad_fraction: float,
               min_probability: float = 0.0, max_search_pixels: float = float("inf")) -> list[Detection]:
    """All faces of an RGB image, largest first. Searched on a copy whose longer side is at most `side`; when none
    is found, on one at most `fallback_side` (if larger); then the same on a copy padded by pad_fraction of the
    longer side on every side: a face that fills the photo (a masked close-up) has its box partly outside it, where
    MTCNN cannot place it. The search stops before a copy would bring the pixels searched past max_search_pixels."""
    pads = [0, round(max(image.shape[:2]) * pad_fraction)] if pad_fraction > 0 else [0]
    searched = 0
    for pad in pads:
        larger = fallback_side > side and max(image.shape[:2]) + 2 * pad > side
        for size in [side, fallback_side] if larger else [side]:
            height, width, _ = shrunk_shape(image.shape[0] + 2 * pad, image.shape[1] + 2 * pad, size)
            searched += height * width
            if searched > max_search_pixels:
                return []
            faces = faces_on_copy(cascade, image, size, pad, min_probability)
            if faces:
                return faces
    return []
