"""The Dataset page, driven through Streamlit's AppTest against a fresh data home per test."""

import base64
import io
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import streamlit_webrtc.component
from PIL import Image
from streamlit.testing.v1 import AppTest

from maskdet.data.database import faces_table
from ui.navigation import FAVICON
from tests.conftest import encode, pattern_image, two_person_photo, write_dataset, zip_bytes
from tests.test_annotations import voc

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "1_Dataset.py")


def open_page() -> AppTest:
    return check(AppTest.from_file(PAGE, default_timeout=60).run())


def check(at: AppTest) -> AppTest:
    """No traceback on the page (an exception element is what a traceback would become)."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def names(at: AppTest) -> list[str]:
    """The file names shown by ui.file_names (HTML that wraps only between words), as text."""
    return [unescape(re.sub(r"<[^>]+>", "", name)) for element in at.html
            for name in re.findall(r'<span title="[^"]*">(.*?)</span>', element.value)]


@pytest.fixture
def dataset(tmp_path, store, detector):
    """4 + 4 generated photos (no faces in them), plus a PNG copy of one with_mask photo filed as without_mask."""
    root = write_dataset(tmp_path / "dataset", per_class=4)
    copy = (root / "with_mask" / "img0.jpg").read_bytes()
    from PIL import Image
    png = io.BytesIO()
    Image.open(io.BytesIO(copy)).save(png, format="PNG")
    (root / "without_mask" / "copy_of_img0.png").write_bytes(png.getvalue())
    store.import_folder(root, detector)
    return store


def test_empty_home_shows_zero_counts_and_how_to_start(settings):
    at = open_page()
    assert at.title[0].value == "Dataset"
    assert metrics(at) == {"with_mask": "0", "without_mask": "0"}
    assert "Training needs images in at least two classes." in [w.value for w in at.warning]
    assert "No photos yet. Add some below: upload photos into a class" in texts(at.info)
    assert "No photos here yet." in texts(at.info)
    assert not at.error and not at.image
    assert button(at, "Import 0 photos into with_mask").disabled
    assert button(at, "Delete class").disabled


def test_photos_are_shown_inline_never_through_a_media_url(dataset, downloads):
    """Hostile files, round two (G): Streamlit's media URLs answer anyone who has one, signed in or not, for minutes
    after the session ends; the gallery's photos are sent inside the page instead."""
    at = open_page()
    urls = [image.url for element in at.image for image in element.proto.imgs]
    assert len(urls) == 9 and all(url.startswith("data:image/jpeg;base64,") for url in urls)
    # nothing handed to Streamlit's media storage but the dashboard's own icon
    assert [data for _, data in downloads.values()] in ([], [FAVICON.read_bytes()])


def test_imported_dataset_shows_counts_thumbnails_and_warnings(dataset):
    at = open_page()
    assert metrics(at) == {"with_mask": "4", "without_mask": "5"}
    assert len(at.image) == 9  # one thumbnail per photo, all on page 1
    captions = [c.value for c in at.caption]
    assert captions.count("4 with no face found") == 1 and captions.count("5 with no face found") == 1
    assert "9 photos, page 1 of 1." in texts(at.caption)
    warnings = texts(at.warning)
    assert "Training needs" not in warnings
    assert "Few images in with_mask (4), without_mask (5)" in warnings
    assert "No face was found in 9 photos" in warnings
    assert "1 near-duplicate group contains photos of different classes" in warnings
    assert set(names(at)) == {r.source_name for r in dataset.faces()}  # each photo's file name
    assert {c.label for c in at.checkbox if c.key.startswith("pick_")} == {"Select"}


