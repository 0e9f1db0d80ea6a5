"""The Live page (Streamlit AppTest) on a data home with a real trained model: the webcam component and its
settings, uploading model files, and annotating uploaded photos and videos. The stream itself is tested in a real
browser (test_browser_live.py)."""

import base64
import io
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
import streamlit_webrtc.component
from PIL import Image
from streamlit.testing.v1 import AppTest

from maskdet.serving import media
from maskdet.serving.classifier import load_classifier, write_threshold
from maskdet.serving.predict import predict_image
from maskdet.vision.clip import clip_photos, make_clip
from maskdet.vision.faces import FaceDetector, box_iou
from tests.conftest import download_data, encode, page_in_app, two_person_photo, video_bytes

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "5_Live.py")


@pytest.fixture
def webrtc_renders(monkeypatch):
    """streamlit-webrtc made to render under AppTest (which has no session manager); no ICE servers."""
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)


@pytest.fixture
def env(trained_home, monkeypatch, webrtc_renders):
    """The trained data home."""
    for key, value in trained_home.env.items():
        monkeypatch.setenv(key, value)
    return trained_home


def live_page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=120).run()


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def webrtc(at: AppTest) -> list[dict]:
    """The arguments of the streamlit-webrtc components on the page."""
    return [json.loads(element.proto.json_args) for element in at.get("component_instance")]


def upload(at: AppTest, key: str, name: str, data: bytes, mime: str) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, mime))
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def legend_items(at: AppTest) -> list[list[tuple[str, tuple[int, ...]]]]:
    """(name, colour) of each item of each colour legend on the page."""
    return [[(name, tuple(map(int, color.split(", "))))
             for color, name in re.findall(r"background: rgb\(([\d, ]+)\)\"></span> ([^<]+)</span>", element.value)]
            for element in at.get("html") if "<style>" not in element.value]  # not the page's style


# ---- without a model ---------------------------------------------------------------------------------------

def test_without_a_model_it_says_so_and_links_to_training(settings):
    at = page_in_app("pages/5_Live.py")
    assert not at.exception
    assert at.title[0].value == "Live"
    assert "No trained model yet" in at.info[0].value
    assert [link.proto.label for link in at.main.get("page_link")] == ["Train a model"]
    assert [u.label for u in at.file_uploader] == ["Model file"]  # an exported model can still be used
    assert not at.get("component_instance") and not at.selectbox


def test_without_a_trained_model_an_exported_one_can_be_used(settings, trained_home, webrtc_renders):
    at = upload(live_page(), "live-model-file-0", "from-elsewhere.onnx", trained_home.model.read_bytes(),
                "application/octet-stream")
    no_failure(at)
    kept = settings.home / media.UPLOADED_MODELS / "from-elsewhere.onnx"
    assert at.selectbox(key="live-model").value == str(kept)
    assert at.selectbox(key="live-model").format_func(str(kept)) == "from-elsewhere.onnx (uploaded)"
    assert webrtc(at) and not at.info


# ---- with the trained model --------------------------------------------------------------------------------

def test_the_camera_component_and_the_settings(env):
    at = live_page()
    no_failure(at)
    assert at.selectbox(key="live-model").value == str(env.model)  # the active run
    assert env.run_id in at.selectbox(key="live-model").format_func(at.selectbox(key="live-model").value)
    [arguments] = webrtc(at)
    assert arguments["mode"] == "SENDRECV" and arguments["rtc_configuration"] == {"iceServers": []}
    assert arguments["media_stream_constraints"] == {"video": {"width": 640, "height": 480}, "audio": False}
    # the model's own settings, which predict and the bundle use: no note that they differ
    assert at.slider(key="live-min-face").value == 20 and at.slider(key="live-detection").value == 0.0
    assert at.slider(key="live-threshold").value == 0.6 and at.select_slider(key="live-scale").value == 640
    assert at.number_input(key="live-max-faces").value == 200
    assert "differ from the model's own" not in texts(at.caption)
    assert [m.label for m in at.metric][:4] == ["frames processed", "frames dropped", "faces classified", "fps"]
    assert "https" in texts(at.markdown) and "localhost" in texts(at.markdown)
    assert [tab.label for tab in at.tabs] == ["Camera", "No camera? Upload a photo or video"]


