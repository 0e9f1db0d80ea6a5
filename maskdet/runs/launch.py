"""Starting a queued run: on the Dask cluster at MASKDET_CLUSTER when set, else in a
`python -m maskdet train --run-id` process here."""

import os
import subprocess
import sys
from pathlib import Path

from maskdet.core.errors import TrainingError
from maskdet.data.store import Store
from maskdet.runs.cluster import submit
from maskdet.runs.lifecycle import fail_run, log_path, new_run


def start_training(store: Store, config: dict) -> str:
    """Queue a run with this config and start it: on the cluster at MASKDET_CLUSTER when set, else in a
    `python -m maskdet train --run-id ...` process here; one at a time."""
    run_id = new_run(store, config)
    if store.settings.cluster:
        submit(store, run_id)
        return run_id
    log = log_path(store.settings, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MASKDET_HOME": str(store.settings.home), "MASKDET_MODELS": str(store.settings.models_dir),
           "MASKDET_DATABASE_URL": store.settings.database_url}
    try:
        with open(log, "wb") as output:
            process = subprocess.Popen([sys.executable, "-m", "maskdet", "train", "--run-id", run_id],
                                       stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                       cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    except OSError as error:
        fail_run(store, run_id, f"Could not start training: {error}")
        raise TrainingError(f"Could not start training: {error}") from None
    store.update_run(run_id, pid=process.pid)
    return run_id
