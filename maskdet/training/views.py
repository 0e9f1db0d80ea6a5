"""Training inputs: each split's face crops (in a file), and the views made of them: clean, augmented, or augmented with
a drawn mask."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.disk_array import DiskArray
from maskdet.data.catalog import FaceRecord
from maskdet.data.store import Store
from maskdet.training.progress import Callbacks, Progress
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.mask_rules import MaskRule
from maskdet.vision.synth import draw_mask


@dataclass
class Split:
    records: list[FaceRecord]  # of each crop; a drawn face's record is the face it was drawn on
    crops: np.ndarray | DiskArray  # (N, S, S, 3) uint8 face crops
    targets: np.ndarray  # (N,) class indices
    landmarks: np.ndarray  # (N, 5, 2) the face's landmarks in crop pixels; NaN where there are none
    drawn: list[str]  # per crop, the placement of the mask drawn on it ("" for a real face)

    @property
    def has_landmarks(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])

    @property
    def real(self) -> np.ndarray:
        return np.array([not placement for placement in self.drawn], bool)


@dataclass(frozen=True)
class DrawRule:
    """A synthetic-mask rule as a run uses it: the class indices of its source and target, and what it draws."""

    source: int
    target: int
    placements: tuple[str, ...]
    probability: float
    styles: list[str]


CLEAN, AUGMENTED, MASKED = 0, 1, 2  # kinds of training view


@dataclass(frozen=True)
class Views:
    """Training inputs: for each, the crop it comes from, its kind (clean, augmented, augmented with a drawn mask) and
    the rule that drew its mask (an index into the run's rules; -1 for no drawing)."""

    indices: np.ndarray
    kinds: np.ndarray
    rules: np.ndarray

    def targets(self, split: Split, rules: list[DrawRule]) -> np.ndarray:
        targets = split.targets[self.indices].copy()
        masked = self.kinds == MASKED
        targets[masked] = np.array([rule.target for rule in rules], np.int64)[self.rules[masked]]
        return targets


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
    return Split(records, crops, np.array([labels.index(r.label) for r in records], np.int64), landmarks,
                 [""] * len(records))


def resolve_rules(rules: list[MaskRule], labels: list[str]) -> list[DrawRule]:
    """The rules with their classes as indices of the trained labels (every class is one: see choose_labels)."""
    return [DrawRule(labels.index(rule.source), labels.index(rule.target), rule.placements, rule.probability,
                     rule.styles) for rule in rules]


def masked_sources(split: Split, rules: list[DrawRule], rounds: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The real source-class faces with landmarks that get a drawn-mask view, and the rule of each: for each rule, each
    of `rounds` views of each such face has the rule's probability of adding one."""
    indices, numbers = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for number, rule in enumerate(rules):
        eligible = np.flatnonzero((split.targets == rule.source) & split.has_landmarks & split.real)
        for _ in range(rounds):
            chosen = eligible[rng.random(len(eligible)) < rule.probability]
            indices.append(chosen)
            numbers.append(np.full(len(chosen), number))
    return np.concatenate(indices), np.concatenate(numbers)


MIN_VISIBLE = 0.08  # share of a crop's pixels a drawn mask must change to be trained on: the least a mask on the chin
# changes in masks-small's crops (5th percentile); a mask on the neck or hanging from one ear often shows only a
# sliver at the crop's edge, and such a view is a bare face labelled as worn wrong
VISIBLE_CHANGE = 16  # grey levels: a pixel changed by less (shading at the mask's edge) is not part of the mask


def visible_share(drawn: np.ndarray, crop: np.ndarray) -> float:
    """The share of the crop's pixels the drawing visibly changed."""
    return float((np.abs(drawn.astype(np.int16) - crop).max(axis=2) >= VISIBLE_CHANGE).mean())


def draw_view(crop: np.ndarray, landmarks: np.ndarray, rule: DrawRule, turn: int,
              rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A crop with a mask drawn by `rule`, and its placement: a style chosen by rng, the placements taken in turn;
    where a placement shows too little of its mask inside the crop (MIN_VISIBLE), the next one, and where none shows
    enough, the one that shows most."""
    style = str(rng.choice(rule.styles))
    best = None
    for step in range(len(rule.placements)):
        placement = rule.placements[(turn + step) % len(rule.placements)]
        drawn = draw_mask(crop, landmarks, style, rng, placement)
        share = visible_share(drawn, crop)
        if share >= MIN_VISIBLE:
            return drawn, placement
        if best is None or share > best[0]:
            best = (share, drawn, placement)
    return best[1], best[2]


def add_drawn_faces(split: Split, rules: list[DrawRule], seed: int) -> Split:
    """A validation or test split with, for each rule whose target class has no real face in it, every real
    source-class face with landmarks once more, with a drawn mask, as a face of the target class (so a class made
    only of drawings is measured, on drawings)."""
    for number, rule in enumerate(rules):
        if (split.targets == rule.target).any():
            continue
        sources = np.flatnonzero((split.targets == rule.source) & split.has_landmarks & split.real)
        for turn, index in enumerate(sources):
            rng = np.random.default_rng([seed, number, int(index)])
            drawn, placement = draw_view(split.crops[index], split.landmarks[index], rule, turn, rng)
            split.crops.append(drawn[None])
            split.records.append(split.records[index])
            split.drawn.append(placement)
        split.targets = np.concatenate([split.targets, np.full(len(sources), rule.target, np.int64)])
        split.landmarks = np.concatenate([split.landmarks, split.landmarks[sources]])
    return split


def view_maker(split: Split, views: Views, pipeline, rules: list[DrawRule], seed: int) -> Callable[[slice], np.ndarray]:
    """A batch maker over `views` of the split's crops; a drawn mask is chosen by the view's position and the seed."""

    def make(part: slice) -> np.ndarray:
        out = []
        crops = split.crops[views.indices[part]]
        for position, crop in zip(range(part.start, part.stop), crops):
            index, kind = views.indices[position], views.kinds[position]
            if kind == MASKED:
                crop = draw_view(crop, split.landmarks[index], rules[views.rules[position]], position,
                                 np.random.default_rng([seed, position]))[0]
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


def feature_views(split: Split, views_per_image: int, rules: list[DrawRule], seed: int) -> Views:
    """The clean crops, then `views_per_image` augmented views of each, then the drawn-mask views."""
    count = len(split.crops)
    masked, numbers = masked_sources(split, rules, views_per_image, np.random.default_rng(seed))
    indices = np.concatenate([np.tile(np.arange(count), 1 + views_per_image), masked])
    kinds = np.concatenate([np.full(count, CLEAN), np.full(count * views_per_image, AUGMENTED),
                            np.full(len(masked), MASKED)])
    return Views(indices, kinds, np.concatenate([np.full(count * (1 + views_per_image), -1), numbers]))
