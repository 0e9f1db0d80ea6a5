"""Face boxes set by hand (maskdet/data/face_boxes.py): a box drawn or one of MTCNN's faces picked replaces the face's
own box for training, is checked before anything changes, is never replaced by a later detection, and survives the upgrade
of an older data home; faces added by hand beside a photo's others. The Dataset page's editor is tested in
test_page_dataset.py, the backup of these boxes in test_backup.py."""

import numpy as np
import pytest
import sqlalchemy as sa

from maskdet.core.errors import StoreError
from maskdet.data.database import (SCHEMA_VERSION, faces_table, legacy_images_table, legacy_manual_faces_table,
                                   legacy_metadata, manual_boxes_table, meta_table, open_database, photos_table)
from maskdet.data.face_boxes import MIN_BOX_SIDE
from maskdet.data.store import Store
from maskdet.vision.faces import Face
from tests.conftest import encode, pattern_image, two_person_photo


@pytest.fixture
def settings(backend_settings):
    """Every test of this file runs on SQLite and on PostgreSQL."""
    return backend_settings


@pytest.fixture
def faceless(store, detector):
    """A stored 96 x 80 picture in which MTCNN finds no face."""
    store.add_image(encode(pattern_image(5)), "with_mask", "flat.jpg", detector)
    (record,) = store.faces()
    assert record.face is None and (record.width, record.height) == (96, 80)
    return record


def test_a_box_set_by_hand_is_what_images_give_until_it_is_reset(store, faceless):
    assert [r.id for r in store.faces(no_face=True)] == [faceless.id]
    record = store.set_face_box(faceless.id, (10, 8, 60, 70))
    assert record.face.box == (10.0, 8.0, 60.0, 70.0) and record.face_source == "manual"
    assert record.face.landmarks is None and record.face.probability == 1.0  # a drawn mask skips it
    assert store.faces() == [record] and store.faces(no_face=True) == []
    assert store.faces(no_face=False) == [record]
    moved = store.set_face_box(faceless.id, (0, 0, 96, 80))  # set again: replaced, the whole photo allowed
    assert moved.face.box == (0.0, 0.0, 96.0, 80.0)
    back = store.reset_face(faceless.id)
    assert back.face is None and back.face_source == "detected"
    assert store.faces(no_face=True) == [back]


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
    assert store.faces() == [before]


def test_a_photo_that_is_gone_is_a_sentence(store, faceless):
    store.delete_faces([faceless.id])
    with pytest.raises(StoreError, match=f"No face with id {faceless.id}: it has been deleted"):
        store.set_face_box(faceless.id, (10, 8, 60, 70))
    with pytest.raises(StoreError, match="it has been deleted"):
        store.reset_face(faceless.id)


def test_one_of_the_faces_mtcnn_finds_can_be_picked_and_no_detection_replaces_it(store, detector, shared_data):
    """A two-person photo: the import took the larger face; the smaller one is picked with its landmarks. Landmarks
    looked for later (an older home's, for synthetic masks) leave the picked face alone."""
    store.add_image(two_person_photo(shared_data), "without_mask", "two people.jpg", detector)
    (record,) = store.faces()
    faces = store.detect_faces(record, detector)
    assert len(faces) == 2 and faces[0].area > faces[1].area
    assert faces[0].box == record.face.box and faces[1].box[0] > faces[0].box[2]  # the smaller is on the right
    picked = store.set_face(record.id, faces[1])
    assert picked.face_source == "manual" and picked.face.box == faces[1].box
    assert picked.face.probability == faces[1].probability
    np.testing.assert_allclose(picked.face.landmarks, faces[1].landmarks, atol=0.01)

    with store.engine.begin() as conn:  # as in a data home from before landmarks were stored
        conn.execute(faces_table.update().values(landmarks=None))
    assert store.without_landmarks() == []
    assert store.fill_landmarks(detector) == {"filled": 0, "not_found": 0}
    assert store.faces() == [picked]
    assert store.reset_face(record.id).face.box == faces[0].box


