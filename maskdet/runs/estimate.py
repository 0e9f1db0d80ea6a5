"""How long a training run takes, before it starts and while it runs: the dataset's size times the throughput of
each stage, as this data home's last finished run measured it (or, before any run, as maskdet's benchmark measured
it on a 2-core CPU: docs/performance.md). An estimate: the head stage's early stopping and the drawn-mask views
vary from run to run."""

from dataclasses import dataclass

from maskdet.runs.views import RunRecord
from maskdet.training.config import TrainConfig
from maskdet.vision.mask_rules import DEFAULT_PROBABILITY


@dataclass(frozen=True)
class Throughput:
    """Seconds per unit of each training stage."""

    crop: float  # per photo cut, all splits
    feature: float  # per crop through the backbone (clean and augmented views)
    head: float  # of the head stage, per training view (early stopping included)
    finetune: float  # per training photo and fine-tuning epoch
    export: float  # per run: ONNX export, int8 quantisation, checks
    source: str  # where the figures come from, for the page to say


# benchmarks/train_benchmark.py's stage figures on masks-small at the default settings (docs/performance.md).
BENCHMARK = Throughput(crop=2.8 / 1279, feature=1 / 346.7, head=1.6 / 4913, finetune=36 / (4 * 895), export=4.6,
                       source="maskdet's benchmark on a 2-core CPU")


@dataclass(frozen=True)
class Workload:
    photos: int  # of the classes trained, all splits
    train: int  # photos in the training split
    views: int  # training views: each training photo once clean, its augmented views, the drawn-mask views
    finetune_epochs: int  # 0 without fine-tuning

    @classmethod
    def of(cls, config: TrainConfig, photos: int, train: int | None = None) -> "Workload":
        """The work of `config` on `photos` photos, `train` of them in the training split (default: as its split
        shares say)."""
        train = round(photos * config.split[0]) if train is None else train
        rules = config.synthetic_masks
        chances = DEFAULT_PROBABILITY if rules is None else sum(rule.probability for rule in rules)
        drawn = chances * config.views_per_image * train / 2  # about half the training photos are of a source class
        # (without_mask) and have landmarks; automatic rules: as one rule (most datasets have two classes)
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
    done = Workload.of(config, sum(sizes.values()), sizes.get("train", 0))
    if not done.train:
        return None
    fine_tuned = timings.get("finetune") and done.finetune_epochs
    finetune = timings["finetune"] / (done.train * done.finetune_epochs) if fine_tuned else BENCHMARK.finetune
    return Throughput(crop=timings["crops"] / done.photos, feature=1 / timings["features_images_per_second"],
                      head=timings["head"] / done.views, finetune=finetune, export=timings["export"],
                      source=f"run {record.id} on this machine")


def training_seconds(config: TrainConfig, photos: int, throughput: Throughput) -> float:
    """Seconds a run of `config` on `photos` photos should take, start to finish."""
    work = Workload.of(config, photos)
    return (throughput.crop * work.photos + throughput.feature * work.features + throughput.head * work.views
            + throughput.finetune * work.train * work.finetune_epochs + throughput.export)


def photos_trained(config: TrainConfig, label_counts: dict[str, int]) -> int:
    """Photos of the classes a run of `config` trains on (all classes with photos when it names none)."""
    return sum(count for label, count in label_counts.items() if not config.labels or label in config.labels)


def latest_throughput(runs: list[dict]) -> Throughput:
    """The throughput of the newest finished run that measured one, else the benchmark's."""
    for run in runs:
        if run["status"] == "succeeded" and (measured := measured_throughput(run)):
            return measured
    return BENCHMARK
