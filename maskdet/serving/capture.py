"""Webcam captures for the Dataset page: one photo a click, or bursts of N shots S seconds apart picked from a camera
stream's frames, stored through the store's import. No Streamlit here."""

import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.data.catalog import FaceRecord
from maskdet.data.importer import ImportReport
from maskdet.data.store import Store
from maskdet.serving.live import StreamSeats
from maskdet.serving.media import full_picture
from maskdet.vision.faces import FaceDetector

MAX_SHOTS = 50  # a burst: each shot costs a face search when it is stored
MIN_INTERVAL = 0.2  # seconds between shots: about what storing one (finding its face) takes (docs/performance.md)


class Burst:
    """Picks the shots of a burst from a stream of frames, each offered with its arrival time (seconds of a monotonic
    clock): the first frame after start, then the first one each `interval` later, until `shots` are taken. A stream
    that stalls for longer than the interval starts the rhythm again rather than catching up with shots in a row.
    Shots wait as JPEG files until collected. Thread-safe: a stream's callback offers, the page collects."""

    def __init__(self):
        self._lock = threading.Lock()
        self.shots = 0  # of the current burst
        self.taken = 0
        self.interval = 1.0
        self.name = "shot"  # shots are files name-01.jpg, name-02.jpg, ...
        self._due: float | None = None  # when the next shot is due; None: at the next frame
        self._waiting: list[tuple[str, bytes]] = []

    def start(self, shots: int, interval: float, name: str) -> None:
        """A new burst; shots of the last one not yet collected stay."""
        if not 1 <= shots <= MAX_SHOTS or interval < MIN_INTERVAL:
            raise StoreError(f"A burst is 1 to {MAX_SHOTS} shots at least {MIN_INTERVAL:g} s apart.")
        with self._lock:
            self.shots, self.taken, self.interval, self.name, self._due = shots, 0, interval, name, None

    def stop(self) -> None:
        with self._lock:
            self.shots = self.taken

    @property
    def running(self) -> bool:
        return self.taken < self.shots

    def offer(self, frame: np.ndarray, now: float) -> bool:
        """Keep an RGB frame arriving at `now` if a shot is due; returns whether it was kept."""
        with self._lock:
            if self.taken >= self.shots or (self._due is not None and now < self._due):
                return False
            due = (now if self._due is None else self._due) + self.interval
            self._due = due if due > now else now + self.interval
            self.taken += 1
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
            self._waiting.append((f"{self.name}-{self.taken:02d}.jpg", buffer.getvalue()))
            return True

    def collect(self) -> list[tuple[str, bytes]]:
        """The shots taken since the last call, as (file name, JPEG bytes)."""
        with self._lock:
            shots, self._waiting = self._waiting, []
        return shots


def frame_callback(burst: Burst, seats: StreamSeats) -> Callable[[av.VideoFrame], av.VideoFrame]:
    """streamlit-webrtc's video_frame_callback: offers each frame to the burst while one runs, and sends the frame
    back as it came. The stream holds one of the camera streams' seats as the Live page's do (its video decoding and
    encoding cost the server as much); without one it gets media.full_picture back and offers nothing."""
    def callback(frame: av.VideoFrame) -> av.VideoFrame:
        if not seats.take(burst, time.perf_counter()):
            return full_picture(frame.to_ndarray(format="rgb24"), seats)
        if burst.running:
            burst.offer(frame.to_ndarray(format="rgb24"), time.perf_counter())
        return frame
    return callback


def store_shots(store: Store, shots: list[tuple[str, bytes]], label: str,
                detector: FaceDetector) -> tuple[ImportReport, list[FaceRecord]]:
    """Import shots into `label` by the store's rules (face found by MTCNN, duplicates skipped, rejections in the
    report); returns the report and the records of the shots added."""
    report = store.add_images(shots, label, detector)
    added = set(report.added)
    return report, [record for name, data in shots if name in added
                    for record in store.faces_of_photo(hashlib.sha256(data).hexdigest())]


@dataclass(frozen=True)
class Capture:
    """What became of one webcam photo: stored under `label` with its faces, or the sentence saying why it was not."""

    name: str
    label: str
    sha256: str
    faces: list[FaceRecord] = field(default_factory=list)  # the stored photo's faces; empty: nothing was stored
    reason: str = ""  # why nothing was stored

    @property
    def stored(self) -> bool:
        return bool(self.faces)


def store_photo(store: Store, data: bytes, name: str, label: str, detector: FaceDetector,
                last_sha256: str | None = None) -> Capture:
    """One photo taken with st.camera_input, into `label` by the store's rules (store_shots); when it is not stored,
    the reason: the same picture as the last photo taken (`last_sha256`: a camera that gave its last frame again), a
    photo already in the dataset (and in which class), or why it was rejected."""
    sha256 = hashlib.sha256(data).hexdigest()
    report, faces = store_shots(store, [(name, data)], label, detector)
    if faces:
        return Capture(name, label, sha256, faces)
    if report.rejected:
        reason = f"Nothing stored: {report.rejected[0][1]}."
    elif sha256 == last_sha256:
        reason = "The camera gave the same photo as the last one: nothing stored."
    else:
        classes = sorted({record.label for record in store.faces_of_photo(sha256)})
        where = f" (in {', '.join(classes)})" if classes else ""
        reason = f"That photo is already in the dataset{where}: nothing stored."
    return Capture(name, label, sha256, [], reason)
