"""The face detector around MTCNN: the padded retry that finds faces filling the frame, and landmarks."""

import numpy as np
import pytest

from maskdet.faces import FaceDetector
from maskdet.imageio import decode_image

CLOSE_UPS = ["185-with-mask.jpg", "332-with-mask.jpg", "451-with-mask.jpg"]  # masked faces that fill the photo


@pytest.mark.parametrize("name", CLOSE_UPS)
def test_a_masked_face_filling_the_photo_is_found_on_the_padded_copy(shared_data, name):
    image = decode_image((shared_data / "with_mask" / name).read_bytes(), 40_000_000)
    assert FaceDetector(pad_fraction=0).detect([image])[0] == []
    faces = FaceDetector().detect([image])[0]
    assert len(faces) == 1 and faces[0].probability > 0.9
    x1, y1, x2, y2 = faces[0].box
    height, width = image.shape[:2]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert (x2 - x1) * (y2 - y1) > 0.2 * width * height  # the face fills much of the photo
    eyes, mouth = np.array(faces[0].landmarks[:2]), np.array(faces[0].landmarks[3:])
    assert eyes[:, 1].max() < mouth[:, 1].min()  # landmarks mapped back from the padded copy, upright


def test_the_padded_retry_finds_no_face_where_there_is_none():
    flat = np.full((300, 400, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    assert FaceDetector().detect([flat, noise]) == [[], []]
