"""How long a training run takes, before it starts and while it runs. Before: the dataset's size times the throughput
of each stage, plus a run's fixed costs, as this data home's last finished run measured them (or, before any run, as
maskdet's benchmark measured them on a 2-core CPU: docs/performance.md). While it runs: RunForecast, in the training
process, from the run's own first batches on this machine as it is now. An estimate: the head stage's early stopping
and the drawn-mask views vary from run to run."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from maskdet.core.classes import WITH_MASK, WITHOUT_MASK
from maskdet.runs.views import RunRecord
from maskdet.training.config import TrainConfig
from maskdet.training.progress import Progress
from maskdet.vision.mask_rules import automatic_rules


@dataclass(frozen=True)
class Throughput:
    """Seconds per unit of each training stage."""

    crop: float  # per photo cut, all splits
    feature: float  # per crop through the backbone (clean and augmented views)
    head: float  # of the head stage, per training view (early stopping included)
    finetune: float  # per training photo and fine-tuning epoch
    export: float  # per run: ONNX export, int8 quantisation, checks, timing
    setup: float  # per run, outside the stages above: building the model, evaluating on the test split
    backbone_export: float  # per run, before the first crop's features: the backbone's ONNX export (0 for a measured
    # run: its features rate includes it)
    start: float  # per run: from the click until the training process runs (Python, torch and maskdet imported)
    source: str  # where the figures come from, for the page to say


# benchmarks/train_benchmark.py's stage figures on masks-small at the default settings (docs/performance.md). setup:
# its 2026-12-05 run's 28.8 s less its stages' 26.9 s; backbone_export: about 2.5 s (docs/performance.md), which the
# benchmark's features rate spreads over 5,293 crops but a small dataset pays in full; start: issue 22's walkthrough,
# 37 s from the click for a run of 28 s (importing maskdet's training modules alone takes about 8 s of CPU on the
# 2-core machine).
BENCHMARK = Throughput(crop=2.8 / 1279, feature=1 / 346.7, head=1.6 / 4913, finetune=36 / (4 * 895), export=4.6,
                       setup=1.9, backbone_export=2.5, start=9.0, source="maskdet's benchmark on a 2-core CPU")
IN_PROCESS = 1.0  # a run started less than this many seconds after it was queued ran in the process that queued it
# (maskdet train without the dashboard): it measured no process start, and the benchmark's is used


@dataclass(frozen=True)
class Workload:
    photos: int  # of the classes trained, all splits
    train: int  # photos in the training split
    views: int  # training views: each training photo once clean, its augmented views, the drawn-mask views
    finetune_epochs: int  # 0 without fine-tuning

    @classmethod
    def of(cls, config: TrainConfig, photos: int, train: int | None = None,
           classes: list[str] | None = None) -> "Workload":
        """The work of `config` on `photos` photos, `train` of them in the training split (default: as its split
        shares say). Automatic synthetic-mask rules are those the dataset's `classes` suggest (unknown: one rule, as
        two classes suggest); a rule moving masked twins' masks is not counted (how many faces have a twin is only
        known once the run compares the photos)."""
        train = round(photos * config.split[0]) if train is None else train
        rules = config.synthetic_masks
        if rules is None:
            rules = automatic_rules([WITH_MASK, WITHOUT_MASK] if classes is None else classes)
        chances = sum(rule.probability for rule in rules if rule.mask_from == "drawing")
        drawn = chances * config.views_per_image * train / 2  # about half the training photos are of a source class
        # (without_mask) and have landmarks
        return cls(photos, train, round(train * (1 + config.views_per_image) + drawn),
                   config.finetune_epochs if config.finetune_blocks else 0)

    @property
    def features(self) -> int:
        """Crops through the backbone: the training views, then the clean validation and test crops."""
        return self.views + self.photos - self.train


def measured_throughput(run: dict) -> Throughput | None:
    """The stage throughputs a finished run measured (None when it lacks the figures: an older or failed run)."""
    record = RunRecord.of(run)
    try:
        config = TrainConfig.from_dict(record.config)
    except ValueError:  # a config an older maskdet wrote
        return None
    timings, sizes = record.metrics.get("timings") or {}, record.split_sizes
    if not all(timings.get(key) for key in ("crops", "features_images_per_second", "head", "export")) or not sizes:
        return None
    done = Workload.of(config, sum(sizes.values()), sizes.get("train", 0), record.labels)
    if not done.train:
        return None
    fine_tuned = timings.get("finetune") and done.finetune_epochs
    finetune = timings["finetune"] / (done.train * done.finetune_epochs) if fine_tuned else BENCHMARK.finetune
    stages = sum(timings.get(key) or 0.0 for key in ("crops", "features", "head", "finetune", "export"))
    setup = max(0.0, timings["total"] - stages) if timings.get("total") else BENCHMARK.setup
    start = (record.started_at - record.created_at).total_seconds() if record.started_at and record.created_at else 0
    return Throughput(crop=timings["crops"] / done.photos, feature=1 / timings["features_images_per_second"],
                      head=timings["head"] / done.views, finetune=finetune, export=timings["export"], setup=setup,
                      backbone_export=0.0, start=start if start >= IN_PROCESS else BENCHMARK.start,
                      source=f"run {record.id} on this machine")


def stage_seconds(config: TrainConfig, photos: int, throughput: Throughput,
                  classes: list[str] | None = None) -> dict[str, float]:
    """Seconds each stage of a run of `config` on `photos` photos of `classes` should take, in the order they run
    ("evaluate" holds the run's setup: building the model and evaluating it)."""
    work = Workload.of(config, photos, classes=classes)
    return {"crops": throughput.crop * work.photos,
            "features": throughput.backbone_export + throughput.feature * work.features,
            "head": throughput.head * work.views, "finetune": throughput.finetune * work.train * work.finetune_epochs,
            "evaluate": throughput.setup, "export": throughput.export}


def training_seconds(config: TrainConfig, photos: int, throughput: Throughput,
                     classes: list[str] | None = None) -> float:
    """Seconds a run of `config` on `photos` photos of the dataset's `classes` should take, from the click to its
    end."""
    return throughput.start + sum(stage_seconds(config, photos, throughput, classes).values())


def photos_trained(config: TrainConfig, label_counts: dict[str, int]) -> int:
    """Photos of the classes a run of `config` trains on (all classes with photos when it names none)."""
    return sum(count for label, count in label_counts.items() if not config.labels or label in config.labels)


def latest_throughput(runs: list[dict]) -> Throughput:
    """The throughput of the newest finished run that measured one, else the benchmark's."""
    for run in runs:
        if run["status"] == "succeeded" and (measured := measured_throughput(run)):
            return measured
    return BENCHMARK


class RunForecast:
    """The time a running run has left in all, worked out in its training process at each progress report: the stage
    under way from its own progress (its rate so far), the stages after it as the reference throughput (the last run
    on this machine, else the benchmark) says, scaled by `speed`: how long this run's backbone features take against
    the reference's. The features stage's first batches time the machine the run runs on, as busy as it is now, so
    the forecast is this machine's from a few seconds in, without timing anything twice."""

    def __init__(self, config: TrainConfig, photos: int, reference: Throughput,
                 clock: Callable[[], float] = time.monotonic):
        self.expected = stage_seconds(config, photos, reference)
        self.per_crop = reference.feature
        self.clock = clock
        self.stage: str | None = None
        self.stage_started = 0.0
        self.speed = 1.0  # this run's seconds per the reference's second, from the features stage once it runs
        self.stage_left = 0.0  # the stage under way, at the last update

    def update(self, progress: Progress) -> float:
        """Seconds left in all after this report (stage_left: in its stage)."""
        now = self.clock()
        if progress.stage != self.stage:
            self.stage, self.stage_started = progress.stage, now
        elapsed, expected = now - self.stage_started, self.expected.get(progress.stage, 0.0)
        if progress.stage == "features" and progress.eta_seconds and progress.steps > progress.step:
            # seconds a crop takes at this run's rate so far, against the reference's
            self.speed = progress.eta_seconds / (progress.steps - progress.step) / self.per_crop
        self.stage_left = stage_left(progress, elapsed, expected * self.speed)
        stages = list(self.expected)
        later = stages[stages.index(progress.stage) + 1:] if progress.stage in stages else (
            stages if progress.stage == "landmarks" else [])
        return self.stage_left + self.speed * sum(self.expected[stage] for stage in later)


def stage_left(progress: Progress, elapsed: float, expected: float) -> float:
    """Seconds left in the stage under way, `elapsed` into it, expected to take `expected` in all. A stage that times
    itself says (the head's early stopping: between its soonest and its latest end, as expected); for the others the
    expected rest, never less than the share of its steps still to do, nor than their rate so far implies (so a
    stage slower than expected never shows "0 s left")."""
    if progress.stage == "head" and progress.eta_seconds is not None:
        return min(max(expected - elapsed, progress.soonest_seconds or 0.0), progress.eta_seconds)
    if progress.eta_seconds is not None:
        return progress.eta_seconds
    done = progress.step / progress.steps if progress.steps else 0.0
    by_rate = elapsed * (1 - done) / done if done > 0 else 0.0
    return max(expected - elapsed, expected * (1 - done), by_rate, 0.0)
