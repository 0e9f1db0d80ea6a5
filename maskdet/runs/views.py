"""Trained runs as the dashboard shows them: table rows, a run's artefacts, chart data, the misclassified test faces
(and relabelling or deleting their photos), the active model, comparing two runs, deleting a run, and scoring a run
on an uploaded zip (and importing its photos). No Streamlit here."""

import csv
import io
import json
import os
import re
import shutil
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage
from maskdet.core.threshold import DEFAULT_THRESHOLD, THRESHOLD_KEY, Scores, check_threshold
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.importer import ImportReport
from maskdet.data.sources import open_zip, zip_candidates
from maskdet.data.store import Store
from maskdet.runs.lifecycle import active_training, log_path
from maskdet.serving.classifier import load_classifier, write_threshold
from maskdet.serving.predict import evaluate_candidates, import_evaluated
from maskdet.vision.faces import CropRule, crop_face

ACTIVE_SETTING = "active_run"  # meta key: the run the live page uses
MODEL_FILES = (("model.onnx", "ONNX (float32)"), ("model.int8.onnx", "ONNX int8"))
INT8_ACCURACY_TOLERANCE = 0.01  # the Live page starts with the int8 model while it lost at most this test accuracy
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


# ---- the runs table ------------------------------------------------------------------------------

def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RunRecord:
    """A run of the registry as the pages and the CLI show it: the store's row (a dict) read once into typed fields,
    with the one formatting of its caption, table row and CLI summary."""

    id: str
    status: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    config: dict
    metrics: dict
    progress: dict
    error: str | None

    @classmethod
    def of(cls, run: dict) -> "RunRecord":
        return cls(run.get("id", ""), run.get("status", ""), _time(run.get("created_at")), _time(run.get("started_at")),
                   _time(run.get("finished_at")), run.get("config") or {}, run.get("metrics") or {},
                   run.get("progress") or {}, run.get("error"))

    @property
    def test(self) -> dict | None:
        """The test split's report (None: not finished, or an empty test split)."""
        return self.metrics.get("test")

    @property
    def accuracy(self) -> float | None:
        return (self.test or {}).get("accuracy")

    @property
    def macro_f1(self) -> float | None:
        return (self.test or {}).get("macro_f1")

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds from start to finish (None while running or when never started)."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    @property
    def split_sizes(self) -> dict[str, int] | None:
        """Images per split the run used ({"train": n, "val": n, "test": n}), once it has metrics."""
        counts = self.metrics.get("split_counts")
        return {split: int(sum(per_label.values())) for split, per_label in counts.items()} if counts else None

    @property
    def settings(self) -> str:
        """The few training settings that tell runs apart, in one line."""
        config = self.config
        parts = [text.format(config[key]) for key, text in (("input_size", "{} px"), ("views_per_image", "{} views"))
                 if key in config]
        blocks = config.get("finetune_blocks") or 0
        parts.append(f"fine-tune {blocks} blocks" if blocks else "head only")
        parts += [text.format(config[key]) for key, text in (("learning_rate", "lr {}"), ("seed", "seed {}"))
                  if key in config]
        if config.get("random_init"):
            parts.append("random init")
        if config.get("quantize") is False:
            parts.append("no int8")
        return ", ".join(parts)

    @property
    def note(self) -> str:
        """What a user should know about a run besides its scores: the error, the progress, the random init."""
        if self.status == "failed":
            return self.error or "Failed without a message; see the training log."
        if self.status == "cancelled":
            return "Cancelled before it finished."
        if self.status in ACTIVE_STATUSES:
            if self.progress.get("stage"):
                return f"{self.progress['stage']} {self.progress.get('step', 0)}/{self.progress.get('steps', 0)}"
            return "Waiting to start." if self.status == "queued" else "Starting."
        if self.metrics.get("random_init"):
            return "Random init (not pretrained): an experiment."
        if self.test is None:
            return "No test images: the split left the test set empty."
        return ""

    def caption(self) -> str:
        """One line for select boxes."""
        accuracy = f", accuracy {self.accuracy:.3f}" if self.accuracy is not None else ""
        return f"{self.id} ({self.status}{accuracy})"

    def row(self, active: bool = False) -> dict:
        """Its row of the runs tables (the pages show the columns as ui.run_columns says)."""
        sizes = self.split_sizes
        return {
            "run": self.id,
            "when": self.created_at.strftime("%Y-%m-%d %H:%M UTC") if self.created_at else None,
            "status": self.status,
            "active": active,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "images": sum(sizes.values()) if sizes else None,
            "split": " / ".join(str(sizes.get(s, 0)) for s in ("train", "val", "test")) if sizes else None,
            "duration_s": self.duration_s,
            "config": self.settings,
            "note": self.note,
        }

    def summary(self) -> dict:
        """Its entry in `maskdet runs` (JSON)."""
        return {"id": self.id, "status": self.status,
                "created_at": self.created_at.isoformat(timespec="milliseconds") if self.created_at else None,
                "accuracy": self.accuracy, "macro_f1": self.macro_f1, "duration_s": self.duration_s,
                "error": self.error}


