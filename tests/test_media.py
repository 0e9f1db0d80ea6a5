"""maskdet.serving.media: uploaded photos and videos annotated by a real model, the webcam frame callback, uploaded
models."""

import asyncio
import hashlib
import io
import logging
import re
import shutil
import struct
import time
import wave
from dataclasses import replace

import av
import numpy as np
import pytest
from PIL import Image

from maskdet.core.contract import Preprocess
from maskdet.core.errors import StoreError
from maskdet.serving import media
from maskdet.serving.classifier import NotAMaskdetModel, load_classifier
from maskdet.serving.live import LivePipeline, LiveSettings, StreamSeats
from maskdet.training import export
from maskdet.training.export import export_classifier
from maskdet.training.model import MaskNet
from maskdet.vision.clip import clip_photos, make_clip
from maskdet.vision.faces import CropRule, box_iou
from tests.conftest import encode, two_person_photo, video_bytes

MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def model(trained_home):
    return load_classifier(trained_home.model)


@pytest.fixture(scope="module")
def clip(shared_data) -> list[np.ndarray]:
    """20 frames of 640x480 with one face moving (masks-small photos)."""
    return make_clip(clip_photos(shared_data), 20)


def photo_pipeline(model, **detector) -> LivePipeline:
    """The Live page's photo pipeline with the model's own settings, changed by `detector` (DetectorSettings)."""
    own = LiveSettings.of_model(model)
    return LivePipeline(model, media.photo_settings(replace(own, detector=replace(own.detector, **detector))))


def group_photo(photos: list, size=(900, 300)) -> bytes:
    """A JPEG of the given photos side by side."""
    canvas = Image.new("RGB", size, (90, 110, 100))
    width = size[0] // len(photos)
    for index, path in enumerate(photos):
        photo = Image.open(path).convert("RGB")
        photo.thumbnail((width, size[1]))
        canvas.paste(photo, (index * width, 0))
    return encode(np.asarray(canvas))


