"""MTCNN with facenet-pytorch's three networks and weights run in onnxruntime, the glue in numpy and OpenCV.

The same cascade as facenet_pytorch.MTCNN.detect (image pyramid → PNet → NMS → RNet → ONet), without
PyTorch's per-operator overhead on small tensors: about 4x faster on a CPU. `track` runs only the last
stage on the previous frame's boxes, which follows moving faces between full detections.
"""

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import onnxruntime as ort

MIN_FACE_SIDE = 12  # PNet's receptive field


@dataclass(frozen=True)
class Networks:
    pnet: ort.InferenceSession
    rnet: ort.InferenceSession
    onet: ort.InferenceSession


@lru_cache(maxsize=1)
def networks() -> Networks:
    """Export facenet-pytorch's pretrained PNet, RNet and ONet to ONNX in memory (about a second, once)."""
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    def session(net, size, outputs) -> ort.InferenceSession:
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.eval(), (torch.zeros(1, 3, size, size),), buffer, input_names=["image"],
                              output_names=outputs, opset_version=17, dynamo=False,
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, **{o: {0: "n"} for o in outputs}})
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # measured: faster than 2 for these small nets, and leaves a core free
        options.log_severity_level = 3
        return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    return Networks(session(PNet(), 12, ["regression", "probability"]),
                    session(RNet(), 24, ["regression", "probability"]),
                    session(ONet(), 48, ["regression", "landmarks", "probability"]))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first: overlap over union, or over the smaller box."""
    if not by_min:  # OpenCV's: the same rule, over ten times faster on PNet's hundreds of boxes (scores are all > 0 here)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
        return np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, threshold), np.int64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        overlap = width * height
        order = rest[overlap <= threshold * np.maximum(np.minimum(area[best], area[rest]), 1e-9)]
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


def crops(image: np.ndarray, boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (N, 3, side, side) cut from the normalised image, and which boxes gave a crop."""
    height, width = image.shape[:2]
    clipped = np.trunc(boxes).astype(np.int64)
    x1, y1 = np.maximum(clipped[:, 0], 1) - 1, np.maximum(clipped[:, 1], 1) - 1
    x2, y2 = np.minimum(clipped[:, 2], width), np.minimum(clipped[:, 3], height)
    valid = (x2 > x1) & (y2 > y1)
    patches = [cv2.resize(image[b:d, a:c], (side, side), interpolation=cv2.INTER_AREA)
               for a, b, c, d, ok in zip(x1, y1, x2, y2, valid) if ok]
    if not patches:
        return np.zeros((0, 3, side, side), np.float32), valid
    return np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2)), valid


def no_faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)


class OnnxMTCNN:
    """Faces in one RGB image, like MTCNN.detect(landmarks=True): boxes (N, 4) as x1, y1, x2, y2, probabilities (N,)
    and landmarks (N, 5, 2) as x, y of the eyes, the nose tip and the mouth corners (in MTCNN's order: left eye,
    right eye, nose, left mouth corner, right mouth corner, left meaning the image's left)."""

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709):
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor
        self.nets = networks()

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        normalised = (image.astype(np.float32) - 127.5) * 0.0078125
        boxes = self._proposals(normalised)
        if len(boxes):
            boxes = self._refine(normalised, boxes, self.nets.rnet, 24, self.thresholds[1])
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

    def _proposals(self, image: np.ndarray) -> np.ndarray:
        """PNet over the image pyramid: candidate boxes (N, 5) with scores, squared."""
        height, width = image.shape[:2]
        scale = MIN_FACE_SIDE / self.min_face_size
        found = []
        while min(height, width) * scale >= MIN_FACE_SIDE:
            level = cv2.resize(image, (int(width * scale + 1), int(height * scale + 1)), interpolation=cv2.INTER_AREA)
            offsets, probability = self.nets.pnet.run(None, {"image": level.transpose(2, 0, 1)[None]})
            rows, cols = np.nonzero(probability[0, 1] >= self.thresholds[0])
            if len(rows):
                corner = np.stack([cols, rows], axis=1).astype(np.float32)
                boxes = np.concatenate([np.floor((2 * corner + 1) / scale), np.floor((2 * corner + 12) / scale),
                                        probability[0, 1, rows, cols, None], offsets[0][:, rows, cols].T], axis=1)
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= self.factor
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return np.concatenate([squared(regress(boxes[:, :4], boxes[:, 5:9], plus_one=False)), boxes[:, 4:5]], axis=1)

    def _refine(self, image: np.ndarray, boxes: np.ndarray, net: ort.InferenceSession, side: int,
                threshold: float) -> np.ndarray:
        """RNet: keep the boxes it scores above threshold, regressed and squared, with their new scores."""
        inputs, valid = crops(image, boxes[:, :4], side)
        boxes = boxes[valid]
        offsets, probability = net.run(None, {"image": inputs})
        keep = probability[:, 1] > threshold
        boxes, offsets, scores = boxes[keep], offsets[keep], probability[keep, 1]
        picked = nms(boxes[:, :4], scores, 0.7)
        return np.concatenate([squared(regress(boxes[picked], offsets[picked])), scores[picked, None]], axis=1)

    def _final(self, image: np.ndarray, boxes: np.ndarray,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ONet: final boxes, probabilities and landmarks."""
        inputs, valid = crops(image, boxes, 48)
        boxes = boxes[valid]
        if len(boxes) == 0:
            return no_faces()
        offsets, points, probability = self.nets.onet.run(None, {"image": inputs})
        keep = probability[:, 1] > threshold
        boxes, offsets, points, scores = boxes[keep], offsets[keep], points[keep], probability[keep, 1]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1  # landmarks are relative to the box before regression
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * size[:, None, :] + boxes[:, None, 0:2] - 1
        boxes = regress(boxes, offsets)
        picked = nms(boxes, scores, 0.7, by_min=True)
        return boxes[picked].astype(np.float32), scores[picked].astype(np.float32), landmarks[picked].astype(np.float32)
