"""Training on a Dask cluster (maskdet/runs/cluster.py), on SQLite and on PostgreSQL: a real scheduler and two worker
processes started here. The workers run without a nanny, so the process that trains a run is the worker itself and
runs.pid names it: killing a worker mid-run is killing that pid."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from distributed import Client

from maskdet.cli import main
from maskdet.core.errors import TrainingError
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.store import Store
from maskdet.runs import cluster
from maskdet.runs.launch import start_training
from maskdet.runs.lifecycle import active_training, cancel_training, log_path
from tests.browser_support import stop
from tests.conftest import write_dataset
from tests.test_page_train import no_failure, page, set_tiny, shown

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 3, "views_per_image": 1, "input_size": 64, "quantize": False}  # about 2 s once torch is imported
LONG = {**TINY, "epochs": 1000, "patience": 1000, "batch_size": 1, "views_per_image": 8}  # about 40 s of head
# epochs on one thread: caught mid-run
LONG_FLAGS = ["--epochs", "1000", "--patience", "1000", "--batch-size", "1", "--views-per-image", "8",
              "--input-size", "64", "--no-int8"]
STARTUP_SECONDS = 90  # a scheduler and its workers starting on a busy two-core machine
RUN_SECONDS = 90  # a tiny run, the worker's first one importing torch


def dask(folder: Path, name: str, *args: str) -> subprocess.Popen:
    """`python -m dask ARGS` run from `folder`, its output in folder/NAME.log, importing maskdet from this checkout."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MASKDET_") or key == "MASKDET_BACKBONE_WEIGHTS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with open(folder / f"{name}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def logs(folder: Path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text()[-2000:]}" for path in sorted(folder.glob("*.log")))


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory, backbone_weights) -> Iterator[SimpleNamespace]:
    """A scheduler on a free port and worker processes (one thread each, no nanny): address, folder, workers."""
    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = folder / "scheduler.json"
    scheduler = dask(folder, "scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(scheduler_file))
    deadline = time.monotonic() + STARTUP_SECONDS
    state = SimpleNamespace(folder=folder, workers=[], scheduler=scheduler, address=None)
    try:
        while state.address is None and scheduler.poll() is None and time.monotonic() < deadline:
            try:
                state.address = json.loads(scheduler_file.read_text())["address"]
            except (FileNotFoundError, ValueError, KeyError):  # not written yet, or half-way
                time.sleep(0.1)
        assert state.address, logs(folder)
        yield state
    finally:
        for process in [*state.workers, scheduler]:  # the workers first: one stopping as its scheduler goes can hang
            stop(process, 20)


@pytest.fixture
def workers(local_cluster) -> SimpleNamespace:
    """The local cluster with two live workers (a test before may have killed one)."""
    live = [process for process in local_cluster.workers if process.poll() is None]
    while len(live) < 2:
        name = f"worker-{len(local_cluster.workers) + 1}"
        process = dask(local_cluster.folder, name, "worker", local_cluster.address, "--name", name, "--nthreads", "1",
                       "--no-nanny", "--no-dashboard", "--memory-limit", "0",
                       "--local-directory", str(local_cluster.folder / name))
        local_cluster.workers.append(process)
        live.append(process)
    with Client(local_cluster.address, timeout=30, set_as_default=False) as client:
        try:
            client.wait_for_workers(2, timeout=STARTUP_SECONDS)
        except TimeoutError:
            pytest.fail(f"the workers did not join the scheduler:\n{logs(local_cluster.folder)}")
    return local_cluster


@pytest.fixture
def home(backend_settings, workers, tmp_path, detector) -> Iterator[Store]:
    """A data home (SQLite, then PostgreSQL) of 6 generated pictures per class whose runs train on the local
    cluster. Teardown cancels a run a failed test left training, so the next test finds its worker free."""
    store = Store(replace(backend_settings, cluster=workers.address))
    store.import_folder(write_dataset(tmp_path / "photos", 6), detector)
    yield store
    for run in store.runs():
        if run["status"] in ACTIVE_STATUSES:
            store.update_run(run["id"], cancel_requested=True)
            wait_for(store, run["id"], ended, "ended after Cancel", 60)


def ended(run: dict) -> bool:
    return run["status"] not in ACTIVE_STATUSES


def training_head(run: dict) -> bool:
    """Mid-run: the worker has reported a few head epochs."""
    progress = run["progress"] or {}
    return run["status"] == "running" and progress.get("stage") == "head" and progress.get("epoch", 0) >= 3


def wait_for(store: Store, run_id: str, condition, what: str, timeout: float = RUN_SECONDS) -> dict:
    """Poll the registry (as the dashboard does: dead runs are failed on the way) until the run meets `condition`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active_training(store)
        run = store.run(run_id)
        if condition(run):
            return run
        time.sleep(0.1)
    log = log_path(store.settings, run_id)
    pytest.fail(f"run {run_id} not {what} after {timeout} s: {run['status']}, {run['progress']}, {run['error']}\n"
                f"run log: {log.read_text()[-2000:] if log.exists() else '(none)'}")


def run_log(store: Store, run_id: str, ending: str) -> str:
    """The run's log once the worker has written its last line (just after recording how the run ended)."""
    log = log_path(store.settings, run_id)
    deadline = time.monotonic() + 10
    while not (log.exists() and log.read_text().rstrip().endswith(ending)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return log.read_text()


def worker_running(workers: SimpleNamespace, run: dict) -> subprocess.Popen:
    """The worker process of ours that trains the run."""
    [process] = [process for process in workers.workers if process.pid == run["pid"]]
    return process


def test_a_run_started_on_the_cluster_trains_on_a_worker(home, workers):
    run_id = start_training(home, TINY)
    run = wait_for(home, run_id, ended, "finished")
    assert run["status"] == "succeeded", run["error"]
    assert worker_running(workers, run).poll() is None  # trained by one of the workers, which lives on
    assert run["progress"]["stage"] == "done"  # the worker wrote its progress, epoch by epoch, into the registry
    assert [entry["epoch"] for entry in run["progress"]["history"]] == [1, 2, 3]
    artefacts = {path.name for path in (home.settings.models_dir / run_id).iterdir()}
    assert {"model.onnx", "metrics.json", "MODEL_CARD.md"} <= artefacts
    log = run_log(home, run_id, "}")  # the dashboard's log link: what the worker printed
    assert json.loads(log[log.index("{"):])["run_id"] == run_id
    assert [p.name for p in home.settings.models_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_start_on_the_train_page_trains_on_the_cluster(home, workers, monkeypatch):
    monkeypatch.setenv("MASKDET_CLUSTER", workers.address)
    at = set_tiny(page().run())
    at.button(key="start").click().run()
    no_failure(at)
    [run] = home.runs()
    assert f"Run {run['id']}" in shown(at)
    run = wait_for(home, run["id"], ended, "finished")
    assert run["status"] == "succeeded", run["error"]
    worker_running(workers, run)
    at.run()
    no_failure(at)
    assert at.success[0].value.startswith(f"Run {run['id']} finished in ")


def test_cancel_stops_a_run_on_the_cluster(home, workers):
    run_id = start_training(home, LONG)
    wait_for(home, run_id, training_head, "training its head")
    cancel_training(home, run_id)
    run = wait_for(home, run_id, ended, "ended after Cancel", 30)
    assert run["status"] == "cancelled" and run["error"] is None
    assert worker_running(workers, run).poll() is None  # the worker lives on, ready for the next run
    assert run_log(home, run_id, "training cancelled").rstrip().endswith("training cancelled")
    assert start_training(home, TINY)  # the cluster takes the next run


def test_a_worker_killed_mid_run_leaves_the_run_failed_with_the_reason(home, workers):
    run_id = start_training(home, LONG)
    run = wait_for(home, run_id, training_head, "training its head")
    worker = worker_running(workers, run)
    worker.kill()
    worker.wait()
    killed = time.monotonic()
    # Dask gives the task to the other worker, which finds the run running and fails it: well before its heartbeat
    # goes stale (STALE_SECONDS).
    run = wait_for(home, run_id, ended, "ended after its worker was killed", 20)
    assert time.monotonic() - killed < 20
    assert run["status"] == "failed" and run["finished_at"]
    assert run["error"].startswith("The run was lost with its cluster worker, which stopped (killed?); runs are not "
                                   "restarted on another worker, so start a new one. Its last sign of life was at ")
    assert log_path(home.settings, run_id).exists() and run["error"].endswith(
        f"Its log: {log_path(home.settings, run_id)}")
    assert not (home.settings.models_dir / run_id).exists()  # nothing half-trained among the models


def test_an_unreachable_scheduler_fails_the_run_in_one_sentence(backend_settings, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for address, reason in ((f"tcp://127.0.0.1:{port}", f"Timed out trying to connect to tcp://127.0.0.1:{port}"),
                            ("trainers.example", "missing port number in address 'trainers.example'")):
        store = Store(replace(backend_settings, cluster=address))
        with pytest.raises(TrainingError) as refused:
            start_training(store, TINY)
        message = str(refused.value)
        assert message.startswith(f"Could not reach the training cluster at {address}: {reason}")
        assert message.endswith("Check MASKDET_CLUSTER (a scheduler address such as tcp://HOST:8786) and that the "
                                "scheduler is running.")
        run = store.runs()[0]
        assert run["status"] == "failed" and run["error"] == message  # the next Start is not blocked


def test_the_cli_follows_a_cluster_run_to_its_result(home, workers, monkeypatch, capsys):
    monkeypatch.setenv("MASKDET_CLUSTER", workers.address)
    code = main(["--json", "train", "--epochs", "3", "--views-per-image", "1", "--input-size", "64", "--no-int8"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    [run] = home.runs()
    assert run["status"] == "succeeded" and result["run_id"] == run["id"]
    worker_running(workers, run)  # trained on the cluster, not in this process
    assert result["accuracy"] == run["metrics"]["test"]["accuracy"]
    assert result["parity"]["same_argmax"] is True
    assert result["artefact_dir"] == str(home.settings.models_dir / run["id"])


def test_ctrl_c_while_following_cancels_the_cluster_run(home, workers, monkeypatch, capsys):
    monkeypatch.setenv("MASKDET_CLUSTER", workers.address)
    watcher = Store(home.settings)

    def press_ctrl_c() -> None:
        """Once the run is mid-run (the CLI is following it by then), interrupt the CLI as Ctrl-C does."""
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            runs = watcher.runs()
            if runs and training_head(runs[0]):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    # Ctrl-C as in a terminal, where Python's own handler raises KeyboardInterrupt: a library an earlier test used
    # may have left a handler of its own on SIGINT in this process.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        presser = threading.Thread(target=press_ctrl_c)
        presser.start()
        code = main(["train", *LONG_FLAGS])
        presser.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    [run] = home.runs()
    assert run["status"] == "cancelled" and run["cancel_requested"]
    assert code == 3, err  # as a cancelled local run
    assert f"cancelling run {run['id']}: waiting for it to stop" in err
    assert err.rstrip().endswith("training cancelled")
    assert "head" in err  # the follower drew the worker's progress as a local run's bars
