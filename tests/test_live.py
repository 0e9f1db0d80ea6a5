"""The live frame pipeline on generated frames and on frames built from real photos."""

import threading
import time

import numpy as np
import pytest
from PIL import Image

from maskdet.core.contract import Preprocess
from maskdet.serving.classifier import load_classifier
from maskdet.bundle.mtcnn_cascade import DetectorSettings
from maskdet.serving.live import (MAX_DETECT_EVERY, RATE_WINDOW_SECONDS, Cadence, LivePipeline, LiveSettings, LoadShare,
                                  RateWindow, StreamSeats, as_rgb)
from maskdet.serving.predict import classify_faces
from maskdet.training import export
from maskdet.training.model import MaskNet
from maskdet.vision.faces import CropRule, FaceDetector, box_iou

LABELS = ["with_mask", "without_mask"]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A maskdet ONNX model with random weights: enough for everything but label correctness."""
    path = tmp_path_factory.mktemp("untrained") / "model.onnx"
    model = MaskNet(2, Preprocess(input_size=64)).eval()
    return load_classifier(export.export_classifier(model, path, LABELS, Preprocess(input_size=64),
                                                    CropRule(1.25, 64)))


@pytest.fixture(scope="module")
def trained(trained_home):
    """A real model: conftest's trained data home (24 photo pairs of masks-small and the ImageNet weights)."""
    return load_classifier(trained_home.model)


