"""The training time estimate: the dataset's size times each stage's throughput plus a run's fixed costs, from the
last finished run; and the forecast a running run makes from its own batches."""

import pytest

from maskdet.runs.estimate import (BENCHMARK, RunForecast, Throughput, Workload, latest_throughput,
                                   measured_throughput, photos_trained, stage_seconds, training_seconds)
from maskdet.training.config import TrainConfig
from maskdet.training.progress import Progress


def finished_run(run_id: str = "r1", **config) -> dict:
    """A finished run of 100 photos (70 training) as the registry keeps it, with its stage timings."""
    counts = {"train": {"a": 35, "b": 35}, "val": {"a": 8, "b": 7}, "test": {"a": 7, "b": 8}}
    timings = {"crops": 1.0, "features": 7.6, "features_images_per_second": 100.0, "head": 0.7, "export": 3.0,
               "finetune": 14.0, "total": 28.3}  # 2 s outside the stages: building the model, evaluating it
    config = {"synthetic_masks": {"enabled": False}, **config}
    return {"id": run_id, "status": "succeeded", "config": TrainConfig.from_dict(config).to_dict(),
            "created_at": "2026-12-05T10:00:00+00:00", "started_at": "2026-12-05T10:00:06+00:00",  # 6 s to start
            "metrics": {"split_counts": counts, "timings": timings}}


def test_the_work_of_a_config():
    plain = TrainConfig.from_dict({"views_per_image": 4, "finetune_blocks": 2, "finetune_epochs": 3,
                                   "synthetic_masks": {"enabled": False}})
    work = Workload.of(plain, 1000)
    assert (work.photos, work.train, work.views, work.finetune_epochs) == (1000, 700, 3500, 3)
    assert work.features == 3500 + 300  # training views, then the clean validation and test crops
    assert Workload.of(TrainConfig(finetune_epochs=3), 1000).finetune_epochs == 0  # no fine-tuning blocks
    # drawn masks: a quarter of the augmented views of the source class, about half the training photos
    assert Workload.of(TrainConfig(views_per_image=4), 1000).views == 3500 + 350
    # the automatic rules the classes suggest: none for cats and dogs, two drawn ones with a worn-wrong class (its
    # twin rule's views depend on the twins the run finds: not counted)
    assert Workload.of(TrainConfig(views_per_image=4), 1000, classes=["with_mask", "without_mask"]).views == 3850
    assert Workload.of(TrainConfig(views_per_image=4), 1000, classes=["cat", "dog"]).views == 3500
    assert Workload.of(TrainConfig(views_per_image=4), 1000,
                       classes=["with_mask", "without_mask", "mask_incorrect"]).views == 3500 + 700


def test_a_finished_run_measures_each_stage():
    measured = measured_throughput(finished_run(views_per_image=4, finetune_blocks=1, finetune_epochs=2))
    assert measured == Throughput(crop=1.0 / 100, feature=1 / 100, head=0.7 / 350, finetune=14.0 / 140, export=3.0,
                                  setup=pytest.approx(2.0), backbone_export=0.0, start=6.0,
                                  source="run r1 on this machine")
    # the same settings on twice the photos: each stage scales with its own work; export, setup and start stay
    config = TrainConfig.from_dict({"views_per_image": 4, "finetune_blocks": 1, "finetune_epochs": 2,
                                    "synthetic_masks": {"enabled": False}})
    seconds = training_seconds(config, 200, measured)
    assert seconds == pytest.approx(6.0 + 2 * 1.0 + (700 + 60) / 100 + 2 * 0.7 + 2 * 14.0 + 2.0 + 3.0)


def test_a_run_without_a_measured_start_or_setup_takes_the_benchmarks():
    """A run trained in the process that queued it (maskdet train) measured no process start; an older run kept no
    total, so nothing tells its setup apart."""
    run = finished_run()
    in_process = measured_throughput({**run, "started_at": "2026-12-05T10:00:00.2+00:00"})
    assert in_process.start == BENCHMARK.start
    older = measured_throughput({**run, "metrics": {**run["metrics"], "timings": {
        key: value for key, value in run["metrics"]["timings"].items() if key not in ("total", "features")}}})
    assert older.setup == BENCHMARK.setup and older.start == 6.0


