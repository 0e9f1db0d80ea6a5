"""Loading a maskdet ONNX model into onnxruntime, after checking it keeps the contract (maskdet.core.contract) and is
safe to build; running it on face crops. No torch."""

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from maskdet.core.contract import (CROP_MARGINS, INPUT_NAME, INPUT_SIZES, MAX_MACS_PER_CROP, MAX_TENSOR_ELEMENTS,
                                   MAX_WEIGHT_ELEMENTS, MODEL_OPS, CropRule, Preprocess)
from maskdet.bundle.mtcnn_cascade import DetectorSettings
from maskdet.core.errors import MaskdetError
from maskdet.core.json_text import parse_json
from maskdet.core.threshold import DEFAULT_THRESHOLD, THRESHOLD_KEY, check_threshold
from maskdet.core.timing import OtherWork, Timing

MAX_MODEL_BYTES = 64 * 2**20  # maskdet's models are about 9 MB (float32) and 2.5 MB (int8): ample headroom
MAX_RUN_BYTES = 256 * 2**20  # a run of the model on a batch of crops holds at most this much in its largest tensor
CPU_PROVIDERS = ("CPUExecutionProvider",)


class NotAMaskdetModel(MaskdetError):
    """The file is not an ONNX model exported by maskdet; str(error) says why."""


def onnx_session(path: Path, providers: tuple[str, ...] = CPU_PROVIDERS) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=list(providers))


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
    detector: DetectorSettings = DetectorSettings()  # how the faces it classifies are found
    crops_per_run: int = 64  # crops the model takes at once, so that its largest tensor holds MAX_RUN_BYTES at most

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for uint8 RGB crops (N, S, S, 3), crops_per_run at a time."""
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.concatenate([
            self.session.run(None, {INPUT_NAME: np.ascontiguousarray(crops[start:start + self.crops_per_run],
                                                                     dtype=np.uint8)})[0]
            for start in range(0, len(crops), self.crops_per_run)])


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
        labels = parse_json(meta["labels"])
        preprocess = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in parse_json(meta["preprocess"]).items()})
        crop = parse_json(meta["crop_rule"])
        rule = CropRule(float(crop["margin"]), int(crop["size"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise NotAMaskdetModel(f"{path.name} is an ONNX model but not one exported by maskdet "
                               "(its labels and preprocessing metadata are missing).") from None
    threshold = meta.get(THRESHOLD_KEY)
    try:
        detector = DetectorSettings.of_model(meta, parse_json)
    except (ValueError, TypeError) as error:
        raise NotAMaskdetModel(f"{path.name} has detector settings maskdet cannot use in its metadata "
                               f"({str(error)[:200]}).") from None
    problem = contract_problem(proto.graph, labels, preprocess, rule, threshold)
    cost = GraphCost(problem) if problem else graph_cost(proto)
    if cost.problem:
        raise NotAMaskdetModel(f"{path.name} {cost.problem}.")
    try:
        session = onnx_session(path)
    except Exception as error:
        raise unreadable(path, error) from None
    return OnnxClassifier(path, session, labels, preprocess, rule,
                          DEFAULT_THRESHOLD if threshold is None else float(threshold), detector,
                          max(1, MAX_RUN_BYTES // (4 * max(1, cost.largest_tensor))))


def unreadable(path: Path, error: Exception) -> NotAMaskdetModel:
    return NotAMaskdetModel(f"{path.name} is not a readable ONNX model ({str(error).splitlines()[0][:200]}).")


def dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """A graph input's or output's shape: each side's size, None where it is named (the batch) or unknown."""
    return [dim.dim_value or None for dim in value_info.type.tensor_type.shape.dim]


def contract_problem(graph: onnx.GraphProto, labels, preprocess: Preprocess, rule: CropRule,
                     threshold: str | None = None) -> str | None:
    """What is wrong with a model's metadata against its graph and maskdet's ranges (None: nothing), to follow its
    name in a sentence. `threshold`: the class_threshold metadata (None: absent, the default applies)."""
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    if (len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8 or len(graph.output) != 1
            or len(dims(inputs[0])) != 4 or len(dims(graph.output[0])) != 2):
        return "does not have maskdet's input/output signature"
    if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(label, str) and label for label in labels)
            and len(set(labels)) == len(labels)):
        return "has no list of two or more distinct class names in its metadata"
    (low_size, high_size), (low_margin, high_margin) = INPUT_SIZES, CROP_MARGINS
    if not (isinstance(preprocess.input_size, int) and low_size <= preprocess.input_size <= high_size
            and rule.size == preprocess.input_size and low_margin <= rule.margin <= high_margin):
        return (f"declares {preprocess.input_size}-pixel inputs, {rule.size}-pixel crops and a crop margin of "
                f"{rule.margin:g}; maskdet's models take {low_size}-{high_size} pixels, the same for both, with a "
                f"margin of {low_margin:g}-{high_margin:g}")
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


@dataclass(frozen=True)
class GraphCost:
    """What running a model costs, read from its graph before it runs: what makes it unsafe (None: nothing), and the
    elements a crop takes in its largest tensor."""

    problem: str | None
    largest_tensor: int = 0


