"""Tests for a masked twin's real mask moved on its bare photo (maskdet.vision.synth.twin_mask_alpha and
move_twin_mask): found only between one photo and its masked copy, moved wrongly it leaves exactly the part of the face
that placement uncovers, and never the eyes."""

import numpy as np
import pytest

from maskdet.core.imageio import decode_image
from maskdet.vision.synth import WRONG_PLACEMENTS, move_twin_mask, twin_mask_alpha
from tests.test_synth import chin, changed, eye_boxes, lower_face, mouth, nostrils


def read(path) -> np.ndarray:
    return decode_image(path.read_bytes(), 40_000_000)


@pytest.fixture(scope="module")
def twins(shared_data, detector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frontal bare face of masks-small, the same photo with its pasted surgical mask, and the bare face's
    landmarks."""
    bare = read(shared_data / "without_mask" / "100.jpg")
    face = detector.detect([bare])[0][0]
    return bare, read(shared_data / "with_mask" / "100-with-mask.jpg"), np.array(face.landmarks)


def test_the_twins_mask_is_found_over_the_lower_face_and_not_the_eyes(twins):
    bare, twin, landmarks = twins
    alpha = twin_mask_alpha(bare, twin, landmarks)
    assert alpha is not None and alpha.shape == bare.shape[:2]
    assert (lower_face(alpha[:, :, None], landmarks) > 0.5).mean() > 0.9
    assert all(box.max() == 0 for box in eye_boxes(alpha[:, :, None], landmarks))


def test_photos_that_are_not_twins_have_no_mask_to_move(twins, shared_data):
    bare, twin, landmarks = twins
    assert twin_mask_alpha(bare, bare.copy(), landmarks) is None  # no mask on
    stranger = read(shared_data / "with_mask" / "104-with-mask.jpg")
    stranger = np.resize(stranger, bare.shape)  # another photo, made the same size
    assert twin_mask_alpha(bare, stranger, landmarks) is None
    assert twin_mask_alpha(bare, twin[:-1], landmarks) is None  # not the same size
    assert twin_mask_alpha(bare, twin, np.full((5, 2), np.nan)) is None


def test_the_twins_mask_moved_wrongly_leaves_exactly_its_part_of_the_face(twins):
    """Under the nose: nostrils as they were, mouth covered. On the chin: mouth as it was, chin covered, by the
    twin's own light-blue mask. Hanging from one ear: nose and mouth as they were. The eyes are never touched."""
    bare, twin, landmarks = twins
    alpha = twin_mask_alpha(bare, twin, landmarks)
    mask_colour = twin[alpha > 0.99].mean(axis=0)
    for seed in range(2):
        moved = {placement: move_twin_mask(bare, twin, alpha, landmarks, placement, np.random.default_rng(seed))
                 for placement in WRONG_PLACEMENTS}
        for placement, picture in moved.items():
            assert picture.shape == bare.shape and picture.dtype == np.uint8
            for before, after in zip(eye_boxes(bare, landmarks), eye_boxes(picture, landmarks)):
                assert np.array_equal(before, after), placement
            assert changed(bare, picture) > 0.01, placement
        assert np.array_equal(nostrils(moved["under_nose"], landmarks), nostrils(bare, landmarks))
        assert changed(mouth(bare, landmarks), mouth(moved["under_nose"], landmarks)) > 0.6
        assert np.array_equal(mouth(moved["chin"], landmarks), mouth(bare, landmarks))
        on_chin = chin(moved["chin"], landmarks)
        assert changed(chin(bare, landmarks), on_chin) > 0.8
        assert np.abs(on_chin.reshape(-1, 3).mean(axis=0) - mask_colour).max() < 30  # the twin's mask, not cloth
        for part in (nostrils, mouth):
            assert np.array_equal(part(moved["one_ear"], landmarks), part(bare, landmarks))


def test_a_twins_mask_only_moves_to_a_wrong_placement(twins):
    bare, twin, landmarks = twins
    with pytest.raises(ValueError, match="under_nose"):
        move_twin_mask(bare, twin, twin_mask_alpha(bare, twin, landmarks), landmarks, "right",
                       np.random.default_rng(0))