def test_the_newest_run_with_figures_is_used_else_the_benchmark():
    no_figures = {**finished_run("r2"), "metrics": {}}
    failed = {**finished_run("r3"), "status": "failed"}
    assert latest_throughput([failed, no_figures, finished_run("r1")]).source == "run r1 on this machine"
    assert latest_throughput([no_figures]) is BENCHMARK and latest_throughput([]) is BENCHMARK
    assert measured_throughput({**finished_run(), "config": {"no_such_setting": 1}}) is None  # an older maskdet's


def test_the_benchmark_estimates_its_own_run():
    """The default settings on the benchmark's 1,279 photos come back at its measured 28.8 s within 10%, plus the
    process start a click pays (the benchmark trains in its own process)."""
    seconds = training_seconds(TrainConfig(), 1279, BENCHMARK)
    assert seconds - BENCHMARK.start == pytest.approx(28.8, rel=0.1)
    # a first run on a small dataset is mostly fixed costs: starting, the backbone's export, setup, export
    assert training_seconds(TrainConfig(), 120, BENCHMARK) > BENCHMARK.start + BENCHMARK.backbone_export + \
        BENCHMARK.setup + BENCHMARK.export


# ---- the forecast of a running run -------------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def forecast_of(config: TrainConfig, photos: int = 100) -> tuple[RunForecast, Clock, dict[str, float]]:
    clock = Clock()
    return RunForecast(config, photos, BENCHMARK, clock), clock, stage_seconds(config, photos, BENCHMARK)


def test_the_features_stages_first_batches_time_the_machine_for_the_stages_after_it():
    """A machine (or a load) that makes the backbone three times as slow as the benchmark's: once the first batches
    of features say so, the head, evaluation and export are expected three times as long too."""
    config = TrainConfig(synthetic_masks=[])
    forecast, clock, expected = forecast_of(config)
    rest = expected["head"] + expected["finetune"] + expected["evaluate"] + expected["export"]
    left = forecast.update(Progress("crops", 1, 100))
    assert left > expected["features"] + rest  # before the features: the benchmark's figures
    clock.now = 1.0
    assert forecast.update(Progress("features", 0, 500)) == pytest.approx(expected["features"] + rest)
    clock.now = 5.0  # 64 crops in 4 s after the backbone's export; loops report the time left at that rate
    per_crop = 3 * BENCHMARK.feature
    left = forecast.update(Progress("features", 64, 500, eta_seconds=per_crop * 436))
    assert forecast.speed == pytest.approx(3.0)
    assert left == pytest.approx(per_crop * 436 + 3 * rest)


def test_a_stage_slower_than_expected_never_shows_nothing_left():
    """The export stage's tasks: the expected rest while it lasts, then no less than the tasks left at the rate so
    far (the complaint: "about 0 s left in all" for 13 s of export with an empty bar)."""
    forecast, clock, expected = forecast_of(TrainConfig(synthetic_masks=[]))
    export = expected["export"]
    assert forecast.update(Progress("export", 0, 5, task="exporting model.onnx")) == pytest.approx(export)
    clock.now = 3 * export  # the first task took three times as long as the whole stage was expected to
    assert forecast.update(Progress("export", 0, 5, task="exporting model.onnx")) == pytest.approx(export)
    left = forecast.update(Progress("export", 1, 5, task="checking model.onnx against PyTorch"))
    assert left == pytest.approx(3 * export * 4)  # four tasks left at the first one's pace
    assert forecast.stage_left == left  # the last stage: all that is left


def test_the_head_stage_is_expected_between_its_soonest_and_its_latest_end():
    forecast, clock, expected = forecast_of(TrainConfig(synthetic_masks=[]))
    forecast.update(Progress("head", 1, 100, epoch=1, epochs=100, eta_seconds=50.0, soonest_seconds=0.5))
    assert forecast.stage_left == pytest.approx(max(expected["head"], 0.5))
    clock.now = 100.0  # much longer than expected: no less than its soonest end
    forecast.update(Progress("head", 30, 100, epoch=30, epochs=100, eta_seconds=20.0, soonest_seconds=2.0))
    assert forecast.stage_left == 2.0


def test_photos_of_the_classes_trained():
    counts = {"with_mask": 10, "without_mask": 12, "other": 5}
    assert photos_trained(TrainConfig(), counts) == 27
    assert photos_trained(TrainConfig(labels=["with_mask", "other"]), counts) == 15
