"""Scores of a face-mask model on photos with every face boxed and labelled. Pure functions, no I/O.

pycocotools does the matching and the AP. A class-agnostic COCOeval (useCats=0, one category, score = face
probability) pairs found faces with truth faces one to one: greedily, highest face probability first, each taking the
free truth face of highest IoU, if that IoU is >= the threshold (a tie in IoU goes to the later truth face). Faces
found, precision, the confusion matrix, the galleries and the by-size and by-class rows are counted on that pairing.
A per-class COCOeval (useCats=1) gives each class's AP and PR curve, each found face being one detection of every
class, scored face probability x class probability (the way detectors' mAP is computed, e.g. YOLOv5's validation, so
the figures compare): COCO samples the monotone precision envelope on RECALL_GRID, whose mean is VOC's all-point AP to
within 1e-4 of a point (0.0002). pycocotools' box IoU adds no +1 pixel.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass
from math import inf

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SIZE_BANDS = (("< 20 px", 0, 20), ("20-32 px", 20, 32), (">= 32 px", 32, inf))  # by the truth box's shorter side
RECALL_GRID = np.linspace(0, 1, 10001)  # recall levels COCO samples the precision envelope at
CURVE_STEP = 100  # a PR curve keeps every 100th level (recall steps of 0.01) and the last one reached


@dataclass(frozen=True)
class TruthFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    label: str


@dataclass(frozen=True)
class FoundFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    face_probability: float
    probabilities: dict[str, float]  # the model's class probabilities

    @property
    def label(self) -> str:
        """The most probable class."""
        return max(self.probabilities, key=self.probabilities.get)


@dataclass(frozen=True)
class Miss:
    photo: int
    truth: int


@dataclass(frozen=True)
class Wrong:
    photo: int
    truth: int
    found: int
    label: str
    probability: float


@dataclass
class BoxScores:
    iou: float
    faces: int
    found: int
    predictions: int
    recall: float | None
    precision: float | None
    by_size: dict[str, dict]  # band -> {"faces", "found", "recall", "found_right"}
    by_class: dict[str, dict]  # truth class before mapping -> {"faces", "found", "recall", "found_right"}
    found_right: float | None
    end_to_end: float | None
    confusion: list[list[int]]  # [true class][predicted class] over the model's classes, found faces only
    ap: dict[str, float | None]
    map: float | None
    curves: dict[str, dict]  # class -> {"recall": [...], "precision": [...]}
    misses: list[Miss]
    wrongs: list[Wrong]

    def to_dict(self) -> dict:
        """JSON-ready, floats rounded to 4 places."""
        return _rounded(asdict(self))


def _rounded(value):
    """`value` with every float in it rounded to 4 places."""
    if isinstance(value, float):
        return round(float(value), 4)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _ratio(part: float, whole: float) -> float | None:
    """part / whole, or None when whole is zero."""
    return float(part) / whole if whole else None


def _shorter_side(box) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def _annotation(number: int, photo: int, category: int, box, score: float | None = None) -> dict:
    """A COCO annotation (ids from 1: COCO's 0 means unmatched) of an x1, y1, x2, y2 box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"box {tuple(box)} of photo {photo} is not x1, y1, x2, y2 with x1 <= x2 and y1 <= y2")
    annotation = {"id": number, "image_id": photo, "category_id": category, "bbox": [x1, y1, x2 - x1, y2 - y1],
                  "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
    return annotation if score is None else {**annotation, "score": float(score)}


def _coco(photos: int, categories: int, annotations: list[dict]) -> COCO:
    """A pycocotools COCO built in memory."""
    coco = COCO()
    coco.dataset = {"images": [{"id": i} for i in range(photos)],
                    "categories": [{"id": k} for k in range(1, categories + 1)], "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _evaluate(photos: int, categories: int, truths: list[dict], founds: list[dict], iou: float, use_cats: int,
              max_dets: int) -> COCOeval:
    """COCOeval's evaluate and accumulate at one IoU threshold, one area range (all) and no cap on detections."""
    evaluation = COCOeval(_coco(photos, categories, truths), _coco(photos, categories, founds), "bbox")
    params = evaluation.params
    params.iouThrs, params.recThrs, params.maxDets = np.array([iou]), RECALL_GRID, [max_dets]
    params.areaRng, params.areaRngLbl, params.useCats = [[0, inf]], ["all"], use_cats
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
    return evaluation


def _check(photos, classes: list[str], counts_as: dict[str, str], iou: float) -> None:
    """Raise ValueError for a bad threshold, mapping, truth label or set of class probabilities."""
    if not 0 < iou <= 1:
        raise ValueError(f"the IoU threshold must be above 0 and at most 1, got {iou}")
    if not classes:
        raise ValueError("the model has no classes")
    strays = sorted(f"{label} -> {target}" for label, target in counts_as.items() if target not in classes)
    if strays:
        raise ValueError(f"counts_as maps to classes the model lacks ({', '.join(strays)}); "
                         f"its classes are {', '.join(classes)}")
    unknown = sorted({face.label for truths, _ in photos for face in truths} - set(classes) - set(counts_as))
    if unknown:
        raise ValueError(f"truth labels {', '.join(unknown)} are neither model classes ({', '.join(classes)}) "
                         f"nor mapped to one")
    for p, (_, founds) in enumerate(photos):
        for f, face in enumerate(founds):
            if set(face.probabilities) != set(classes):
                raise ValueError(f"found face {f} of photo {p} has probabilities for {', '.join(face.probabilities)}, "
                                 f"not for the model's classes {', '.join(classes)}")


def _row(counts: dict) -> dict:
    """A by-size or by-class row from its faces, found and right counts."""
    return {"faces": counts["faces"], "found": counts["found"], "recall": _ratio(counts["found"], counts["faces"]),
            "found_right": _ratio(counts["right"], counts["found"])}


def _curve(precision: np.ndarray, reached: float) -> dict:
    """The plotted PR curve: COCO's envelope at recall steps of 0.01 up to the recall reached, and there."""
    last = int(np.searchsorted(RECALL_GRID, reached, side="right")) - 1
    points = np.r_[np.arange(0, last, CURVE_STEP), last]
    return {"recall": [float(RECALL_GRID[i]) for i in points], "precision": [float(precision[i]) for i in points]}


def score_boxes(photos: list[tuple[list[TruthFace], list[FoundFace]]], classes: list[str],
                counts_as: dict[str, str] | None = None, iou: float = 0.4) -> BoxScores:
    """Match found faces to truth faces one to one at IoU >= `iou` and score finding, classifying and per-class AP."""
    counts_as = counts_as or {}
    _check(photos, classes, counts_as, iou)
    index = {label: k for k, label in enumerate(classes)}
    truths = [(p, t, face) for p, (faces, _) in enumerate(photos) for t, face in enumerate(faces)]
    founds = [(p, f, face) for p, (_, faces) in enumerate(photos) for f, face in enumerate(faces)]
    truth_class = [index[counts_as.get(face.label, face.label)] for _, _, face in truths]
    max_dets = max((len(faces) for _, faces in photos), default=0) + 1

    gt = [_annotation(i + 1, p, 1, face.box) for i, (p, _, face) in enumerate(truths)]
    dt = [_annotation(i + 1, p, 1, face.box, face.face_probability) for i, (p, _, face) in enumerate(founds)]
    agnostic = _evaluate(len(photos), 1, gt, dt, iou, 0, max_dets)
    matched = {gt_id: int(dt_id) for image in agnostic.evalImgs if image is not None
               for gt_id, dt_id in zip(image["gtIds"], image["gtMatches"][0]) if dt_id}

    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    misses, wrongs = [], []
    labels = classes + [label for label in counts_as if label not in classes]
    sizes = {name: {"faces": 0, "found": 0, "right": 0} for name, _, _ in SIZE_BANDS}
    by_class = {label: {"faces": 0, "found": 0, "right": 0} for label in labels}
    for i, (p, t, face) in enumerate(truths):
        band = next(name for name, low, high in SIZE_BANDS if low <= _shorter_side(face.box) < high)
        groups = (sizes[band], by_class[face.label])
        for group in groups:
            group["faces"] += 1
        if i + 1 not in matched:
            misses.append(Miss(p, t))
            continue
        _, f, match = founds[matched[i + 1] - 1]
        predicted = index[match.label]
        confusion[truth_class[i], predicted] += 1
        for group in groups:
            group["found"] += 1
            group["right"] += predicted == truth_class[i]
        if predicted != truth_class[i]:
            wrongs.append(Wrong(p, t, f, match.label, float(match.probabilities[match.label])))

    gt = [_annotation(i + 1, p, truth_class[i] + 1, face.box) for i, (p, _, face) in enumerate(truths)]
    detections = [(p, face, label) for p, _, face in founds for label in classes]
    dt = [_annotation(i + 1, p, index[label] + 1, face.box, face.face_probability * face.probabilities[label])
          for i, (p, face, label) in enumerate(detections)]
    per_class = _evaluate(len(photos), len(classes), gt, dt, iou, 1, max_dets)
    precision, reached = per_class.eval["precision"][0, :, :, 0, 0], per_class.eval["recall"][0, :, 0, 0]
    ap = {label: float(precision[:, k].mean()) if reached[k] > -1 else None for k, label in enumerate(classes)}
    curves = {label: _curve(precision[:, k], reached[k]) if reached[k] > -1 else {"recall": [], "precision": []}
              for k, label in enumerate(classes)}
    defined = [value for value in ap.values() if value is not None]

    found, right = len(matched), int(np.trace(confusion))
    return BoxScores(
        iou=iou, faces=len(truths), found=found, predictions=len(founds),
        recall=_ratio(found, len(truths)), precision=_ratio(found, len(founds)),
        by_size={name: _row(counts) for name, counts in sizes.items()},
        by_class={label: _row(counts) for label, counts in by_class.items() if counts["faces"] or label in classes},
        found_right=_ratio(right, found), end_to_end=_ratio(right, len(truths)), confusion=confusion.tolist(),
        ap=ap, map=float(np.mean(defined)) if defined else None, curves=curves, misses=misses, wrongs=wrongs)
