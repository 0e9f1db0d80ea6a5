"""MTCNN in onnxruntime against facenet-pytorch's own MTCNN, and its pieces; the cascade's numpy defaults (the
model bundle's) against the OpenCV functions maskdet plugs in."""

import cv2
import numpy as np
import pytest
from PIL import Image

from maskdet.bundle.mtcnn_cascade import Cascade, nms, resize_area, squared
from maskdet.vision import mtcnn
from maskdet.vision.faces import box_iou
from maskdet.vision.mtcnn import OnnxMTCNN


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert mtcnn.nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.5, by_min=True).tolist() == [1, 2]  # the small box lies inside the kept one


def test_numpy_nms_keeps_what_opencv_keeps():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (300, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (300, 1)).astype(np.float32)], axis=1)
    scores = rng.uniform(0.6, 1, 300).astype(np.float32)
    for threshold in (0.5, 0.7):
        assert nms(boxes, scores, threshold).tolist() == mtcnn.nms(boxes, scores, threshold).tolist()


@pytest.mark.parametrize("shape, size", [((480, 640), (385, 273)), ((90, 70), (24, 24)), ((20, 17), (48, 48)),
                                         ((31, 20), (24, 24)), ((50, 20), (24, 24)),
                                         ((720, 1280), (640, 360))])
def test_numpy_resize_is_opencvs_inter_area(shape, size):
    """Down, up and mixed, as the cascade resizes float pyramid levels and crops; down for uint8 photos (OpenCV rounds
    uint8 upscaling in fixed point, which maskdet never does)."""
    pixels = np.asarray(Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 8, 3), np.uint8))
                        .resize(shape[::-1], Image.BICUBIC))
    normalised = (pixels.astype(np.float32) - 127.5) / 128
    expected = cv2.resize(normalised, size, interpolation=cv2.INTER_AREA)
    assert np.abs(resize_area(normalised, *size) - expected).max() < 1e-5
    if size[0] < shape[1] and size[1] < shape[0]:
        rounded = np.abs(resize_area(pixels, *size).astype(int) - cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
        assert rounded.max() <= 1 and (rounded > 0).mean() < 0.01


def test_numpy_cascade_finds_what_the_opencv_one_finds(shared_data):
    fast, plain = OnnxMTCNN(), Cascade(*mtcnn.networks())
    photos = sorted((shared_data / "with_mask").glob("*.jpg"))[:6] + sorted((shared_data / "without_mask").glob("*.jpg"))[:6]
    for path in photos:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        (boxes, scores, points), (expected, expected_scores, expected_points) = plain.detect(pixels), fast.detect(pixels)
        assert len(boxes) == len(expected), path.name
        assert np.abs(boxes - expected).max() < 0.1 and np.abs(scores - expected_scores).max() < 1e-3
        assert np.abs(points - expected_points).max() < 0.1


def test_squared_keeps_the_centre():
    box = squared(np.array([[10, 20, 30, 80]], np.float32))[0]
    assert box.tolist() == [-10, 20, 50, 80]


def test_same_faces_as_facenet_pytorch(shared_data):
    """Same cascade and weights: on real photos the two find the same faces, boxes and landmarks within resampling
    noise."""
    import torch
    from facenet_pytorch import MTCNN

    reference = MTCNN(keep_all=True, min_face_size=20, post_process=False, device="cpu")
    ours = OnnxMTCNN(min_face_size=20, network_set="facenet")  # the same weights
    photos = sorted((shared_data / "without_mask").glob("*.jpg"))[:12] + \
        sorted((shared_data / "with_mask").glob("*.jpg"))[:12]
    ious, landmark_errors = [], []
    for path in photos:
        image = Image.open(path).convert("RGB")
        image.thumbnail((320, 320))
        pixels = np.asarray(image)
        with torch.inference_mode():
            expected, probabilities, expected_points = reference.detect(pixels, landmarks=True)
        expected = [] if expected is None else [(b, q) for b, p, q in zip(expected, probabilities, expected_points)
                                                if p > 0.9]
        boxes, scores, points = ours.detect(pixels)
        found = [(b, q) for b, p, q in zip(boxes, scores, points) if p > 0.9]
        assert len(found) == len(expected), path.name
        for box, landmarks in found:
            iou, (match, match_points) = max((box_iou(box, e[0]), e) for e in expected)
            ious.append(iou)
            eyes = np.linalg.norm(match_points[1] - match_points[0])
            landmark_errors.append(np.abs(landmarks - match_points).max() / eyes)
    assert len(ious) >= 20 and np.mean(ious) > 0.9 and min(ious) > 0.7
    assert np.median(landmark_errors) < 0.1 and max(landmark_errors) < 0.3  # in eye distances


def test_track_follows_a_shifted_face_and_drops_a_vanished_one(shared_data):
    detector = OnnxMTCNN(min_face_size=20)
    photo = Image.open(shared_data / "without_mask" / "100.jpg").convert("RGB")
    photo.thumbnail((160, 160))
    frame, moved = Image.new("RGB", (320, 240), (90, 110, 100)), Image.new("RGB", (320, 240), (90, 110, 100))
    frame.paste(photo, (40, 40))
    moved.paste(photo, (52, 48))
    boxes, _, _ = detector.detect(np.asarray(frame))
    tracked, probabilities, _ = detector.track(np.asarray(moved), boxes, 0.7)
    fresh, _, _ = detector.detect(np.asarray(moved))
    assert len(tracked) == 1 and probabilities[0] > 0.9 and box_iou(tracked[0], fresh[0]) > 0.8
    assert box_iou(tracked[0], fresh[0]) > box_iou(boxes[0], fresh[0])  # it moved with the face
    assert len(detector.track(np.full((240, 320, 3), 128, np.uint8), boxes, 0.7)[0]) == 0


@pytest.mark.parametrize("shape", [(5, 5, 3), (12, 400, 3), (240, 320, 3)])
def test_no_faces_in_flat_or_tiny_images(shape):
    boxes, scores, landmarks = OnnxMTCNN().detect(np.full(shape, 128, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and landmarks.shape == (0, 5, 2)
