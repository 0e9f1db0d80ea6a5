"""Two runs side by side: their key metrics, the settings that differ, and whether a timing difference is more than
noise."""

import json

from maskdet.core.timing import Timing, apart, how_much
from maskdet.runs.views import RunRecord

KEY_METRICS = (
    ("accuracy", "test accuracy"), ("macro_f1", "macro F1"), ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"), ("roc_auc", "ROC AUC"), ("num_samples", "test images"),
)
TIMINGS = ("training seconds", "ONNX ms per face (batch 1)")  # the key metrics that are timings
PER_FACE = "ONNX ms per face (batch 1)"  # measured in rounds, with a range: compared by range (see per_face_note)
NOISE_RATIO = 2.0  # two single timings closer than this ratio are within measurement noise (see timing_note)


def key_metrics(run: dict) -> dict[str, float | None]:
    """The figures the compare view lines up, by display name."""
    record = RunRecord.of(run)
    metrics, test = record.metrics, record.test or {}
    values = {name: test.get(key) for key, name in KEY_METRICS}
    sizes = record.split_sizes
    values["training images"] = sizes.get("train") if sizes else None
    epochs = metrics.get("epochs_trained") or {}
    values["epochs trained"] = sum(epochs.values()) if epochs else None
    values["training seconds"] = (metrics.get("timings") or {}).get("total")
    onnx = metrics.get("onnx") or {}
    values["ONNX MB"] = onnx["bytes"] / 2**20 if onnx.get("bytes") else None
    values["ONNX ms per face (batch 1)"] = onnx.get("ms_per_image_batch1")
    return values


def flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in (data or {}).items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: dict | None, b: dict | None) -> list[dict]:
    """Settings whose values differ between two training configs (nested ones as augment.flip.probability)."""
    flat_a, flat_b = flatten(a or {}), flatten(b or {})
    rows = []
    for key in sorted(set(flat_a) | set(flat_b)):
        value_a, value_b = flat_a.get(key), flat_b.get(key)
        if _normalise(value_a) != _normalise(value_b):
            rows.append({"setting": key, "a": _show(value_a), "b": _show(value_b)})
    return rows


def _normalise(value):
    return list(value) if isinstance(value, tuple) else value


def _show(value) -> str:
    return "—" if value is None else json.dumps(_normalise(value)) if isinstance(value, (list, tuple)) else str(value)


def timing_note(a: float | None, b: float | None) -> str:
    """How two runs' training seconds compare. Each is measured once, on a machine that may be busy with other work,
    and identical runs differ by nearly that much (docs/performance.md); so unless the slower took at least
    NOISE_RATIO times as long as the faster, the difference is within measurement noise."""
    if a is None or b is None or min(a, b) <= 0:
        return ""
    ratio = max(a, b) / min(a, b)
    if ratio < NOISE_RATIO:
        return "within noise"
    return f"b {ratio:.1f}x {'slower' if b > a else 'faster'}"


def per_face_note(a: Timing | None, b: Timing | None) -> str:
    """How two runs' ms per face compare (short: it fits a narrow column). b is faster or slower only when the ranges
    of their timed rounds do not overlap; a figure measured while the machine was busy, or an older run's single
    figure (no range), is not compared."""
    if a is None or b is None or min(a.median, b.median) <= 0:
        return ""
    if a.busy or b.busy:
        return "busy machine"
    if not (a.has_range and b.has_range):
        return "one timing"
    if not apart(a, b):
        return "within noise"
    ratio = max(a.median, b.median) / min(a.median, b.median)
    return f"b {how_much(ratio)} {'slower' if b.median > a.median else 'faster'}"


def compare_runs(a: dict, b: dict) -> dict:
    """Key metrics side by side (with b - a; timings with a note saying whether they differ beyond measurement noise),
    the config differences of two runs, and each run's ms per face with its range ("per_face": a line each)."""
    metrics_a, metrics_b = key_metrics(a), key_metrics(b)
    timing_a, timing_b = (Timing.of_model(RunRecord.of(run).metrics.get("onnx") or {}) for run in (a, b))
    rows = []
    for name in metrics_a:
        value_a, value_b = metrics_a[name], metrics_b[name]
        both = value_a is not None and value_b is not None
        note = (per_face_note(timing_a, timing_b) if name == PER_FACE
                else timing_note(value_a, value_b) if name in TIMINGS else "")
        rows.append({"metric": name, "a": value_a, "b": value_b, "b - a": value_b - value_a if both else None,
                     "note": note})
    labels_a = RunRecord.of(a).metrics.get("labels")
    labels_b = RunRecord.of(b).metrics.get("labels")
    differences = config_differences(a.get("config"), b.get("config"))
    if labels_a != labels_b:
        differences.insert(0, {"setting": "classes trained", "a": _show(labels_a), "b": _show(labels_b)})
    per_face = [f"{name}: {timing.text()}" for name, timing in (("a", timing_a), ("b", timing_b)) if timing]
    return {"metrics": rows, "config": differences, "per_face": per_face}