def decoded(data: bytes) -> tuple[str, list[np.ndarray]]:
    """Codec name and RGB frames of a video file."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


# ---- photos --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, label", [("without_mask/100.jpg", "without_mask"),
                                         ("with_mask/100-with-mask.jpg", "with_mask")])
def test_a_photo_is_annotated_with_its_label(model, shared_data, path, label):
    data = (shared_data / path).read_bytes()
    result = media.annotate_photo(data, photo_pipeline(model), MAX_PIXELS)
    original = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    picture = np.asarray(Image.open(io.BytesIO(result.png)))
    assert picture.shape == original.shape and (picture != original).any()  # same size, boxes drawn
    assert [p.label for p in result.predictions] == [label] and result.faces_found == 1
    rows = media.prediction_rows(result.predictions)
    assert rows[0]["face"] == 1 and rows[0]["label"] == label
    assert set(rows[0]) == {"face", "label", "probability", "p(with_mask)", "p(without_mask)", "box"}


def test_every_photo_is_detected_afresh(model, shared_data):
    pipeline = photo_pipeline(model)
    first = media.annotate_photo((shared_data / "without_mask" / "100.jpg").read_bytes(), pipeline, MAX_PIXELS)
    blank = media.annotate_photo(encode(np.full((300, 400, 3), 200, np.uint8)), pipeline, MAX_PIXELS)
    assert len(first.predictions) == 1 and blank.predictions == [] and blank.faces_found == 0


def test_faces_beyond_max_faces_are_counted_not_classified(model, shared_data):
    photos = [shared_data / "without_mask" / f"{n}.jpg" for n in ("100", "212", "37")]
    result = media.annotate_photo(group_photo(photos), photo_pipeline(model, max_faces=2, min_face_size=30),
                                  MAX_PIXELS)
    assert result.faces_found == 3 and len(result.predictions) == 2


@pytest.mark.parametrize("data, message", [(b"not a photo", "not an image file"), (b"", "empty file")])
def test_files_that_are_not_photos(model, data, message):
    with pytest.raises(ValueError, match=message):
        media.annotate_photo(data, photo_pipeline(model), MAX_PIXELS)


def test_a_photo_above_the_pixel_limit_is_refused(model):
    with pytest.raises(ValueError, match="image too large"):
        media.annotate_photo(encode(np.zeros((100, 100, 3), np.uint8)), photo_pipeline(model), 5_000)


# ---- a face into the dataset --------------------------------------------------------------------

def test_a_face_goes_in_with_its_photo_and_another_face_beside_it_in_the_same_photo(model, store, detector,
                                                                                     shared_data):
    data = two_person_photo(shared_data)
    boxes = [p.box for p in media.annotate_photo(data, photo_pipeline(model), MAX_PIXELS).predictions]
    assert len(boxes) == 2
    added = media.add_face(store, data, "two.jpg", 2, boxes[1], "with_mask", detector)
    assert added == media.AddedFace(True, "Added two.jpg to with_mask with face 2's box.")
    [photo] = store.faces()
    assert (photo.label, photo.source_name, photo.face_source) == ("with_mask", "two.jpg", "manual")
    assert photo.sha256 == hashlib.sha256(data).hexdigest()  # the file as uploaded
    assert box_iou(photo.face.box, boxes[1]) > 0.7 and photo.face.landmarks  # MTCNN's face there, with landmarks

    again = media.add_face(store, data, "two.jpg", 2, boxes[1], "without_mask", detector)
    assert again == media.AddedFace(False, "two.jpg is already in the dataset with face 2 as with_mask: nothing "
                                           "added.")
    assert store.faces() == [photo]

    other = media.add_face(store, data, "two.jpg", 1, boxes[0], "without_mask", detector, quote=repr)
    assert other == media.AddedFace(True, "Added face 1 of 'two.jpg' to without_mask: the photo was in the dataset "
                                          "already, and now holds 2 faces.")
    [beside] = store.faces(label="without_mask")
    assert (beside.photo_id, beside.face_source) == (photo.photo_id, "manual") and beside.face.landmarks
    assert box_iou(beside.face.box, boxes[0]) > 0.7
    assert media.add_face(store, data, "two.jpg", 1, boxes[0], "with_mask", detector) == media.AddedFace(
        False, "two.jpg is already in the dataset with face 1 as without_mask: nothing added.")
    assert store.faces() == [photo, beside] and store.count_photos() == 1


def test_a_class_deleted_meanwhile_or_a_rejected_file_is_a_sentence_and_nothing_is_added(store, detector):
    store.add_label("hat")
    store.delete_label("hat")
    with pytest.raises(StoreError, match="^The class hat is not in the dataset any more"):
        media.add_face(store, encode(np.zeros((64, 64, 3), np.uint8)), "x.jpg", 1, (8, 8, 40, 40), "hat", detector)
    with pytest.raises(StoreError, match="^x.jpg was not added: image too small: 6x6 pixels.$"):
        media.add_face(store, encode(np.zeros((6, 6, 3), np.uint8)), "x.jpg", 1, (0, 0, 6, 6), "with_mask", detector)
    assert store.faces() == [] and store.labels() == ["with_mask", "without_mask"]


# ---- videos --------------------------------------------------------------------------------------

def test_a_video_is_annotated_frame_by_frame(model, clip, tmp_path):
    calls = []
    source = tmp_path / "clip.mp4"
    source.write_bytes(video_bytes(clip))
    result = media.annotate_video(source, LivePipeline(model), lambda done, total: calls.append((done, total)))
    codec, frames = decoded(result.data)
    assert (result.mime, result.suffix, codec) == ("video/mp4", "mp4", "h264")
    assert len(frames) == result.frames == 20 and frames[0].shape == (480, 640, 3)
    assert (result.width, result.height, result.seconds) == (640, 480, 2.0)
    assert result.counters.frames == 20 and result.counters.faces_classified > 0
    assert set(result.counters.labels) <= {"with_mask", "without_mask", "uncertain"}
    assert calls[0] == (1, 20) and calls[-1] == (20, 20)
    below_overlay = [np.abs(out[60:].astype(int) - original[60:]).max(axis=2) > 60 for out, original in zip(frames, clip)]
    assert max(changed.mean() for changed in below_overlay) > 0.002  # face boxes and labels drawn


@pytest.mark.parametrize("size, rotation, expected", [
    ((161, 121), 0, (160, 120)),  # odd sides: H.264 needs even ones
    ((96, 64), 90, (64, 96)),  # a phone video: turned upright
    ((1600, 1200), 0, (1280, 960)),  # scaled down to MAX_VIDEO_SIDE
])
def test_odd_rotated_and_large_frames(model, clip, size, rotation, expected):
    frames = [np.asarray(Image.fromarray(frame).resize(size)) for frame in clip[:3]]
    data = video_bytes(frames, container_format="mov", codec="png", pixel_format="rgb24", rotation=rotation)
    result = media.annotate_video(data, LivePipeline(model))
    _, decoded_frames = decoded(result.data)
    assert (result.width, result.height) == expected and decoded_frames[0].shape == (expected[1], expected[0], 3)
    assert len(decoded_frames) == 3


def test_rotation_turns_the_picture_counterclockwise(model):
    frame = np.zeros((200, 320, 3), np.uint8)
    frame[:50, :80] = 255  # a white block top left
    data = video_bytes([frame], container_format="mov", codec="png", pixel_format="rgb24", rotation=90)
    _, frames = decoded(media.annotate_video(data, LivePipeline(model)).data)
    assert frames[0].shape == (320, 200, 3)
    assert frames[0][245:, :45].min() > 200 and frames[0][40:235].max() < 60  # now bottom left, the rest dark


def test_a_frame_of_the_annotated_video_is_decoded_again(clip, monkeypatch):
    data = video_bytes(clip[:6])

    def closest(number: int) -> int:
        frame = np.asarray(Image.open(io.BytesIO(media.video_frame(data, number)))).astype(int)
        assert frame.shape == (480, 640, 3)
        return int(np.argmin([np.abs(frame - original).mean() for original in clip[:6]]))

    assert closest(4) == 3
    with pytest.raises(ValueError, match=r"^The video has 6 frames: choose one from 1 to 6.$"):
        media.video_frame(data, 7)
    monkeypatch.setattr(media, "MAX_ANNOTATED_FRAMES", 3)  # every other frame annotated
    assert closest(2) == 2


def test_a_video_above_the_length_limit_is_refused(model):
    tiny = [np.zeros((32, 32, 3), np.uint8)] * 40
    with pytest.raises(ValueError, match="The video is 40 s long; the limit is 30 s"):
        media.annotate_video(video_bytes(tiny, fps=1), LivePipeline(model))
    raw = video_bytes(tiny, container_format="h264")  # no duration in the header: counted while decoding
    with pytest.raises(ValueError, match="more frames than 1 s at 25 frames a second"):
        media.annotate_video(raw, LivePipeline(model), max_seconds=1)


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(bytes(16000))
    return buffer.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"this is not a video", "not a video in a readable format"),
    (encode(np.zeros((64, 64, 3), np.uint8), "PNG"), "still image, not a video"),
    (wav_bytes(), "no video track"),
], ids=["text", "png", "wav"])
def test_files_that_are_not_videos(model, data, message):
    with pytest.raises(ValueError, match=message):
        media.annotate_video(data, LivePipeline(model))


def test_without_h264_the_video_is_vp8_webm(model, clip, monkeypatch):
    monkeypatch.setattr(media, "ENCODERS", (("no-such-codec", "mp4", "video/mp4"), *media.ENCODERS[1:]))
    result = media.annotate_video(video_bytes(clip[:4]), LivePipeline(model))
    codec, frames = decoded(result.data)
    assert (result.mime, result.suffix, codec, len(frames)) == ("video/webm", "webm", "vp8", 4)
    monkeypatch.setattr(media, "ENCODERS", (("no-such-codec", "mp4", "video/mp4"),))
    with pytest.raises(ValueError, match="neither H.264 nor VP8"):
        media.video_encoder()


# ---- the webcam callback -------------------------------------------------------------------------

def test_frames_callback_annotates_the_newest_frame_counts_the_dropped_and_logs(model, clip, monkeypatch, caplog):
    monkeypatch.setattr(media, "LOG_EVERY", 2)
    pipeline, seats = LivePipeline(model), StreamSeats(1)
    callback = media.frames_callback(pipeline, seats)
    queued = [clip[0:1], clip[1:4], clip[4:5], clip[5:7]]  # frames arrived while the pipeline was busy: 2, then 1
    with caplog.at_level(logging.INFO, logger="maskdet.serving.live"):
        outputs = [asyncio.run(callback([av.VideoFrame.from_ndarray(f, format="rgb24") for f in frames]))
                   for frames in queued]
        assert not seats.open_for(LivePipeline(model), time.perf_counter())  # the stream holds the one seat
        media.ended_callback(pipeline, seats)()
    assert seats.open_for(LivePipeline(model), time.perf_counter())  # freed when it ended
    assert [len(out) for out in outputs] == [1, 1, 1, 1]
    assert all((out[0].width, out[0].height) == (640, 480) for out in outputs)
    assert (outputs[1][0].to_ndarray(format="rgb24") != clip[3]).any()  # the newest frame, annotated
    lines = [record.getMessage() for record in caplog.records]
    assert [", ".join(line.split(", ")[:2]) for line in lines] == ["live: 2 frames, 2 dropped",
                                                                   "live: 4 frames, 3 dropped",
                                                                   "live stream ended: 4 frames, 3 dropped"]
    assert re.search(r"[1-9]\d* faces classified \(.*with", lines[-1])  # with_mask or without_mask, counted
    assert re.search(r" [1-9][\d.]* fps$", lines[-1])


def test_a_stream_beyond_the_capacity_gets_its_picture_back_unprocessed_with_the_reason(model, clip):
    seats = StreamSeats(1)
    first, second = LivePipeline(model), LivePipeline(model)
    frames = [av.VideoFrame.from_ndarray(clip[0], format="rgb24")]
    asyncio.run(media.frames_callback(first, seats)(frames))
    picture = asyncio.run(media.frames_callback(second, seats)(frames))[0].to_ndarray(format="rgb24")
    assert second.snapshot().frames == 0 and first.snapshot().frames == 1
    assert (picture[:20] != clip[0][:20]).any() and (picture[-200:] == clip[0][-200:]).all()  # the message on top
    assert media.full_message(seats) == ["The dashboard is full: it serves 1 camera stream at once.",
                                         "Press STOP, and try again when one ends."]


# ---- uploaded models -----------------------------------------------------------------------------

def test_an_uploaded_model_is_kept_and_a_bad_one_leaves_nothing(trained_home, tmp_path):
    good = trained_home.model.read_bytes()
    path = media.save_uploaded_model(tmp_path, "my model (1).onnx", good)
    assert path == tmp_path / media.UPLOADED_MODELS / "my-model-1.onnx" and path.read_bytes() == good
    assert media.uploaded_models(tmp_path) == [path]
    with pytest.raises(NotAMaskdetModel, match="my-model-1.onnx is not a readable ONNX model"):
        media.save_uploaded_model(tmp_path, "my model (1).onnx", b"garbage")
    assert path.read_bytes() == good  # the earlier upload of that name is kept
    assert sorted(p.name for p in (tmp_path / media.UPLOADED_MODELS).iterdir()) == ["my-model-1.onnx"]
    assert media.uploaded_models(tmp_path / "elsewhere") == []


# ---- bounded cost: what a video or model file may make maskdet do --------------------------------------------------

@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A maskdet model with random weights (64-pixel crops): enough where the labels do not matter."""
    preprocess = Preprocess(input_size=64)
    path = export_classifier(MaskNet(2, preprocess).eval(), tmp_path_factory.mktemp("untrained") / "model.onnx",
                             ["with_mask", "without_mask"], preprocess, CropRule(1.25, 64))
    return load_classifier(path)


