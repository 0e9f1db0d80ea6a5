"""The training time estimate: the dataset's size times each stage's throughput, from the last finished run."""

import pytest

from maskdet.runs.estimate import (BENCHMARK, Throughput, Workload, latest_throughput, measured_throughput,
                                   photos_trained, training_seconds)
from maskdet.training.config import TrainConfig


def finished_run(run_id: str = "r1", **config) -> dict:
    """A finished run of 100 photos (70 training) as the registry keeps it, with its stage timings."""
    counts = {"train": {"a": 35, "b": 35}, "val": {"a": 8, "b": 7}, "test": {"a": 7, "b": 8}}
    timings = {"crops": 1.0, "features_images_per_second": 100.0, "head": 0.7, "export": 3.0, "finetune": 14.0}
    config = {"synthetic_masks": {"enabled": False}, **config}
    return {"id": run_id, "status": "succeeded", "config": TrainConfig.from_dict(config).to_dict(),
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


def test_a_finished_run_measures_each_stage():
    measured = measured_throughput(finished_run(views_per_image=4, finetune_blocks=1, finetune_epochs=2))
    assert measured == Throughput(crop=1.0 / 100, feature=1 / 100, head=0.7 / 350, finetune=14.0 / 140, export=3.0,
                                  source="run r1 on this machine")
    # the same settings on twice the photos: each stage scales with its own work, export stays
    config = TrainConfig.from_dict({"views_per_image": 4, "finetune_blocks": 1, "finetune_epochs": 2,
                                    "synthetic_masks": {"enabled": False}})
    seconds = training_seconds(config, 200, measured)
    assert seconds == pytest.approx(2 * 1.0 + (700 + 60) / 100 + 2 * 0.7 + 2 * 14.0 + 3.0)


def test_the_newest_run_with_figures_is_used_else_the_benchmark():
    no_figures = {**finished_run("r2"), "metrics": {}}
    failed = {**finished_run("r3"), "status": "failed"}
    assert latest_throughput([failed, no_figures, finished_run("r1")]).source == "run r1 on this machine"
    assert latest_throughput([no_figures]) is BENCHMARK and latest_throughput([]) is BENCHMARK
    assert measured_throughput({**finished_run(), "config": {"no_such_setting": 1}}) is None  # an older maskdet's


def test_the_benchmark_estimates_its_own_run():
    """The default settings on the benchmark's 1,279 photos come back at its measured 25.9 s, within 10%."""
    assert training_seconds(TrainConfig(), 1279, BENCHMARK) == pytest.approx(25.9, rel=0.1)


def test_photos_of_the_classes_trained():
    counts = {"with_mask": 10, "without_mask": 12, "other": 5}
    assert photos_trained(TrainConfig(), counts) == 27
    assert photos_trained(TrainConfig(labels=["with_mask", "other"]), counts) == 15
