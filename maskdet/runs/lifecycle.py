"""Training runs' lives in the registry: queued one at a time, followed through a heartbeat, cancelled, failed when
their process stops without a word (whoever looks first notices), and deleted with their folder. Starting one is
maskdet.runs.launch; running one, maskdet.runs.execute."""

import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from maskdet.core.errors import StoreError, TrainingError
from maskdet.core.settings import Settings
from maskdet.core.text import now
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.store import Store
from maskdet.training.config import TrainConfig

HEARTBEAT_SECONDS = 2.0  # how often a training process writes runs.heartbeat_at
STALE_SECONDS = 30.0  # a run whose last heartbeat is older than this has lost its process
STARTING_SECONDS = 120.0  # a queued run that never beat: time for its process to start Python and import torch
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")  # a run id that is also a folder name


def log_path(settings: Settings, run_id: str) -> Path:
    """A run's log: what its process printed (dashboard runs) or the CLI's stderr (CLI runs)."""
    return settings.models_dir / ".logs" / f"{run_id}.log"


def last_sign_of_life(run: dict) -> datetime:
    """The run's last heartbeat, else when it started or was queued."""
    return datetime.fromisoformat(run["heartbeat_at"] or run["started_at"] or run["created_at"])


def is_dead(run: dict) -> bool:
    """Whether a queued or running run's process has stopped: no heartbeat for STALE_SECONDS (STARTING_SECONDS after
    it was queued, for a process that has not beaten yet). The process id is not consulted: it may be reused."""
    limit = STALE_SECONDS if run["heartbeat_at"] else STARTING_SECONDS
    return (datetime.now(timezone.utc) - last_sign_of_life(run)).total_seconds() > limit


def death_notice(settings: Settings, run: dict, cause: str = "The training process stopped without a word (killed?)"
                 ) -> str:
    """The error recorded for a run whose process stopped: the cause, when the run was last heard from, its log."""
    log = log_path(settings, run["id"])
    when = last_sign_of_life(run).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{cause} at {when}." + (f" Its log: {log}" if log.exists() else "")


def fail_run(store: Store, run_id: str, error: str, while_status: str | None = None) -> bool:
    """Record that a run failed, with the sentence saying why; with while_status, only while the run has that status.
    Whether the run was written."""
    return store.update_run(run_id, while_status=while_status, status="failed", finished_at=now(), error=error)


def active_training(store: Store) -> dict | None:
    """The queued or running run whose process is alive, if any; runs whose process stopped are marked failed."""
    for run in store.runs():
        if run["status"] not in ACTIVE_STATUSES:
            continue
        if not is_dead(run):
            return run
        fail_run(store, run["id"], death_notice(store.settings, run))
    return None


def new_run(store: Store, config: dict) -> str:
    """Queue a run, refused while another one trains; then remove the staging folders that killed runs left."""
    running = active_training(store)
    if running:
        raise TrainingError(f"Training run {running['id']} is still in progress: wait for it or cancel it first.")
    run_id = store.create_run(config)  # from here on no other run is queued or running, so no staging folder is in use
    for leftover in store.settings.models_dir.glob(".*.tmp"):  # train() stages models/<run> in models/.<run>.tmp
        shutil.rmtree(leftover, ignore_errors=True)
    return run_id


def stored_config(store: Store, run_id: str):
    """A queued run's TrainConfig, with the data home's backbone weights (MASKDET_BACKBONE_WEIGHTS) where it names
    none."""
    config = TrainConfig.from_dict(store.run(run_id)["config"])
    if not config.backbone_weights and store.settings.backbone_weights:
        config.backbone_weights = str(store.settings.backbone_weights)
    return config


def cancel_training(store: Store, run_id: str) -> None:
    """Ask a run's process to stop; refused with the status (and the reason) when it is not running or has died."""
    active_training(store)  # a run whose process died is failed here, and refused below
    run = store.run(run_id)
    if run["status"] not in ACTIVE_STATUSES:
        raise TrainingError(f"Run {run_id} is not running (status: {run['status']})."
                            + (f" {run['error']}" if run["status"] == "failed" and run["error"] else ""))
    store.update_run(run_id, cancel_requested=True)


@contextmanager
def heartbeat(store: Store, run_id: str):
    """Write the run's heartbeat every HEARTBEAT_SECONDS from a daemon thread while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                store.update_run(run_id, heartbeat_at=now())
            except sa.exc.SQLAlchemyError:  # a busy database: this beat is skipped, the next one will do
                pass

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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