def test_frames_above_the_size_limit_are_refused_before_any_is_annotated(untrained, monkeypatch):
    monkeypatch.setattr(media, "MAX_VIDEO_PIXELS", 64 * 64)
    pipeline = LivePipeline(untrained)
    with pytest.raises(ValueError) as error:
        media.annotate_video(video_bytes([np.zeros((64, 96, 3), np.uint8)] * 3), pipeline)
    assert str(error.value) == ("The video's frames are 96x64 pixels; the limit is 4,096 pixels a frame. Export it "
                                "at Full HD (1920x1080) or less and upload it again.")
    assert pipeline.snapshot().frames == 0


def test_a_header_that_understates_the_length_is_caught_while_decoding(untrained):
    frames = [np.full((64, 64, 3), index * 6, np.uint8) for index in range(40)]
    data = bytearray(video_bytes(frames, container_format="matroska"))  # 4 s at 10 frames a second
    at = data.index(b"\x44\x89")  # the Segment Info's Duration element: ID, size, a float of milliseconds
    width = data[at + 2] & 0x0F
    data[at + 3:at + 3 + width] = struct.pack(">d" if width == 8 else ">f", 1000.0)
    with av.open(io.BytesIO(bytes(data))) as container:
        assert media.video_seconds(container, container.streams.video[0]) == 1.0  # the lie
    with pytest.raises(ValueError, match="^The video has more frames than 2 s at 10 frames a second: trim it"):
        media.annotate_video(bytes(data), LivePipeline(untrained), max_seconds=2)