def run_rows(store: Store) -> list[dict]:
    """Every run, newest first, as table rows (the active model flagged)."""
    active = active_run(store)
    return [RunRecord.of(run).row(active is not None and run["id"] == active["id"]) for run in store.runs()]


def finished_runs(store: Store) -> list[dict]:
    """Succeeded runs, newest first."""
    return [run for run in store.runs() if run["status"] == "succeeded"]


# ---- a run's folder ------------------------------------------------------------------------------

def run_dir(store: Store, run: dict) -> Path:
    """Where a run's artefacts are: its recorded folder, or models/<run_id>/."""
    recorded = Path(run["artefact_dir"]) if run.get("artefact_dir") else None
    if recorded and recorded.is_dir():
        return recorded
    return store.settings.models_dir / run["id"]


def _read(folder: Path, name: str, run_id: str):
    path = folder / name
    try:
        text = path.read_text()
        return json.loads(text) if name.endswith(".json") else text
    except FileNotFoundError:
        raise StoreError(f"Run {run_id} has no {name} (its folder {folder} is missing or incomplete); "
                         "delete the run on the Models page or train again.") from None
    except (OSError, ValueError) as error:
        raise StoreError(f"Run {run_id}'s {name} cannot be read ({error}); delete the run or train again.") from None


def read_history(store: Store, run: dict) -> list[dict]:
    """Per-epoch loss and accuracy (history.json)."""
    history = _read(run_dir(store, run), "history.json", run["id"])
    if not isinstance(history, list):
        raise StoreError(f"Run {run['id']}'s history.json is not a list of epochs; train again.")
    return history


def read_config(store: Store, run: dict) -> dict:
    """config.json: training config, labels, preprocessing, crop rule, backbone."""
    return _read(run_dir(store, run), "config.json", run["id"])


def read_metrics(store: Store, run: dict) -> dict:
    """metrics.json (the registry holds the same; this is the file shipped with the model)."""
    return _read(run_dir(store, run), "metrics.json", run["id"])


def read_predictions(store: Store, run: dict) -> list[dict]:
    """predictions.csv rows: image_id, source_name, true, predicted, p_<label>... (test split order)."""
    text = _read(run_dir(store, run), "predictions.csv", run["id"])
    return list(csv.DictReader(io.StringIO(text)))


# ---- chart and table data ------------------------------------------------------------------------

