"""maskdet.serving.capture: which frames of a stream a webcam burst keeps, and storing the shots with their faces."""

import io

import av
import numpy as np
import pytest
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.serving.capture import MAX_SHOTS, Burst, frame_callback, store_photo, store_shots
from maskdet.serving.live import StreamSeats

FRAME = np.zeros((48, 64, 3), np.uint8)


def test_a_burst_keeps_the_first_frame_then_one_each_interval():
    burst = Burst()
    burst.start(3, 1.0, "webcam-1")
    kept = [t for t in (10 + 0.25 * k for k in range(20)) if burst.offer(FRAME, t)]
    assert kept == [10.0, 11.0, 12.0] and not burst.running and burst.taken == 3
    shots = burst.collect()
    assert [name for name, _ in shots] == ["webcam-1-01.jpg", "webcam-1-02.jpg", "webcam-1-03.jpg"]
    assert Image.open(io.BytesIO(shots[0][1])).size == (64, 48)
    assert burst.collect() == []


def test_uneven_frames_keep_the_rhythm_and_a_stall_restarts_it():
    burst = Burst()
    burst.start(5, 1.0, "b")
    times = [0.0, 0.4, 1.04, 1.9, 2.01, 5.3, 5.9, 6.2, 6.5]  # 30 fps would do the same; a stall after 2.01
    assert [t for t in times if burst.offer(FRAME, t)] == [0.0, 1.04, 2.01, 5.3, 6.5]
    burst.start(5, 1.0, "c")  # a new burst starts at once
    assert burst.offer(FRAME, 6.6) and burst.running
    burst.stop()
    assert not burst.running and not burst.offer(FRAME, 9.0)
    assert len(burst.collect()) == 6


@pytest.mark.parametrize("shots, interval", [(0, 1.0), (MAX_SHOTS + 1, 1.0), (3, 0.1)])
def test_bursts_out_of_range_are_refused(shots, interval):
    with pytest.raises(StoreError, match="A burst is 1 to 50 shots at least 0.2 s apart"):
        Burst().start(shots, interval, "x")


def test_the_stream_callback_offers_frames_only_while_a_burst_runs():
    burst = Burst()
    callback = frame_callback(burst, StreamSeats(1))
    frame = av.VideoFrame.from_ndarray(FRAME, format="rgb24")
    assert callback(frame) is frame and burst.collect() == []
    burst.start(1, 1.0, "x")
    assert callback(frame) is frame and len(burst.collect()) == 1


def test_a_burst_stream_takes_a_camera_seat_and_without_one_offers_nothing():
    """A burst's stream costs the server as a Live stream does: it holds one of the same seats."""
    seats, first, second = StreamSeats(1), Burst(), Burst()
    frame = av.VideoFrame.from_ndarray(FRAME, format="rgb24")
    assert frame_callback(first, seats)(frame) is frame
    second.start(1, 1.0, "x")
    refused = frame_callback(second, seats)(frame)
    assert refused is not frame and second.collect() == [] and not second.taken
    assert (refused.to_ndarray(format="rgb24") != FRAME).any()  # the sentence drawn on it


def test_shots_are_stored_with_their_faces(store, detector, shared_data):
    burst = Burst()
    burst.start(3, 0.5, "webcam-2")
    photos = [np.asarray(Image.open(shared_data / "without_mask" / f"{n}.jpg").convert("RGB")) for n in ("100", "212")]
    for t, frame in zip((0.0, 0.5, 1.0), (photos[0], photos[1], photos[0])):  # the third repeats the first
        assert burst.offer(frame, t)
    report, records = store_shots(store, burst.collect(), "without_mask", detector)
    assert report.added == ["webcam-2-01.jpg", "webcam-2-02.jpg"] and report.duplicates == ["webcam-2-03.jpg"]
    assert [(r.source_name, r.label, r.face_source) for r in records] == [
        ("webcam-2-01.jpg", "without_mask", "detected"), ("webcam-2-02.jpg", "without_mask", "detected")]
    assert all(record.face is not None for record in records)


def test_one_photo_is_stored_with_its_face_or_the_reason_it_was_not(store, detector, shared_data):
    photo = (shared_data / "without_mask" / "100.jpg").read_bytes()
    stored = store_photo(store, photo, "webcam-1.jpg", "without_mask", detector)
    assert stored.stored and stored.reason == "" and stored.label == "without_mask"
    assert [(r.source_name, r.label, r.face is not None) for r in stored.faces] == [("webcam-1.jpg", "without_mask",
                                                                                     True)]
    again = store_photo(store, photo, "webcam-2.jpg", "with_mask", detector, last_sha256=stored.sha256)
    assert not again.stored and again.reason == "The camera gave the same photo as the last one: nothing stored."
    later = store_photo(store, photo, "webcam-3.jpg", "with_mask", detector, last_sha256="another")
    assert later.reason == "That photo is already in the dataset (in without_mask): nothing stored."
    broken = store_photo(store, b"\xff\xd8 not a jpeg", "webcam-4.jpg", "with_mask", detector)
    assert not broken.stored and broken.reason.startswith("Nothing stored: a damaged photo")
    assert store.label_counts() == {"with_mask": 0, "without_mask": 1}
