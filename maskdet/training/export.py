"""ONNX export (self-contained file + metadata), parity check, int8 variant, and loading a maskdet ONNX model."""

import io
import json
import math
import os
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from maskdet import __version__
from maskdet.bundle.mtcnn_cascade import NETWORK_FILES
from maskdet.training.device import CPU_PROVIDERS
from maskdet.vision.faces import CropRule
from maskdet.training.model import NUM_BLOCKS, Embedder, MaskNet, Preprocess, WithSoftmax
from maskdet.vision.mtcnn import onnx_networks
from maskdet.core.threshold import DEFAULT_THRESHOLD, THRESHOLD_KEY, check_threshold

OPSET = 17
INPUT_NAME = "images"
MAX_MODEL_BYTES = 64 * 2**20  # maskdet's models are about 9 MB (float32) and 2.5 MB (int8): ample headroom
# The operators maskdet's exporter and int8 quantiser write. None makes a tensor whose size comes from data, so shape
# inference bounds every tensor before onnxruntime allocates one (ConstantOfShape, Expand or Tile would not: onnxruntime
# folds a ConstantOfShape when it builds the session, and a 300-byte file can ask for 100 GB that way).
MODEL_OPS = {"Add", "Cast", "Clip", "Constant", "Conv", "DequantizeLinear", "Div", "Flatten", "Gemm",
             "GlobalAveragePool", "Identity", "QuantizeLinear", "Softmax", "Sub", "Transpose"}
MAX_TENSOR_ELEMENTS = 16 * 2**20  # in any tensor of a model, per face crop; maskdet's largest at 512 pixels: 6 million


class NotAMaskdetModel(ValueError):
    """The file is not an ONNX model exported by maskdet; str(error) says why."""


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

    Uses torch's TorchScript-based exporter: measured here it exports MobileNetV2 in ~2.5 s against ~14 s
    for the dynamo exporter, and onnxruntime runs both graphs at the same speed."""
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


def onnx_session(path: Path, providers: tuple[str, ...] = CPU_PROVIDERS) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=list(providers))


def export_classifier(model: MaskNet, path: Path, labels: list[str], preprocess: Preprocess, rule: CropRule) -> Path:
    """The deliverable: uint8 RGB NHWC face crops in, class probabilities out, contract in the metadata."""
    export_module(WithSoftmax(model), path, preprocess.input_size, "probabilities")
    write_metadata(path, labels, preprocess, rule)
    return Path(path)


def write_metadata(path: Path, labels: list[str], preprocess: Preprocess, rule: CropRule) -> None:
    proto = onnx.load(str(path))
    values = {"maskdet_version": __version__, "labels": json.dumps(labels),
              "preprocess": json.dumps(preprocess.to_dict()),
              "crop_rule": json.dumps({"margin": rule.margin, "size": rule.size, "square": True, "clamp": True}),
              "opset": str(OPSET)}
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


def write_threshold(source: Path, threshold: float, target: Path) -> None:
    """Write a copy of a model file to target with its class confidence threshold (metadata class_threshold) set."""
    proto = onnx.load(str(source))
    kept = [prop for prop in proto.metadata_props if prop.key != THRESHOLD_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=THRESHOLD_KEY, value=json.dumps(check_threshold(threshold)))
    onnx.save(proto, str(target))


@dataclass
class OnnxClassifier:
    """A maskdet ONNX model loaded into onnxruntime, with its labels and preprocessing contract."""

    path: Path
    session: ort.InferenceSession
    labels: list[str]
    preprocess: Preprocess
    rule: CropRule
    class_threshold: float = DEFAULT_THRESHOLD  # below it a face is "uncertain": chosen on Metrics, or the default

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for uint8 RGB crops (N, S, S, 3)."""
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(crops, dtype=np.uint8)})[0]


