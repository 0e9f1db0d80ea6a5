"""Training a queued run in this process as a registry run: status, throttled progress, heartbeat, cancellation, and how
it ended."""

import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from maskdet.core.errors import Cancelled
from maskdet.core.text import now
from maskdet.data.store import Store
from maskdet.runs.estimate import RunForecast, latest_throughput, photos_trained
from maskdet.runs.lifecycle import fail_run, heartbeat, new_run
from maskdet.training.config import TrainConfig
from maskdet.training.progress import Callbacks, Progress
from maskdet.training.train import train


def execute_run(store: Store, config: TrainConfig, models_dir: Path, run_id: str | None = None,
                on_progress: Callable[[Progress], None] = lambda progress: None) -> dict:
    """Train as a registry run: status, throttled progress (with the time left in all, forecast from the run's own
    batches: estimate.RunForecast), a heartbeat and cancellation (Cancel, or SIGTERM to this process) live in the
    database. Without a run id a new run is queued, refused while another one trains."""
    run_id = run_id or new_run(store, config.to_dict())
    store.update_run(run_id, status="running", started_at=now(), heartbeat_at=now(), pid=os.getpid(), error=None)
    last = {"write": 0.0, "check": 0.0, "cancel": False, "shown": None}
    history: list[dict] = []  # per-epoch train and validation figures (as in history.json), for live curves

    def progress(item: Progress) -> None:
        on_progress(item)
        if item.ends_epoch:
            history.append(item.history_entry())
        left = forecast.update(item)
        shown = (item.stage, item.task)  # a new stage or task is written at once: the page names what is under way
        if shown != last["shown"] or time.monotonic() - last["write"] >= 1.0:
            last["write"], last["shown"] = time.monotonic(), shown
            eta = item.eta_seconds if item.eta_seconds is not None else forecast.stage_left
            store.update_run(run_id, progress={**asdict(item), "eta_seconds": eta, "left_seconds": left,
                                               "history": history})

    def should_cancel() -> bool:
        if not last["cancel"] and time.monotonic() - last["check"] >= 1.0:
            last["check"] = time.monotonic()
            last["cancel"] = bool(store.run(run_id)["cancel_requested"])
        return last["cancel"]

    run_dir = Path(models_dir) / run_id
    try:
        forecast = RunForecast(config, photos_trained(config, store.label_counts()),
                               latest_throughput([run for run in store.runs() if run["id"] != run_id]))
        with heartbeat(store, run_id), sigterm_cancels(last):
            metrics = train(store, config, run_dir, Callbacks(progress, should_cancel))
    except Cancelled:
        store.update_run(run_id, status="cancelled", finished_at=now())
        raise
    except BaseException as error:
        fail_run(store, run_id, describe_error(error))
        raise
    store.update_run(run_id, status="succeeded", finished_at=now(), metrics=metrics, artefact_dir=str(run_dir),
                     progress={**asdict(Progress("done", 1, 1)), "history": history})
    return {"run_id": run_id, **metrics}


@contextmanager
def sigterm_cancels(state: dict):
    """While the block runs, SIGTERM sets state["cancel"], so the run stops as if Cancel had been pressed (only in
    the main thread, where Python handles signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: state.update(cancel=True))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_error(error: BaseException) -> str:
    """One line for a failed run: the message of errors meant for users, the type and message otherwise."""
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted."
    if isinstance(error, ValueError):  # a MaskdetError or a setting refused: its sentence
        return str(error)
    return f"{type(error).__name__}: {error}"


def progress_lines(stream) -> Callable[[Progress], None]:
    """A Progress callback for a log file: a line when a stage starts and one for each finished epoch."""
    stages = []

    def on_progress(progress: Progress) -> None:
        if not stages or stages[-1] != progress.stage:
            stages.append(progress.stage)
            print(f"{progress.stage}: started ({progress.steps} steps)", file=stream, flush=True)
        if progress.ends_epoch:
            print(f"{progress.stage} epoch {progress.epoch}/{progress.epochs}: validation loss {progress.loss:.4f}, "
                  f"accuracy {progress.accuracy:.3f}", file=stream, flush=True)

    return on_progress