def test_add_rename_and_delete_classes_through_the_widgets(settings, store, detector):
    at = open_page()
    at.text_input(key="new_class").input("hat")
    button(at, "Add class").click()
    check(at.run())
    assert store.labels() == ["with_mask", "without_mask", "hat"]
    assert "Added the class hat" in texts(at.success)
    assert "hat" in metrics(at)

    at.text_input(key="new_class").input(" with_mask ")  # one that exists (as written, spaces trimmed)
    button(at, "Add class").click()
    check(at.run())
    assert "The class with_mask is in the dataset already: nothing was added." in texts(at.info)
    assert not texts(at.success) and store.labels() == ["with_mask", "without_mask", "hat"]

    at.text_input(key="new_class").input("uncertain")
    button(at, "Add class").click()
    check(at.run())
    assert "'uncertain' is reserved" in texts(at.error)
    assert store.labels() == ["with_mask", "without_mask", "hat"]

    at.selectbox(key="rename_from").select("hat")
    at.text_input(key="rename_to").input("cap")
    button(at, "Rename class").click()
    check(at.run())
    assert store.labels() == ["with_mask", "without_mask", "cap"]
    assert "Renamed hat to cap." in texts(at.success)

    store.add_image(encode(pattern_image(77)), "cap", "cap.jpg", detector)
    at.run()
    at.selectbox(key="delete_label").select("cap")
    check(at.run())
    assert button(at, "Delete class").disabled  # nothing is deleted before the confirmation
    at.checkbox(key="confirm_delete_cap").check()
    check(at.run())
    assert at.checkbox(key="confirm_delete_cap").label == "Yes, delete cap and its 1 photo"
    button(at, "Delete class").click()
    check(at.run())
    assert store.labels() == ["with_mask", "without_mask"]
    assert store.faces() == []
    assert "Deleted the class cap and its 1 photo." in texts(at.success)


def test_moving_photos_to_a_class_deleted_meanwhile_says_so_and_moves_nothing(dataset):
    """The class picker keeps a class deleted in another tab, marked, rather than switching to the first class."""
    store = dataset
    store.add_label("hat")
    at = open_page()
    at.selectbox(key="gallery_label").select("with_mask")
    check(at.run())
    [first, *_] = store.faces(label="with_mask")
    at.checkbox(key=f"pick_0_{first.id}").check()
    at.selectbox(key="move_to").select("hat")
    check(at.run())
    store.delete_label("hat")  # in another tab
    check(at.run())
    assert at.selectbox(key="move_to").value == "hat"
    assert at.selectbox(key="move_to").format_func("hat") == "hat (deleted)"
    button(at, "Move 1 selected").click()
    at.run()
    assert "No label named 'hat'" in texts(at.error)
    assert store.label_counts() == {"with_mask": 4, "without_mask": 5}


def test_move_and_delete_selected_photos(dataset):
    store = dataset
    at = open_page()
    at.selectbox(key="gallery_label").select("with_mask")
    check(at.run())
    assert len(at.image) == 4
    with_mask = store.faces(label="with_mask")
    for record in with_mask[:2]:
        at.checkbox(key=f"pick_0_{record.id}").check()
    check(at.run())
    at.selectbox(key="move_to").select("without_mask")
    button(at, "Move 2 selected").click()
    check(at.run())
    assert store.label_counts() == {"with_mask": 2, "without_mask": 7}
    assert {r.id for r in store.faces(label="without_mask")} >= {r.id for r in with_mask[:2]}
    assert "Moved 2 faces to without_mask." in texts(at.success)
    assert len(at.image) == 2 and not any(c.value for c in at.checkbox if c.key.startswith("pick_"))

    button(at, "Select page").click()
    check(at.run())
    assert all(c.value for c in at.checkbox if c.key.startswith("pick_"))
    doomed = store.faces(label="with_mask")
    assert "Delete 2 faces from the dataset? A photo goes with its last face." in texts(at.markdown)  # asked first
    button(at, "Yes, delete 2 faces").click()
    check(at.run())
    assert "Deleted 2 faces." in texts(at.success)
    assert store.label_counts() == {"with_mask": 0, "without_mask": 7}
    assert not any(store.image_path(record).exists() for record in doomed)
    assert "No photos here yet." in texts(at.info)