def test_a_video_of_more_frames_than_annotated_is_sampled_evenly(untrained, monkeypatch):
    frames = [np.full((64, 64, 3), index * 8, np.uint8) for index in range(30)]
    result = media.annotate_video(video_bytes(frames, fps=30), LivePipeline(untrained))
    assert (result.frames, result.seconds) == (30, 1.0)  # a short clip keeps every frame
    monkeypatch.setattr(media, "MAX_ANNOTATED_FRAMES", 10)
    result = media.annotate_video(video_bytes(frames, fps=30), LivePipeline(untrained))
    assert (result.frames, result.seconds, result.counters.frames) == (10, 1.0, 10)  # every third frame
    assert len(decoded(result.data)[1]) == 10


def test_a_header_that_understates_the_length_never_gets_more_frames_annotated(untrained, monkeypatch):
    frames = [np.full((64, 64, 3), index * 6, np.uint8) for index in range(40)]
    data = bytearray(video_bytes(frames, container_format="matroska"))  # 4 s at 10 frames a second
    at = data.index(b"\x44\x89")  # the Segment Info's Duration element, as above: now 1 s
    data[at + 3:at + 3 + (data[at + 2] & 0x0F)] = struct.pack(">d" if data[at + 2] & 0x0F == 8 else ">f", 1000.0)
    monkeypatch.setattr(media, "MAX_ANNOTATED_FRAMES", 12)
    with pytest.raises(ValueError, match=r"^The video has more frames than its header says \(10\)"):
        media.annotate_video(bytes(data), LivePipeline(untrained))


def test_an_uploaded_model_whose_metadata_does_not_fit_leaves_nothing(untrained, tmp_path):
    hostile = tmp_path / "hostile.onnx"
    shutil.copyfile(untrained.path, hostile)
    export.write_metadata(hostile, ["with_mask", "without_mask"], Preprocess(input_size=100_000),
                          CropRule(1.25, 100_000), untrained.detector)  # each crop would take 30 GB
    with pytest.raises(NotAMaskdetModel, match="^hostile.onnx declares 100000-pixel inputs, 100000-pixel crops"):
        media.save_uploaded_model(tmp_path / "home", "hostile.onnx", hostile.read_bytes())
    assert list((tmp_path / "home" / media.UPLOADED_MODELS).iterdir()) == []