def history_points(history: list[dict], run_id: str | None = None) -> list[dict]:
    """Long-form curve points: one row per epoch, metric (loss/accuracy) and split (train/validation).

    `epoch` counts across stages (head epochs, then fine-tune epochs), `stage_epoch` within the stage."""
    points = []
    for step, entry in enumerate(history, start=1):
        for metric in ("loss", "accuracy"):
            for split, key in (("train", metric), ("validation", f"val_{metric}")):
                value = entry.get(key)
                if value is None:
                    continue
                point = {"epoch": step, "stage": entry.get("stage", "head"), "stage_epoch": entry.get("epoch", step),
                         "metric": metric, "split": split, "value": float(value)}
                if run_id is not None:
                    point["run"] = run_id
                points.append(point)
    return points


def confusion_cells(report: dict) -> list[dict]:
    """One row per (true, predicted) cell with its count and the share of the true class's images."""
    labels, matrix = report["labels"], report["confusion_matrix"]
    cells = []
    for i, true in enumerate(labels):
        total = sum(matrix[i])
        for j, predicted in enumerate(labels):
            cells.append({"true": true, "predicted": predicted, "count": int(matrix[i][j]),
                          "share": matrix[i][j] / total if total else 0.0})
    return cells


def per_class_rows(report: dict) -> list[dict]:
    rows = [{"class": c["label"], "precision": c["precision"], "recall": c["recall"], "f1": c["f1"],
             "support": c["support"]} for c in report["per_class"]]
    rows.append({"class": "macro average", "precision": report["macro_precision"], "recall": report["macro_recall"],
                 "f1": report["macro_f1"], "support": report["num_samples"]})
    return rows


def roc_points(report: dict) -> list[dict]:
    """One row per ROC point, per class (one-vs-rest), with the class's AUC in the series name."""
    aucs = report.get("roc_auc_per_class") or [None] * len(report["roc_curves"])
    points = []
    for curve, auc in zip(report["roc_curves"], aucs):
        series = f"{curve['label']} (AUC {auc:.3f})" if auc is not None else curve["label"]
        points += [{"class": series, "fpr": fpr, "tpr": tpr, "order": i}
                   for i, (fpr, tpr) in enumerate(zip(curve["fpr"], curve["tpr"]))]
    return points


@dataclass
class Mistake:
    """A misclassified test face: what it was, what the model said, and its crop (None if the photo is gone)."""

    name: str
    true: str
    predicted: str
    score: float
    true_score: float
    image_id: int | None
    crop: np.ndarray | None
    note: str = ""
    label: str | None = None  # the photo's class in the dataset now (relabelled since?); None: no longer there


def misclassified_faces(store: Store, run: dict, limit: int = 24) -> list[Mistake]:
    """The run's misclassified test images (most confident mistakes first) with the face crop the model saw."""
    report = RunRecord.of(run).test
    if not report or not report.get("misclassified"):
        return []
    wrong = report["misclassified"][:limit]
    predictions = read_predictions(store, run)
    config = read_config(store, run)
    rule = CropRule(**{k: config["crop_rule"][k] for k in ("margin", "size")})
    by_name = {row["source_name"]: row for row in predictions}
    image_ids = {}
    for item in wrong:
        row = predictions[item["index"]] if item["index"] < len(predictions) else None
        if row is None or (item.get("name") is not None and row["source_name"] != item["name"]):
            row = by_name.get(item.get("name"))  # predictions.csv rewrites quotes; fall back to the name
        image_ids[item["index"]] = int(row["image_id"]) if row and (row.get("image_id") or "").isdigit() else None
    records = {r.id: r for r in store.images(ids=[i for i in image_ids.values() if i is not None])}
    mistakes = []
    for item in wrong:
        image_id = image_ids[item["index"]]
        record = records.get(image_id)
        crop, note = None, ""
        if record is None:
            note = "This photo is no longer in the dataset."
        else:
            try:
                crop = crop_face(store.load_image(record), record.face.box if record.face else None, rule)
            except (BadImage, OSError) as error:
                note = f"The photo cannot be read ({error})."
        mistakes.append(Mistake(item.get("name") or f"test image {item['index']}", item["true"], item["predicted"],
                                float(item["score"]), float(item["true_score"]), image_id, crop, note,
                                record.label if record else None))
    return mistakes


