"""Runs that cannot get stuck: heartbeats, runs found dead whoever looks, one run at a time, leftovers removed at the
next start, SIGTERM as Cancel, and a log for every run. The last tests kill real `python -m maskdet train`
processes; instead of waiting STALE_SECONDS they move the killed run's last heartbeat back in time."""

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from maskdet.core.errors import TrainingError
from maskdet.core.settings import load_settings
from maskdet.data.store import Store
from maskdet.runs import lifecycle as jobs
from maskdet.runs.lifecycle import (STALE_SECONDS, STARTING_SECONDS, active_training, cancel_training, heartbeat,
                                    log_path, new_run)
from maskdet.training.config import TrainConfig
from tests.conftest import write_dataset
from tests.test_cli import TRAIN_FAST, cli, cli_env, refused, succeeded

SLOW = ["--random-init", "--views-per-image", "1", "--input-size", "64", "--no-int8", "--epochs", "1000",
        "--patience", "1000"]  # a run that is still training a few seconds after its staging folder appears


def ago(seconds: float) -> str:
    """A registry timestamp `seconds` before now."""
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def running_run(store: Store, beat_seconds_ago: float | None, **fields) -> str:
    run_id = store.create_run(TrainConfig().to_dict())
    store.update_run(run_id, status="running", started_at=ago(600), pid=os.getpid(),
                     heartbeat_at=None if beat_seconds_ago is None else ago(beat_seconds_ago), **fields)
    return run_id


# ---- the rules, on runs written by hand -------------------------------------------------------------------

