"""Training inputs: each split's face crops (in a file), and the views made of them: clean, augmented, or augmented with
a drawn mask."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.disk_array import DiskArray
from maskdet.core.errors import TrainingError
from maskdet.data.catalog import FaceRecord
from maskdet.data.store import Store
from maskdet.training.progress import Callbacks, Progress
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.synth import SyntheticMasks, draw_mask


@dataclass
class Split:
    records: list[FaceRecord]
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


@dataclass(frozen=True)
class Views:
    """Training inputs: for each, the crop it comes from and its kind (clean, augmented, augmented with a drawn mask)."""

    indices: np.ndarray
    kinds: np.ndarray

    def targets(self, split: Split, synthesis: MaskSynthesis | None) -> np.ndarray:
        targets = split.targets[self.indices]
        return np.where(self.kinds == MASKED, synthesis.target, targets) if synthesis else targets


def crop_landmarks(record: FaceRecord, rule: CropRule) -> np.ndarray:
    """The face's landmarks in the pixels of its crop (NaN when it has none)."""
    if record.face is None or record.face.landmarks is None:
        return np.full((5, 2), np.nan, np.float32)
    left, top, right, bottom = square_crop_box(record.face.box, record.width, record.height, rule.margin)
    scale = np.array([rule.size / (right - left), rule.size / (bottom - top)], np.float32)
    return (np.array(record.face.landmarks, np.float32) - (left, top)) * scale


def load_split(store: Store, records: list[FaceRecord], labels: list[str], rule: CropRule,
               callbacks: Callbacks, stage_total: int, done: int, path: Path) -> Split:
    """Decode each face's photo (once for the faces of one photo, which follow each other) and cut the face's crop
    (the whole photo when no face was found) into a file at `path`."""
    crops = DiskArray(path, (rule.size, rule.size, 3), np.uint8)
    photo, image = None, None
    for i, record in enumerate(records):
        if record.photo_id != photo:
            photo, image = record.photo_id, store.load_image(record)
        crops.append(crop_face(image, record.face.box if record.face else None, rule)[None])
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
        raise TrainingError(f"Synthetic masks: no trained class for the {' and the '.join(missing)}. Classes: "
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
