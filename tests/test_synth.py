"""Tests for maskdet.vision.synth.draw_mask: a mask over the lower face of a real photo, never the eyes, for every
style, deterministic per rng state, and no crash on awkward landmarks; masks worn wrongly leave exactly the part of
the face they should uncovered."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.core.imageio import decode_image
from maskdet.training.views import MIN_VISIBLE, DrawRule, draw_view, visible_share
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.synth import MASK_STYLES, MIN_EYE_DISTANCE, PLACEMENTS, WRONG_PLACEMENTS, draw_mask

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


def around(image: np.ndarray, landmarks: np.ndarray, points: np.ndarray, across: float, up: float,
           down: float | None = None) -> np.ndarray:
    """The pixels of the box around `points`, widened by `across` eye distances on each side, `up` above and `down`
    (else `up`) below (an upright face)."""
    reach = eye_distance(landmarks) * np.array([across, up, across, up if down is None else down])
    (x0, y0), (x1, y1) = np.floor(points.min(axis=0) - reach[:2]), np.ceil(points.max(axis=0) + reach[2:])
    return image[max(int(y0), 0):int(y1) + 1, max(int(x0), 0):int(x1) + 1]


def nostrils(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return around(image, landmarks, landmarks[2:3], 0.15, 0.1)


def mouth(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return around(image, landmarks, landmarks[3:], 0.05, 0.1)


def chin(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Between the mouth corners, 0.4 to 0.6 eye distances below them."""
    return around(image, landmarks, landmarks[3:], 0, -0.4, 0.6)