def test_no_face_filter(dataset):
    store = dataset
    records = store.faces()
    with store.engine.begin() as conn:  # pretend MTCNN found a face in three of them
        conn.execute(faces_table.update().where(faces_table.c.id.in_([r.id for r in records[:3]]))
                     .values(face_x1=10.0, face_y1=10.0, face_x2=50.0, face_y2=60.0, face_probability=0.99))
    at = open_page()
    assert len(at.image) == 9
    at.toggle(key="gallery_no_face").set_value(True)
    check(at.run())
    assert len(at.image) == 6
    assert all(image.captions[0].endswith(" · no face found") for image in at.image)
    shown = {c.key for c in at.checkbox if c.key.startswith("pick_")}
    assert shown == {f"pick_0_{r.id}" for r in store.faces(no_face=True)}
    assert "No face was found in 6 photos" in texts(at.warning)

    at.selectbox(key="gallery_label").select("with_mask")
    check(at.run())
    assert len(at.image) == len(store.faces(label="with_mask", no_face=True)) == 1


def test_unreadable_file_is_a_sentence_not_a_traceback(settings, store, detector):
    store.add_image(encode(pattern_image(4242)), "with_mask", "lost.jpg", detector)
    (record,) = store.faces()
    store.image_path(record).unlink()
    at = open_page()
    assert "the file could not be read; delete it and upload the photo again" in texts(at.caption)
    assert not at.image and not at.error


