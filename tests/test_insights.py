"""Uploading photos into one class (Store.add_images), and the dataset insights the pages show."""

import pytest

from maskdet.core.errors import StoreError
from maskdet.data.database import photos_table
from maskdet.data.insights import preview_photo
from tests.conftest import encode, pattern_image, write_dataset


def test_add_images_adds_good_photos_and_reports_bad_ones(store, detector):
    good, other = encode(pattern_image(1)), encode(pattern_image(2), "PNG")
    calls = []
    report = store.add_images([
        ("good.jpg", good),
        ("broken.jpg", good[: len(good) // 2]),
        ("notes.txt", b"not a photo at all"),
        ("empty.jpg", b""),
        ("again.jpg", good),
        ("other.png", other),
    ], "hat", detector, progress=lambda done, total: calls.append((done, total)))
    assert report.added == ["good.jpg", "other.png"]
    assert report.duplicates == ["again.jpg"]
    assert report.no_face == ["good.jpg", "other.png"]  # generated pictures hold no face
    reasons = dict(report.rejected)
    assert list(reasons) == ["broken.jpg", "notes.txt", "empty.jpg"]
    assert reasons["broken.jpg"].startswith("corrupt or truncated image")
    assert reasons["notes.txt"] == "not an image file (JPEG, PNG, BMP, WebP, GIF or TIFF expected)"
    assert reasons["empty.jpg"] == "empty file"
    assert calls == [(6, 6)]  # one batch
    assert store.label_counts()["hat"] == 2
    assert sorted(r.source_name for r in store.faces(label="hat")) == ["good.jpg", "other.png"]


@pytest.mark.parametrize("label, files, message", [
    ("uncertain", [("a.jpg", b"x")], "reserved"),
    ("a/b", [("a.jpg", b"x")], "path characters"),
    ("with_mask", [], "No files to import"),
])
def test_add_images_refuses_bad_requests_before_adding_anything(store, detector, label, files, message):
    with pytest.raises(StoreError, match=message):
        store.add_images(files, label, detector)
    assert store.faces() == []


def test_the_preview_photo_is_a_training_face_else_any_face_else_any_photo(store, tmp_path, detector):
    assert preview_photo(store, 0) is None
    store.import_folder(write_dataset(tmp_path / "d", 2), detector)  # four photos, no faces
    every = store.faces()
    assert [preview_photo(store, index).id for index in range(5)] == [r.id for r in every] + [every[0].id]
    for record in every[2:]:
        store.set_face_box(record.id, (2, 2, 40, 40))
    assert [preview_photo(store, index).id for index in range(3)] == [every[2].id, every[3].id, every[2].id]
    with store.engine.begin() as conn:  # one face in the training split
        for record, split in zip(every, ("train", "train", "val", "train")):
            conn.execute(photos_table.update().where(photos_table.c.id == record.photo_id).values(split=split))
    assert {preview_photo(store, index).id for index in range(3)} == {every[3].id}
