"""Training inputs: each split's face crops (in a file), the bare faces' masked twins, and the views made of them:
clean, augmented, or augmented with a drawn (or moved) mask."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.classes import WITH_MASK, class_of_meaning
from maskdet.core.disk_array import DiskArray
from maskdet.data.catalog import FaceRecord
from maskdet.data.store import Store
from maskdet.training.progress import Callbacks, Progress
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.mask_rules import MaskRule
from maskdet.vision.synth import draw_mask, move_twin_mask, twin_mask_alpha


@dataclass
class Split:
    records: list[FaceRecord]  # of each crop; a drawn face's record is the face it was drawn on
    crops: np.ndarray | DiskArray  # (N, S, S, 3) uint8 face crops
    targets: np.ndarray  # (N,) class indices
    landmarks: np.ndarray  # (N, 5, 2) the face's landmarks in crop pixels; NaN where there are none
    drawn: list[str]  # per crop, the placement of the mask drawn on it ("" for a real face)
    drawn_from: list[str]  # per crop, where its mask came from (its rule's mask_from; "" for a real face)
    twins: np.ndarray  # (N,) per crop, its row in twin_crops (-1: no masked twin)
    twin_crops: DiskArray | np.ndarray  # the masked twins' photos cut with the crop's box (see find_twins)

    def twin(self, index: int) -> np.ndarray | None:
        return self.twin_crops[int(self.twins[index])] if self.twins[index] >= 0 else None

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
    mask_from: str = "drawing"


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
               callbacks: Callbacks, stage_total: int, done: int, path: Path, twin_class: int | None = None) -> Split:
    """Decode each face's photo (once for the faces of one photo, which follow each other) and cut the face's crop
    (the whole photo when no face was found) into a file at `path`; with a `twin_class`, also each face's masked twin
    (find_twins)."""
    crops = DiskArray(path, (rule.size, rule.size, 3), np.uint8)
    photo, image = None, None
    for i, record in enumerate(records):
        if record.photo_id != photo:
            photo, image = record.photo_id, store.load_image(record)
        crops.append(crop_face(image, record.face.box if record.face else None, rule)[None])
        if i % 16 == 0:
            callbacks.report(Progress("crops", done + i + 1, stage_total))
    landmarks = np.stack([crop_landmarks(r, rule) for r in records]) if records else np.zeros((0, 5, 2), np.float32)
    targets = np.array([labels.index(r.label) for r in records], np.int64)
    twins = np.full(len(records), -1, np.int64)
    twin_crops = DiskArray(path.with_suffix(".twins.u8"), crops.shape[1:], np.uint8)
    if twin_class is not None:
        find_twins(store, records, labels[twin_class], rule, crops, landmarks, twins, twin_crops)
    return Split(records, crops, targets, landmarks, [""] * len(records), [""] * len(records), twins, twin_crops)


def twin_class_name(labels: list[str]) -> str | None:
    """The class whose photos are the masked twins that a rule with mask_from twin moves the masks of."""
    return class_of_meaning(labels, WITH_MASK)


def twin_candidates(records: list[FaceRecord], twin_label: str | None) -> dict[int, FaceRecord]:
    """Per face id outside `twin_label`, the photo of `twin_label` that may be its masked twin: in the same
    near-duplicate group and of the same size (twin_mask_alpha then checks it is the same photo with a mask on)."""
    twins = {}
    for record in records:
        if record.label == twin_label:
            twins.setdefault((record.dup_group, record.width, record.height), record)
    return {r.id: twins[r.dup_group, r.width, r.height] for r in records
            if r.label != twin_label and (r.dup_group, r.width, r.height) in twins}


def find_twins(store: Store, records: list[FaceRecord], twin_label: str, rule: CropRule, crops, landmarks: np.ndarray,
               twins: np.ndarray, twin_crops: DiskArray) -> None:
    """For each face with landmarks outside `twin_label`, its masked twin (twin_candidates) cut with the face's box,
    where it is the same photo with a mask on. Sets `twins` to the twin's row in `twin_crops`."""
    candidates = twin_candidates(records, twin_label)
    for index, record in enumerate(records):
        if record.id not in candidates or np.isnan(landmarks[index, 0, 0]):
            continue
        crop = crop_face(store.load_image(candidates[record.id]), record.face.box, rule)
        if twin_mask_alpha(crops[index], crop, landmarks[index]) is not None:
            twins[index] = len(twin_crops)
            twin_crops.append(crop[None])