def graph_cost(proto: onnx.ModelProto) -> GraphCost:
    """A model's cost, and what makes its graph unsafe to build or to run: operators maskdet does not write; weights
    that are sparse, kept in other files, or more than MAX_WEIGHT_ELEMENTS in all; a tensor that shape inference cannot
    bound by MAX_TENSOR_ELEMENTS per crop; more than MAX_MACS_PER_CROP multiply-adds a crop. The problem follows the
    model's name in a sentence."""
    foreign = {node.op_type for node in proto.graph.node if node.domain not in ("", "ai.onnx")
               or node.op_type not in MODEL_OPS}
    if foreign:
        return GraphCost(f"uses operators maskdet's models do not ({', '.join(sorted(foreign)[:5])})")
    problem = weights_problem(proto.graph)
    if problem:
        return GraphCost(problem)
    try:
        graph = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph
    except Exception as error:
        return GraphCost(f"has a graph whose shapes do not fit together ({str(error).splitlines()[0][:100]})")
    batch = {value.type.tensor_type.shape.dim[0].dim_param for value in graph.input
             if value.type.tensor_type.shape.dim} - {""}  # the batch axis's name
    largest = 0
    for value in [*graph.value_info, *graph.output]:
        shape = value.type.tensor_type.shape.dim
        known = value.type.tensor_type.HasField("shape") and all(dim.dim_value or dim.dim_param in batch
                                                                 for dim in shape)
        elements = math.prod(dim.dim_value or 1 for dim in shape)
        if not known or elements > MAX_TENSOR_ELEMENTS:
            return GraphCost(f"has a tensor ({value.name[:40]}) of unknown size or over {MAX_TENSOR_ELEMENTS:,} "
                             "elements a crop")
        largest = max(largest, elements)
    macs = macs_per_crop(graph)
    if macs > MAX_MACS_PER_CROP:
        return GraphCost(f"takes {macs / 1e9:.1f} billion multiply-adds a face crop; maskdet's models take at most "
                         f"{MAX_MACS_PER_CROP / 1e9:g} billion")
    return GraphCost(None, largest)


def weights_problem(graph: onnx.GraphProto) -> str | None:
    """What is wrong with a graph's weights (initializers and constants), before anything is allocated for them."""
    constants = [attribute for node in graph.node if node.op_type == "Constant" for attribute in node.attribute]
    if graph.sparse_initializer or any(attribute.name == "sparse_value" for attribute in constants):
        return "holds sparse weights, which maskdet's models do not"
    tensors = [*graph.initializer, *(attribute.t for attribute in constants if attribute.name == "value")]
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in tensors):
        return "keeps weights in other files, which maskdet's models do not"
    total = sum(math.prod(tensor.dims) for tensor in tensors)
    if total > MAX_WEIGHT_ELEMENTS:
        return f"declares {total:,} weights; maskdet's models hold at most {MAX_WEIGHT_ELEMENTS:,}"
    return None


def macs_per_crop(graph: onnx.GraphProto) -> int:
    """Multiply-adds of one face crop through a shape-inferred graph's convolutions and fully connected layers."""
    shapes = {value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
              for value in [*graph.input, *graph.value_info, *graph.output]}
    shapes.update({tensor.name: list(tensor.dims) for tensor in graph.initializer})
    total = 0
    for node in graph.node:
        if node.op_type == "Conv":  # each output value: in-channels of its group x the kernel's area
            weight = shapes.get(node.input[1], [])
            total += math.prod(shapes.get(node.output[0], [0])[1:]) * math.prod(weight[1:])
        elif node.op_type == "Gemm":  # each crop: one row times the weight matrix
            total += math.prod(shapes.get(node.input[1], []))
    return total


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


TIMING_ROUNDS = 7  # rounds of each model a timing takes the median and range of
SINGLE_FACES = 4  # faces timed one at a time in a round (one face takes a few milliseconds: too short to time alone)


def time_side_by_side(classifiers: dict[str, OnnxClassifier], faces: np.ndarray, rounds: int = TIMING_ROUNDS,
                      on_round: Callable[[int, int], None] = lambda done, total: None) -> dict[str, dict[int, Timing]]:
    """Milliseconds per face of each model at batch 1 and batch 32, on the same faces (repeated to 32; random pixels
    when there are none), in alternating rounds, so that every model meets the machine in the same state: a round
    classifies SINGLE_FACES faces one at a time, then 32 at once, with each model in turn (the order reversed every
    other round). Each timing is marked busy when other processes took more than BUSY_SHARE of the CPU meanwhile.
    on_round(done, rounds) is called before each round."""
    first = next(iter(classifiers.values()))
    size = first.preprocess.input_size
    if len(faces):
        batch = np.resize(np.asarray(faces[:32], dtype=np.uint8), (32, size, size, 3))
    else:
        batch = np.random.default_rng(0).integers(0, 255, (32, size, size, 3), dtype=np.uint8)
    for classifier in classifiers.values():  # warm-up: the first runs of a session allocate
        classifier.predict(batch[:1])
        classifier.predict(batch)
    times: dict[str, dict[int, list[float]]] = {name: {1: [], 32: []} for name in classifiers}
    order = list(classifiers)
    with OtherWork() as other:
        for round_number in range(rounds):
            on_round(round_number, rounds)
            for name in (order if round_number % 2 == 0 else order[::-1]):
                classifier = classifiers[name]
                start = time.perf_counter()
                for i in range(SINGLE_FACES):
                    classifier.predict(batch[i:i + 1])
                times[name][1].append((time.perf_counter() - start) * 1000 / SINGLE_FACES)
                start = time.perf_counter()
                classifier.predict(batch)
                times[name][32].append((time.perf_counter() - start) * 1000 / len(batch))
    return {name: {at_once: Timing.of_rounds(milliseconds, other.busy) for at_once, milliseconds in by_batch.items()}
            for name, by_batch in times.items()}