def plural(count: int, word: str) -> str:
    """'1 photo', '2 photos'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _gone(asked: int, done: int) -> str:
    gone = asked - done
    return f" {plural(gone, 'photo')} had been deleted from the dataset meanwhile." if gone else ""


def relabel_photos(store: Store, image_ids: list[int], label: str) -> str:
    """Move dataset photos (misclassified test faces) to another class; says what happened. The run that showed
    them keeps its figures: only the next training sees the change."""
    try:
        moved = store.relabel(image_ids, label)
    except StoreError:
        raise StoreError(f"The class {label} is no longer in the dataset (deleted meanwhile?): nothing was "
                         "relabelled. Choose another class.") from None
    if not moved:
        return f"Nothing was relabelled: {_gone(len(image_ids), 0).strip()}"
    return (f"{plural(moved, 'photo')} relabelled as {label}; the next training uses "
            f"{'it' if moved == 1 else 'them'} (this run's figures stay as they were).{_gone(len(image_ids), moved)}")


def delete_photos(store: Store, image_ids: list[int]) -> str:
    """Delete dataset photos (misclassified test faces); says what happened. The run keeps its figures."""
    deleted = store.delete_images(image_ids)
    if not deleted:
        return f"Nothing was deleted: {_gone(len(image_ids), 0).strip()}"
    return (f"{plural(deleted, 'photo')} deleted from the dataset; the next training goes without "
            f"{'it' if deleted == 1 else 'them'} (this run's figures stay as they were)."
            f"{_gone(len(image_ids), deleted)}")


# ---- comparing two runs --------------------------------------------------------------------------

KEY_METRICS = (
    ("accuracy", "test accuracy"), ("macro_f1", "macro F1"), ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"), ("roc_auc", "ROC AUC"), ("num_samples", "test images"),
)
TIMINGS = ("training seconds", "ONNX ms per face (batch 1)")  # the key metrics that are timings
NOISE_RATIO = 2.0  # two timings closer than this ratio are within measurement noise (see timing_note)


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
    """How two runs' timings compare. Each is measured once during its training (ms per face: the median of 5 batches)
    on a machine that may be busy with other work, and two identical runs measured 8.3 and 15.5 ms per face; so
    unless the slower took at least NOISE_RATIO times as long as the faster, the difference is within measurement
    noise."""
    if a is None or b is None or min(a, b) <= 0:
        return ""
    ratio = max(a, b) / min(a, b)
    if ratio < NOISE_RATIO:
        return f"within noise (<{NOISE_RATIO:g}x)"
    return f"b {ratio:.1f}x {'slower' if b > a else 'faster'}"


def compare_runs(a: dict, b: dict) -> dict:
    """Key metrics side by side (with b - a; timings with a note saying whether they differ beyond measurement noise)
    and the config differences of two runs."""
    metrics_a, metrics_b = key_metrics(a), key_metrics(b)
    rows = []
    for name in metrics_a:
        value_a, value_b = metrics_a[name], metrics_b[name]
        both = value_a is not None and value_b is not None
        rows.append({"metric": name, "a": value_a, "b": value_b, "b - a": value_b - value_a if both else None,
                     "note": timing_note(value_a, value_b) if name in TIMINGS else ""})
    labels_a = RunRecord.of(a).metrics.get("labels")
    labels_b = RunRecord.of(b).metrics.get("labels")
    differences = config_differences(a.get("config"), b.get("config"))
    if labels_a != labels_b:
        differences.insert(0, {"setting": "classes trained", "a": _show(labels_a), "b": _show(labels_b)})
    return {"metrics": rows, "config": differences}


# ---- the active model ----------------------------------------------------------------------------

def model_path(store: Store, run: dict, int8: bool = False) -> Path:
    return run_dir(store, run) / ("model.int8.onnx" if int8 else "model.onnx")


def live_model_path(store: Store, run: dict) -> Path:
    """The file the Live page starts with: model.int8.onnx (about 40% faster per face on a CPU) when the run has one
    that lost at most INT8_ACCURACY_TOLERANCE of test accuracy, else model.onnx."""
    int8 = model_path(store, run, int8=True)
    delta = (RunRecord.of(run).metrics.get("int8") or {}).get("test_accuracy_delta")
    usable = int8.is_file() and delta is not None and delta >= -INT8_ACCURACY_TOLERANCE
    return int8 if usable else model_path(store, run)


def not_active_reason(run: dict) -> str | None:
    """Why a finished run does not become the active model by itself (it can still be chosen): no test scores, or
    test accuracy at or below chance (1 / number of classes). None when it may."""
    test = RunRecord.of(run).test
    if not test:
        return "it has no test scores (its test split was empty), so nothing shows it beats guessing"
    classes = len(test["labels"])
    if test["accuracy"] <= 1 / classes + 1e-9:
        return (f"its test accuracy {test['accuracy']:.3f} is no better than chance ({1 / classes:.3f} with "
                f"{classes} classes)")
    return None


def active_run(store: Store) -> dict | None:
    """The run the live page uses: the chosen one while it is usable, else the latest succeeded run that beats
    chance on its test split."""
    usable = [run for run in finished_runs(store) if model_path(store, run).is_file()]
    chosen = store.get_setting(ACTIVE_SETTING)
    return next((run for run in usable if run["id"] == chosen),
                next((run for run in usable if not_active_reason(run) is None), None))


def active_is_chosen(store: Store, run: dict | None) -> bool:
    """Whether `run` is active because someone chose it (rather than as the latest run, by default)."""
    return run is not None and store.get_setting(ACTIVE_SETTING) == run["id"]


def set_active_run(store: Store, run_id: str) -> dict:
    """Make a succeeded run with a model file the active model; returns the run."""
    run = store.run(run_id)
    if run["status"] != "succeeded":
        raise StoreError(f"Run {run_id} {run['status']}: only a finished run can be the active model. "
                         "Choose a succeeded run.")
    if not model_path(store, run).is_file():
        raise StoreError(f"Run {run_id} has no model.onnx any more; choose another run or train again.")
    store.set_setting(ACTIVE_SETTING, run_id)
    return run


# ---- the class confidence threshold --------------------------------------------------------------

def run_threshold(run: dict) -> float:
    """The run's class confidence threshold: the one saved on the Metrics page, else the default."""
    return RunRecord.of(run).metrics.get(THRESHOLD_KEY, DEFAULT_THRESHOLD)


