"""The live frame pipeline: detect (downscaled, every few frames; tracked between) → crop → classify in a batch → annotate.

No Streamlit here: the Live page creates a LivePipeline per stream (model and settings) and calls process() from
streamlit-webrtc's frame callback thread.
"""

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .export import OnnxClassifier
from .faces import Face, FaceDetector
from .mtcnn import MIN_FACE_SIDE
from .predict import FacePrediction, TextStyle, classify_faces, draw_predictions

RATE_WINDOW_SECONDS = 3.0  # fps and stage times are over the frames processed in this much wall clock
STAGES = ("detect", "classify")


@dataclass(frozen=True)
class LiveSettings:
    min_face_size: int = 40  # pixels in the frame
    detection_confidence: float = 0.9
    class_threshold: float = 0.6  # below it a face is "uncertain"
    detect_side: int = 320  # MTCNN runs on a copy whose longer side is this
    detect_every: int = 3  # full detection on every n-th frame; the frames between track the last faces
    max_faces: int = 8  # faces classified per frame, largest first


@dataclass
class FrameResult:
    predictions: list[FacePrediction]
    detected: bool  # whether MTCNN ran on this frame
    faces_found: int  # before the max_faces cap
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Counters:
    """Totals since the pipeline was made, and (in a snapshot) the rates of the last RATE_WINDOW_SECONDS."""

    frames: int = 0
    dropped: int = 0  # frames that arrived while the pipeline was busy with an earlier one: never processed
    detections: int = 0
    faces_classified: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    fps: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


class RateWindow:
    """Frames processed in the last `seconds` of wall clock: their rate and their average stage milliseconds.

    Frames over wall clock stay true when frames come in bursts, where a mean of 1/Δt between frames overstates the
    rate; and a stream that stalls shows its rate falling."""

    def __init__(self, seconds: float = RATE_WINDOW_SECONDS):
        self.seconds = seconds
        self.first_start: float | None = None
        self.frames: deque[tuple[float, dict[str, float]]] = deque()  # (end time, milliseconds per stage)

    def add(self, start: float, end: float, stage_ms: dict[str, float]) -> None:
        """A frame processed from `start` to `end` (seconds of a monotonic clock)."""
        if self.first_start is None:
            self.first_start = start
        self.frames.append((end, stage_ms))

    def recent(self, now: float) -> list[dict[str, float]]:
        while self.frames and self.frames[0][0] <= now - self.seconds:
            self.frames.popleft()
        return [stages for _, stages in self.frames]

    def fps(self, now: float) -> float:
        """Frames processed over the window, or over the time since the first frame began while that is shorter."""
        span = 0.0 if self.first_start is None else min(self.seconds, now - self.first_start)
        return len(self.recent(now)) / span if span > 0 else 0.0

    def stage_ms(self, now: float) -> dict[str, float]:
        recent = self.recent(now)
        return {stage: float(np.mean([frame[stage] for frame in recent])) if recent else 0.0 for stage in STAGES}


def rtc_configuration(ice_servers: str) -> dict:
    """The WebRTC configuration from MASKDET_ICE_SERVERS (a JSON list of RTCIceServer objects)."""
    try:
        servers = json.loads(ice_servers or "[]")
    except json.JSONDecodeError as error:
        raise ValueError(f"MASKDET_ICE_SERVERS is not valid JSON ({error}).") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise ValueError('MASKDET_ICE_SERVERS must be a JSON list like [{"urls": ["stun:stun.example.org:3478"]}].')
    return {"iceServers": servers}


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """A contiguous uint8 RGB array from an RGB, RGBA or single-channel frame."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


class LivePipeline:
    """Thread-safe: one frame at a time goes through the pipeline; counters can be read from any thread."""

    def __init__(self, classifier: OnnxClassifier, settings: LiveSettings = LiveSettings()):
        self.classifier = classifier
        self.settings = settings
        self.detector = FaceDetector(detect_side=settings.detect_side, fallback_side=settings.detect_side,
                                     min_probability=settings.detection_confidence)
        self.detector.mtcnn  # built now, not while the first frame waits
        self.counters = Counters()
        self._faces: list[Face] = []
        self._lock = threading.Lock()
        self.rates = RateWindow()

    def process(self, frame: np.ndarray, dropped: int = 0) -> tuple[np.ndarray, FrameResult]:
        """Annotated copy of a frame (RGB, RGBA or grayscale uint8) and what was found in it; `dropped`: frames
        that arrived before this one while the pipeline was busy, skipped to keep the latency bounded."""
        with self._lock:
            self.counters.dropped += dropped
            return self._process(as_rgb(frame))

    def _process(self, frame: np.ndarray) -> tuple[np.ndarray, FrameResult]:
        timings, start = {}, time.perf_counter()
        detect = self.counters.frames % self.settings.detect_every == 0
        if detect:
            scale = min(1.0, self.settings.detect_side / max(frame.shape[:2]))
            self.detector.mtcnn.min_face_size = max(MIN_FACE_SIDE, round(self.settings.min_face_size * scale))
            self._faces = self.detector.detect([frame])[0]
            self.counters.detections += 1
        else:
            self._faces = self.detector.track(frame, self._faces)
        timings["detect"] = (time.perf_counter() - start) * 1000
        faces = self._faces[: self.settings.max_faces]
        mark = time.perf_counter()
        predictions = classify_faces(frame, faces, self.classifier, self.settings.class_threshold)
        timings["classify"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        result = FrameResult(predictions, detect, len(self._faces), timings)
        self._count(result)
        self.rates.add(start, mark, {stage: timings[stage] for stage in STAGES})
        annotated = frame.copy()
        draw_predictions(annotated, predictions, self.classifier.labels)
        self._overlay(annotated, result, mark)
        timings["annotate"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        return annotated, result

    def _count(self, result: FrameResult) -> None:
        self.counters.frames += 1
        self.counters.faces_classified += len(result.predictions)
        for prediction in result.predictions:
            self.counters.labels[prediction.label] = self.counters.labels.get(prediction.label, 0) + 1

    def _overlay(self, canvas: np.ndarray, result: FrameResult, now: float) -> None:
        """fps and per-stage milliseconds (over the rate window) in the top-left corner, and a note when faces were
        capped."""
        style = TextStyle.for_image(canvas)
        ms = self.rates.stage_ms(now)
        lines = [f"{self.rates.fps(now):.0f} fps  detect {ms['detect']:.0f} ms  classify {ms['classify']:.1f} ms"]
        if result.faces_found > len(result.predictions):
            lines.append(f"{result.faces_found} faces: classifying the {len(result.predictions)} largest")
        y = 0
        for line in lines:
            style.draw(canvas, line, 0, y, (0, 0, 0))
            y += style.size(line)[1]

    def snapshot(self) -> Counters:
        """The totals, with fps and stage milliseconds of the rate window as of now: the figures the overlay shows."""
        with self._lock:
            now = time.perf_counter()
            return Counters(self.counters.frames, self.counters.dropped, self.counters.detections,
                            self.counters.faces_classified, dict(self.counters.labels), self.rates.fps(now),
                            self.rates.stage_ms(now))