def test_a_legend_beside_the_camera_and_above_a_photo_names_each_class_with_its_colour(env, shared_data):
    """The colours of the boxes: with_mask green, without_mask red, uncertain grey, as drawn on the faces."""
    legend = [("with_mask", (46, 160, 67)), ("without_mask", (214, 39, 40)), ("uncertain", (160, 160, 160))]
    at = live_page()
    no_failure(at)
    assert legend_items(at) == [legend]
    at = upload(at, "live-upload", "face.jpg", (shared_data / "without_mask" / "100.jpg").read_bytes(), "image/jpeg")
    no_failure(at)
    assert legend_items(at) == [legend, legend]


def hostile_legend() -> None:
    import ui

    ui.class_legend(["<img src=x onerror=alert(1)>", "with_mask"])


def test_a_class_name_in_the_legend_is_shown_as_text_never_as_html():
    """Class names come from model files, uploaded ones too."""
    at = AppTest.from_function(hostile_legend).run()
    assert not at.exception
    [legend] = at.get("html")
    assert "<img" not in legend.value
    assert legend_items(at) == [[("&lt;img src=x onerror=alert(1)&gt;", (214, 39, 40)), ("with_mask", (46, 160, 67)),
                                 ("uncertain", (160, 160, 160))]]


def test_each_session_streams_through_its_own_pipeline(env):
    """Two browser tabs never mix their tracked faces or counters; a rerun keeps the pipeline, new settings replace it."""
    first, second = live_page(), live_page()
    no_failure(first)
    pipeline = first.session_state["live-pipeline"]
    assert pipeline is not second.session_state["live-pipeline"]
    assert pipeline.classifier is second.session_state["live-pipeline"].classifier  # the model is loaded once
    assert first.run().session_state["live-pipeline"] is pipeline
    first.slider(key="live-threshold").set_value(0.8).run()
    assert first.session_state["live-pipeline"] is not pipeline
    assert first.session_state["live-pipeline"].settings.class_threshold == 0.8


def test_the_threshold_starts_from_the_one_saved_with_the_chosen_model(env, tmp_path):
    """A model whose threshold was chosen on the Metrics page (0.42 here, below the slider's usual 0.5) starts the
    slider there; the user's own value then stays while the model does; the active model has none saved: 0.6."""
    chosen = tmp_path / "chosen.onnx"
    write_threshold(env.model, 0.42, chosen)
    at = upload(live_page(), "live-model-file-0", "chosen.onnx", chosen.read_bytes(), "application/octet-stream")
    kept = env.root / "home" / media.UPLOADED_MODELS / "chosen.onnx"
    try:
        no_failure(at)
        assert at.selectbox(key="live-model").value == str(kept)
        slider = at.slider(key="live-threshold")
        assert (slider.value, slider.min, slider.max) == (0.42, 0.42, 0.99)
        assert "chosen on the Metrics page" in slider.help
        slider.set_value(0.7).run()
        assert at.slider(key="live-threshold").value == 0.7
        assert at.session_state["live-pipeline"].settings.class_threshold == 0.7
        at.selectbox(key="live-model").set_value(str(env.model)).run()
        no_failure(at)
        slider = at.slider(key="live-threshold")
        assert (slider.value, slider.min, slider.max) == (0.6, 0.5, 0.99)
        assert at.session_state["live-pipeline"].settings.class_threshold == 0.6
    finally:
        kept.unlink(missing_ok=True)


def test_a_bad_model_file_shows_why_and_changes_nothing(env):
    at = upload(live_page(), "live-model-file-0", "bad.onnx", b"not a model", "application/octet-stream")
    assert not at.exception
    assert "bad.onnx is not a readable ONNX model" in texts(at.error)
    assert at.selectbox(key="live-model").value == str(env.model)
    assert media.uploaded_models(env.root / "home") == []


def test_an_exported_model_file_is_kept_and_chosen(env):
    at = upload(live_page(), "live-model-file-0", "exported.onnx", env.model.read_bytes(), "application/octet-stream")
    kept = env.root / "home" / media.UPLOADED_MODELS / "exported.onnx"
    try:
        no_failure(at)
        assert "Added exported.onnx" in texts(at.success)
        assert at.selectbox(key="live-model").value == str(kept) and kept.read_bytes() == env.model.read_bytes()
        assert not at.file_uploader(key="live-model-file-1").value  # a fresh uploader
        assert webrtc(at)
    finally:
        kept.unlink(missing_ok=True)


