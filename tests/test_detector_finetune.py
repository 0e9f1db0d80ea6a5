"""Fine-tuning MTCNN on masked faces: the sample builder's conventions against the cascade's, the validation part,
and scripts/finetune_mtcnn.py --tiny end to end on masks-small."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskdet.bundle.mtcnn_cascade import NETWORK_FILES, Cascade, find_faces, regress, resize_area, session
from maskdet.training.detector_finetune import (FACE, NEGATIVE_IOU, NOT_FACE, PART, PART_IOU, POSITIVE_IOU, Photo,
                                                box_targets, crop_box, face_squares, landmark_targets,
                                                near_duplicate_groups, random_negatives, validation_part)
from maskdet.vision.faces import box_iou
from maskdet.vision.mtcnn import facenet_networks

ROOT = Path(__file__).resolve().parents[1]


def test_a_squares_crop_box_cuts_exactly_its_pixels_in_the_cascade():
    image = np.random.default_rng(0).uniform(-1, 1, (60, 80, 3)).astype(np.float32)
    x0, y0, side = 17, 9, 31
    inputs, valid = Cascade(None, None, None)._crops(image, crop_box((x0, y0, side))[None], 24)
    assert valid.all()
    expected = resize_area(image[y0:y0 + side, x0:x0 + side], 24, 24).transpose(2, 0, 1)
    assert np.abs(inputs[0] - expected).max() < 1e-6


def test_box_targets_round_trip_to_the_box_through_the_cascades_regression():
    square, box = (40, 30, 50), np.array([44.5, 27.25, 93.0, 85.75])
    targets = box_targets(square, box)
    assert np.allclose(regress(crop_box(square)[None], targets[None].astype(np.float64))[0], box, atol=1e-4)


def test_landmark_targets_decode_as_the_cascade_decodes_onets_landmarks():
    square, points = (40, 30, 50), np.array([[55.0, 45], [75, 46], [65, 58], [57, 70], [73, 71]])
    outputs = landmark_targets(square, points)[None]
    box = crop_box(square)[None]
    size = box[:, 2:4] - box[:, 0:2] + 1  # as Cascade._final decodes them
    decoded = np.stack([outputs[:, :5], outputs[:, 5:]], axis=2) * size[:, None, :] + box[:, None, 0:2] - 1
    assert np.allclose(decoded[0], points, atol=1e-4)


def test_jittered_squares_fall_in_their_iou_classes_inside_the_image():
    box, other = np.array([60.0, 50, 140, 150]), np.array([[170.0, 20, 200, 60]])
    shape = (240, 220, 3)
    rng = np.random.default_rng(1)
    squares = face_squares(box, other, shape, {FACE: 20, PART: 20, NOT_FACE: 20}, rng)
    squares += random_negatives(box, other, shape, 20, rng)
    labels = [label for _, label in squares]
    assert labels.count(FACE) == 20 and labels.count(PART) == 20 and labels.count(NOT_FACE) == 40
    for (x0, y0, side), label in squares:
        assert x0 >= 0 and y0 >= 0 and x0 + side <= shape[1] and y0 + side <= shape[0] and side >= 12
        iou = box_iou(crop_box((x0, y0, side)), box)
        if label == FACE:
            assert iou >= POSITIVE_IOU
        elif label == PART:
            assert PART_IOU <= iou < POSITIVE_IOU
        else:
            assert max(iou, box_iou(crop_box((x0, y0, side)), other[0])) < NEGATIVE_IOU


def test_twins_and_near_duplicates_share_a_group_and_a_side_of_the_split():
    far, near = "00" * 32, "00" * 31 + "0f"  # 4 bits apart
    photos = [Photo(Path("d/with_mask/7-with-mask.jpg"), True, (10, 10), "ff" * 32),
              Photo(Path("d/without_mask/7.jpg"), False, (10, 10), far),
              Photo(Path("d/without_mask/augmented_image_3.jpg"), False, (10, 10), near),
              Photo(Path("d/without_mask/8.jpg"), False, (10, 10), "0f" * 32),
              Photo(Path("d/with_mask/9-with-mask.jpg"), True, (10, 10), "f0" * 32)]
    groups = near_duplicate_groups(photos)
    assert groups[0] == groups[1] == groups[2]  # a twin whose hash differs (the mask) and a near-duplicate
    assert len(set(groups.tolist())) == 3
    for seed in range(5):
        held = validation_part(groups, 0.3, seed)
        assert held[0] == held[1] == held[2] and 0 < held.sum() < len(photos)


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detector")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "finetune_mtcnn.py"), "--data", str(shared_data),
                           "--out", str(out), "--tiny", "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_tiny_run_writes_networks_that_keep_the_originals_inputs_and_outputs(tiny_run):
    for file, original in zip(NETWORK_FILES, facenet_networks(), strict=True):
        made, known = session(tiny_run / file), session(original)
        for ours, theirs in [(made.get_inputs(), known.get_inputs()), (made.get_outputs(), known.get_outputs())]:
            assert [(v.name, v.shape, v.type) for v in ours] == [(v.name, v.shape, v.type) for v in theirs]
    for index in (0, 1):  # PNet and RNet are not fine-tuned
        assert (tiny_run / NETWORK_FILES[index]).read_bytes() == facenet_networks()[index]


def test_tiny_runs_cascade_finds_a_bare_portraits_face(tiny_run, shared_data):
    from PIL import Image

    image = np.asarray(Image.open(shared_data / "without_mask" / "0.jpg").convert("RGB"))
    original = find_faces(Cascade(*(session(model) for model in facenet_networks())), image, 640, 640, 0.25)
    tuned = find_faces(Cascade(*(session(tiny_run / file) for file in NETWORK_FILES)), image, 640, 640, 0.25)
    assert original and tuned
    assert box_iou(tuned[0][0], original[0][0]) >= 0.6


def test_tiny_runs_report_holds_the_counts_and_the_figures_before_and_after(tiny_run):
    report = json.loads((tiny_run / "detector.json").read_text())
    assert report["settings"]["seed"] == 3 and report["fine_tuned"] == ["onet"]
    assert report["data"]["training"]["photos"] + report["data"]["validation"]["photos"] == 12
    assert report["data"]["samples"]["total"] > 0 and report["data"]["samples"]["positives"]["drawn"] > 0
    for when in ("before", "after"):
        figures = report["validation"][when]
        assert {"pasted_detector_box", "pasted_twin_box", "drawn", "bare", "small_masked", "small_bare"} == set(figures)
        assert figures["bare"]["faces"] > 0 and 0 <= figures["bare"]["found"] <= 1
        assert figures["drawn"]["false_per_photo"] >= 0
        assert set(report["validation"][f"stages_{when}"]["drawn"]) == {"pnet", "rnet", "onet"}
    assert set(report["training"]) == {"onet"} and report["seconds"]["total"] > 0
