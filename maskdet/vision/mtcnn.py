"""MTCNN's three networks run in onnxruntime: the cascade of maskdet/bundle/mtcnn_cascade.py (shared with the model
bundle) with OpenCV's resize and NMS plugged in.

NETWORKS holds the sets of networks (bundle/mtcnn_cascade.py: NETWORK_SETS; a model's DetectorSettings names its
set): "facenet" (the default), facenet-pytorch's pretrained three, exported to ONNX in memory (once; torch needed);
and "masked", its PNet and RNet with ONet fine-tuned on masked faces, shipped in vision/networks/ (made by
scripts/finetune_mtcnn.py from masks-small; how, and their validation figures, in networks/detector.json). On real
scenes the masked set finds more masked faces but fewer bare and small ones (docs/performance.md, Real scenes).

The same cascade as facenet_pytorch.MTCNN.detect (image pyramid → PNet → NMS → RNet → ONet), without
PyTorch's per-operator overhead on small tensors: about 4x faster on a CPU. `track` runs only the last
stage on the previous frame's boxes, which follows moving faces between full detections.
"""

import io
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from maskdet.bundle.mtcnn_cascade import NETWORK_FILES, Cascade, session

SHIPPED = Path(__file__).with_name("networks")


def masked_networks() -> tuple[bytes, bytes, bytes]:
    """The shipped networks fine-tuned on masked faces (PNet, RNet, ONet) as ONNX bytes."""
    return tuple((SHIPPED / name).read_bytes() for name in NETWORK_FILES)


@lru_cache(maxsize=1)
def facenet_networks() -> tuple[bytes, bytes, bytes]:
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


NETWORKS = {"facenet": facenet_networks, "masked": masked_networks}  # by NETWORK_SETS name


@lru_cache(maxsize=len(NETWORKS))
def networks(name: str = "facenet") -> tuple[ort.InferenceSession, ort.InferenceSession, ort.InferenceSession]:
    return tuple(session(model) for model in NETWORKS[name]())


def resize_area(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """OpenCV's greedy IoU suppression, best first: the cascade's rule, over ten times faster than numpy on PNet's
    hundreds of boxes (scores are all > 0 here)."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], axis=1)
    return np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, threshold), np.int64).reshape(-1)


class OnnxMTCNN(Cascade):
    """The cascade on one set of NETWORKS (facenet-pytorch's by default), with OpenCV's resize and NMS."""

    def __init__(self, min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, network_set: str = "facenet"):
        super().__init__(*networks(network_set), min_face_size, thresholds, factor, resize=resize_area, iou_nms=nms)
