"""Two-stage transfer learning: a head on cached frozen-backbone features, then optional fine-tuning."""

import copy
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.contract import CROP_MARGINS, INPUT_SIZES, Preprocess
from maskdet.core.disk_array import DiskArray
from maskdet.core.metrics import classification_report
from maskdet.data.store import ImageRecord, Store, StoreError, now
from maskdet.runs import lifecycle as jobs
from maskdet.serving.classifier import onnx_session
from maskdet.training import export
from maskdet.training.device import DEVICES, check_device, resolve_device
from maskdet.training.model import (
    FEATURE_DIM,
    NUM_BLOCKS,
    BackboneWeightsError,
    MaskNet,
    build_model,
    calibrate_batchnorm,
    set_trainable_blocks,
    train_mode_with_frozen_batchnorm,
)
from maskdet.vision.augment import AugmentConfig, build_train_pipeline
from maskdet.vision.faces import CropRule, FaceDetector, crop_face
from maskdet.vision.synth import SyntheticMasks, draw_mask


def ranged(default: int | float, low: int | float, high: int | float, help: str):
    """A numeric setting's field: its default, its allowed range and the help the CLI and the Train page show."""
    return field(default=default, metadata={"range": (low, high), "help": help})


def choice(default: str, choices: tuple[str, ...], help: str):
    """A setting's field that takes one of a few words: its default, the words and the help (see CHOSEN)."""
    return field(default=default, metadata={"choices": choices, "help": help})


