"""Trained runs as the dashboard and the CLI show them: the run record and its formatting, a run's artefacts, chart
data (curves, confusion matrix, per-class figures, ROC) and its downloadable model files."""

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from maskdet.core.errors import StoreError
from maskdet.core.json_text import parse_json
from maskdet.core.timing import Timing, how_much, measured_faster
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.store import Store

MODEL_FILES = (("model.onnx", "ONNX (float32)"), ("model.int8.onnx", "ONNX int8"))


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
    def labels(self) -> list[str] | None:
        """The classes the run trained (None: not finished)."""
        return self.metrics.get("labels")

    @property
    def drawn_test_faces(self) -> dict[str, int]:
        """Test faces that are drawings, by class: a class made of drawn masks only is measured on drawings."""
        synthesis = self.metrics.get("synthetic_masks")
        return dict(synthesis.get("drawn_faces", {}).get("test", {})) if isinstance(synthesis, dict) else {}

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
        return parse_json(text) if name.endswith(".json") else text
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


def per_class_rows(report: dict, drawn: dict[str, int] | None = None) -> list[dict]:
    """The per-class table; with `drawn` (test faces that are drawings, by class), a column saying what each class
    was measured on."""
    rows = [{"class": c["label"], "precision": c["precision"], "recall": c["recall"], "f1": c["f1"],
             "support": c["support"]} for c in report["per_class"]]
    rows.append({"class": "macro average", "precision": report["macro_precision"], "recall": report["macro_recall"],
                 "f1": report["macro_f1"], "support": report["num_samples"]})
    if drawn:
        for row in rows:
            row["measured on"] = "drawings, not real faces" if row["class"] in drawn else "real faces"
        rows[-1]["measured on"] = "both"
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


# ---- comparing two runs --------------------------------------------------------------------------


# ---- the active model ----------------------------------------------------------------------------


# ---- the class confidence threshold --------------------------------------------------------------


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
            "timing": Timing.of_model(figures),
            "versus_float32": versus_float32(Timing.of_model(figures), Timing.of_model(metrics.get("onnx") or {}))
            if "int8" in name else "",
        })
    return files


def versus_float32(int8: Timing | None, float32: Timing | None) -> str:
    """How the int8 file's speed compares with float32's, both timed side by side in the same rounds (so a busy
    machine slowed both alike): faster or slower only when their ranges do not overlap. Empty for an older run,
    whose files were timed once each."""
    if int8 is None or float32 is None or not (int8.has_range and float32.has_range):
        return ""
    if measured_faster(int8, float32):
        return f"{how_much(float32.median / int8.median)} faster than float32"
    if measured_faster(float32, int8):
        return f"{how_much(int8.median / float32.median)} slower than float32"
    return "as fast as float32 within measurement noise"


# ---- deleting a run ------------------------------------------------------------------------------


# ---- evaluating a run on an uploaded zip ---------------------------------------------------------