def resolve_rules(rules: list[MaskRule], labels: list[str]) -> list[DrawRule]:
    """The rules with their classes as indices of the trained labels (every class is one: see choose_labels)."""
    return [DrawRule(labels.index(rule.source), labels.index(rule.target), rule.placements, rule.probability,
                     rule.styles, rule.mask_from) for rule in rules]


def drawable(split: Split, rule: DrawRule) -> np.ndarray:
    """The real faces of the rule's source class it can draw on: with landmarks, and a masked twin for a twin's mask."""
    faces = (split.targets == rule.source) & split.has_landmarks & split.real
    return faces & (split.twins >= 0) if rule.mask_from == "twin" else faces


def masked_sources(split: Split, rules: list[DrawRule], rounds: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The real source-class faces with landmarks that get a drawn-mask view, and the rule of each: for each rule, each
    of `rounds` views of each such face has the rule's probability of adding one."""
    indices, numbers = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for number, rule in enumerate(rules):
        eligible = np.flatnonzero(drawable(split, rule))
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


def draw_view(crop: np.ndarray, landmarks: np.ndarray, rule: DrawRule, turn: int, rng: np.random.Generator,
              twin: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """A crop with a mask drawn by `rule` (or its masked `twin`'s mask moved, for a rule with mask_from twin), and its
    placement: a style chosen by rng, the placements taken in turn; where a placement shows too little of its mask
    inside the crop (MIN_VISIBLE), the next one, and where none shows enough, the one that shows most."""
    style = str(rng.choice(rule.styles))
    alpha = twin_mask_alpha(crop, twin, landmarks) if rule.mask_from == "twin" and twin is not None else None
    best = None
    for step in range(len(rule.placements)):
        placement = rule.placements[(turn + step) % len(rule.placements)]
        drawn = move_twin_mask(crop, twin, alpha, landmarks, placement, rng) if alpha is not None else draw_mask(
            crop, landmarks, style, rng, placement)
        share = visible_share(drawn, crop)
        if share >= MIN_VISIBLE:
            return drawn, placement
        if best is None or share > best[0]:
            best = (share, drawn, placement)
    return best[1], best[2]


def add_drawn_faces(split: Split, rules: list[DrawRule], seed: int) -> Split:
    """A validation or test split with, for each class that rules target and that has no real face in it, every real
    face a rule of that class can draw on once more, with a mask drawn (or moved) by those rules in turn, as a face of
    the class (so a class made only of drawings is measured, on drawings like those it trained on)."""
    for target in dict.fromkeys(rule.target for rule in rules):
        if (split.targets[split.real] == target).any():
            continue
        numbers = [number for number, rule in enumerate(rules) if rule.target == target]
        able = {number: drawable(split, rules[number]) for number in numbers}
        sources = np.flatnonzero(np.logical_or.reduce([able[number] for number in numbers]))
        for turn, index in enumerate(sources):
            usable = [number for number in numbers if able[number][index]]
            number = usable[turn % len(usable)]
            rng = np.random.default_rng([seed, number, int(index)])
            drawn, placement = draw_view(split.crops[index], split.landmarks[index], rules[number], turn, rng,
                                         split.twin(index))
            split.crops.append(drawn[None])
            split.records.append(split.records[index])
            split.drawn.append(placement)
            split.drawn_from.append(rules[number].mask_from)
        split.targets = np.concatenate([split.targets, np.full(len(sources), target, np.int64)])
        split.landmarks = np.concatenate([split.landmarks, split.landmarks[sources]])
        split.twins = np.concatenate([split.twins, np.full(len(sources), -1, np.int64)])
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
                                 np.random.default_rng([seed, position]), split.twin(index))[0]
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