def test_bad_ice_servers_say_so_and_uploads_still_work(env, monkeypatch, shared_data):
    monkeypatch.setenv("MASKDET_ICE_SERVERS", "[{urls: stun}")
    at = live_page()
    assert not at.exception
    assert "MASKDET_ICE_SERVERS is not valid JSON" in texts(at.error)
    assert not webrtc(at) and "camera stream is off" in texts(at.info)
    at = upload(at, "live-upload", "face.jpg", (shared_data / "without_mask" / "100.jpg").read_bytes(), "image/jpeg")
    assert at.image and at.dataframe[0].value["label"].tolist() == ["without_mask"]


# ---- uploads -------------------------------------------------------------------------------------------------

def test_an_uploaded_photo_is_annotated_with_a_table_and_a_download(env, shared_data, downloads):
    data = (shared_data / "with_mask" / "100-with-mask.jpg").read_bytes()
    at = upload(live_page(), "live-upload", "friend.jpg", data, "image/jpeg")
    no_failure(at)
    table = at.dataframe[0].value
    assert table["label"].tolist() == ["with_mask"] and table["probability"][0] > 0.6
    name, png = download_data(at, downloads)["Download the annotated photo"]
    assert name == "friend-annotated.png"
    size = Image.open(io.BytesIO(data)).size
    assert Image.open(io.BytesIO(png)).size == size
    [shown] = at.image
    assert shown.captions == ["friend.jpg, annotated"]
    assert shown.value[0].startswith("data:image/png;base64,")  # inside the page, not behind an open media URL
    assert Image.open(io.BytesIO(base64.b64decode(shown.value[0].split(",", 1)[1]))).size == size


def test_max_faces_applies_to_photos(env, shared_data):
    photos = [Image.open(shared_data / "without_mask" / f"{n}.jpg").convert("RGB").resize((300, 300))
              for n in ("100", "212")]
    group = np.hstack([np.asarray(photo) for photo in photos])
    at = live_page()
    at.number_input(key="live-max-faces").set_value(1)
    at = upload(at.run(), "live-upload", "group.jpg", encode(group), "image/jpeg")
    no_failure(at)
    assert len(at.dataframe[0].value) == 1
    assert "2 faces found; the 1 largest were classified" in texts(at.caption)


def test_a_photo_gives_the_faces_and_labels_maskdet_predict_gives(env, shared_data):
    data = two_person_photo(shared_data)
    at = upload(live_page(), "live-upload", "pair.jpg", data, "image/jpeg")
    no_failure(at)
    table = at.dataframe[0].value
    classifier = load_classifier(at.selectbox(key="live-model").value)  # the page's model (an int8 file, say)
    _, predicted = predict_image(data, FaceDetector.for_photos(classifier.detector), classifier, 40_000_000,
                                 classifier.class_threshold)
    assert len(predicted) >= 2
    assert list(table["box"]) == [", ".join(f"{v:.0f}" for v in p.box) for p in predicted]
    assert list(table["label"]) == [p.label for p in predicted]
    at.slider(key="live-min-face").set_value(100).run()  # a viewer's own setting: the page says answers differ
    assert "differ from the model's own" in texts(at.caption)
    at.button(key="live-settings-reset").click().run()
    assert at.slider(key="live-min-face").value == classifier.detector.min_face_size
    assert "differ from the model's own" not in texts(at.caption)


def test_a_photo_without_faces_says_what_to_try(env):
    at = upload(live_page(), "live-upload", "wall.png", encode(np.full((200, 300, 3), 180, np.uint8), "PNG"),
                "image/png")
    no_failure(at)
    assert "No face found" in texts(at.info)


def test_an_uploaded_video_is_annotated_with_a_player_and_a_download(env, shared_data, downloads):
    data = video_bytes(make_clip(clip_photos(shared_data), 10))
    at = upload(live_page(), "live-upload", "walk.mp4", data, "video/mp4")
    no_failure(at)
    assert not at.get("video")  # nothing happens before the button
    at.button(key="live-video-start").click().run()
    no_failure(at)
    [player] = at.get("video")
    assert downloads[Path(player.proto.url).stem][1][4:8] == b"ftyp"  # an mp4 file
    name, video = download_data(at, downloads)["Download the annotated video"]
    assert name == "walk-annotated.mp4"
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and len(list(container.decode(stream))) == 10
    assert "10 frames (1.0 s, 640x480)" in texts(at.caption)