def threshold_scores(store: Store, run: dict) -> Scores:
    """The run's test split as the threshold sees it: true classes and probabilities from predictions.csv."""
    labels = (RunRecord.of(run).test or {}).get("labels") or []
    rows = read_predictions(store, run)
    try:
        probabilities = np.array([[float(row[f"p_{label}"]) for label in labels] for row in rows])
        return Scores(labels, [labels.index(row["true"]) for row in rows], probabilities.reshape(-1, len(labels)))
    except (KeyError, ValueError, TypeError):
        raise StoreError(f"Run {run['id']}'s predictions.csv does not hold the test split's probabilities of "
                         f"{', '.join(labels) or 'its classes'}; train again.") from None


def set_threshold(store: Store, run_id: str, value) -> float:
    """Save a run's class confidence threshold in its registry metrics and in the metadata of its ONNX files (the
    Live page and `maskdet predict` start from those). Refused, with nothing changed, unless 0 < value < 1."""
    run = store.run(run_id)
    try:
        threshold = check_threshold(value)
    except ValueError as error:
        raise StoreError(f"{error} Run {run_id} keeps its threshold of {run_threshold(run):g}.") from None
    if run["status"] != "succeeded":
        raise StoreError(f"Run {run_id} {run['status']}: only a finished run has a model to set a threshold for.")
    if not model_path(store, run).is_file():
        raise StoreError(f"Run {run_id} has no model.onnx any more; choose another run or train again.")
    staged = {}  # model file: its copy with the new threshold, renamed into place once the registry holds it
    try:
        for path in (model_path(store, run), model_path(store, run, int8=True)):
            if path.is_file():
                staged[path] = path.with_name(f".{path.name}.threshold.tmp")
                write_threshold(path, threshold, staged[path])
        store.update_run(run_id, metrics={**RunRecord.of(run).metrics, THRESHOLD_KEY: threshold})
    except BaseException:
        for copy in staged.values():
            copy.unlink(missing_ok=True)
        raise
    for path, copy in staged.items():
        os.replace(copy, path)
    return threshold