def load_classifier(path: Path) -> OnnxClassifier:
    """Open a maskdet ONNX file, or raise NotAMaskdetModel with the reason. Its size, and its metadata against its
    graph, are checked before onnxruntime builds anything from it (crops are allocated from that metadata)."""
    path = Path(path)
    if not path.is_file():
        raise NotAMaskdetModel(f"Model file not found: {path}.")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise NotAMaskdetModel(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; a maskdet model is at most "
                               f"{MAX_MODEL_BYTES // 2**20} MB.")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise unreadable(path, error) from None
    if not proto.graph.node:  # an empty file parses as an empty model
        raise unreadable(path, ValueError("it holds no graph"))
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    try:
        labels = json.loads(meta["labels"])
        preprocess = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in json.loads(meta["preprocess"]).items()})
        crop = json.loads(meta["crop_rule"])
        rule = CropRule(float(crop["margin"]), int(crop["size"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise NotAMaskdetModel(f"{path.name} is an ONNX model but not one exported by maskdet "
                               "(its labels and preprocessing metadata are missing).") from None
    threshold = meta.get(THRESHOLD_KEY)
    problem = contract_problem(proto.graph, labels, preprocess, rule, threshold) or graph_problem(proto)
    if problem:
        raise NotAMaskdetModel(f"{path.name} {problem}.")
    try:
        session = onnx_session(path)
    except Exception as error:
        raise unreadable(path, error) from None
    return OnnxClassifier(path, session, labels, preprocess, rule,
                          DEFAULT_THRESHOLD if threshold is None else float(threshold))


def unreadable(path: Path, error: Exception) -> NotAMaskdetModel:
    return NotAMaskdetModel(f"{path.name} is not a readable ONNX model ({str(error).splitlines()[0][:200]}).")


def dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """A graph input's or output's shape: each side's size, None where it is named (the batch) or unknown."""
    return [dim.dim_value or None for dim in value_info.type.tensor_type.shape.dim]


def contract_problem(graph: onnx.GraphProto, labels, preprocess: Preprocess, rule: CropRule,
                     threshold: str | None = None) -> str | None:
    """What is wrong with a model's metadata against its graph and maskdet's ranges (None: nothing), to follow its
    name in a sentence. `threshold`: the class_threshold metadata (None: absent, the default applies)."""
    from maskdet.training.train import RANGED

    sizes, margins = RANGED["input_size"].metadata["range"], RANGED["crop_margin"].metadata["range"]
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if (len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8 or len(graph.output) != 1
            or len(dims(inputs[0])) != 4 or len(dims(graph.output[0])) != 2):
        return "does not have maskdet's input/output signature"
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(label, str) and label for label in labels)
            and len(set(labels)) == len(labels)):
        return "has no list of two or more distinct class names in its metadata"
    if not (isinstance(preprocess.input_size, int) and sizes[0] <= preprocess.input_size <= sizes[1]
            and rule.size == preprocess.input_size and margins[0] <= rule.margin <= margins[1]):
        return (f"declares {preprocess.input_size}-pixel inputs, {rule.size}-pixel crops and a crop margin of "
                f"{rule.margin:g}; maskdet's models take {sizes[0]}-{sizes[1]} pixels, the same for both, with a "
                f"margin of {margins[0]:g}-{margins[1]:g}")
    side = preprocess.input_size
    if any(found not in (None, wanted) for found, wanted in zip(dims(inputs[0])[1:], (side, side, 3))):
        return f"declares {side}-pixel crops but its graph takes {dims(inputs[0])[1:]}"
    if dims(graph.output[0])[1] not in (len(labels), None):
        return f"names {len(labels)} classes but its graph gives {dims(graph.output[0])[1]} probabilities"
    if threshold is not None:
        try:
            check_threshold(threshold)
        except ValueError:
            return (f"declares a class confidence threshold of {threshold[:20]!r}; maskdet's thresholds are numbers "
                    "between 0 and 1 (not included)")
    return None


def graph_problem(proto: onnx.ModelProto) -> str | None:
    """What makes a model's graph unsafe to build (None: nothing): operators maskdet does not write, or a tensor that
    shape inference cannot bound by MAX_TENSOR_ELEMENTS per crop. To follow the model's name in a sentence."""
    foreign = {node.op_type for node in proto.graph.node if node.domain not in ("", "ai.onnx")
               or node.op_type not in MODEL_OPS}
    if foreign:
        return f"uses operators maskdet's models do not ({', '.join(sorted(foreign)[:5])})"
    try:
        graph = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph
    except Exception as error:
        return f"has a graph whose shapes do not fit together ({str(error).splitlines()[0][:100]})"
    batch = {value.type.tensor_type.shape.dim[0].dim_param for value in graph.input
             if value.type.tensor_type.shape.dim} - {""}  # the batch axis's name
    for value in [*graph.value_info, *graph.output]:
        shape = value.type.tensor_type.shape.dim
        known = value.type.tensor_type.HasField("shape") and all(dim.dim_value or dim.dim_param in batch
                                                                 for dim in shape)
        if not known or math.prod(dim.dim_value or 1 for dim in shape) > MAX_TENSOR_ELEMENTS:
            return f"has a tensor ({value.name[:40]}) of unknown size or over {MAX_TENSOR_ELEMENTS:,} elements a crop"
    return None


def predict_all(classifier: OnnxClassifier, crops, batch_size: int = 64) -> np.ndarray:
    """Probabilities for any number of crops (rows of an array or a DiskArray), a batch at a time."""
    parts = [classifier.predict(crops[start:start + batch_size]) for start in range(0, len(crops), batch_size)]
    return np.concatenate(parts) if parts else classifier.predict(crops[:0])


def parity(classifier: OnnxClassifier, crops, reference: np.ndarray) -> dict:
    """Compare ONNX probabilities with reference (PyTorch) ones on the same crops."""
    probabilities = predict_all(classifier, crops)
    if len(crops) == 0:
        return {"images": 0, "same_argmax": True, "max_probability_difference": 0.0}
    return {"images": int(len(crops)),
            "same_argmax": bool((probabilities.argmax(1) == reference.argmax(1)).all()),
            "argmax_disagreements": int((probabilities.argmax(1) != reference.argmax(1)).sum()),
            "max_probability_difference": float(np.abs(probabilities - reference).max())}


def time_per_image(classifier: OnnxClassifier, batch: int, repeats: int = 5) -> float:
    """Median milliseconds per image at the given batch size."""
    size = classifier.preprocess.input_size
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    classifier.predict(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict(images)
        times.append((time.perf_counter() - start) * 1000 / batch)
    return float(np.median(times))


class _CalibrationReader:
    """Feeds calibration crops to onnxruntime's static quantiser in small batches."""

    def __init__(self, crops: np.ndarray, batch: int = 16):
        self.batches = iter([{INPUT_NAME: crops[i:i + batch]} for i in range(0, len(crops), batch)])

    def get_next(self):
        return next(self.batches, None)


def quantize(source: Path, target: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel, softmax kept float) calibrated on face crops; metadata carried over."""
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


EXPORT_TASKS = ("exporting and checking model.onnx", "quantising to int8", "checking model.int8.onnx")


def export_run(model: MaskNet, folder: Path, labels: list[str], preprocess: Preprocess, rule: CropRule,
               test_crops, test_probabilities: np.ndarray, test_targets: np.ndarray,
               calibration: np.ndarray, with_int8: bool,
               on_task: Callable[[int, int, str], None] = lambda done, total, task: None) -> dict:
    """Write model.onnx (and model.int8.onnx) into folder; return the export part of the run's metrics. on_task(done,
    total, task) is called as each of EXPORT_TASKS (the first only, without int8) begins."""
    tasks = EXPORT_TASKS if with_int8 and len(calibration) else EXPORT_TASKS[:1]
    on_task(0, len(tasks), tasks[0])
    path = export_classifier(model, folder / "model.onnx", labels, preprocess, rule)
    classifier = load_classifier(path)
    result = {"onnx": {"file": path.name, "bytes": path.stat().st_size, "opset": OPSET,
                       "parity": parity(classifier, test_crops, test_probabilities),
                       "ms_per_image_batch1": time_per_image(classifier, 1),
                       "ms_per_image_batch32": time_per_image(classifier, 32)}}
    if len(tasks) > 1:
        on_task(1, len(tasks), tasks[1])
        int8 = load_classifier(quantize(path, folder / "model.int8.onnx", calibration))
        on_task(2, len(tasks), tasks[2])
        int8_probabilities = predict_all(int8, test_crops)
        accuracy = lambda p: float((p.argmax(1) == test_targets).mean()) if len(test_targets) else None
        result["int8"] = {"file": int8.path.name, "bytes": int8.path.stat().st_size,
                          "ms_per_image_batch1": time_per_image(int8, 1),
                          "ms_per_image_batch32": time_per_image(int8, 32),
                          "test_accuracy": accuracy(int8_probabilities),
                          "test_accuracy_delta": (accuracy(int8_probabilities) - accuracy(test_probabilities))
                          if len(test_targets) else None,
                          "parity": parity(int8, test_crops, test_probabilities)}
    return result


BUNDLE_SOURCES = ("README.md", "predict_onnx.py", "mtcnn_cascade.py", "crop_rule.py", "pixels.py")  # maskdet/bundle/


def bundle_zip(run_dir: Path) -> bytes:
    """A zip with everything to use a run's model elsewhere: the ONNX files, MTCNN's three networks, labels,
    preprocessing, card, metrics, and predict_onnx.py with the modules it imports (see maskdet/bundle/README.md)."""
    run_dir = Path(run_dir)
    classifier = load_classifier(run_dir / "model.onnx")
    contract = {"input": {"name": INPUT_NAME, **classifier.preprocess.to_dict(), "shape": ["batch", "size", "size", 3]},
                "output": {"name": "probabilities", "columns": classifier.labels},
                "crop_rule": {"margin": classifier.rule.margin, "size": classifier.rule.size, "square": True,
                              "clamp_to_image": True, "resize": "bilinear"},
                "normalisation": "inside the model: feed raw uint8 RGB"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("model.onnx", "model.int8.onnx", "MODEL_CARD.md", "metrics.json"):
            if (run_dir / name).exists():
                archive.write(run_dir / name, name)
        archive.writestr("labels.json", json.dumps(classifier.labels, indent=2))
        archive.writestr("preprocessing.json", json.dumps(contract, indent=2))
        for name, network in zip(NETWORK_FILES, onnx_networks()):
            archive.writestr(name, network)
        for name in BUNDLE_SOURCES:
            archive.write(Path(__file__).parents[1] / "bundle" / name, name)
    return buffer.getvalue()