def test_upload_photos_reports_added_and_rejected(settings, store):
    at = open_page()
    at.selectbox(key="upload_label").select("without_mask")
    good = encode(pattern_image(3))
    at.file_uploader(key="upload_photos_0").set_value([
        ("good.jpg", good, "image/jpeg"),
        ("broken.jpg", good[: len(good) // 2], "image/jpeg"),
        ("notes.png", b"shopping list: milk, eggs", "image/png"),
    ])
    check(at.run())
    button(at, "Import 3 photos into without_mask").click()
    check(at.run())
    assert [(r.label, r.source_name) for r in store.faces()] == [("without_mask", "good.jpg")]
    assert "Import finished: added 1 photo, rejected 2, no face found in 1 of the added." in texts(at.warning)
    rejected = at.dataframe[0].value
    assert list(rejected["file"]) == ["broken.jpg", "notes.png"]
    assert "corrupt or truncated" in rejected["reason"][0]
    assert rejected["reason"][1] == ("a damaged photo: named .png but its content cannot be read as an image (cut "
                                     "short or corrupted?)")
    assert ("Rejected files were not added; each row says why. A damaged or oversized photo can often be opened and "
            "re-saved as JPEG or PNG") in texts(at.caption)
    assert metrics(at)["without_mask"] == "1"
    assert not at.file_uploader(key="upload_photos_1").value  # a fresh, empty uploader for the next batch

    at.file_uploader(key="upload_photos_1").set_value(("again.jpg", good, "image/jpeg"))
    check(at.run())
    button(at, "Import 1 photo into without_mask").click()  # the class choice is kept
    check(at.run())
    assert "skipped 1 already in the dataset" in texts(at.warning)
    assert len(store.faces()) == 1


@pytest.mark.parametrize("name, data, message", [
    ("photos.zip", b"this is not a zip", "Not a readable zip archive"),
    ("empty.zip", zip_bytes({}), "No images found: expected class folders"),
    ("readme.zip", zip_bytes({"README.txt": b"hello"}), "No images could be imported"),
])
def test_bad_zip_shows_an_error_with_a_next_step(settings, store, name, data, message):
    at = open_page()
    at.file_uploader(key="upload_zip_0").set_value((name, data, "application/zip"))
    check(at.run())
    button(at, "Import the zip").click()
    check(at.run())
    assert message in texts(at.error)
    assert "Upload a .zip whose folders are the classes" in texts(at.info)
    assert store.faces() == []


def test_zip_of_class_folders_is_imported_with_a_report(settings, store):
    at = open_page()
    archive = zip_bytes({"faces/with_mask/a.jpg": encode(pattern_image(1)),
                         "faces/with_mask/._a.jpg": b"\x00\x05\x16\x07 AppleDouble",  # macOS junk: left out
                         "__MACOSX/faces/with_mask/._a.jpg": b"\x00\x05\x16\x07 AppleDouble",
                         "faces/hat/b.jpg": encode(pattern_image(2)),
                         "faces/hat/broken.jpg": b"\xff\xd8 nope",
                         "faces/hat/notes.txt": b"shopping list",
                         "stray.jpg": encode(pattern_image(4))})
    at.file_uploader(key="upload_zip_0").set_value(("faces.zip", archive, "application/zip"))
    check(at.run())
    button(at, "Import the zip").click()
    check(at.run())
    assert store.label_counts() == {"with_mask": 1, "without_mask": 0, "hat": 1}
    assert metrics(at)["added"] == "2" and metrics(at)["rejected"] == "3"
    reasons = dict(zip(at.dataframe[0].value["file"], at.dataframe[0].value["reason"]))
    assert set(reasons) == {"faces/hat/broken.jpg", "faces/hat/notes.txt", "stray.jpg"}
    assert reasons["faces/hat/broken.jpg"].startswith("a damaged photo: named .jpg")
    assert reasons["faces/hat/notes.txt"] == "not an image file (JPEG, PNG, BMP, WebP, GIF or TIFF expected)"
    button(at, "Hide the import report").click()
    check(at.run())
    assert "added" not in metrics(at)


def test_an_import_tells_repeats_within_the_upload_from_photos_already_stored(settings, store, detector):
    old, same = encode(pattern_image(20)), encode(pattern_image(21))
    store.add_image(old, "with_mask", "old.jpg", detector)
    at = open_page()
    archive = zip_bytes({"with_mask/a.jpg": same, "with_mask/b.jpg": same, "without_mask/c.jpg": same,
                         "with_mask/old.jpg": old})
    at.file_uploader(key="upload_zip_0").set_value(("faces.zip", archive, "application/zip"))
    check(at.run())
    button(at, "Import the zip").click()
    check(at.run())
    assert ("Import finished: added 1 photo, skipped 1 already in the dataset and 2 repeated within the upload, no "
            "face found in 1 of the added.") in texts(at.success)
    assert {name: metrics(at)[name] for name in ("added", "already there", "repeated in upload")} == {
        "added": "1", "already there": "1", "repeated in upload": "2"}
    assert [e.label for e in at.expander] == ["Photos with no face found (1)", "Already in the dataset (1)",
                                              "Repeated within the upload (2)"]
    assert names(at)[:2] == ["with_mask/a.jpg", "with_mask/old.jpg"]
    repeats = next(frame.value for frame in at.dataframe if "same content as" in frame.value.columns)
    assert repeats.to_dict("records") == [{"file": "with_mask/b.jpg", "same content as": "with_mask/a.jpg"},
                                          {"file": "without_mask/c.jpg", "same content as": "with_mask/a.jpg"}]


def test_gallery_file_names_wrap_between_words_and_a_long_one_is_cut_short_with_its_full_name_as_tooltip(
        store, detector):
    long_name = "real/with_mask/9e5a3b1c2d4e5f60718293a4b5c6d7e8.jpg"
    store.add_image(encode(pattern_image(7)), "with_mask", long_name, detector)
    store.add_image(encode(pattern_image(8)), "with_mask", "IMG_20231103_123456789_HDR_portrait.jpg", detector)
    at = open_page()
    assert sorted(names(at)) == ["IMG_20231103_123456789_HDR_portrait.jpg", "real/with_mask/9e5a3b1c2\u20265c6d7e8.jpg"]
    bodies = {unescape(re.search(r'title="([^"]*)"', h.value).group(1)): h.value
              for h in at.html if "title=" in h.value}
    assert set(bodies) == {long_name, "IMG_20231103_123456789_HDR_portrait.jpg"}  # the full names, on hover
    assert "real/<wbr>with_<wbr>mask/<wbr>9e5a3b1c2\u20265c6d7e8.<wbr>jpg" in bodies[long_name]  # breaks between words
    assert "IMG_<wbr>20231103_<wbr>123456789_<wbr>HDR_<wbr>portrait.<wbr>jpg" in bodies[
        "IMG_20231103_123456789_HDR_portrait.jpg"]


def test_file_names_are_shown_as_they_are_never_read_as_markdown(settings, store):
    name = "[x](http://e.com)*b*.jpg"
    at = open_page()
    at.file_uploader(key="upload_photos_0").set_value([(name, encode(pattern_image(5)), "image/jpeg"),
                                                       ("![i](http://e.com/i.png).jpg", b"broken", "image/jpeg")])
    check(at.run())
    button(at, "Import 2 photos into with_mask").click()
    check(at.run())
    assert names(at) == [name, name]  # the report's "no face found" list, the gallery
    assert not any("<a" in html.value or "<img" in html.value for html in at.html)  # HTML-escaped, no link
    assert list(at.dataframe[0].value["file"]) == ["![i](http://e.com/i.png).jpg"]  # the rejected: a table
    rendered = [e.value for kind in (at.markdown, at.caption, at.success, at.warning, at.info) for e in kind]
    rendered += [c.label for c in at.checkbox] + [caption for image in at.image for caption in image.captions]
    assert not any("e.com" in text for text in rendered)  # no name went through Markdown
    tick(at, store.faces()[0])
    button(at, "Use the whole photo").click()
    check(at.run())
    assert f"Face box of ` {name} ` set to the whole photo" in texts(at.success)  # a code span: literal


def test_webcam_bursts_store_their_shots_with_the_faces_found(settings, store, shared_data, monkeypatch):
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)  # renders under AppTest
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)
    at = open_page()
    at.selectbox(key="camera_label").select("without_mask")
    at.radio(key="camera_mode").set_value("Bursts")
    check(at.run())
    assert len(at.get("component_instance")) == 1  # the camera stream
    assert "The latest captures show here" in texts(at.caption)
    at.number_input(key="burst_shots").set_value(3)
    at.number_input(key="burst_every").set_value(0.5)
    check(at.run())
    button(at, "Capture 3 shots every 0.5 s into without_mask").click()
    check(at.run())
    assert "Shot 0 of 3, 0.5 s apart: waiting for the camera (press START)." in texts(at.caption)
    assert button(at, "Stop the burst")

    burst = at.session_state["burst"]  # what the stream's frame callback feeds, frame by frame
    photos = [np.asarray(Image.open(shared_data / "without_mask" / f"{n}.jpg").convert("RGB")) for n in (100, 212, 37)]
    assert [burst.offer(photo, t) for t, photo in zip((0.0, 0.2, 0.5), photos)] == [True, False, True]
    check(at.run())
    assert "Shot 2 of 3, 0.5 s apart." in texts(at.caption)
    assert store.label_counts()["without_mask"] == 2
    assert burst.offer(photos[1], 1.0) and not burst.running
    check(at.run())
    assert store.label_counts()["without_mask"] == 3 and all(r.face for r in store.faces())
    assert "Stored 3 shots in without_mask." in texts(at.success)
    strip = [image for image in at.image if image.captions == ["face found"]]
    assert len(strip) == 3  # beside the camera, with their face boxes
    assert button(at, "Capture 3 shots every 0.5 s into without_mask")  # ready for the next burst


