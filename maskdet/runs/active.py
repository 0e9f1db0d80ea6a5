"""The active model (the run Live, predict and evaluate use by default) and each run's class confidence threshold."""

import os
from pathlib import Path

import numpy as np

from maskdet.core.errors import StoreError
from maskdet.core.threshold import DEFAULT_THRESHOLD, THRESHOLD_KEY, Scores, check_threshold
from maskdet.core.timing import Timing, measured_faster
from maskdet.data.registry import ACTIVE_SETTING
from maskdet.data.store import Store
from maskdet.runs.views import RunRecord, finished_runs, read_predictions, run_dir
from maskdet.serving.classifier import write_threshold

INT8_ACCURACY_TOLERANCE = 0.01  # the Live page starts with the int8 model while it lost at most this test accuracy


def model_path(store: Store, run: dict, int8: bool = False) -> Path:
    return run_dir(store, run) / ("model.int8.onnx" if int8 else "model.onnx")


def int8_measured_faster(metrics: dict) -> bool:
    """Whether the run timed its int8 file faster than model.onnx one face at a time, side by side in rounds, their
    ranges apart (on some CPUs it is not: docs/performance.md)."""
    int8, float32 = Timing.of_model(metrics.get("int8") or {}), Timing.of_model(metrics.get("onnx") or {})
    return bool(int8 and float32 and measured_faster(int8, float32))


def live_model_path(store: Store, run: dict) -> Path:
    """The file the Live page starts with: model.int8.onnx when the run has one that lost at most
    INT8_ACCURACY_TOLERANCE of test accuracy and was measured faster (int8_measured_faster), else model.onnx."""
    int8 = model_path(store, run, int8=True)
    metrics = RunRecord.of(run).metrics
    delta = (metrics.get("int8") or {}).get("test_accuracy_delta")
    usable = (int8.is_file() and delta is not None and delta >= -INT8_ACCURACY_TOLERANCE
              and int8_measured_faster(metrics))
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
    """The run Live, predict and evaluate use by default (docs/cli.md, "The active model"): the one chosen on the
    Models page while it is usable; else the first succeeded run that beats chance on its test split, replaced by each
    later one that scores at least as well on its own test split. A worse run never takes over by itself."""
    usable = [run for run in finished_runs(store) if model_path(store, run).is_file()]
    chosen = store.get_setting(ACTIVE_SETTING)
    return next((run for run in usable if run["id"] == chosen), best_so_far(reversed(usable)))


def best_so_far(runs_oldest_first) -> dict | None:
    """The active model by the rule, over runs in the order they were trained."""
    active = None
    for run in runs_oldest_first:
        if not_active_reason(run) is None and (active is None or accuracy(run) >= accuracy(active)):
            active = run
    return active


def accuracy(run: dict) -> float:
    return RunRecord.of(run).test["accuracy"]


def passed_over(store: Store, run: dict) -> str | None:
    """Why a succeeded run is not the active model, as a sentence (None when it is)."""
    active = active_run(store)
    if active is not None and active["id"] == run["id"]:
        return None
    reason = not_active_reason(run)
    if reason:
        return f"Run {run['id']} was not made the active model: {reason}."
    if active is None:
        return f"Run {run['id']} was not made the active model: its model file is missing."
    if active_is_chosen(store, active):
        return (f"Run {run['id']} was not made the active model: run {active['id']} was chosen as the active model "
                "on the Models page.")
    return (f"Run {run['id']} scored {accuracy(run):.3f}, below the active model's {accuracy(active):.3f} (run "
            f"{active['id']}): it was not made active.")


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


def run_summary(store: Store, run_id: str) -> dict:
    """What `train` prints for a succeeded run: its test scores, ONNX parity, timings, and whether it is active."""
    run = store.run(run_id)
    metrics = run["metrics"]
    test = metrics.get("test") or {}
    reason = passed_over(store, run)
    return {"run_id": run_id, "accuracy": test.get("accuracy"), "macro_f1": test.get("macro_f1"),
            "roc_auc": test.get("roc_auc"), "parity": metrics["onnx"]["parity"], "timings": metrics["timings"],
            "artefact_dir": str(store.settings.models_dir / run_id),
            "active_model": (active_run(store) or {}).get("id"),
            "not_active_because": f"{reason} It can still be chosen on the Models page or used with --model."
            if reason else None}


def run_rows(store: Store) -> list[dict]:
    """Every run, newest first, as table rows (the active model flagged)."""
    active = active_run(store)
    return [RunRecord.of(run).row(active is not None and run["id"] == active["id"]) for run in store.runs()]
