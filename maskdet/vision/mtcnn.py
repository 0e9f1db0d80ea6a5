"""MTCNN with facenet-pytorch's three networks and weights run in onnxruntime: the cascade of
maskdet/bundle/mtcnn_cascade.py (shared with the model bundle) with OpenCV's resize and NMS plugged in.

The same cascade as facenet_pytorch.MTCNN.detect (image pyramid → PNet → NMS → RNet → ONet), without
PyTorch's per-operator overhead on small tensors: about 4x faster on a CPU. `track` runs only the last
stage on the previous frame's boxes, which follows moving faces between full detections.
"""

import io
import warnings
from functools import lru_cache

import cv2
import numpy as np
import onnxruntime as ort

from maskdet.bundle.mtcnn_cascade import Cascade, session


@lru_cache(maxsize=1)
def onnx_networks() -> tuple[bytes, bytes, bytes]:
    """facenet-pytorch's pretrained PNet, RNet and ONet exported to ONNX in memory (about a second, once)."""
    # here, not at the top: serving finds faces without torch, which only this one-off export needs
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    def export(net, size, outputs) -> bytes:
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.eval(), (torch.zeros(1, 3, size, size),), buffer, input_names=["image"],
                              output_names=outputs, opset_version=17, dynamo=False,
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, **{o: {0: "n"} for o in outputs}})
        return buffer.getvalue()

    return (export(PNet(), 12, ["regression", "probability"]), export(RNet(), 24, ["regression", "probability"]),
            export(ONet(), 48, ["regression", "landmarks", "probability"]))


@lru_cache(maxsize=1)
def networks() -> tuple[ort.InferenceSession, ort.InferenceSession, ort.InferenceSession]:
    return tuple(session(model) for model in onnx_networks())


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """OpenCV's greedy IoU suppression, best first: the cascade's rule, over ten times faster than numpy on PNet's
    hundreds of boxes (scores are all > 0 here)."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
    return np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, threshold), np.int64).reshape(-1)


class OnnxMTCNN(Cascade):
    """The cascade on facenet-pytorch's networks, with OpenCV's resize and NMS."""

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709):
        super().__init__(*networks(), min_face_size, thresholds, factor, resize=resize_area, iou_nms=nms)
