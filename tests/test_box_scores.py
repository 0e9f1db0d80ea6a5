"""Box scores on hand-made photos: pycocotools' one-to-one matching (checked against hand-worked pairings), the counts
built on it, and its per-class AP against VOC's all-point AP written out here as the reference."""

import json

import numpy as np
import pytest

from maskdet.core.box_scores import FoundFace, Miss, TruthFace, Wrong, score_boxes

W, WO, MI = "with_mask", "without_mask", "mask_incorrect"
CLASSES = [W, WO]


def found(box, face: float, with_mask: float) -> FoundFace:
    return FoundFace(box, face, {W: with_mask, WO: 1 - with_mask})


# IoU of the pairs that matter: photo 1's found face 0 has 0.4286 with truth 0 and 0.4815 with truth 1;
# photo 0's found face 1 has 0.8223 with truth 0. Shorter sides: 40, 40 | 20, 20, 10 | - | 40.
EXAMPLE = [
    ([TruthFace((0, 0, 40, 40), W), TruthFace((100, 0, 140, 40), WO)],
     [found((0, 0, 40, 40), 0.9, 0.8), found((2, 2, 42, 42), 0.7, 0.6), found((100, 0, 140, 40), 0.95, 0.7)]),
    ([TruthFace((0, 0, 20, 20), MI), TruthFace((15, 0, 35, 20), W), TruthFace((200, 200, 210, 215), MI)],
     [found((8, 0, 28, 20), 0.8, 0.1), found((200, 200, 210, 215), 0.6, 0.45)]),
    ([], [found((50, 50, 80, 80), 0.5, 0.1)]),  # no truth faces: one false positive
    ([TruthFace((10, 10, 60, 50), WO)], []),  # no predictions: one miss
]
COUNTS_AS = {MI: WO}


def all_point_ap(hits: list[bool], positives: int) -> float:
    """VOC all-point AP of detections sorted by score (True: a true positive): area under the precision envelope."""
    tp = np.cumsum(hits)
    fp = np.cumsum(np.logical_not(hits))
    recall = np.r_[0.0, tp / positives, 1.0]
    precision = np.r_[0.0, tp / np.maximum(tp + fp, 1), 0.0]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def test_found_faces_precision_and_classification_on_the_example():
    scores = score_boxes(EXAMPLE, CLASSES, COUNTS_AS)
    assert (scores.iou, scores.faces, scores.found, scores.predictions) == (0.4, 6, 4, 6)
    assert scores.recall == pytest.approx(4 / 6) and scores.precision == pytest.approx(4 / 6)
    # Found: photo 0 truth 0 (right), truth 1 (said with_mask); photo 1 truth 1 (said without_mask), truth 2 (right).
    assert scores.found_right == 0.5 and scores.end_to_end == pytest.approx(2 / 6)
    assert scores.confusion == [[1, 1], [1, 1]]
    assert scores.misses == [Miss(1, 0), Miss(3, 0)]
    assert scores.wrongs == [Wrong(0, 1, 2, W, 0.7), Wrong(1, 1, 0, WO, 0.9)]
    assert scores.by_size == {
        "< 20 px": {"faces": 1, "found": 1, "recall": 1.0, "found_right": 1.0},
        "20-32 px": {"faces": 2, "found": 1, "recall": 0.5, "found_right": 0.0},
        ">= 32 px": {"faces": 3, "found": 2, "recall": pytest.approx(2 / 3), "found_right": 0.5}}
    assert scores.by_class == {
        W: {"faces": 2, "found": 2, "recall": 1.0, "found_right": 0.5},
        WO: {"faces": 2, "found": 1, "recall": 0.5, "found_right": 0.0},
        MI: {"faces": 2, "found": 1, "recall": 0.5, "found_right": 1.0}}


def test_a_stricter_threshold_loses_the_face_found_at_0_48():
    scores = score_boxes(EXAMPLE, CLASSES, COUNTS_AS, iou=0.5)
    assert (scores.found, scores.recall, scores.precision) == (3, 0.5, 0.5)
    assert scores.misses == [Miss(1, 0), Miss(1, 1), Miss(3, 0)]
    assert scores.wrongs == [Wrong(0, 1, 2, W, 0.7)]


