"""Processes sharing one database, on SQLite and on PostgreSQL: opening an empty database, importing the same and
new classes, and pressing Start, all at the same moment; and a training run end to end on PostgreSQL."""

import multiprocessing
import shutil
from collections import defaultdict

from maskdet.core.errors import StoreError
from maskdet.core.settings import Settings
from maskdet.data.store import Store
from tests.conftest import home_settings, write_dataset, zip_bytes

SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter: no engine, lock or thread shared with pytest's
NEW_CLASSES = ("with_mask", "mask_chin", "mask_nose")


class NoFaces:
    """Stands in for MTCNN in the worker processes (generated pictures have no face anyway)."""

    def detect(self, images, file_sizes=None):
        return [[] for _ in images]


def together(worker, *per_process: tuple) -> list:
    """Run worker(barrier, *args) in one new process per args tuple; the barrier lets them act at the same moment.
    Returns what each returned, or the text of the error it raised."""
    barrier, results = SPAWN.Barrier(len(per_process), timeout=60), SPAWN.Queue()
    processes = [SPAWN.Process(target=_report, args=(results, worker, barrier, *args)) for args in per_process]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return outcomes


def _report(results, worker, *args) -> None:
    try:
        results.put(worker(*args))
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")


def open_store(barrier, settings: Settings) -> list[str]:
    barrier.wait()
    return Store(settings).labels()


def import_folder(barrier, settings: Settings, folder) -> dict:
    store = Store(settings)
    barrier.wait()
    return store.import_folder(folder, NoFaces()).summary()


def press_start(barrier, settings: Settings, rounds: int) -> list[str | None]:
    """Ask for a training run at the same moment as the other process, `rounds` times; the winner finishes its run
    before the next round."""
    store, created = Store(settings), []
    for _ in range(rounds):
        barrier.wait()
        try:
            created.append(store.create_run({}))
        except StoreError:
            created.append(None)
        barrier.wait()
        if created[-1]:
            store.update_run(created[-1], status="succeeded")
    return created


def test_processes_opening_an_empty_database_at_once(backend_settings):
    assert together(open_store, (backend_settings,), (backend_settings,)) == [["with_mask", "without_mask"]] * 2


def test_two_imports_at_once_store_every_file_once(backend_settings, tmp_path, monkeypatch):
    """Two folders with the same new classes, sharing 48 files and holding 24 of their own each; the near-duplicate
    groups come out as an import of one folder after the other gives them."""
    shared = write_dataset(tmp_path / "shared", 16, NEW_CLASSES)
    folders = [shutil.copytree(shared, tmp_path / name) for name in ("a", "b")]
    for start, folder in ((100, folders[0]), (200, folders[1])):
        write_dataset(folder, 8, NEW_CLASSES, start=start)
    reports = together(import_folder, *((backend_settings, folder) for folder in folders))
    assert all(isinstance(report, dict) for report in reports), reports
    assert [report["added"] + report["duplicates"] for report in reports] == [72, 72]
    assert sum(report["added"] for report in reports) == 96
    store = Store(backend_settings)
    assert store.label_counts() == {"with_mask": 32, "without_mask": 0, "mask_chin": 32, "mask_nose": 32}
    records = store.faces()
    assert len({record.sha256 for record in records}) == len(records) == 96
    assert all(store.image_path(record).exists() for record in records)
    one_after_the_other = Store(home_settings(tmp_path / "reference", monkeypatch))
    for folder in folders:
        one_after_the_other.import_folder(folder, NoFaces())
    assert near_duplicate_groups(store) == near_duplicate_groups(one_after_the_other)


def near_duplicate_groups(store: Store) -> set[frozenset[str]]:
    groups = defaultdict(set)
    for record in store.faces():
        groups[record.dup_group].add(record.sha256)
    return {frozenset(members) for members in groups.values()}


def test_two_sessions_pressing_start_together_get_one_run(backend_settings):
    rounds = 10
    first, second = together(press_start, (backend_settings, rounds), (backend_settings, rounds))
    assert isinstance(first, list) and isinstance(second, list), (first, second)
    assert [(a is None) != (b is None) for a, b in zip(first, second)] == [True] * rounds
    runs = Store(backend_settings).runs()
    assert len(runs) == rounds and {run["status"] for run in runs} == {"succeeded"}


def test_training_and_evaluation_on_postgresql(postgres_url, tmp_path, monkeypatch, detector):
    from maskdet.runs.active import set_active_run
    from maskdet.runs.execute import execute_run
    from maskdet.runs.scoring import evaluate_zip
    from maskdet.training.config import TrainConfig

    store = Store(home_settings(tmp_path, monkeypatch, postgres_url))
    store.import_folder(write_dataset(tmp_path / "photos", 8), detector)
    config = TrainConfig(random_init=True, views_per_image=1, epochs=3, input_size=64, quantize=False)
    run_id = execute_run(store, config, store.settings.models_dir)["run_id"]
    run = store.run(run_id)
    assert run["status"] == "succeeded" and run["metrics"]["test"]["accuracy"] is not None
    set_active_run(store, run_id)
    assert Store(store.settings).get_setting("active_run") == run_id
    photos = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in (tmp_path / "photos").rglob("*.jpg")}
    scored = evaluate_zip(store, run_id, zip_bytes(photos), detector)
    assert scored["num_samples"] == 16 and scored["labels"] == ["with_mask", "without_mask"]