@dataclass
class TrainConfig:
    """The training settings. Numeric ones carry their range and help as field metadata (see RANGED), those of a few
    words their choices and help (see CHOSEN): the checks in __post_init__, the CLI's flags and the Train page's
    inputs are all built from it."""

    epochs: int = ranged(100, 1, 1000, "Head epochs on cached features; early stopping on the validation loss usually "
                                       "ends training much sooner.")
    batch_size: int = ranged(64, 1, 1024, "Training images per optimiser step (at most 32 when fine-tuning).")
    learning_rate: float = ranged(1e-3, 1e-5, 1.0, "Learning rate of the head (AdamW).")
    weight_decay: float = ranged(1e-3, 0.0, 1.0, "AdamW weight decay.")
    label_smoothing: float = ranged(0.1, 0.0, 0.5, "Share of each target spread over the other classes.")
    views_per_image: int = ranged(4, 0, 32, "Augmented copies of each training face, besides the clean one.")
    finetune_blocks: int = ranged(0, 0, NUM_BLOCKS, "Last MobileNetV2 blocks to fine-tune after the head "
                                                    "(0: head only; slower, rarely better).")
    finetune_epochs: int = ranged(4, 1, 100, "Fine-tuning epochs (when fine-tune blocks is above 0).")
    finetune_learning_rate: float = ranged(1e-4, 1e-6, 1.0, "Learning rate of the fine-tuned blocks and the head.")
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = ranged(0, 0, 2**31 - 1, "Same seed and data, same split and same model.")
    patience: int = ranged(10, 1, 1000, "Epochs without a better validation loss before stopping.")
    class_weights: bool = True
    input_size: int = ranged(160, *INPUT_SIZES, "Side of the square face crop the model sees, in pixels.")
    crop_margin: float = ranged(1.25, *CROP_MARGINS, "Crop side as a multiple of the face box's longer side.")
    labels: list[str] | None = None  # None: every label that has images
    backbone_weights: str | None = None
    random_init: bool = False
    quantize: bool = True
    device: str = choice("cpu", DEVICES, "Where training computes: cpu, the default; cuda insists on a CUDA GPU; "
                                         "auto takes one when PyTorch finds it, else the CPU. Feature extraction uses "
                                         "the GPU only with onnxruntime-gpu installed.")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic_masks: SyntheticMasks = field(default_factory=SyntheticMasks)

    def __post_init__(self):
        """Refuse a setting that makes no sense with a sentence naming it and what it must be."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            requirement = _requirement(spec, value)
            if requirement:
                raise ValueError(f"Training setting '{spec.name}' must be {requirement}, got "
                                 f"{json.dumps(value, default=repr)}.")
            if spec.type is float:
                setattr(self, spec.name, float(value))
        check_device(self.device)
        self.split = tuple(float(share) for share in self.split)
        if not 0.99 < sum(self.split) < 1.01 or min(self.split) < 0 or self.split[0] == 0:
            raise ValueError(f"The split shares add up to {sum(self.split):.2f}; make train, validation and test "
                             "non-negative shares that add up to 1 (train above 0).")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise ValueError("A training config must be a JSON object of settings, like {\"epochs\": 20}; got "
                             f"{json.dumps(data, default=repr)[:60]}.")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        data = dict(data)
        if not isinstance(data.get("augment", {}), dict):
            raise ValueError("Training setting 'augment' must be an object of augmentations such as "
                             f"{{\"flip\": {{\"enabled\": false}}}}, got {json.dumps(data['augment'], default=repr)}.")
        augment = AugmentConfig.from_dict(data.pop("augment", {}))
        synthetic_masks = SyntheticMasks.from_dict(data.pop("synthetic_masks", {}))
        return cls(**data, augment=augment, synthetic_masks=synthetic_masks)


RANGED = {spec.name: spec for spec in fields(TrainConfig) if "range" in spec.metadata}  # name: Field
CHOSEN = {spec.name: spec for spec in fields(TrainConfig) if "choices" in spec.metadata}  # name: Field


def number_text(value: int | float) -> str:
    """A setting's number as messages and the CLI's help write it (whole numbers in full)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _requirement(spec: Field, value) -> str | None:
    """What a setting must be, when `value` is not that (None when it is fine)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if "range" in spec.metadata:
        low, high = spec.metadata["range"]
        whole = spec.type is int
        if is_number and (isinstance(value, int) or not whole) and low <= value <= high:
            return None
        return f"{'a whole number' if whole else 'a number'} from {number_text(low)} to {number_text(high)}"
    if "choices" in spec.metadata:
        return None if value in spec.metadata["choices"] else f"one of {', '.join(spec.metadata['choices'])}"
    if spec.type is bool:
        return None if isinstance(value, bool) else "true or false"
    if spec.name == "split":
        shares = isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(share, (int, float)) and not isinstance(share, bool) for share in value)
        return None if shares else "three shares [train, validation, test] that add up to 1"
    if spec.name == "labels":
        names = value is None or isinstance(value, list) and len(value) >= 2 and len(set(value)) == len(value) and all(
            isinstance(name, str) and name.strip() for name in value)
        return None if names else "null (every class with images) or a list of two or more different class names"
    if spec.name == "backbone_weights":
        return None if value is None or isinstance(value, str) and value else "a weights file path or null"
    return None


@dataclass
class Progress:
    stage: str  # "crops", "features", "head", "finetune", "evaluate", "export"
    step: int
    steps: int
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None  # validation loss and accuracy in the epoch stages
    accuracy: float | None = None
    eta_seconds: float | None = None  # left in this stage (with early stopping: if it runs all its epochs)
    train_loss: float | None = None
    train_accuracy: float | None = None
    soonest_seconds: float | None = None  # with early stopping: left if no later epoch improves
    task: str | None = None  # what the stage is doing now, where its steps are tasks (export)

    def history_entry(self) -> dict:
        """An epoch's figures as history.json and the registry's live curves keep them."""
        return {"stage": self.stage, "epoch": self.epoch, "loss": self.train_loss, "accuracy": self.train_accuracy,
                "val_loss": self.loss, "val_accuracy": self.accuracy}


class Cancelled(Exception):
    """Training was cancelled through should_cancel()."""


@dataclass
class Callbacks:
    on_progress: Callable[[Progress], None] = lambda progress: None
    should_cancel: Callable[[], bool] = lambda: False

    def report(self, progress: Progress) -> None:
        if self.should_cancel():
            raise Cancelled()
        self.on_progress(progress)


@dataclass
class Split:
    records: list[ImageRecord]
    crops: np.ndarray | DiskArray  # (N, S, S, 3) uint8 face crops
    targets: np.ndarray  # (N,) class indices
    landmarks: np.ndarray  # (N, 5, 2) the face's landmarks in crop pixels; NaN where there are none

    @property
    def has_landmarks(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])


@dataclass(frozen=True)
class MaskSynthesis:
    """Synthetic masks as a run uses them: class indices of the source and target, and the drawing settings."""

    source: int
    target: int
    probability: float
    styles: list[str]


CLEAN, AUGMENTED, MASKED = 0, 1, 2  # kinds of training view
HEAD_READ_BATCHES = 64  # head batches whose features are read from their file at once (20 MB at batch size 64)


@dataclass(frozen=True)
class Views:
    """Training inputs: for each, the crop it comes from and its kind (clean, augmented, augmented with a drawn mask)."""

    indices: np.ndarray
    kinds: np.ndarray

    def targets(self, split: Split, synthesis: MaskSynthesis | None) -> np.ndarray:
        targets = split.targets[self.indices]
        return np.where(self.kinds == MASKED, synthesis.target, targets) if synthesis else targets


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def crop_landmarks(record: ImageRecord, rule: CropRule) -> np.ndarray:
    """The face's landmarks in the pixels of its crop (NaN when it has none)."""
    if record.face is None or record.face.landmarks is None:
        return np.full((5, 2), np.nan, np.float32)
    left, top, right, bottom = square_crop_box(record.face.box, record.width, record.height, rule.margin)
    scale = np.array([rule.size / (right - left), rule.size / (bottom - top)], np.float32)
    return (np.array(record.face.landmarks, np.float32) - (left, top)) * scale