def frame_of(photos: list, size=(640, 480)) -> np.ndarray:
    """A frame with the given photos side by side, each scaled to the frame height (a group photo)."""
    frame = Image.new("RGB", size, (90, 110, 100))
    x = 0
    for path in photos:
        photo = Image.open(path).convert("RGB")
        width = size[0] // len(photos)
        photo.thumbnail((width, size[1]))
        frame.paste(photo, (x + (width - photo.width) // 2, (size[1] - photo.height) // 2))
        x += width
    return np.asarray(frame)


def test_blank_frame_has_no_faces_but_an_overlay(untrained):
    pipeline = LivePipeline(untrained)
    frame = np.full((480, 640, 3), 200, np.uint8)
    annotated, result = pipeline.process(frame)
    assert annotated.shape == frame.shape and result.predictions == [] and result.detected
    assert (annotated[:20, :200] != 200).any()  # the fps / timing overlay
    assert (annotated[200:] == 200).all()
    assert set(result.timings_ms) == {"detect", "classify", "annotate", "total"}


@pytest.mark.parametrize("frame", [
    np.zeros((8, 8, 3), np.uint8), np.zeros((100, 2000, 3), np.uint8), np.zeros((480, 640), np.uint8),
    np.zeros((480, 640, 4), np.uint8), np.zeros((481, 641, 1), np.uint8),
], ids=["tiny", "wide", "gray", "rgba", "one-channel"])
def test_frames_of_odd_sizes(untrained, frame):
    annotated, result = LivePipeline(untrained).process(frame)
    assert annotated.shape == (*frame.shape[:2], 3) and annotated.dtype == np.uint8
    assert result.predictions == []


def test_as_rgb():
    assert as_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    rgba = np.arange(4 * 5 * 4, dtype=np.uint8).reshape(4, 5, 4)
    assert (as_rgb(rgba) == rgba[..., :3]).all() and as_rgb(rgba).flags.c_contiguous


def test_real_faces_are_found_and_tracked_between_detections(untrained, shared_data):
    pipeline = LivePipeline(untrained, LiveSettings(detect_every=3))
    frame = frame_of([shared_data / "without_mask" / "100.jpg", shared_data / "with_mask" / "212-with-mask.jpg"])
    results = [pipeline.process(frame)[1] for _ in range(4)]
    assert [r.detected for r in results] == [True, False, False, True]
    assert all(len(r.predictions) == 2 for r in results)
    for tracked in results[1:3]:  # the same frame: each tracked box stays on its face (0.87 at 640 px, 0.91 at 320)
        assert all(box_iou(p.box, q.box) > 0.8 for p, q in zip(tracked.predictions, results[0].predictions))
    left, right = sorted(results[0].predictions, key=lambda p: p.box[0])
    assert left.box[2] <= 320 <= right.box[0]  # one face in each half
    counters = pipeline.snapshot()
    assert (counters.frames, counters.detections, counters.faces_classified) == (4, 2, 8)


@pytest.mark.parametrize("burst", [1, 2, 3])
def test_fps_is_frames_over_wall_clock_even_when_frames_come_in_bursts(burst):
    """30 frames a second, in bursts of `burst` frames 2 ms apart: a mean of 1/Δt would say up to 500 fps."""
    window, period = RateWindow(seconds=3.0), burst / 30
    for index in range(300):
        start = (index // burst) * period + (index % burst) * 0.002
        window.add(start, start + 0.001, {"detect": 4.0, "classify": 2.0})
        if start > 3.5:  # past the first window: read it between the frames of a burst and between bursts
            assert window.fps(start + 0.001) == pytest.approx(30, rel=0.05)
            assert window.fps(start + 0.02) == pytest.approx(30, rel=0.05)


def test_fps_starts_from_the_first_frame_and_falls_when_frames_stop():
    window = RateWindow(seconds=3.0)
    assert window.fps(10.0) == 0.0 and window.stage_ms(10.0) == {"detect": 0.0, "classify": 0.0}
    for index in range(10):
        window.add(10 + index * 0.1, 10.05 + index * 0.1, {"detect": 10.0 * (index % 2), "classify": 3.0})
    assert window.fps(11.0) == pytest.approx(10)  # 10 frames in the first second
    assert window.stage_ms(11.0) == {"detect": 5.0, "classify": 3.0}
    assert window.fps(13.5) == pytest.approx(5 / 3)  # the camera stopped at 11 s: 5 frames left in the window
    assert window.fps(20.0) == 0.0


def test_the_overlay_and_the_snapshot_show_the_same_window_figures(untrained, shared_data):
    """Detection runs on every 3rd frame only, so the stage milliseconds are averages over the window's frames."""
    pipeline = LivePipeline(untrained, LiveSettings(detect_every=3))
    frame = frame_of([shared_data / "without_mask" / "100.jpg"])
    began = time.perf_counter()
    results = [pipeline.process(frame, dropped=index % 2)[1] for index in range(7)]
    snapshot = pipeline.snapshot()
    elapsed = time.perf_counter() - began
    assert (snapshot.frames, snapshot.dropped) == (7, 3)
    assert 7 / elapsed <= snapshot.fps <= 7 / sum(r.timings_ms["total"] for r in results) * 1000
    for stage in ("detect", "classify"):
        assert snapshot.stage_ms[stage] == pytest.approx(np.mean([r.timings_ms[stage] for r in results]))


def test_tracking_follows_a_moving_face_and_drops_a_lost_one(untrained, shared_data):
    pipeline = LivePipeline(untrained, LiveSettings(detect_every=100))
    photo = Image.open(shared_data / "without_mask" / "100.jpg").convert("RGB")
    photo.thumbnail((300, 300))
    frames = []
    for step in range(6):  # 12 pixels a frame to the right and down, growing 4 pixels a frame
        frame = Image.new("RGB", (640, 480), (90, 110, 100))
        frame.paste(photo.resize((photo.width + 4 * step, photo.height + 4 * step)), (100 + 12 * step, 60 + 12 * step))
        frames.append(np.asarray(frame))
    detector = FaceDetector(detect_side=320, fallback_side=320, min_face_size=20)
    for frame in frames:
        _, result = pipeline.process(frame)
        fresh = detector.detect([frame])[0]
        assert len(result.predictions) == 1 and box_iou(result.predictions[0].box, fresh[0].box) > 0.8
    _, result = pipeline.process(np.full((480, 640, 3), 200, np.uint8))
    assert result.predictions == [] and not result.detected


def test_crowded_frames_are_capped_and_say_so(untrained, shared_data):
    photos = [shared_data / "without_mask" / f"{n}.jpg" for n in ("100", "212", "37")]
    pipeline = LivePipeline(untrained, LiveSettings(DetectorSettings(max_faces=2, min_face_size=30)))
    annotated, result = pipeline.process(frame_of(photos, (900, 300)))
    assert result.faces_found == 3 and len(result.predictions) == 2
    areas = sorted(((p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in result.predictions), reverse=True)
    assert areas[-1] > 0


def test_batch_and_single_face_paths_agree(untrained, shared_data):
    frame = frame_of([shared_data / "without_mask" / "100.jpg", shared_data / "with_mask" / "212-with-mask.jpg"])
    pipeline = LivePipeline(untrained)
    faces = pipeline.detector.detect([frame])[0]
    batch = classify_faces(frame, faces, untrained)
    single = [classify_faces(frame, [face], untrained)[0] for face in faces]
    for together, alone in zip(batch, single):
        assert together.label == alone.label
        assert together.probability == pytest.approx(alone.probability, abs=1e-5)


def test_thread_safety(untrained, shared_data):
    pipeline = LivePipeline(untrained)
    frame = frame_of([shared_data / "without_mask" / "100.jpg"])
    errors = []

    def worker():
        try:
            for _ in range(3):
                annotated, result = pipeline.process(frame)
                assert annotated.shape == frame.shape and len(result.predictions) == 1
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counters = pipeline.snapshot()
    assert counters.frames == 12 and counters.faces_classified == 12


def test_labels_of_a_trained_model_are_correct(trained, shared_data):
    pipeline = LivePipeline(trained, LiveSettings(class_threshold=0.5))
    frame = frame_of([shared_data / "without_mask" / "100.jpg", shared_data / "with_mask" / "100-with-mask.jpg"])
    _, result = pipeline.process(frame)
    left, right = sorted(result.predictions, key=lambda p: p.box[0])
    assert (left.label, right.label) == ("without_mask", "with_mask")
    assert pipeline.snapshot().labels == {"without_mask": 1, "with_mask": 1}


# ---- the cadence of live streams under load (Cadence) ----------------------------------------------

def feed(cadences: list[Cadence], seconds: float, start: float = 0.0, detect_s: float = 0.05, track_s: float = 0.01,
         fps: int = 30) -> float:
    """Frames at `fps` to each stream for `seconds`, on a clock of our own: like streamlit-webrtc's worker, a stream
    that is free takes the newest frame (the others that came meanwhile are dropped) and spends `detect_s` on it
    when its cadence says detect, else `track_s`; a frame that its cadence skips costs nothing. Returns the end."""
    state = {id(c): {"free": start, "arrived": 0, "tracked": None} for c in cadences}
    for tick in range(round(seconds * fps)):
        now = start + tick / fps
        for cadence in cadences:
            stream = state[id(cadence)]
            stream["arrived"] += 1
            if now < stream["free"] or cadence.skip(now):
                continue
            detect = stream["tracked"] is None or stream["tracked"] >= cadence.interval - 1
            stream["tracked"] = 0 if detect else stream["tracked"] + 1
            end = now + (detect_s if detect else track_s)
            cadence.processed(now, end, detect, stream["arrived"])
            stream["free"], stream["arrived"] = end, 0
    return start + seconds


def test_one_stream_alone_keeps_its_detection_interval():
    """One stream has the whole budget: busy all the time is not over it (1 on a 2-core machine)."""
    cadence = Cadence(3, LoadShare(budget=1.0))
    feed([cadence], 10, detect_s=0.08, track_s=0.03)  # slower than the camera: frames are dropped
    assert cadence.live and cadence.interval == 3 and not cadence.skipping


def test_two_streams_detect_less_often_until_each_is_within_its_share():
    load = LoadShare(budget=1.0)
    streams = [Cadence(3, load), Cadence(3, load)]
    end = feed(streams, 4)
    intervals = [s.interval for s in streams]
    end = feed(streams, 6, start=end)
    for stream in streams:
        # busy at interval n: 30 frames/s x (50 ms + (n - 1) x 10 ms) / n, at most the share 0.5 from n = 6 on
        assert 6 <= stream.interval <= 12 and not stream.skipping
        assert stream.busy(end) <= stream.share == 0.5
    assert [s.interval for s in streams] == intervals  # settled within the first seconds, no swinging


def test_four_streams_also_skip_frames_and_step_back_when_the_others_stop():
    load = LoadShare(budget=1.0)
    streams = [Cadence(3, load) for _ in range(4)]
    end = feed(streams, 6)
    for stream in streams:  # tracking alone (10 ms at 30 fps) is over a share of 0.25: skip frames
        assert stream.interval == MAX_DETECT_EVERY and stream.skipping
        assert stream.busy(end) <= stream.share * 1.1
    end = feed(streams[:1], 20, start=end)  # the others ended: this stream has the whole budget again
    assert streams[0].interval == 3 and not streams[0].skipping


def test_a_file_whose_every_frame_is_processed_never_adapts():
    cadence = Cadence(3, LoadShare(budget=0.1))
    for index in range(300):  # back to back, nothing dropped: an uploaded video
        cadence.processed(index * 0.05, index * 0.05 + 0.05, index % 3 == 0, 1)
    assert not cadence.live and cadence.interval == 3 and not cadence.skip(15.0)


def test_a_skipped_frame_shows_the_last_annotated_frame_again_and_counts_as_dropped(untrained, shared_data):
    pipeline = LivePipeline(untrained, LiveSettings(detect_every=3), load=LoadShare(budget=1.0))
    frame = frame_of([shared_data / "without_mask" / "100.jpg"])
    annotated, first = pipeline.process(frame, dropped=1)  # frames dropped: a live stream
    assert pipeline.cadence.live and not first.skipped
    pipeline.cadence.skipping, pipeline.cadence.share = True, 0.1  # as if over its share at the longest interval
    again, result = pipeline.process(np.zeros_like(frame))
    assert result.skipped and again is annotated and result.predictions == first.predictions
    counters = pipeline.snapshot()
    assert (counters.frames, counters.dropped, counters.skipping) == (1, 2, True)
    time.sleep(0.01 + first.timings_ms["total"] * 9 / 1000)  # past the skipping gap: processed again
    assert not pipeline.process(frame)[1].skipped and pipeline.snapshot().frames == 2


def test_stream_seats_serve_the_capacity_and_free_a_seat_when_a_stream_ends_or_falls_silent():
    class Viewer:
        """A stream (its pipeline, on the page)."""

    seats = StreamSeats(2)
    first, second, third = Viewer(), Viewer(), Viewer()
    assert seats.take(first, 0.0) and seats.take(second, 0.5)
    assert seats.open_for(first, 1.0) and not seats.open_for(third, 1.0)
    assert not seats.take(third, 1.0)
    assert seats.take(first, 1.0)  # a stream holding a seat keeps it
    seats.release(second)
    assert seats.take(third, 1.1) and not seats.open_for(second, 1.2)
    # first's last frame came at 1.0: silent for RATE_WINDOW_SECONDS (a closed tab), its seat is free again
    assert not seats.open_for(second, 1.0 + RATE_WINDOW_SECONDS - 0.01)
    assert seats.open_for(second, 1.0 + RATE_WINDOW_SECONDS) and seats.take(second, 1.0 + RATE_WINDOW_SECONDS)
    assert not seats.take(first, 1.0 + RATE_WINDOW_SECONDS)