def test_webcam_captures_several_shots_in_a_row(settings, store):
    at = open_page()
    at.selectbox(key="camera_label").select("without_mask")
    at.toggle(key="camera_on").set_value(True)
    check(at.run())
    first, second = encode(pattern_image(11)), encode(pattern_image(12))
    at.camera_input[0].set_value(("shot.jpg", first, "image/jpeg"))
    check(at.run())
    assert store.label_counts()["without_mask"] == 1
    assert "Stored capture 1 in without_mask" in texts(at.success)
    assert "Captured this session: 1" in texts(at.caption)
    assert at.camera_input[0].key == "camera_1" and at.camera_input[0].value is None  # ready for the next shot

    at.camera_input[0].set_value(("shot.jpg", second, "image/jpeg"))
    check(at.run())
    check(at.run())  # a plain rerun adds nothing
    assert store.label_counts()["without_mask"] == 2
    assert "Captured this session: 2" in texts(at.caption)

    at.camera_input[0].set_value(("shot.jpg", first, "image/jpeg"))
    check(at.run())
    assert store.label_counts()["without_mask"] == 2
    assert [i.value for i in at.info] == ["That photo is already in the dataset (in without_mask): nothing stored."]
    assert "Captured this session: 2" in texts(at.caption) and not at.success
    assert not [image for image in at.image if image.captions[0].startswith("In ")]  # only the gallery's

    # The same picture again in the fresh camera (a still scene, or a fake camera restarting its clip) is answered too.
    at.camera_input[0].set_value(("shot.jpg", first, "image/jpeg"))
    check(at.run())
    assert [i.value for i in at.info] == ["The camera gave the same photo as the last one: nothing stored."]
    assert at.camera_input[0].key == "camera_4" and not at.error