def load_split(store: Store, records: list[ImageRecord], labels: list[str], rule: CropRule,
               callbacks: Callbacks, stage_total: int, done: int, path: Path) -> Split:
    """Decode each image and cut its face crop (the whole photo when no face was found) into a file at `path`."""
    crops = DiskArray(path, (rule.size, rule.size, 3), np.uint8)
    for i, record in enumerate(records):
        crops.append(crop_face(store.load_image(record), record.face.box if record.face else None, rule)[None])
        if i % 16 == 0:
            callbacks.report(Progress("crops", done + i + 1, stage_total))
    landmarks = np.stack([crop_landmarks(r, rule) for r in records]) if records else np.zeros((0, 5, 2), np.float32)
    return Split(records, crops, np.array([labels.index(r.label) for r in records], np.int64), landmarks)


def resolve_synthesis(masks: SyntheticMasks, labels: list[str]) -> MaskSynthesis | None:
    """The source and target classes among the trained labels; None when synthesis is off or automatic without the
    default class names."""
    if not masks.enabled:
        return None
    source, target = masks.source, masks.target
    if source is None and target is None:
        if not {"without_mask", "with_mask"} <= set(labels):
            return None
        source, target = "without_mask", "with_mask"
    missing = [f"{role} '{name}'" for role, name in (("source", source), ("target", target)) if name not in labels]
    if missing:
        raise StoreError(f"Synthetic masks: no trained class for the {' and the '.join(missing)}. Classes: "
                         f"{', '.join(labels)}. Pick both classes, or set both to automatic.")
    return MaskSynthesis(labels.index(source), labels.index(target), masks.probability, masks.styles)


