"""Exporting a trained model to ONNX (one self-contained file with the contract in its metadata), checking it against
PyTorch, and its int8 variant."""

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from maskdet import __version__
from maskdet.bundle.mtcnn_cascade import DETECTOR_KEY, DetectorSettings
from maskdet.core.contract import INPUT_NAME, OPSET, CropRule, Preprocess
from maskdet.serving.classifier import load_classifier, parity, predict_all, time_side_by_side
from maskdet.training.config import NUM_BLOCKS
from maskdet.training.model import Embedder, MaskNet, WithSoftmax


class Front(nn.Module):
    """Normalisation and the backbone up to (not including) features[cut]: the frozen part during fine-tuning."""

    def __init__(self, model: MaskNet, cut: int):
        super().__init__()
        self.model, self.cut = model, cut

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.model.mean) / self.model.std
        return self.model.features[: self.cut](x)


def front_cut(blocks: int) -> int:
    """Index into model.features where the fine-tuned tail starts."""
    return NUM_BLOCKS + 1 - min(blocks, NUM_BLOCKS)


def export_module(module: nn.Module, path: Path, input_size: int, output_name: str) -> Path:
    """Export a module taking uint8 NHWC images to one self-contained ONNX file with a dynamic batch axis.

    Uses torch's TorchScript-based exporter: several times faster than the dynamo exporter, for graphs onnxruntime
    runs at the same speed (docs/performance.md, "Measurements behind constants in the code")."""
    module.eval()
    example = torch.zeros((2, input_size, input_size, 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=[output_name],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return Path(path)


def export_embedder(model: MaskNet, path: Path, input_size: int) -> Path:
    return export_module(Embedder(model), path, input_size, "features")


def export_front(model: MaskNet, cut: int, path: Path, input_size: int) -> Path:
    return export_module(Front(model, cut), path, input_size, "activations")


def export_classifier(model: MaskNet, path: Path, labels: list[str], preprocess: Preprocess, rule: CropRule,
                      detector: DetectorSettings = DetectorSettings()) -> Path:
    """The deliverable: uint8 RGB NHWC face crops in, class probabilities out, contract in the metadata."""
    export_module(WithSoftmax(model), path, preprocess.input_size, "probabilities")
    write_metadata(path, labels, preprocess, rule, detector)
    return Path(path)


def write_metadata(path: Path, labels: list[str], preprocess: Preprocess, rule: CropRule,
                   detector: DetectorSettings) -> None:
    proto = onnx.load(str(path))
    values = {"maskdet_version": __version__, "labels": json.dumps(labels),
              "preprocess": json.dumps(preprocess.to_dict()),
              "crop_rule": json.dumps({"margin": rule.margin, "size": rule.size, "square": True, "clamp": True}),
              DETECTOR_KEY: json.dumps(detector.to_dict()), "opset": str(OPSET)}
    del proto.metadata_props[:]
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "maskdet"
    proto.doc_string = ("maskdet face-mask classifier. Input 'images': uint8 RGB face crops, NHWC, "
                        f"{preprocess.input_size}x{preprocess.input_size}; output 'probabilities': one column per label "
                        "in metadata 'labels'. Normalisation is inside the graph.")
    temporary = Path(f"{path}.tmp")
    onnx.save(proto, str(temporary))
    os.replace(temporary, path)


class _CalibrationReader:
    """Feeds calibration crops to onnxruntime's static quantiser in small batches."""

    def __init__(self, crops: np.ndarray, batch: int = 16):
        self.batches = iter([{INPUT_NAME: crops[i:i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize(source: Path, target: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel, softmax kept float) calibrated on face crops; metadata carried over."""
    # here, for speed: the quantisation toolkit takes about a second to import, and only int8 exports need it
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(f"{target}.pre.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        softmax = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Softmax"]
        quantize_static(str(prepared), str(target), _CalibrationReader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=softmax)  # keep probabilities in float: they sum to 1
    finally:
        prepared.unlink(missing_ok=True)
    original = onnx.load(str(source))
    quantized = onnx.load(str(target))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(original.metadata_props)
    quantized.metadata_props.add(key="quantization", value="int8 static QDQ per-channel")
    onnx.save(quantized, str(target))
    return target


EXPORT_TASKS = ("exporting model.onnx", "checking model.onnx against PyTorch", "quantising to int8",
                "checking model.int8.onnx", "timing float32 and int8 side by side")
FLOAT_TASKS = ("exporting model.onnx", "checking model.onnx against PyTorch", "timing model.onnx")  # int8 off


def export_run(model: MaskNet, folder: Path, labels: list[str], preprocess: Preprocess, rule: CropRule,
               test_crops, test_probabilities: np.ndarray, test_targets: np.ndarray,
               calibration: np.ndarray, with_int8: bool,
               on_task: Callable[[int, int, str], None] = lambda done, total, task: None,
               detector: DetectorSettings = DetectorSettings()) -> dict:
    """Write model.onnx (and model.int8.onnx) into folder; return the export part of the run's metrics. on_task(done,
    total, task) is called as each of EXPORT_TASKS (FLOAT_TASKS without int8) begins, and before each timing round.

    The files are timed last, side by side in alternating rounds on the same test faces (serving.classifier's
    time_side_by_side): a file's "timing" holds the median and range of its rounds at batch 1 and 32, and whether the
    machine was busy meanwhile; ms_per_image_batch1/32 keep the medians for older readers."""
    tasks = EXPORT_TASKS if with_int8 and len(calibration) else FLOAT_TASKS
    on_task(0, len(tasks), tasks[0])
    path = export_classifier(model, folder / "model.onnx", labels, preprocess, rule, detector)
    on_task(1, len(tasks), tasks[1])
    classifier = load_classifier(path)
    result = {"onnx": {"file": path.name, "bytes": path.stat().st_size, "opset": OPSET,
                       "parity": parity(classifier, test_crops, test_probabilities)}}
    timed = {"onnx": classifier}
    if tasks == EXPORT_TASKS:
        on_task(2, len(tasks), tasks[2])
        int8 = load_classifier(quantize(path, folder / "model.int8.onnx", calibration))
        on_task(3, len(tasks), tasks[3])
        int8_probabilities = predict_all(int8, test_crops)
        accuracy = lambda p: float((p.argmax(1) == test_targets).mean()) if len(test_targets) else None
        result["int8"] = {"file": int8.path.name, "bytes": int8.path.stat().st_size,
                          "test_accuracy": accuracy(int8_probabilities),
                          "test_accuracy_delta": (accuracy(int8_probabilities) - accuracy(test_probabilities))
                          if len(test_targets) else None,
                          "parity": parity(int8, test_crops, test_probabilities)}
        timed["int8"] = int8
    last = len(tasks) - 1
    timings = time_side_by_side(timed, np.asarray(test_crops[:32]), on_round=lambda done, total: on_task(
        last, len(tasks), f"{tasks[last]}, round {done + 1} of {total}"))
    for name, by_batch in timings.items():
        result[name].update({f"ms_per_image_batch{batch}": timing.median for batch, timing in by_batch.items()})
        result[name]["timing"] = {f"batch{batch}": timing.to_dict() for batch, timing in by_batch.items()}
    return result