# ---- model files ---------------------------------------------------------------------------------

def parity_sentence(parity: dict | None) -> str:
    """The export parity check (ONNX against PyTorch on the test crops) in words."""
    if not parity:
        return "No parity check recorded."
    if not parity.get("images"):
        return "Not checked: the test split was empty."
    if parity.get("same_argmax"):
        return (f"Same class as PyTorch on all {parity['images']} test faces "
                f"(max probability difference {parity['max_probability_difference']:.1e}).")
    return (f"Differs from PyTorch on {parity.get('argmax_disagreements', '?')} of {parity['images']} test faces "
            f"(max probability difference {parity['max_probability_difference']:.2g}).")


def model_files(store: Store, run: dict) -> list[dict]:
    """The downloadable ONNX files of a run with size, parity result and test metrics."""
    metrics = RunRecord.of(run).metrics
    test = metrics.get("test") or {}
    folder = run_dir(store, run)
    files = []
    for name, kind in MODEL_FILES:
        path = folder / name
        if not path.is_file():
            continue
        figures = metrics.get("int8" if "int8" in name else "onnx") or {}
        accuracy = figures.get("test_accuracy") if "int8" in name else test.get("accuracy")
        files.append({
            "kind": kind, "file": name, "path": path, "bytes": path.stat().st_size,
            "parity": parity_sentence(figures.get("parity")),
            "parity_ok": bool((figures.get("parity") or {}).get("same_argmax", False)),
            "test_accuracy": accuracy,
            "test_accuracy_delta": figures.get("test_accuracy_delta"),
            "macro_f1": None if "int8" in name else test.get("macro_f1"),
            "ms_per_face": figures.get("ms_per_image_batch1"),
        })
    return files


# ---- deleting a run ------------------------------------------------------------------------------

def delete_run(store: Store, run_id: str) -> None:
    """Delete a run's registry row and its artefact folder (refused while it is training)."""
    run = store.run(run_id)
    if (active_training(store) or {}).get("id") == run_id:
        raise StoreError(f"Run {run_id} is still training: cancel it on the Train page first, then delete it.")
    models_dir = store.settings.models_dir.resolve()
    folders = []
    if RUN_ID_PATTERN.match(run_id):
        folders.append(models_dir / run_id)
    if run.get("artefact_dir"):
        recorded = Path(run["artefact_dir"]).resolve()
        if recorded.parent == models_dir and recorded not in folders:  # never anything outside models/
            folders.append(recorded)
    moved = []  # renamed aside first, so a failure leaves either the whole run or nothing
    try:
        for folder in folders:
            if folder.is_dir():
                aside = folder.with_name(f".{folder.name}.deleting-{uuid.uuid4().hex[:8]}")
                os.replace(folder, aside)
                moved.append((folder, aside))
        store.delete_run(run_id)
    except BaseException:
        for folder, aside in moved:
            os.replace(aside, folder)
        raise
    for _, aside in moved:
        shutil.rmtree(aside, ignore_errors=True)
    if RUN_ID_PATTERN.match(run_id):
        log_path(store.settings, run_id).unlink(missing_ok=True)


