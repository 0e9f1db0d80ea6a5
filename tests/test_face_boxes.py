"""Face boxes set by hand (maskdet/data/face_boxes.py): a box drawn or one of MTCNN's faces picked replaces the detected
box for training, is checked before anything changes, comes back when the same photo is imported again, is never
replaced by a later detection, and survives the upgrade of an older data home. The Dataset page's editor is tested in
test_page_dataset.py, the backup of these boxes in test_backup.py."""

import numpy as np
import pytest
import sqlalchemy as sa

from maskdet.core.errors import StoreError
from maskdet.data.database import SCHEMA_VERSION, images_table, meta_table
from maskdet.data.face_boxes import MIN_BOX_SIDE
from maskdet.data.store import Store
from tests.conftest import encode, pattern_image, two_person_photo


@pytest.fixture
def settings(backend_settings):
    """Every test of this file runs on SQLite and on PostgreSQL."""
    return backend_settings


@pytest.fixture
def faceless(store, detector):
    """A stored 96 x 80 picture in which MTCNN finds no face."""
    store.add_image(encode(pattern_image(5)), "with_mask", "flat.jpg", detector)
    (record,) = store.images()
    assert record.face is None and (record.width, record.height) == (96, 80)
    return record


def test_a_box_set_by_hand_is_what_images_give_until_it_is_reset(store, faceless):
    assert [r.id for r in store.images(no_face=True)] == [faceless.id]
    record = store.set_face_box(faceless.id, (10, 8, 60, 70))
    assert record.face.box == (10.0, 8.0, 60.0, 70.0) and record.face_source == "manual"
    assert record.face.landmarks is None and record.face.probability == 1.0  # a drawn mask skips it
    assert store.images() == [record] and store.images(no_face=True) == []
    assert store.images(no_face=False) == [record]
    moved = store.set_face_box(faceless.id, (0, 0, 96, 80))  # set again: replaced, the whole photo allowed
    assert moved.face.box == (0.0, 0.0, 96.0, 80.0)
    back = store.reset_face(faceless.id)
    assert back.face is None and back.face_source == "detected"
    assert store.images(no_face=True) == [back]


@pytest.mark.parametrize("box, message", [
    ((10, 8, 97, 70), r"The face box \(left 10, top 8, right 97, bottom 70\) goes outside the photo, which is 96 x 80 "
                      r"pixels: keep left and right within 0 to 96, top and bottom within 0 to 80\. Nothing was "
                      r"changed\."),
    ((-1, 8, 60, 70), "goes outside the photo"),
    ((10, 8, 60, 81), "goes outside the photo"),
    ((60, 8, 10, 70), r"The face box's right edge must be right of its left edge and its bottom below its top \(left "
                      r"60, top 8, right 10, bottom 70\)\. Nothing was changed\."),
    ((10, 70, 60, 8), "its bottom below its top"),
    ((10, 8, 10, 70), "right edge must be right of its left edge"),  # zero width
    ((10, 8, 10 + MIN_BOX_SIDE - 1, 70), rf"The face box is {MIN_BOX_SIDE - 1} x 62 pixels: make it at least "
                                         rf"{MIN_BOX_SIDE} pixels wide and high\. Nothing was changed\."),
    ((10, 8, 60, float("nan")), "A face box is four numbers: left, top, right and bottom"),
    ((10, 8, 60), "A face box is four numbers"),
    (("left", 8, 60, 70), "A face box is four numbers"),
])
def test_a_bad_box_is_a_sentence_and_changes_nothing(store, faceless, box, message):
    before = store.set_face_box(faceless.id, (20, 10, 50, 40))
    with pytest.raises(StoreError, match=message):
        store.set_face_box(faceless.id, box)
    assert store.images() == [before]


def test_a_photo_that_is_gone_is_a_sentence(store, faceless):
    store.delete_images([faceless.id])
    with pytest.raises(StoreError, match=f"No photo with id {faceless.id}: it has been deleted"):
        store.set_face_box(faceless.id, (10, 8, 60, 70))
    with pytest.raises(StoreError, match="it has been deleted"):
        store.reset_face(faceless.id)


def test_one_of_the_faces_mtcnn_finds_can_be_picked_and_no_detection_replaces_it(store, detector, shared_data):
    """A two-person photo: the import took the larger face; the smaller one is picked with its landmarks. Landmarks
    looked for later (an older home's, for synthetic masks) leave the picked face alone."""
    store.add_image(two_person_photo(shared_data), "without_mask", "two people.jpg", detector)
    (record,) = store.images()
    faces = store.detect_faces(record, detector)
    assert len(faces) == 2 and faces[0].area > faces[1].area
    assert faces[0].box == record.face.box and faces[1].box[0] > faces[0].box[2]  # the smaller is on the right
    picked = store.set_face(record.id, faces[1])
    assert picked.face_source == "manual" and picked.face.box == faces[1].box
    assert picked.face.probability == faces[1].probability
    np.testing.assert_allclose(picked.face.landmarks, faces[1].landmarks, atol=0.01)

    with store.engine.begin() as conn:  # as in a data home from before landmarks were stored
        conn.execute(images_table.update().values(landmarks=None))
    assert store.without_landmarks() == []
    assert store.fill_landmarks(detector) == {"filled": 0, "not_found": 0}
    assert store.images() == [picked]
    assert store.reset_face(record.id).face.box == faces[0].box


def test_a_box_set_by_hand_comes_back_when_the_same_photo_is_imported_again(store, detector, faceless):
    data = store.image_path(faceless).read_bytes()
    store.set_face_box(faceless.id, (10, 8, 60, 70))
    store.delete_images([faceless.id])
    assert store.images() == []
    store.add_image(encode(pattern_image(6)), "with_mask", "other.jpg", detector)  # another photo: nothing of it
    store.add_image(data, "without_mask", "again.jpg", detector)
    other, again = store.images()
    assert other.face is None and other.face_source == "detected"
    assert again.id != faceless.id and again.source_name == "again.jpg"
    assert again.face.box == (10.0, 8.0, 60.0, 70.0) and again.face_source == "manual"


def test_a_home_of_the_previous_schema_is_upgraded(settings, detector):
    """Schema 4 had no manual_faces table: opening the home makes it, and its images keep their detected boxes."""
    old = Store(settings)
    old.add_image(encode(pattern_image(5)), "with_mask", "flat.jpg", detector)
    with old.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE manual_faces"))
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="4"))
    old.engine.dispose()

    store = Store(settings)
    assert store.get_setting("schema_version") == str(SCHEMA_VERSION) == "5"
    (record,) = store.images()
    assert record.face is None and record.face_source == "detected"
    assert store.set_face_box(record.id, (10, 8, 60, 70)).face_source == "manual"