def test_ap_is_voc_all_point_on_the_example():
    scores = score_boxes(EXAMPLE, CLASSES, COUNTS_AS)
    # Per class, each found face a detection of both classes, by score face x class probability. with_mask (2
    # truths): .72 photo 0 face 0 hit, .665 photo 0 face 2 (on a without_mask truth), .42 duplicate, .27 photo 1
    # face 1 (on a mask_incorrect truth), .08 photo 1 face 0 (IoU 0.4815 with the with_mask face: hit), .05 photo 2.
    # without_mask (4 truths with the mapped mask_incorrect): .72 photo 1 face 0 (0.4286 with the mask_incorrect
    # face: hit), .45 photo 2 false positive, .33 hit, .285 hit, .28 and .18 on photo 0's with_mask face.
    with_mask = all_point_ap([True, False, False, False, True, False], 2)
    without_mask = all_point_ap([True, False, True, True, False, False], 4)
    assert (with_mask, without_mask) == (pytest.approx(0.5 + 0.5 * 2 / 5), pytest.approx(0.25 + 0.5 * 3 / 4))
    assert scores.ap[W] == pytest.approx(with_mask, abs=0.002)
    assert scores.ap[WO] == pytest.approx(without_mask, abs=0.002)
    assert scores.map == pytest.approx((with_mask + without_mask) / 2, abs=0.002)


@pytest.mark.parametrize("seed", range(5))
def test_ap_is_voc_all_point_on_random_sets(seed):
    rng = np.random.default_rng(seed)
    positives = int(rng.integers(5, 60))
    photos, hits = [], []
    for p in range(positives):
        truth = TruthFace((100.0 * p, 0.0, 100.0 * p + 40, 40.0), W)
        on_it = rng.random() < 0.7
        extra = [found((100.0 * p, 60.0, 100.0 * p + 40, 100.0), float(rng.random()), 0.9)
                 for _ in range(rng.integers(0, 3))]  # off the face: false positives
        faces = ([found(truth.box, float(rng.random()), 0.9)] if on_it else []) + extra
        photos.append(([truth], faces))
        hits += [(face.face_probability, face.box == truth.box) for face in faces]
    hits.sort(key=lambda hit: -hit[0])
    reference = all_point_ap([hit for _, hit in hits], positives)
    assert score_boxes(photos, CLASSES).ap[W] == pytest.approx(reference, abs=0.002)


def test_pr_curves_are_the_precision_envelope_up_to_the_recall_reached():
    curves = score_boxes(EXAMPLE, CLASSES, COUNTS_AS).curves
    assert curves[W]["recall"] == pytest.approx([k / 100 for k in range(101)])
    assert curves[W]["precision"] == pytest.approx([1.0] * 51 + [2 / 5] * 50)  # COCO divides by tp + fp + eps
    assert curves[WO]["recall"][-1] == 0.75
    assert curves[WO]["precision"] == pytest.approx([1.0] * 26 + [3 / 4] * 50)


def test_two_predictions_on_one_face_the_lower_scored_is_a_false_positive():
    truth = TruthFace((0, 0, 40, 40), W)
    # The better-placed prediction scores lower: COCO matches greedily by score, so the other one takes the face.
    scores = score_boxes([([truth], [found((0, 0, 40, 40), 0.5, 0.9), found((4, 0, 44, 40), 0.9, 0.9)])], CLASSES)
    assert (scores.found, scores.predictions, scores.precision, scores.recall) == (1, 2, 0.5, 1.0)
    assert score_boxes([([truth], [found((4, 0, 44, 40), 0.9, 0.9)])], CLASSES).found == 1  # IoU 0.818


def test_a_prediction_between_two_faces_goes_to_the_best_iou_and_a_tie_to_the_later_face():
    left, right = TruthFace((0, 0, 20, 20), W), TruthFace((15, 0, 35, 20), WO)
    # IoU 0.4286 with left, 0.4815 with right: right is found (predicted without_mask: right).
    scores = score_boxes([([left, right], [found((8, 0, 28, 20), 0.9, 0.2)])], CLASSES)
    assert scores.misses == [Miss(0, 0)] and scores.found_right == 1.0
    scores = score_boxes([([right, left], [found((8, 0, 28, 20), 0.9, 0.2)])], CLASSES)
    assert scores.misses == [Miss(0, 1)]
    # IoU 0.6 with both: COCO keeps the last truth face of equal IoU.
    tie = [TruthFace((0, 0, 20, 20), W), TruthFace((10, 0, 30, 20), W)]
    assert score_boxes([(tie, [found((5, 0, 25, 20), 0.9, 0.9)])], CLASSES).misses == [Miss(0, 0)]