def test_a_webcam_photo_is_shown_as_stored_with_its_face_box_and_class(settings, store, shared_data):
    from dataclasses import replace

    from maskdet.data.insights import thumbnail

    at = open_page()
    at.selectbox(key="camera_label").select("without_mask")
    at.toggle(key="camera_on").set_value(True)
    check(at.run())
    assert "The photo you take shows here once stored, with the face box training will use." in texts(at.caption)
    assert "press Take Photo once it shows a picture. A press before that takes no photo" in texts(at.caption)
    photo = (shared_data / "without_mask" / "100.jpg").read_bytes()
    at.camera_input[0].set_value(("shot.jpg", photo, "image/jpeg"))
    check(at.run())
    assert not at.error
    [record] = store.faces()
    assert record.label == "without_mask" and record.face is not None
    assert [s.value for s in at.success] == ["Stored capture 1 in without_mask (face found). Take the next one."]
    [shown] = [image for image in at.image if image.captions == ["In without_mask: face found (green box)"]]
    url = shown.proto.imgs[0].url
    assert url.startswith("data:image/jpeg;base64,")  # inline, never a Streamlit media URL
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), dtype=int)
    expected = thumbnail(store, record)  # the stored photo with its face box drawn in green
    assert picture.shape == expected.shape and np.abs(picture - expected).mean() < 8
    plain = thumbnail(store, replace(record, face=None))  # the same photo without its box
    box = np.abs(expected - plain).sum(axis=2) > 60  # where the box is drawn
    assert box.mean() > 0.01 and np.abs(picture - expected)[box].mean() < np.abs(picture - plain)[box].mean() / 1.5

    at.camera_input[0].set_value(("shot.jpg", encode(pattern_image(3)), "image/jpeg"))  # no face in it
    check(at.run())
    assert [s.value for s in at.success] == [
        "Stored capture 2 in without_mask (no face found; delete it in the gallery if your face was hidden). Take "
        "the next one."]
    assert [i.captions for i in at.image if i.captions[0].startswith("In ")] == [
        ["In without_mask: no face found, the whole photo is used"]]


def test_switching_the_capture_mode_keeps_the_webcam_on(settings, store, monkeypatch):
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)  # renders under AppTest
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)
    at = open_page()
    at.toggle(key="camera_on").set_value(True)
    check(at.run())
    assert len(at.camera_input) == 1
    at.radio(key="camera_mode").set_value("Bursts")
    check(at.run())
    assert not at.camera_input and len(at.get("component_instance")) == 1
    check(at.run())  # a rerun while Bursts are shown
    at.radio(key="camera_mode").set_value("One photo per click")
    check(at.run())
    assert at.toggle(key="camera_on").value and len(at.camera_input) == 1
    at.toggle(key="camera_on").set_value(False)
    check(at.run())
    at.radio(key="camera_mode").set_value("Bursts")
    check(at.run())
    at.radio(key="camera_mode").set_value("One photo per click")
    check(at.run())
    assert not at.toggle(key="camera_on").value and not at.camera_input  # off stays off


def test_gallery_is_paginated(tmp_path, store, detector):
    store.import_folder(write_dataset(tmp_path / "many", per_class=15, start=300), detector)
    at = open_page()
    assert len(at.image) == 24 and "30 photos, page 1 of 2." in texts(at.caption)
    first_page = {c.key for c in at.checkbox if c.key.startswith("pick_")}
    at.number_input(key="gallery_page").set_value(2)
    check(at.run())
    assert len(at.image) == 6 and "30 photos, page 2 of 2." in texts(at.caption)
    assert first_page.isdisjoint(c.key for c in at.checkbox if c.key.startswith("pick_"))
    button(at, "Select page").click()
    check(at.run())
    button(at, "Yes, delete 6 faces").click()  # page 2 disappears; the gallery falls back to page 1
    check(at.run())
    assert len(store.faces()) == 24
    assert len(at.image) == 24 and "24 photos, page 1 of 1." in texts(at.caption)


