"""The learning itself: features of the frozen backbone, the head trained on them, optional fine-tuning of the last
blocks, early stopping on the validation loss."""

import copy
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskdet.core.disk_array import DiskArray
from maskdet.serving.classifier import onnx_session
from maskdet.training import export
from maskdet.training.config import TrainConfig
from maskdet.training.device import resolve_device
from maskdet.training.model import FEATURE_DIM, MaskNet, set_trainable_blocks, train_mode_with_frozen_batchnorm
from maskdet.training.progress import Callbacks, Progress
from maskdet.training.views import (AUGMENTED, MASKED, DrawRule, Split, Views, batches, feature_views, masked_sources,
                                    prefetched, view_maker)
from maskdet.vision.augment import build_train_pipeline

HEAD_READ_BATCHES = 64  # head batches whose features are read from their file at once (20 MB at batch size 64)


def extract_features(model: MaskNet, splits: dict[str, Split], config: TrainConfig, rules: list[DrawRule],
                     workdir: Path, callbacks: Callbacks) -> dict[str, DiskArray | np.ndarray]:
    """Pooled backbone features (onnxruntime) for the clean crops of every split plus the train split's augmented
    and drawn-mask views, written to files in workdir (float32: the head then trains as on features in memory)."""
    views = {name: feature_views(split, config.views_per_image, rules, config.seed) if name == "train"
             else feature_views(split, 0, [], config.seed) for name, split in splits.items()}
    total, done = sum(len(v.indices) for v in views.values()), 0
    callbacks.report(Progress("features", 0, total))  # the stage has begun: the backbone's export takes seconds
    session = onnx_session(export.export_embedder(model, workdir / "embedder.onnx", config.input_size),
                           resolve_device(config.device).providers)
    pipeline = build_train_pipeline(config.augment, config.input_size, seed=config.seed)
    started = time.monotonic()
    features = {}
    for name, split in splits.items():
        make = view_maker(split, views[name], pipeline, rules, config.seed)
        features[name] = DiskArray(workdir / f"features-{name}.f32", (FEATURE_DIM,), np.float32)
        for part, batch in prefetched(make, len(views[name].indices), 32):
            features[name].append(session.run(None, {"images": batch})[0])
            elapsed = time.monotonic() - started
            rate = (done + part.stop) / max(elapsed, 1e-6)
            callbacks.report(Progress("features", done + part.stop, total, eta_seconds=(total - done - part.stop) / rate))
        done += len(views[name].indices)
    features["train_targets"] = views["train"].targets(splits["train"], rules)
    features["train_rules"] = views["train"].rules
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


def finetune(model: MaskNet, splits: dict[str, Split], config: TrainConfig, rules: list[DrawRule], loss_fn,
             workdir: Path, callbacks: Callbacks) -> list[dict]:
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
        masked, numbers = masked_sources(train, rules, 1, rng)
        indices = np.concatenate([np.arange(len(train.crops)), masked])
        kinds = np.concatenate([np.full(len(train.crops), AUGMENTED), np.full(len(masked), MASKED)])
        order = rng.permutation(len(indices))
        views = Views(indices[order], kinds[order], np.concatenate([np.full(len(train.crops), -1), numbers])[order])
        all_targets = views.targets(train, rules)
        make = view_maker(train, views, pipeline, rules, config.seed * 1000 + epoch)
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


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