def masked_sources(split: Split, synthesis: MaskSynthesis | None, rounds: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Source-class faces with landmarks that get a drawn-mask view: each of `rounds` views of each such face has
    the synthesis probability of adding one (none without synthesis)."""
    if synthesis is None:
        return np.zeros(0, np.int64)
    eligible = np.flatnonzero((split.targets == synthesis.source) & split.has_landmarks)
    return np.concatenate([eligible[rng.random(len(eligible)) < synthesis.probability] for _ in range(rounds)]
                          + [np.zeros(0, np.int64)])


def view_maker(split: Split, views: Views, pipeline, synthesis: MaskSynthesis | None,
               seed: int) -> Callable[[slice], np.ndarray]:
    """A batch maker over `views` of the split's crops; a drawn mask is chosen by the view's position and the seed."""

    def make(part: slice) -> np.ndarray:
        out = []
        crops = split.crops[views.indices[part]]
        for position, crop in zip(range(part.start, part.stop), crops):
            index, kind = views.indices[position], views.kinds[position]
            if kind == MASKED:
                rng = np.random.default_rng([seed, position])
                crop = draw_mask(crop, split.landmarks[index], str(rng.choice(synthesis.styles)), rng)
            out.append(crop if kind == CLEAN else pipeline(image=crop)["image"])
        return np.stack(out)

    return make


def batches(count: int, size: int):
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def prefetched(make_batch: Callable[[slice], np.ndarray], count: int, batch_size: int):
    """Yield (slice, batch) pairs, preparing the next batch in a thread while the caller uses the current one."""
    slices = list(batches(count, batch_size))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(make_batch, slices[0]) if slices else None
        for i, part in enumerate(slices):
            batch = pending.result()
            pending = pool.submit(make_batch, slices[i + 1]) if i + 1 < len(slices) else None
            yield part, batch


def feature_views(split: Split, views_per_image: int, synthesis: MaskSynthesis | None, seed: int) -> Views:
    """The clean crops, then `views_per_image` augmented views of each, then the drawn-mask views."""
    count = len(split.crops)
    masked = masked_sources(split, synthesis, views_per_image, np.random.default_rng(seed))
    indices = np.concatenate([np.tile(np.arange(count), 1 + views_per_image), masked])
    kinds = np.concatenate([np.full(count, CLEAN), np.full(count * views_per_image, AUGMENTED),
                            np.full(len(masked), MASKED)])
    return Views(indices, kinds)


def extract_features(model: MaskNet, splits: dict[str, Split], config: TrainConfig, synthesis: MaskSynthesis | None,
                     workdir: Path, callbacks: Callbacks) -> dict[str, DiskArray | np.ndarray]:
    """Pooled backbone features (onnxruntime) for the clean crops of every split plus the train split's augmented
    and drawn-mask views, written to files in workdir (float32: the head then trains as on features in memory)."""
    session = onnx_session(export.export_embedder(model, workdir / "embedder.onnx", config.input_size),
                                  resolve_device(config.device).providers)
    pipeline = build_train_pipeline(config.augment, config.input_size, seed=config.seed)
    views = {name: feature_views(split, config.views_per_image, synthesis, config.seed) if name == "train"
             else feature_views(split, 0, None, config.seed) for name, split in splits.items()}
    total, done, started = sum(len(v.indices) for v in views.values()), 0, time.monotonic()
    features = {}
    for name, split in splits.items():
        make = view_maker(split, views[name], pipeline, synthesis, config.seed)
        features[name] = DiskArray(workdir / f"features-{name}.f32", (FEATURE_DIM,), np.float32)
        for part, batch in prefetched(make, len(views[name].indices), 32):
            features[name].append(session.run(None, {"images": batch})[0])
            elapsed = time.monotonic() - started
            rate = (done + part.stop) / max(elapsed, 1e-6)
            callbacks.report(Progress("features", done + part.stop, total, eta_seconds=(total - done - part.stop) / rate))
        done += len(views[name].indices)
    features["train_targets"] = views["train"].targets(splits["train"], synthesis)
    features["train_kinds"] = views["train"].kinds
    return features


def class_weights(targets: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes present."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def evaluate_logits(logits: torch.Tensor, targets: torch.Tensor, loss_fn) -> tuple[float, float]:
    return float(loss_fn(logits, targets)), float((logits.argmax(1) == targets).float().mean())


def batched_logits(forward: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray | DiskArray,
                   batch_size: int = 2048) -> torch.Tensor:
    """forward() over rows of any number, a batch at a time (one batch on small sets), concatenated."""
    return torch.cat([forward(rows[part]) for part in batches(len(rows), batch_size)])


def train_head(model: MaskNet, features: dict[str, np.ndarray | DiskArray], splits: dict[str, Split],
               config: TrainConfig, loss_fn, callbacks: Callbacks) -> list[dict]:
    """Stage 1: train model.head on cached features with early stopping on validation loss (on the config's device,
    where the head stays; features are read a batch at a time)."""
    device = resolve_device(config.device).torch
    model.head.to(device)
    loss_fn.to(device)
    x, x_val = features["train"], features["val"]
    y = torch.from_numpy(features["train_targets"]).to(device)
    y_val = torch.from_numpy(splits["val"].targets).to(device)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)

    def validate() -> tuple[float, float] | None:
        if not len(y_val):
            return None
        model.head.eval()
        return evaluate_logits(batched_logits(lambda rows: model.head(torch.from_numpy(rows).to(device)), x_val),
                               y_val, loss_fn)

    with torch_threads(1):  # a head's batches are too small to share: two threads waiting on each other made
        # epochs 15 times slower than one on a busy 2-core machine
        return fit(model.head, optimizer, loss_fn, "head", config.epochs, config.patience, callbacks,
                   train_epoch=lambda epoch: _head_epoch(model.head, optimizer, loss_fn, x, y, config.batch_size,
                                                         generator, device),
                   validate=validate)


@contextmanager
def torch_threads(count: int):
    """PyTorch's CPU threads set to `count` while the block runs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _head_epoch(head: nn.Module, optimizer, loss_fn, x: np.ndarray | DiskArray, y: torch.Tensor, batch_size: int,
                generator, device: torch.device) -> tuple[float, float]:
    """One epoch in a random order; the features of HEAD_READ_BATCHES batches are read from their file at once."""
    head.train()
    order = torch.randperm(len(x), generator=generator)
    total_loss, correct = 0.0, 0
    for chunk in batches(len(x), batch_size * HEAD_READ_BATCHES):
        rows = torch.from_numpy(x[order[chunk].numpy()])
        for part in batches(len(rows), batch_size):
            index = order[chunk][part]
            logits = head(rows[part].to(device))
            loss = loss_fn(logits, y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
            correct += int((logits.argmax(1) == y[index]).sum())
    return total_loss / len(x), correct / len(x)


def fit(module: nn.Module, optimizer, loss_fn, stage: str, epochs: int, patience: int, callbacks: Callbacks,
        train_epoch: Callable[[int], tuple[float, float]], validate: Callable[[], tuple[float, float] | None]) -> list[dict]:
    """Epoch loop with early stopping on validation loss; restores the best weights of `module`."""
    history, best_loss, best_state, stale = [], math.inf, copy.deepcopy(module.state_dict()), 0
    started = time.monotonic()
    for epoch in range(1, epochs + 1):
        loss, accuracy = train_epoch(epoch)
        with torch.no_grad():
            validation = validate()
        val_loss, val_accuracy = validation if validation else (loss, accuracy)
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, stale = val_loss, copy.deepcopy(module.state_dict()), 0
        else:
            stale += 1
        per_epoch = (time.monotonic() - started) / epoch
        left = 0 if stale >= patience else epochs - epoch
        report = Progress(stage, epoch, epochs, epoch, epochs, val_loss, val_accuracy, per_epoch * left, loss, accuracy,
                          soonest_seconds=per_epoch * min(left, patience - stale))
        history.append(report.history_entry())
        callbacks.report(report)
        if stale >= patience:
            break
    module.load_state_dict(best_state)
    return history


def finetune(model: MaskNet, splits: dict[str, Split], config: TrainConfig, synthesis: MaskSynthesis | None,
             loss_fn, workdir: Path, callbacks: Callbacks) -> list[dict]:
    """Stage 2: train the last blocks and the head with live augmentation; the frozen front runs in onnxruntime (both
    on the config's device, where the model stays)."""
    cut = export.front_cut(config.finetune_blocks)
    device = resolve_device(config.device)
    front = onnx_session(export.export_front(model, cut, workdir / "front.onnx", config.input_size),
                                device.providers)
    model.to(device.torch)
    loss_fn.to(device.torch)
    tail = model.features[cut:]
    params = set_trainable_blocks(model, config.finetune_blocks)
    optimizer = torch.optim.AdamW(params, lr=config.finetune_learning_rate, weight_decay=config.weight_decay)
    pipeline = build_train_pipeline(config.augment, config.input_size, seed=config.seed + 1)
    train, val = splits["train"], splits["val"]
    batch_size = min(config.batch_size, 32)
    val_inputs = DiskArray(workdir / "front-val.f32", front.get_outputs()[0].shape[1:], np.float32)
    for part in batches(len(val.crops), 64):
        val_inputs.append(front.run(None, {"images": val.crops[part]})[0])
    val_targets = torch.from_numpy(val.targets).to(device.torch)
    rng = np.random.default_rng(config.seed)

    def forward(activations: np.ndarray) -> torch.Tensor:
        x = tail(torch.from_numpy(activations).to(device.torch))
        return model.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    started = time.monotonic()

    def train_epoch(epoch: int) -> tuple[float, float]:
        train_mode_with_frozen_batchnorm(model)
        masked = masked_sources(train, synthesis, 1, rng)
        indices = np.concatenate([np.arange(len(train.crops)), masked])
        kinds = np.concatenate([np.full(len(train.crops), AUGMENTED), np.full(len(masked), MASKED)])
        order = rng.permutation(len(indices))
        views = Views(indices[order], kinds[order])
        all_targets = views.targets(train, synthesis)
        make = view_maker(train, views, pipeline, synthesis, config.seed * 1000 + epoch)
        steps = config.finetune_epochs * len(order)
        total_loss, correct = 0.0, 0
        for part, batch in prefetched(make, len(order), batch_size):
            targets = torch.from_numpy(all_targets[part]).to(device.torch)
            logits = forward(front.run(None, {"images": batch})[0])
            loss = loss_fn(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            done = (epoch - 1) * len(order) + part.stop
            eta = (time.monotonic() - started) / done * (steps - done)
            callbacks.report(Progress("finetune", part.stop, len(order), epoch, config.finetune_epochs,
                                      loss=loss.item(), eta_seconds=eta))
        return total_loss / len(order), correct / len(order)

    def validate():
        model.eval()
        return evaluate_logits(batched_logits(forward, val_inputs), val_targets, loss_fn) if len(val_inputs) else None

    history = fit(model, optimizer, loss_fn, "finetune", config.finetune_epochs, config.patience, callbacks,
                  train_epoch, validate)
    set_trainable_blocks(model, 0)
    model.eval()
    return history


def predict_probabilities(model: MaskNet, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return np.concatenate([torch.softmax(model(torch.from_numpy(crops[part])), 1).numpy()
                               for part in batches(len(crops), batch_size)] or [np.zeros((0, 0))])


def choose_labels(store: Store, config: TrainConfig) -> list[str]:
    """The labels to train on; each needs at least 2 images."""
    counts = store.label_counts()
    labels = config.labels or [name for name, count in counts.items() if count > 0]
    missing = [name for name in labels if name not in counts]
    if missing:
        raise StoreError(f"Unknown label(s): {', '.join(missing)}.")
    if len(labels) < 2:
        raise StoreError("Training needs at least two classes with images. Import images for another class.")
    too_few = [f"{name} ({counts[name]})" for name in labels if counts[name] < 2]
    if too_few:
        raise StoreError(f"Each class needs at least 2 images; too few in: {', '.join(too_few)}.")
    return labels


def train(store: Store, config: TrainConfig, run_dir: Path, callbacks: Callbacks | None = None) -> dict:
    """Train, evaluate and export one model into run_dir (written to a temporary folder, renamed at the end)."""
    callbacks = callbacks or Callbacks()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    timings, started = {}, time.monotonic()
    labels = choose_labels(store, config)
    synthesis = resolve_synthesis(config.synthetic_masks, labels)
    store.assign_splits(config.split, config.seed)
    rule = CropRule(config.crop_margin, config.input_size)
    if synthesis:
        fill_source_landmarks(store, labels[synthesis.source], "train", callbacks)
    records = {name: [r for r in store.images(split=name) if r.label in labels] for name in ("train", "val", "test")}
    if not records["train"]:
        raise StoreError("The training split is empty; add more images.")
    if synthesis and config.synthetic_masks.source and not any(
            r.face and r.face.landmarks for r in records["train"] if r.label == labels[synthesis.source]):
        raise StoreError(f"Synthetic masks: no training photo of '{labels[synthesis.source]}' has a face with "
                         "landmarks to draw a mask on (photos where no face was found are skipped). Import photos "
                         "with visible faces, or turn synthetic masks off.")
    run_dir = Path(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        check_scratch_space(staging, {name: len(split) for name, split in records.items()}, config, synthesis)
        scratch = staging / "scratch"  # crops, features, ONNX graphs: inside staging, a killed run leaves one folder
        scratch.mkdir()
        total = sum(len(r) for r in records.values())
        splits, done = {}, 0
        for name, split_records in records.items():
            splits[name] = load_split(store, split_records, labels, rule, callbacks, total, done,
                                      scratch / f"crops-{name}.u8")
            done += len(split_records)
        timings["crops"] = time.monotonic() - started
        model, backbone = build_model(len(labels), Path(config.backbone_weights) if config.backbone_weights else None,
                                      config.random_init, Preprocess(input_size=config.input_size))
        if config.random_init:
            calibrate_batchnorm(model, splits["train"].crops)
        model.eval()
        mark = time.monotonic()
        features = extract_features(model, splits, config, synthesis, scratch, callbacks)
        timings["features"] = time.monotonic() - mark
        weights = class_weights(features["train_targets"], len(labels)) if config.class_weights else None
        loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
        timings["features_images_per_second"] = len(features["train_targets"]) + len(features["val"]) + len(
            features["test"])
        timings["features_images_per_second"] /= max(timings["features"], 1e-6)
        mark = time.monotonic()
        history = train_head(model, features, splits, config, loss_fn, callbacks)
        timings["head"] = time.monotonic() - mark
        if config.finetune_blocks > 0:
            mark = time.monotonic()
            history += finetune(model, splits, config, synthesis, loss_fn, scratch, callbacks)
            timings["finetune"] = time.monotonic() - mark
        model.cpu().eval()  # evaluation and export run on the CPU, wherever training ran
        callbacks.report(Progress("evaluate", 0, 1))
        test = splits["test"]
        probabilities = predict_probabilities(model, test.crops)
        report = classification_report(test.targets, probabilities, labels,
                                        [r.source_name for r in test.records]) if len(test.targets) else None
        mark = time.monotonic()
        preprocess = Preprocess(input_size=config.input_size)
        calibration = splits["train"].crops[np.random.default_rng(config.seed).permutation(len(records["train"]))[:128]]
        artefacts = export.export_run(model, staging, labels, preprocess, rule, test.crops, probabilities,
                                      test.targets, calibration, config.quantize,
                                      lambda done, total, task: callbacks.report(Progress("export", done, total, task=task)))
        timings["export"] = time.monotonic() - mark
        shutil.rmtree(scratch)
        timings["total"] = time.monotonic() - started
        metrics = {
            "labels": labels, "backbone": backbone, "random_init": config.random_init,
            "split_counts": {name: {label: int((s.targets == i).sum()) for i, label in enumerate(labels)}
                             for name, s in splits.items()},
            "test": report, **artefacts, "timings": timings,
            "epochs_trained": {stage: sum(1 for h in history if h["stage"] == stage) for stage in ("head", "finetune")},
            "synthetic_masks": synthesis_summary(synthesis, labels, splits["train"], features["train_kinds"]),
            "device": device.torch.type, "onnx_providers": list(device.providers),
        }
        torch.save(model.state_dict(), staging / "model.pt")
        write_json(staging / "config.json", {"train": config.to_dict(), "labels": labels, "preprocess":
                                             preprocess.to_dict(), "crop_rule": asdict(rule), "backbone": backbone})
        write_json(staging / "history.json", history)
        write_json(staging / "metrics.json", metrics)
        write_predictions(staging / "predictions.csv", test, probabilities, labels)
        (staging / "MODEL_CARD.md").write_text(model_card(labels, config, metrics, backbone))
        if run_dir.exists():
            shutil.rmtree(run_dir)
        os.replace(staging, run_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


def scratch_bytes(photos: dict[str, int], config: TrainConfig, synthesis: MaskSynthesis | None) -> int:
    """Disk a run's crops and features take while it trains, at most: a crop a photo, a feature row a view."""
    drawn = config.views_per_image * synthesis.probability if synthesis else 0
    views = photos["train"] * (1 + config.views_per_image + drawn) + photos["val"] + photos["test"]
    return sum(photos.values()) * config.input_size ** 2 * 3 + math.ceil(views) * FEATURE_DIM * 4


def check_scratch_space(folder: Path, photos: dict[str, int], config: TrainConfig,
                        synthesis: MaskSynthesis | None) -> None:
    """Refuse, before anything is written, a run whose crops and features would not fit on the disk of `folder`."""
    needed, free = scratch_bytes(photos, config, synthesis), shutil.disk_usage(folder).free
    if needed > free:
        raise StoreError(f"Training {sum(photos.values()):,} photos needs about {disk_text(needed)} of free disk "
                         f"for its crops and features while it runs, in {folder.parent}; {disk_text(free)} are "
                         "free. Free some space, or set MASKDET_MODELS to a folder on a larger disk.")


def disk_text(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def fill_source_landmarks(store: Store, label: str, split: str, callbacks: Callbacks) -> None:
    """Landmarks for the source class's photos of a data home imported before maskdet stored them (once)."""
    ids = store.image_ids(label=label, split=split)
    if store.without_landmarks(ids):
        store.fill_landmarks(FaceDetector(), ids, lambda done, total: callbacks.report(Progress("landmarks", done, total)))


def synthesis_summary(synthesis: MaskSynthesis | None, labels: list[str], train: Split,
                      train_kinds: np.ndarray) -> dict | None:
    """What the run's synthetic masks did, for metrics.json and the model card."""
    if synthesis is None:
        return None
    source = train.targets == synthesis.source
    return {"source": labels[synthesis.source], "target": labels[synthesis.target],
            "probability": synthesis.probability, "styles": synthesis.styles,
            "source_faces": int(source.sum()),
            "source_faces_with_landmarks": int((source & train.has_landmarks).sum()),
            "views": int((train_kinds == MASKED).sum())}


def synthetic_preview(store: Store, masks: SyntheticMasks, rule: CropRule, count: int = 8,
                      seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Face crops of source-class photos with a drawn mask, one style after another, as training draws them."""
    labels = [name for name, number in store.label_counts().items() if number > 0]
    synthesis = resolve_synthesis(masks, labels)
    if synthesis is None:
        raise StoreError("Synthetic masks are off: turn them on, or pick a source and a target class "
                         "(automatic needs classes named without_mask and with_mask).")
    source = labels[synthesis.source]
    ids = store.image_ids(label=source, no_face=False)
    chosen = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:count * 3]]
    if store.without_landmarks(chosen):
        store.fill_landmarks(FaceDetector(), chosen)
    chosen = [r for r in store.images(ids=chosen) if r.face.landmarks][:count]
    if not chosen:
        raise StoreError(f"No photo of '{source}' has a face with landmarks to draw a mask on: import photos with "
                         "visible faces.")
    previews = []
    for index, record in enumerate(chosen):
        style = synthesis.styles[index % len(synthesis.styles)]
        crop = crop_face(store.load_image(record), record.face.box, rule)
        drawn = draw_mask(crop, crop_landmarks(record, rule), style, np.random.default_rng([seed, index]))
        previews.append((drawn, f"{style}: {record.source_name}"))
    return previews


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2))


def write_predictions(path: Path, split: Split, probabilities: np.ndarray, labels: list[str]) -> None:
    lines = ["image_id,source_name,true,predicted," + ",".join(f"p_{label}" for label in labels)]
    for record, target, probs in zip(split.records, split.targets, probabilities):
        name = record.source_name.replace('"', "'")
        lines.append(f'{record.id},"{name}",{labels[target]},{labels[int(probs.argmax())]},'
                     + ",".join(f"{p:.6f}" for p in probs))
    path.write_text("\n".join(lines) + "\n")


def synthesis_line(summary: dict | None) -> str:
    if summary is None:
        return "- Synthetic masks: off"
    return (f"- Synthetic masks: {summary['views']} training views of '{summary['source']}' faces with a drawn mask "
            f"({', '.join(summary['styles'])}) trained as '{summary['target']}'")


def model_card(labels: list[str], config: TrainConfig, metrics: dict, backbone: str) -> str:
    """A short human-readable summary of what the model is, how it was made and how it scored."""
    test = metrics.get("test") or {}
    counts = metrics["split_counts"]
    lines = [
        "# maskdet model card", "",
        f"- Classes: {', '.join(labels)}",
        f"- Backbone: MobileNetV2, weights {backbone}" + (" (RANDOM INIT: not pretrained)" if config.random_init else ""),
        f"- Training: head on cached features ({config.views_per_image} augmented views per image)"
        + (f", then fine-tuned the last {config.finetune_blocks} blocks" if config.finetune_blocks else ""),
        "- Data: " + "; ".join(f"{name}: {sum(c.values())} images" for name, c in counts.items()),
        synthesis_line(metrics.get("synthetic_masks")),
        f"- Trained on: {metrics['device']} (PyTorch), {', '.join(metrics['onnx_providers'])} (onnxruntime)",
        f"- Input: face crop (square, margin {config.crop_margin}x), {config.input_size}x{config.input_size} "
        "uint8 RGB NHWC; normalisation inside the model", "",
        "## Test split", "",
    ]
    if test:
        lines += [f"- Accuracy: {test['accuracy']:.4f}", f"- Macro F1: {test['macro_f1']:.4f}",
                  f"- ROC AUC: {test['roc_auc']}" if test.get("roc_auc") is not None else "- ROC AUC: n/a"]
        lines += [f"- {c['label']}: precision {c['precision']:.3f}, recall {c['recall']:.3f}, F1 {c['f1']:.3f}"
                  for c in test["per_class"]]
    else:
        lines.append("- No test images (the split left the test set empty).")
    lines += ["", "## Limitations", "",
              "- Scores are measured on a split of the same dataset; photos from other cameras, lighting or mask",
              "  styles may score lower. Datasets with pasted-on masks overstate real-world accuracy.",
              "- The split keeps near-duplicate photos together, but different photos of one person can still",
              "  fall on both sides.",
              "- The model classifies a face crop; it relies on the face detector to find faces first."]
    return "\n".join(lines) + "\n"


def execute_run(store: Store, config: TrainConfig, models_dir: Path, run_id: str | None = None,
                on_progress: Callable[[Progress], None] = lambda progress: None) -> dict:
    """Train as a registry run: status, throttled progress, a heartbeat and cancellation (Cancel, or SIGTERM to this
    process) live in the database. Without a run id a new run is queued, refused while another one trains."""
    run_id = run_id or jobs.new_run(store, config.to_dict())
    store.update_run(run_id, status="running", started_at=now(), heartbeat_at=now(), pid=os.getpid(), error=None)
    last = {"write": 0.0, "check": 0.0, "cancel": False}
    history: list[dict] = []  # per-epoch train and validation figures (as in history.json), for live curves

    def progress(item: Progress) -> None:
        on_progress(item)
        if item.stage in ("head", "finetune") and item.accuracy is not None:  # fit()'s end-of-epoch report
            history.append(item.history_entry())
        if time.monotonic() - last["write"] >= 1.0:
            last["write"] = time.monotonic()
            store.update_run(run_id, progress={**asdict(item), "history": history})

    def should_cancel() -> bool:
        if not last["cancel"] and time.monotonic() - last["check"] >= 1.0:
            last["check"] = time.monotonic()
            last["cancel"] = bool(store.run(run_id)["cancel_requested"])
        return last["cancel"]

    run_dir = Path(models_dir) / run_id
    try:
        with jobs.heartbeat(store, run_id), sigterm_cancels(last):
            metrics = train(store, config, run_dir, Callbacks(progress, should_cancel))
    except Cancelled:
        store.update_run(run_id, status="cancelled", finished_at=now())
        raise
    except BaseException as error:
        store.update_run(run_id, status="failed", finished_at=now(), error=describe_error(error))
        raise
    store.update_run(run_id, status="succeeded", finished_at=now(), metrics=metrics, artefact_dir=str(run_dir),
                     progress={**asdict(Progress("done", 1, 1)), "history": history})
    return {"run_id": run_id, **metrics}


@contextmanager
def sigterm_cancels(state: dict):
    """While the block runs, SIGTERM sets state["cancel"], so the run stops as if Cancel had been pressed (only in
    the main thread, where Python handles signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: state.update(cancel=True))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe_error(error: BaseException) -> str:
    """One line for a failed run: the message of errors meant for users, the type and message otherwise."""
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted."
    if isinstance(error, (StoreError, BackboneWeightsError, ValueError)):
        return str(error)
    return f"{type(error).__name__}: {error}"