@pytest.mark.parametrize("threshold, height, matched", [(0.4, 4, True), (0.4, 3.99, False), (0.5, 5, True),
                                                        (0.5, 4.99, False)])
def test_iou_exactly_at_the_threshold_counts_as_found(threshold, height, matched):
    # Inside a 10 x 10 face, a 10 x height box has IoU height / 10.
    scores = score_boxes([([TruthFace((0, 0, 10, 10), W)], [found((0, 0, 10, height), 0.9, 0.9)])], CLASSES,
                         iou=threshold)
    assert scores.found == int(matched)


def test_iou_has_no_extra_pixel():
    # Half-overlapping 10 x 10 boxes: 50 / 150 = 0.333 (with +1 pixel it would be 66 / 176 = 0.375).
    photo = ([TruthFace((0, 0, 10, 10), W)], [found((5, 0, 15, 10), 0.9, 0.9)])
    assert score_boxes([photo], CLASSES, iou=0.333).found == 1
    assert score_boxes([photo], CLASSES, iou=0.334).found == 0


def test_photos_without_faces_or_predictions():
    scores = score_boxes([([], [found((0, 0, 30, 30), 0.9, 0.9)]), ([], [])], CLASSES)
    assert (scores.faces, scores.found, scores.predictions, scores.precision) == (0, 0, 1, 0.0)
    assert (scores.recall, scores.found_right, scores.end_to_end, scores.map) == (None, None, None, None)
    assert scores.ap == {W: None, WO: None}
    assert scores.by_size["< 20 px"] == {"faces": 0, "found": 0, "recall": None, "found_right": None}
    scores = score_boxes([([TruthFace((0, 0, 30, 30), WO)], [])], CLASSES)
    assert (scores.recall, scores.precision, scores.found_right, scores.end_to_end) == (0.0, None, None, 0.0)
    assert scores.ap == {W: None, WO: 0.0} and scores.map == 0.0
    assert scores.curves[WO] == {"recall": [0.0], "precision": [0.0]}
    assert score_boxes([], CLASSES).recall is None


def test_a_class_without_truth_faces_has_no_ap_and_is_left_out_of_map():
    classes = [W, WO, "scarf"]
    photos = [([TruthFace((0, 0, 30, 30), W)], [FoundFace((0, 0, 30, 30), 0.9, {W: 0.8, WO: 0.1, "scarf": 0.1}),
                                                 FoundFace((50, 0, 80, 30), 0.9, {W: 0.1, WO: 0.1, "scarf": 0.8})])]
    scores = score_boxes(photos, classes)
    assert scores.ap == {W: pytest.approx(1.0), WO: None, "scarf": None} and scores.map == pytest.approx(1.0)
    assert scores.curves["scarf"] == {"recall": [], "precision": []}
    assert scores.by_class["scarf"] == {"faces": 0, "found": 0, "recall": None, "found_right": None}


def test_labels_the_model_lacks_must_be_mapped_to_its_classes():
    with pytest.raises(ValueError, match="mask_incorrect"):
        score_boxes(EXAMPLE, CLASSES)
    with pytest.raises(ValueError, match="mask_incorrect -> scarf"):
        score_boxes(EXAMPLE, CLASSES, {MI: "scarf"})
    with pytest.raises(ValueError, match="found face 0 of photo 0"):
        score_boxes([([], [FoundFace((0, 0, 9, 9), 0.9, {W: 1.0})])], CLASSES)
    with pytest.raises(ValueError, match="IoU threshold"):
        score_boxes(EXAMPLE, CLASSES, COUNTS_AS, iou=0)


def test_found_face_label_is_the_most_probable_class():
    assert found((0, 0, 9, 9), 0.9, 0.3).label == WO and found((0, 0, 9, 9), 0.9, 0.7).label == W


def test_to_dict_is_json_ready_and_rounded(capsys):
    data = json.loads(json.dumps(score_boxes(EXAMPLE, CLASSES, COUNTS_AS).to_dict()))
    assert capsys.readouterr().out == ""  # pycocotools' progress lines are silenced
    assert (data["recall"], data["end_to_end"], data["ap"]) == (0.6667, 0.3333, {W: 0.7, WO: 0.625})
    assert data["misses"] == [{"photo": 1, "truth": 0}, {"photo": 3, "truth": 0}]
    assert data["wrongs"][0] == {"photo": 0, "truth": 1, "found": 2, "label": W, "probability": 0.7}
    assert data["curves"][WO]["precision"][-1] == 0.75