def face_to_chin(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """From above the eyes to 0.6 eye distances below the mouth, 0.2 eye distances wider than the eyes."""
    return around(image, landmarks, landmarks, 0.2, 0.5, 0.6)


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
        for placement in WRONG_PLACEMENTS:
            drawn = draw_mask(image, landmarks, style, np.random.default_rng(1), placement)
            for before, after in zip(eye_boxes(image, landmarks), eye_boxes(drawn, landmarks)):
                assert np.array_equal(before, after), (style, placement)


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
            for placement in PLACEMENTS:
                drawn = draw_mask(image, points, style, np.random.default_rng(2), placement)
                assert drawn.shape == image.shape and drawn.dtype == np.uint8, (name, style, placement)
                if name in ("tiny", "none", "all outside"):
                    assert np.array_equal(drawn, image), (name, style, placement)


def test_landmarks_listed_right_to_left_still_put_the_mask_below_the_eyes(photo):
    image, landmarks = photo
    for style in STYLES:
        assert_masked(image, draw_mask(image, landmarks[[1, 0, 2, 4, 3]], style, np.random.default_rng(4)), landmarks)


def training_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 160-pixel face crop training draws on, and the landmarks moved into it."""
    box = (*landmarks.min(axis=0) - 40, *landmarks.max(axis=0) + 40)
    rule = CropRule()
    left, top, right, bottom = square_crop_box(box, image.shape[1], image.shape[0], rule.margin)
    crop = crop_face(image, box, rule)
    return crop, (landmarks - (left, top)) * (rule.size / (right - left), rule.size / (bottom - top))


def test_training_crop(photo):
    crop, points = training_crop(*photo)
    for style in STYLES:
        assert_masked(crop, draw_mask(crop, points, style, np.random.default_rng(3)), points)
        for placement in WRONG_PLACEMENTS:
            drawn = draw_mask(crop, points, style, np.random.default_rng(3), placement)
            for before, after in zip(eye_boxes(crop, points), eye_boxes(drawn, points)):
                assert np.array_equal(before, after), (style, placement)
            if placement != "neck":  # which is all below this tight crop
                assert changed(crop, drawn) > 0.01, (style, placement)


def test_a_drawn_view_shows_its_mask_inside_the_crop(photo):
    """A mask on the neck, below this tight crop, would make a bare face a worn-wrong training face: the next
    placement is drawn instead; a worn-right rule keeps its one placement."""
    crop, points = training_crop(*photo)
    wrong = DrawRule(0, 1, WRONG_PLACEMENTS, 1.0, STYLES)
    assert visible_share(draw_mask(crop, points, "surgical", np.random.default_rng(0), "neck"), crop) < MIN_VISIBLE
    chosen = []
    for turn in range(12):
        drawn, placement = draw_view(crop, points, wrong, turn, np.random.default_rng(turn))
        assert visible_share(drawn, crop) >= MIN_VISIBLE and placement in WRONG_PLACEMENTS, (turn, placement)
        chosen.append(placement)
    assert "neck" not in chosen and {"under_nose", "chin"} <= set(chosen)
    right = DrawRule(0, 1, ("right",), 1.0, STYLES)
    assert {draw_view(crop, points, right, turn, np.random.default_rng(turn))[1] for turn in range(3)} == {"right"}


def test_unknown_style_is_refused(photo):
    with pytest.raises(ValueError, match="surgical"):
        draw_mask(*photo, "scarf", np.random.default_rng(0))


def test_unknown_placement_is_refused(photo):
    with pytest.raises(ValueError, match="under_nose"):
        draw_mask(*photo, "surgical", np.random.default_rng(0), "on_the_forehead")


# draw_mask's output for reference_scene() and seed 0, and the next 8 bytes of the rng after it, by style, as draw_mask
# drew them before placements existed (an .npz, so that a CPU whose OpenCV rounds an edge pixel otherwise still passes)
WORN_RIGHT_BEFORE_PLACEMENTS = Path(__file__).parent / "fixtures" / "worn_right_before_placements.npz"


def reference_scene() -> tuple[np.ndarray, np.ndarray]:
    """A fixed 160-pixel picture (no decoder or detector involved) and face landmarks on it."""
    y, x = np.mgrid[0:160, 0:160]
    image = np.stack([x + y // 2, (x * y) % 256, 255 - y], axis=-1).astype(np.uint8)
    return image, np.array([[56, 62], [104, 60], [82, 88], [62, 112], [100, 111]], float)


@pytest.mark.parametrize("arguments", [(), ("right",)], ids=["default", "right"])
def test_worn_right_draws_exactly_as_before_placements(arguments):
    """Seeded training runs that draw masks worn right keep their pictures and their rng stream."""
    image, landmarks = reference_scene()
    before = np.load(WORN_RIGHT_BEFORE_PLACEMENTS)
    for style in MASK_STYLES:
        rng = np.random.default_rng(0)
        drawn = draw_mask(image, landmarks, style, rng, *arguments).astype(int)
        assert np.frombuffer(rng.bytes(8), np.uint8).tolist() == before[f"{style}-rng"].tolist(), style
        difference = np.abs(drawn - before[style])
        assert difference.max() <= 3 and (difference > 0).mean() < 0.001, style


@pytest.mark.parametrize("style", STYLES)
def test_masks_worn_wrongly_leave_exactly_their_part_of_the_face(photo, style):
    """Under the nose: nostrils as they were, mouth covered. On the chin: mouth as it was, chin covered. Pulled
    down to the neck: the face down to the chin as it was. Hanging from one ear: nose and mouth as they were. The eyes
    are never touched."""
    image, landmarks = photo
    for seed in range(2):
        drawn = {placement: draw_mask(image, landmarks, style, np.random.default_rng(seed), placement)
                 for placement in PLACEMENTS}
        for placement, picture in drawn.items():
            for before, after in zip(eye_boxes(image, landmarks), eye_boxes(picture, landmarks)):
                assert np.array_equal(before, after), placement
        assert np.array_equal(nostrils(drawn["under_nose"], landmarks), nostrils(image, landmarks))
        assert changed(mouth(image, landmarks), mouth(drawn["under_nose"], landmarks)) > 0.6
        assert np.array_equal(mouth(drawn["chin"], landmarks), mouth(image, landmarks))
        assert changed(chin(image, landmarks), chin(drawn["chin"], landmarks)) > 0.8
        assert np.array_equal(face_to_chin(drawn["neck"], landmarks), face_to_chin(image, landmarks))
        assert changed(image, drawn["neck"]) > 0.02
        for part in (nostrils, mouth):
            assert np.array_equal(part(drawn["one_ear"], landmarks), part(image, landmarks))
        assert changed(image, drawn["one_ear"]) > 0.02
