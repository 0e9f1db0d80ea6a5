"""Training as a background process: start one at a time, follow it in the registry, cancel it, notice crashes."""

import os
import subprocess
import sys
from pathlib import Path

from .settings import Settings
from .store import ACTIVE_STATUSES, Store, StoreError, now


def process_alive(pid: int | None) -> bool:
    """Whether the process exists (on Linux a finished but unreaped child counts as gone)."""
    if not pid:
        return False
    status = Path(f"/proc/{pid}/status")
    if Path("/proc/self").exists():
        return status.exists() and "\nState:\tZ" not in status.read_text()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def active_training(store: Store) -> dict | None:
    """The queued or running run, if any; runs whose process has died are marked failed on the way."""
    for run in store.runs():
        if run["status"] not in ACTIVE_STATUSES:
            continue
        if process_alive(run["pid"]) or run["status"] == "queued" and run["pid"] is None:  # None: starting
            return run
        store.update_run(run["id"], status="failed", finished_at=now(),
                         error=f"The training process stopped unexpectedly. Its log: {log_path(store.settings, run['id'])}")
    return None


def log_path(settings: Settings, run_id: str) -> Path:
    return settings.models_dir / ".logs" / f"{run_id}.log"


def start_training(store: Store, config: dict) -> str:
    """Queue a run with this config and start `python -m maskdet train --run-id ...` for it; one at a time."""
    running = active_training(store)
    if running:
        raise StoreError(f"Training run {running['id']} is still in progress: wait for it or cancel it first.")
    run_id = store.create_run(config, exclusive=True)
    log = log_path(store.settings, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MASKDET_HOME": str(store.settings.home), "MASKDET_MODELS": str(store.settings.models_dir),
           "MASKDET_DATABASE_URL": store.settings.database_url}
    try:
        with open(log, "wb") as output:
            process = subprocess.Popen([sys.executable, "-m", "maskdet", "train", "--run-id", run_id],
                                       stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                       cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    except OSError as error:
        store.update_run(run_id, status="failed", finished_at=now(), error=f"Could not start training: {error}")
        raise StoreError(f"Could not start training: {error}") from None
    store.update_run(run_id, pid=process.pid)
    return run_id


def cancel_training(store: Store, run_id: str) -> None:
    status = store.run(run_id)["status"]
    if status not in ACTIVE_STATUSES:
        raise StoreError(f"Run {run_id} is not running (status: {status}).")
    store.update_run(run_id, cancel_requested=True)