# ---- fixing a face box -----------------------------------------------------------------------------------------

def tick(at: AppTest, record) -> AppTest:
    """Tick one photo of the gallery: the face box editor opens for it below the gallery."""
    at.checkbox(key=f"pick_0_{record.id}").check()
    return check(at.run())


def box_inputs(at: AppTest) -> list:
    """The editor's Left, Top, Right and Bottom inputs."""
    return [field for field in at.number_input if field.key.startswith("box_")]


def set_box(at: AppTest, box) -> None:
    for field, value in zip(box_inputs(at), box, strict=True):
        field.set_value(value)


def test_a_box_set_by_hand_on_the_page_is_what_the_next_training_crops(dataset, tmp_path):
    from maskdet.training.progress import Callbacks
    from maskdet.training.views import load_split
    from maskdet.vision.faces import CropRule, crop_face

    store = dataset
    record = store.faces()[0]  # with_mask/img0.jpg, 96 x 80, no face found
    at = open_page()
    assert "Tick one face in the gallery to fix its box" in texts(at.caption)
    tick(at, record)
    assert at.text[-1].value == "with_mask/img0.jpg"  # the editor's, below the gallery's names
    assert "96 x 80 pixels. Training uses the whole photo: MTCNN found no face at import." in texts(at.caption)
    assert "MTCNN finds no face in this photo: set the box by hand." in texts(at.caption)
    assert button(at, "Forget the box set by hand").disabled
    assert [field.value for field in box_inputs(at)] == [24, 20, 72, 60]  # a start in the middle

    set_box(at, (10, 8, 60, 70))
    check(at.run())
    button(at, "Save this box").click()
    check(at.run())
    assert "Face box of ` with_mask/img0.jpg ` set by hand; training will use it." in texts(at.success)
    saved = store.faces(ids=[record.id])[0]
    assert (saved.face_source, saved.face.box) == ("manual", (10.0, 8.0, 60.0, 70.0))
    assert at.image[0].captions[0] == "with_mask · box set by hand"
    assert "Training uses the box set by hand." in texts(at.caption)
    assert not button(at, "Forget the box set by hand").disabled
    assert [field.value for field in box_inputs(at)] == [10, 8, 60, 70]

    at.toggle(key="gallery_no_face").set_value(True)  # it has a box now
    check(at.run())
    assert len(at.image) == 8 and f"pick_0_{record.id}" not in {c.key for c in at.checkbox}

    rule = CropRule(1.25, 64)
    split = load_split(store, store.faces(ids=[record.id]), ["with_mask", "without_mask"], rule, Callbacks(), 1, 0,
                       tmp_path / "crops.u8")
    image = store.load_image(saved)
    np.testing.assert_array_equal(split.crops[0], crop_face(image, (10, 8, 60, 70), rule))
    assert not np.array_equal(split.crops[0], crop_face(image, None, rule))
    assert not split.has_landmarks[0]  # a drawn box has no landmarks: synthetic masks skip it


def test_a_box_outside_the_photo_is_a_sentence_and_nothing_is_lost(dataset):
    store = dataset
    record = store.faces()[0]
    at = tick(open_page(), record)
    set_box(at, (10, 8, 160, 70))
    check(at.run())
    button(at, "Save this box").click()
    check(at.run())
    assert ("The face box (left 10, top 8, right 160, bottom 70) goes outside the photo, which is 96 x 80 pixels: keep "
            "left and right within 0 to 96, top and bottom within 0 to 80. Nothing was changed.") in texts(at.error)
    assert not at.success and store.faces(ids=[record.id]) == [record]
    assert [field.value for field in box_inputs(at)] == [10, 8, 160, 70]  # what was typed stays
    assert at.image[0].captions[0] == "with_mask · no face found"

    set_box(at, (10, 8, 60, 70))  # corrected, it saves
    button(at, "Save this box").click()
    check(at.run())
    assert store.faces(ids=[record.id])[0].face.box == (10.0, 8.0, 60.0, 70.0)


