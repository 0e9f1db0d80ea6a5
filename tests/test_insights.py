"""Uploading photos into one class (Store.add_images), and the dataset insights the pages show."""

import pytest

from maskdet.store import StoreError
from tests.conftest import encode, pattern_image


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
    assert sorted(r.source_name for r in store.images(label="hat")) == ["good.jpg", "other.png"]


@pytest.mark.parametrize("label, files, message", [
    ("uncertain", [("a.jpg", b"x")], "reserved"),
    ("a/b", [("a.jpg", b"x")], "path characters"),
    ("with_mask", [], "No files to import"),
])
def test_add_images_refuses_bad_requests_before_adding_anything(store, detector, label, files, message):
    with pytest.raises(StoreError, match=message):
        store.add_images(files, label, detector)
    assert store.images() == []