# ---- evaluating a run on an uploaded zip ---------------------------------------------------------

def open_upload(data: bytes) -> zipfile.ZipFile:
    """An uploaded zip, read in place (no copy of its bytes); one that is not a zip is a StoreError sentence."""
    try:
        return open_zip(io.BytesIO(data))
    except StoreError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StoreError("The upload is not a readable zip archive. Zip a folder of class folders "
                         "(for example with_mask/ and without_mask/) and upload that.") from None


def evaluate_zip(store: Store, run_id: str, data: bytes, detector, progress=None, int8: bool = False) -> dict:
    """Score a run's model on a zip of class folders (with_mask/..., without_mask/...).

    The zip is read with the store's import rules (hostile entries rejected) and scored like
    `maskdet evaluate`: largest face per photo, the model's crop rule. Files that are not images, and images
    in folders that are not the model's classes, are skipped and listed in rejected_files (skipped_classes
    counts the latter); when no image is left that is an error."""
    run = store.run(run_id)
    if run["status"] != "succeeded":
        raise StoreError(f"Run {run_id} {run['status']}: choose a succeeded run to evaluate.")
    with open_upload(data) as archive:
        candidates, rejected = zip_candidates(archive)
        classifier = load_classifier(model_path(store, run, int8))
        kept, unknown = [], Counter()
        for candidate in candidates:
            parts = [p for p in candidate.name.replace("\\", "/").split("/") if p]
            if any(part.startswith(".") for part in parts):
                continue  # hidden files and folders (._name, .git/), as a folder import skips them
            if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
                rejected.append((candidate.name, "not an image file"))
                continue
            if candidate.label not in classifier.labels:
                unknown[candidate.label] += 1
                rejected.append((candidate.name, f"'{candidate.label}' is not one of the model's classes"))
                continue
            kept.append(candidate)  # read while scored, a batch at a time
        if not kept and unknown:
            raise StoreError(f"Folder classes not known to the model: {', '.join(sorted(unknown))}. The model's "
                             f"classes: {', '.join(classifier.labels)}; name the zip's folders after them.")
        if not kept:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in rejected[:3])
            raise StoreError("No images found in the zip: it should hold class folders such as with_mask/ and "
                             "without_mask/ with photos inside" + (f" (rejected: {reasons})." if reasons else "."))
        report = evaluate_candidates(kept, rejected, detector, classifier, store.settings.max_pixels, progress)
    report["skipped_classes"] = dict(unknown)
    report["run_id"] = run_id
    report["model_file"] = classifier.path.name
    return report


def import_evaluated_zip(store: Store, data: bytes, report: dict, detector, errors_only: bool,
                         progress=None) -> ImportReport:
    """Import the photos of a zip scored by evaluate_zip (its report) into the dataset under their true label (their
    folder): only the misclassified ones, or all it scored; see predict.import_evaluated."""
    with open_upload(data) as archive:
        candidates, _ = zip_candidates(archive)
        return import_evaluated(store, candidates, report, detector, errors_only, progress)


def run_summary(store: Store, run_id: str) -> dict:
    """What `train` prints for a succeeded run: its test scores, ONNX parity, timings, and whether it is active."""
    run = store.run(run_id)
    metrics = run["metrics"]
    test = metrics.get("test") or {}
    reason = not_active_reason(run)
    return {"run_id": run_id, "accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"),
            "roc_auc": test.get("roc_auc"), "parity": metrics["onnx"]["parity"], "timings": metrics["timings"],
            "artefact_dir": str(store.settings.models_dir / run_id),
            "active_model": (active_run(store) or {}).get("id"),
            "not_active_because": f"Not made the active model: {reason}. It can still be chosen on the Models page "
                                  "or used with --model." if reason else None}