def test_picking_the_other_face_of_a_two_person_photo_and_back(settings, store, detector, shared_data):
    store.add_image(two_person_photo(shared_data), "without_mask", "two *people*.jpg", detector)
    (record,) = store.faces()
    faces = store.detect_faces(record, detector)
    at = tick(open_page(), record)
    assert names(at) == [t.value for t in at.text] == ["two *people*.jpg"]  # in the gallery and in the editor
    assert button(at, "Use face 1 (in use)").disabled and not button(at, "Use face 2").disabled
    assert len(at.image) == 2  # the thumbnail and the preview with the faces numbered

    button(at, "Use face 2").click()
    check(at.run())
    assert "Face 2 of ` two *people*.jpg ` picked; training will use it." in texts(at.success)
    picked = store.faces()[0]
    assert (picked.face_source, picked.face.box) == ("manual", faces[1].box)
    assert button(at, "Use face 2 (in use)").disabled and not button(at, "Use face 1").disabled
    assert at.image[0].captions[0] == "without_mask · box set by hand"

    button(at, "Forget the box set by hand").click()
    check(at.run())
    assert "Face box of ` two *people*.jpg ` reset; training will use the face MTCNN found." in texts(at.success)
    assert store.faces() == [record]
    assert button(at, "Use face 1 (in use)").disabled


def test_a_burst_waits_for_a_free_camera_seat(settings, store, monkeypatch, seat_taken):
    """The Live page's streams and the bursts share MASKDET_LIVE_STREAMS: with the one seat taken elsewhere, the
    burst tab says so instead of opening the camera."""
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)  # renders under AppTest
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)
    at = open_page()
    at.radio(key="camera_mode").set_value("Bursts")
    check(at.run())
    assert not at.get("component_instance")
    assert ("The dashboard is full: it serves 1 camera stream at once. Take photos one per click meanwhile."
            in texts(at.warning))
    seat_taken()  # that stream ends
    button(at, "Try again").click()
    check(at.run())
    assert len(at.get("component_instance")) == 1


def test_a_voc_zip_asks_where_its_other_classes_go_then_shows_the_faces_of_each_photo(settings, store):
    archive = zip_bytes({
        "images/two.jpg": encode(pattern_image(1, (200, 120))), "images/one.jpg": encode(pattern_image(2, (90, 90))),
        "annotations/two.xml": voc(("with_mask", 11, 11, 60, 70), ("mask_weared_incorrect", 101, 21, 150, 90)),
        "annotations/one.xml": voc(("without_mask", 6, 6, 80, 80), ("hat", 1, 1, 30, 30))})
    at = open_page()
    at.file_uploader(key="upload_zip_0").set_value(("scenes.zip", archive, "application/zip"))
    check(at.run())
    assert ("A PASCAL VOC set with the classes without_mask, hat, with_mask, mask_weared_incorrect. Choose where each "
            "class the dataset does not have goes:") in texts(at.info)
    assert [box.label for box in at.selectbox if box.key.startswith("map_")] == [
        "Faces of hat", "Faces of mask_weared_incorrect"]
    assert at.selectbox(key="map_hat").value == "\x00new"  # a new class of its name, unless told otherwise
    at.selectbox(key="map_hat").set_value("\x00skip")
    at.selectbox(key="map_mask_weared_incorrect").set_value("without_mask")
    check(at.run())
    button(at, "Import the zip").click()
    check(at.run())
    assert "Import finished: added 2 photos with 3 faces." in texts(at.success)
    assert store.label_counts() == {"with_mask": 1, "without_mask": 2}
    captions = sorted(image.captions[0] for image in at.image)
    assert captions == ["with_mask · face 1 of 2 in its photo", "without_mask",
                        "without_mask · face 2 of 2 in its photo"]