def test_a_run_is_alive_while_its_heartbeat_is_fresh_and_failed_once_it_is_stale(store):
    run_id = running_run(store, beat_seconds_ago=5)
    assert active_training(store)["id"] == run_id
    store.update_run(run_id, heartbeat_at=ago(STALE_SECONDS + 1))  # its pid (ours) is alive: it does not count
    assert active_training(store) is None
    run = store.run(run_id)
    when = datetime.fromisoformat(run["heartbeat_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert run["status"] == "failed" and run["finished_at"]
    assert run["error"] == f"The training process stopped without a word (killed?) at {when}."


def test_a_queued_run_has_time_to_start_its_process(store):
    run_id = store.create_run(TrainConfig().to_dict())
    store.update_run(run_id, created_at=ago(STALE_SECONDS + 10))  # importing torch can take this long
    assert active_training(store)["id"] == run_id
    store.update_run(run_id, created_at=ago(STARTING_SECONDS + 1))
    log = log_path(store.settings, run_id)
    log.parent.mkdir(parents=True)
    log.write_text("Traceback ...")
    assert active_training(store) is None
    run = store.run(run_id)
    when = datetime.fromisoformat(run["created_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert run["error"] == f"The training process stopped without a word (killed?) at {when}. Its log: {log}"


def test_cancel_of_a_dead_run_says_it_is_dead_and_fails_it(store):
    run_id = running_run(store, beat_seconds_ago=STALE_SECONDS + 1)
    with pytest.raises(TrainingError, match=rf"^Run {run_id} is not running \(status: failed\)\. The training process "
                       r"stopped without a word \(killed\?\) at "):
        cancel_training(store, run_id)
    run = store.run(run_id)
    assert run["status"] == "failed" and not run["cancel_requested"]
    live = running_run(store, beat_seconds_ago=1)
    cancel_training(store, live)
    assert store.run(live)["cancel_requested"] and store.run(live)["status"] == "running"


def test_a_new_run_waits_for_a_live_one_and_clears_what_dead_runs_left(store):
    models = store.settings.models_dir
    (models / ".20260101-000000-abcdef.tmp" / "scratch").mkdir(parents=True)
    (models / ".20260101-000000-abcdef.tmp" / "scratch" / "embedder.onnx").write_bytes(b"onnx")
    (models / ".logs").mkdir()
    (models / "20251231-000000-fedcba").mkdir()  # a finished run's folder
    live = running_run(store, beat_seconds_ago=1)
    with pytest.raises(TrainingError, match=f"Training run {live} is still in progress"):
        new_run(store, TrainConfig().to_dict())
    assert (models / ".20260101-000000-abcdef.tmp").exists()
    store.update_run(live, heartbeat_at=ago(STALE_SECONDS + 1))
    run_id = new_run(store, TrainConfig().to_dict())
    assert store.run(run_id)["status"] == "queued" and store.run(live)["status"] == "failed"
    assert sorted(p.name for p in models.iterdir()) == [".logs", "20251231-000000-fedcba"]


def test_the_heartbeat_beats_while_the_block_runs_and_stops_after(store, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    run_id = running_run(store, beat_seconds_ago=None)
    with heartbeat(store, run_id):
        deadline = time.monotonic() + 5
        while store.run(run_id)["heartbeat_at"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first = store.run(run_id)["heartbeat_at"]
        while store.run(run_id)["heartbeat_at"] == first and time.monotonic() < deadline:
            time.sleep(0.02)
    last = store.run(run_id)["heartbeat_at"]
    assert first and last > first
    time.sleep(0.15)
    assert store.run(run_id)["heartbeat_at"] == last


# ---- real training processes, killed ----------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, detector, monkeypatch) -> Path:
    """A CLI home (data/ and models/ as tests.test_cli lays them out) with 6 generated pictures per class."""
    monkeypatch.setenv("MASKDET_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("MASKDET_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("MASKDET_DATABASE_URL", raising=False)
    Store(load_settings()).import_folder(write_dataset(tmp_path / "photos", 6), detector)
    return tmp_path


def start_training(home: Path) -> tuple[subprocess.Popen, dict]:
    """`maskdet train` in the background, returned once its staging folder exists, with its registry row."""
    store = Store(load_settings())
    process = subprocess.Popen([sys.executable, "-m", "maskdet", "train", *SLOW], cwd=home, env=cli_env(home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((home / "models").glob(".*.tmp")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            logs = [p.read_text()[-2000:] for p in (home / "models" / ".logs").glob("*.log")]
            pytest.fail(f"no staging folder while training (exit {process.poll()}); logs: {logs}")
        time.sleep(0.05)
    [run] = store.runs()
    return process, run


def test_a_killed_training_is_found_dead_and_the_next_one_cleans_up(home):
    process, run = start_training(home)
    staging = home / "models" / f".{run['id']}.tmp"
    log = home / "models" / ".logs" / f"{run['id']}.log"
    assert run["status"] == "running" and run["heartbeat_at"] and staging.is_dir()
    assert log.is_file()  # a CLI run has its log
    process.kill()
    process.wait()
    assert cli(home, "runs", as_json=False).stdout.split()[:2] == [run["id"], "running"]  # its last beat is recent

    Store(load_settings()).update_run(run["id"], heartbeat_at=ago(STALE_SECONDS + 1))  # as if 30 s had passed
    listed = cli(home, "runs", as_json=False)
    assert listed.returncode == 0
    assert listed.stdout.startswith(f"{run['id']}  failed    The training process stopped without a word (killed?) at ")
    assert listed.stdout.rstrip().endswith(f"Its log: {log}")
    refused(cli(home, "cancel", run["id"]), f"Run {run['id']} is not running (status: failed)",
            "stopped without a word (killed?)")
    assert staging.is_dir()  # until the next start

    result = succeeded(cli(home, "train", *TRAIN_FAST, "--split", "1", "0", "0"))
    assert sorted(p.name for p in (home / "models").iterdir()) == [".logs", result["run_id"]]
    assert (home / "models" / ".logs" / f"{result['run_id']}.log").read_text().strip()
    # With the whole dataset in the train split there are no test scores: the run does not become active by itself.
    assert result["active_model"] is None
    assert result["not_active_because"] == (f"Run {result['run_id']} was not made the active model: it has no test "
                                            "scores (its test split was empty), so nothing shows it beats guessing. "
                                            "It can still be chosen on the Models page or used with --model.")


def test_sigterm_cancels_a_training_cleanly(home):
    process, run = start_training(home)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 3  # the CLI's exit code for a cancelled training
    run = Store(load_settings()).run(run["id"])
    assert run["status"] == "cancelled" and run["finished_at"]
    assert sorted(p.name for p in (home / "models").iterdir()) == [".logs"]  # no staging left
    assert (home / "models" / ".logs" / f"{run['id']}.log").read_text().rstrip().endswith("training cancelled")
