"""Training on a Dask cluster (MASKDET_CLUSTER): a queued run is handed to the scheduler, and one of its workers trains
it against the same database and image home, so progress, Cancel and the heartbeat go through the registry as they do
for a run trained here."""

import json
import os
from dataclasses import replace
from pathlib import Path

from maskdet.core.errors import TrainingError, error_line
from maskdet.core.settings import load_settings, usable_cores
from maskdet.core.text import now
from maskdet.data.store import Store
from maskdet.runs.active import run_summary
from maskdet.runs.lifecycle import death_notice, fail_run, log_path, stored_config

CONNECT_SECONDS = 5.0  # how long Start waits for the scheduler to answer
LOST = ("The run was lost with its cluster worker, which stopped (killed?); runs are not restarted on another worker, "
        "so start a new one. Its last sign of life was")


def submit(store: Store, run_id: str) -> None:
    """Hand a queued run to the scheduler at MASKDET_CLUSTER, which gives it to one worker; a scheduler that cannot be
    reached fails the run, and a TrainingError says so."""
    # here, for speed: distributed takes half a second to import, and only cluster runs need it
    from distributed import Client, fire_and_forget
    from distributed.comm import get_address_host_port

    settings = store.settings
    weights = str(settings.backbone_weights) if settings.backbone_weights else None
    try:
        # A malformed address is refused here: a Client that fails on one prints a traceback when it is collected.
        get_address_host_port(settings.cluster)
        with Client(settings.cluster, timeout=CONNECT_SECONDS, set_as_default=False) as client:
            # retries=0: a run that raised is not run again; a run whose worker died is, and finds itself lost
            fire_and_forget(client.submit(train_on_worker, str(settings.home), str(settings.models_dir),
                                          settings.database_url, weights, run_id, key=f"maskdet-train-{run_id}",
                                          retries=0))
    except (OSError, ValueError) as error:
        message = (f"Could not reach the training cluster at {settings.cluster}: {error}. Check MASKDET_CLUSTER (a "
                   "scheduler address such as tcp://HOST:8786) and that the scheduler is running.")
        fail_run(store, run_id, message)
        raise TrainingError(message) from None


def train_on_worker(home: str, models_dir: str, database_url: str, backbone_weights: str | None, run_id: str) -> None:
    """On a worker: train the queued run, writing its log as a run's process here does. Dask runs this again on another
    worker when the first one dies; that attempt finds the run running and fails it as lost instead of training it."""
    # Imported (torch with them) before the run is taken: its heartbeat starts then, and a slow import would stale it.
    import torch

    from maskdet.runs.execute import describe_error, execute_run, progress_lines

    torch.set_num_threads(usable_cores())  # a worker under a nanny has OMP_NUM_THREADS=1: train on every core, as here
    worker = load_settings()
    settings = replace(worker, home=Path(home), models_dir=Path(models_dir), database_url=database_url,
                       backbone_weights=Path(backbone_weights) if backbone_weights else worker.backbone_weights)
    store = Store(settings)
    try:
        if not store.update_run(run_id, while_status="queued", status="running", started_at=now(),
                                heartbeat_at=now(), pid=os.getpid()):
            fail_run(store, run_id, death_notice(settings, store.run(run_id), LOST), while_status="running")
            return
        log = log_path(settings, run_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as output:
            try:
                execute_run(store, stored_config(store, run_id), settings.models_dir, run_id, progress_lines(output))
                print(json.dumps(run_summary(store, run_id), indent=2), file=output)
            except Exception as error:
                print(error_line(error), file=output)
                # execute_run records how a run ended; an error before it started (the stored config) is recorded here
                fail_run(store, run_id, describe_error(error), while_status="running")
    finally:
        store.engine.dispose()

