"""Tests for maskdet.vision.synth.draw_mask: a mask over the lower face of a real photo, never the eyes, for every
style, deterministic per rng state, and no crash on awkward landmarks."""

import cv2
import numpy as np
import pytest

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.imageio import decode_image
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.synth import MASK_STYLES, MIN_EYE_DISTANCE, draw_mask

STYLES = list(MASK_STYLES)


@pytest.fixture(scope="module")
def photo(shared_data, detector) -> tuple[np.ndarray, np.ndarray]:
    """A frontal unmasked face of masks-small (eye distance about 95 px) and its five landmarks."""
    image = decode_image((shared_data / "without_mask" / "100.jpg").read_bytes(), 40_000_000)
    face = detector.detect([image])[0][0]
    return image, np.array(face.landmarks)


def eye_distance(landmarks: np.ndarray) -> float:
    return float(np.hypot(*(landmarks[1] - landmarks[0])))


def eye_boxes(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
    """The pixels within ±0.25 eye distance of each eye point."""
    reach = 0.25 * eye_distance(landmarks)
    boxes = []
    for x, y in landmarks[:2]:
        boxes.append(image[max(0, int(np.floor(y - reach))):int(np.ceil(y + reach)) + 1,
                           max(0, int(np.floor(x - reach))):int(np.ceil(x + reach)) + 1])
    return boxes


def lower_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """From just below the nose tip to below the mouth, between the mouth corners (an upright face)."""
    nose, mouth_left, mouth_right = landmarks[2:]
    top = int(nose[1] + 0.2 * (mouth_left[1] - nose[1]))
    bottom = int(max(mouth_left[1], mouth_right[1]) + 0.2 * eye_distance(landmarks))
    return image[top:bottom, int(mouth_left[0]):int(mouth_right[0]) + 1]


def changed(before: np.ndarray, after: np.ndarray, by: int = 10) -> float:
    """The fraction of pixels where some channel moved more than `by`."""
    return float((np.abs(before.astype(int) - after.astype(int)).max(axis=-1) > by).mean())


def assert_masked(image: np.ndarray, drawn: np.ndarray, landmarks: np.ndarray) -> None:
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert changed(lower_face(image, landmarks), lower_face(drawn, landmarks)) > 0.9
    for before, after in zip(eye_boxes(image, landmarks), eye_boxes(drawn, landmarks)):
        assert before.size and np.array_equal(before, after)


def rotated(image: np.ndarray, landmarks: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned about the eye midpoint (counter-clockwise on screen), and its landmarks with it."""
    centre = tuple(float(v) for v in landmarks[:2].mean(axis=0))
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    height, width = image.shape[:2]
    turned = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return turned, landmarks @ matrix[:, :2].T + matrix[:, 2]


@pytest.mark.parametrize("style", STYLES)
def test_mask_covers_the_lower_face_and_never_the_eyes(photo, style):
    image, landmarks = photo
    original = image.copy()
    drawn = draw_mask(image, landmarks, style, np.random.default_rng(0))
    assert np.array_equal(image, original)  # the input is left alone
    assert_masked(image, drawn, landmarks)
    above_eyes = int(landmarks[:2, 1].min() - 2)
    assert np.array_equal(drawn[:above_eyes], image[:above_eyes])  # nothing above the eye line


@pytest.mark.parametrize("style", STYLES)
def test_the_rng_state_decides_the_mask(photo, style):
    image, landmarks = photo
    first, again, other = (draw_mask(image, landmarks, style, np.random.default_rng(seed)) for seed in (7, 7, 8))
    assert np.array_equal(first, again)
    assert changed(lower_face(first, landmarks), lower_face(other, landmarks), by=3) > 0.3


def test_styles_vary_in_shape_and_colour_over_seeds(photo):
    """Over a few seeds a style draws different colours, and the styles differ in how much of the image they cover."""
    image, landmarks = photo
    areas = {}
    for style in STYLES:
        drawn = [draw_mask(image, landmarks, style, np.random.default_rng(seed)) for seed in range(6)]
        colours = [lower_face(d, landmarks).reshape(-1, 3).mean(axis=0) for d in drawn]
        assert np.ptp(colours, axis=0).max() > 30, style
        areas[style] = changed(image, drawn[0], by=3)
    assert areas["gaiter"] > areas["surgical"] and areas["bandana"] > areas["n95"]


@pytest.mark.parametrize("degrees", [25, -40, 90, 180])
def test_rotated_faces_get_their_mask_below_the_eyes(photo, degrees):
    image, landmarks = rotated(*photo, degrees)
    for style in STYLES:
        drawn = draw_mask(image, landmarks, style, np.random.default_rng(1))
        assert drawn.shape == image.shape
        for before, after in zip(eye_boxes(image, landmarks), eye_boxes(drawn, landmarks)):
            assert np.array_equal(before, after)
        if degrees == 25:  # still upright enough for the lower-face box
            assert_masked(image, drawn, landmarks)


def test_awkward_landmarks_keep_the_image(photo):
    """Faces half outside the image, tiny, turned far to one side, or without landmarks: no crash, same shape;
    a face too small to draw on, or one without landmarks, comes back unchanged."""
    image, landmarks = photo
    height, width = image.shape[:2]
    tiny_scale = (MIN_EYE_DISTANCE - 1) / eye_distance(landmarks)
    turned = landmarks.copy()
    turned[2, 0] += 0.5 * eye_distance(landmarks)  # nose far to the right: a face in profile
    cases = {
        "off the top left": landmarks - landmarks[2] + (5, -10),
        "off the bottom right": landmarks - landmarks[0] + (width - 8, height - 4),
        "all outside": landmarks + (2 * width, 0),
        "tiny": (landmarks - landmarks[2]) * tiny_scale + landmarks[2],
        "small": (landmarks - landmarks[2]) * 8 / eye_distance(landmarks) + landmarks[2],
        "profile": turned,
        "none": np.full((5, 2), np.nan),
    }
    for name, points in cases.items():
        for style in STYLES:
            drawn = draw_mask(image, points, style, np.random.default_rng(2))
            assert drawn.shape == image.shape and drawn.dtype == np.uint8, (name, style)
            if name in ("tiny", "none", "all outside"):
                assert np.array_equal(drawn, image), (name, style)


def test_landmarks_listed_right_to_left_still_put_the_mask_below_the_eyes(photo):
    image, landmarks = photo
    for style in STYLES:
        assert_masked(image, draw_mask(image, landmarks[[1, 0, 2, 4, 3]], style, np.random.default_rng(4)), landmarks)


def test_training_crop(photo):
    """The 160-pixel face crop training draws on, with the landmarks moved into it."""
    image, landmarks = photo
    box = (*landmarks.min(axis=0) - 40, *landmarks.max(axis=0) + 40)
    rule = CropRule()
    left, top, right, bottom = square_crop_box(box, image.shape[1], image.shape[0], rule.margin)
    crop = crop_face(image, box, rule)
    points = (landmarks - (left, top)) * (rule.size / (right - left), rule.size / (bottom - top))
    for style in STYLES:
        assert_masked(crop, draw_mask(crop, points, style, np.random.default_rng(3)), points)


def test_unknown_style_is_refused(photo):
    with pytest.raises(ValueError, match="surgical"):
        draw_mask(*photo, "scarf", np.random.default_rng(0))