@pytest.mark.parametrize("name, data, message", [
    ("broken.mp4", b"this is not a video", "not a video in a readable format"),
    ("long.mp4", video_bytes([np.zeros((32, 32, 3), np.uint8)] * 35, fps=1), "The video is 35 s long"),
], ids=["not-a-video", "too-long"])
def test_bad_videos_show_why(env, name, data, message):
    at = upload(live_page(), "live-upload", name, data, "video/mp4")
    at.button(key="live-video-start").click().run()
    assert not at.exception and not at.get("video")
    assert message in texts(at.error)


def test_a_full_dashboard_says_so_instead_of_starting_the_camera(env, seat_taken):
    """Another session streams and the dashboard serves one stream: a sentence and no camera component, then the
    camera once that stream has ended."""
    at = live_page()
    assert not at.exception and not at.error and not webrtc(at)
    assert [warning.value for warning in at.warning] == [
        "The dashboard is full: it serves 1 camera stream at once. Photos and videos can still be annotated in "
        "the next tab. (The limit is MASKDET_LIVE_STREAMS: more streams than cores slow every stream down.)"]
    assert [button.label for button in at.button] == ["Try again"]
    seat_taken()  # that stream ends
    at.button[0].click().run()
    assert webrtc(at) and not at.warning


# ---- adding a face to the dataset ------------------------------------------------------------------------------

@pytest.fixture
def fresh(settings, trained_home, webrtc_renders) -> AppTest:
    """The page on an empty dataset (not the trained home's), with the trained model uploaded."""
    return upload(live_page(), "live-model-file-0", "model.onnx", trained_home.model.read_bytes(),
                  "application/octet-stream")


def table_boxes(at: AppTest) -> list[tuple[float, ...]]:
    return [tuple(map(float, box.split(", "))) for box in at.dataframe[0].value["box"]]


def test_a_face_of_an_uploaded_photo_goes_into_the_dataset(fresh, store, shared_data):
    at = upload(fresh, "live-upload", "two [x](http://e.com).jpg", two_person_photo(shared_data), "image/jpeg")
    no_failure(at)
    assert at.image[0].captions == [r"two \[x\](http://e.com).jpg, annotated"]  # the name shown, not a link
    assert at.selectbox(key="live-photo-add-face").options == ["face 1", "face 2", "all faces"]
    at.selectbox(key="live-photo-add-face").set_value(2)
    at.selectbox(key="live-photo-add-class").set_value("with_mask")
    at.button(key="live-photo-add").click().run()
    no_failure(at)
    assert texts(at.success) == "Added ` two [x](http://e.com).jpg ` to with_mask with face 2's box."
    [photo] = store.faces()
    assert (photo.label, photo.face_source) == ("with_mask", "manual")
    assert box_iou(photo.face.box, table_boxes(at)[1]) > 0.7

    at.button(key="live-photo-add").click().run()  # the same face again, nothing lost
    assert texts(at.info) == ("` two [x](http://e.com).jpg ` is already in the dataset with face 2 as with_mask: "
                              "nothing added.")
    assert store.faces() == [photo]

    store.add_label("hat")
    at.run().selectbox(key="live-photo-add-class").set_value("hat")
    store.delete_label("hat")  # by another session, meanwhile
    at.button(key="live-photo-add").click().run()
    assert not at.exception and not at.success
    assert texts(at.error) == ("The class hat is not in the dataset any more (deleted meanwhile?): choose another "
                               "class. Nothing was added.")
    assert at.selectbox(key="live-photo-add-class").options == ["with_mask", "without_mask", "hat (deleted)"]
    assert store.faces() == [photo]


def test_a_face_of_a_video_frame_goes_into_the_dataset(fresh, store, shared_data):
    at = upload(fresh, "live-upload", "walk.mp4", video_bytes(make_clip(clip_photos(shared_data), 10)), "video/mp4")
    at.button(key="live-video-start").click().run()
    at.number_input(key="live-frame-number").set_value(3)
    at.button(key="live-frame-show").click().run()
    no_failure(at)
    assert [image.captions for image in at.image] == [["walk-frame3.jpg, annotated"]]
    at.button(key="live-frame-add").click().run()
    no_failure(at)
    assert texts(at.success) == "Added ` walk-frame3.jpg ` to with_mask with face 1's box."
    [frame] = store.faces()
    assert (frame.source_name, frame.label, frame.width, frame.height) == ("walk-frame3.jpg", "with_mask", 640, 480)
    assert frame.face_source == "manual" and box_iou(frame.face.box, table_boxes(at)[0]) > 0.7