def test_a_photo_holds_several_faces_each_relabelled_and_deleted_on_its_own(store, faceless):
    """A face added by hand beside the photo's own: both listed with the photo's split and group; relabelling or
    deleting one leaves the other; the photo and its file go with its last face."""
    added = store.add_face(faceless.photo_id, "without_mask", Face((50, 10, 90, 60), 1.0))
    assert (added.photo_id, added.label, added.face.box, added.face_source) == (
        faceless.photo_id, "without_mask", (50.0, 10.0, 90.0, 60.0), "manual")
    assert [r.id for r in store.faces()] == [faceless.id, added.id]
    assert store.label_counts() == {"with_mask": 1, "without_mask": 1} and store.count_photos() == 1
    assert store.relabel([added.id], "with_mask") == 1
    assert [r.label for r in store.faces()] == ["with_mask", "with_mask"]
    path = store.image_path(faceless)
    assert store.delete_faces([faceless.id]) == 1
    assert store.faces() == [store.face(added.id)] and path.exists()
    assert store.delete_faces([added.id]) == 1
    assert store.faces() == [] and store.count_photos() == 0 and not path.exists()
    with pytest.raises(StoreError, match=f"No photo with id {faceless.photo_id}: it has been deleted"):
        store.add_face(faceless.photo_id, "with_mask", Face((50, 10, 90, 60), 1.0))


def test_a_face_added_by_hand_is_checked_like_a_drawn_box(store, faceless):
    with pytest.raises(StoreError, match="goes outside the photo"):
        store.add_face(faceless.photo_id, "with_mask", Face((50, 10, 97, 60), 1.0))
    with pytest.raises(StoreError, match="No label named 'masks'"):
        store.add_face(faceless.photo_id, "masks", Face((50, 10, 90, 60), 1.0))
    assert [r.id for r in store.faces()] == [faceless.id]


def test_a_home_of_schema_5_is_upgraded_keeping_its_boxes_set_by_hand(settings, detector):
    """Schema 5 stored one face per image, its box set by hand in manual_faces by the file's SHA-256: each image
    becomes a photo with one face of the same id, keeping its label, split, group, landmarks and box set by hand."""
    first, second = (encode(pattern_image(seed)) for seed in (5, 6))
    old = Store(settings)
    old.add_image(first, "with_mask", "one.jpg", detector)
    old.add_image(second, "without_mask", "two.jpg", detector)
    one, two = old.faces()
    old.engine.dispose()
    engine = open_database(settings.database_url)
    landmarks = "[[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]"
    with engine.begin() as conn:
        for table in (manual_boxes_table, faces_table, photos_table):
            table.drop(conn)
        legacy_metadata.create_all(conn)
        conn.execute(legacy_images_table.insert(), [
            dict(id=record.id + 10, sha256=record.sha256, file=record.file, label_id=label_id,
                 source_name=record.source_name, width=96, height=80, face_x1=x1, face_y1=2.0, face_x2=40.0,
                 face_y2=50.0, face_probability=0.9, landmarks=landmarks, phash="0" * 64, dup_group=group,
                 split=split, created_at="2026-01-01T00:00:00+00:00")
            for record, label_id, x1, group, split in ((one, 1, 1.0, 3, "train"), (two, 2, None, 4, "test"))])
        conn.execute(legacy_manual_faces_table.insert().values(
            sha256=one.sha256, face_x1=10.0, face_y1=8.0, face_x2=60.0, face_y2=70.0, face_probability=1.0,
            landmarks=None, created_at="2026-01-02T00:00:00+00:00"))
        conn.execute(legacy_manual_faces_table.insert().values(  # a photo deleted since: its box goes
            sha256="f" * 64, face_x1=1.0, face_y1=1.0, face_x2=30.0, face_y2=30.0, face_probability=1.0,
            landmarks=None, created_at="2026-01-02T00:00:00+00:00"))
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="5"))
    engine.dispose()

    store = Store(settings)
    assert store.get_setting("schema_version") == str(SCHEMA_VERSION) == "6"
    upgraded_one, upgraded_two = store.faces()
    assert (upgraded_one.id, upgraded_one.photo_id, upgraded_one.label, upgraded_one.split, upgraded_one.dup_group) == (
        one.id + 10, one.id + 10, "with_mask", "train", 3)
    assert upgraded_one.face.box == (10.0, 8.0, 60.0, 70.0) and upgraded_one.face_source == "manual"
    assert (upgraded_two.label, upgraded_two.face, upgraded_two.face_source) == ("without_mask", None, "detected")
    assert store.reset_face(upgraded_one.id).face == Face((1.0, 2.0, 40.0, 50.0), 0.9,
                                                          ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10)))
    with store.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("images") and not sa.inspect(conn).has_table("manual_faces")
    store.add_image(encode(pattern_image(7)), "with_mask", "three.jpg", detector)  # ids go on after the old ones
    assert store.faces()[-1].id == one.id + 12 and store.faces()[-1].photo_id == one.id + 12
