"""The live frame pipeline: detect (downscaled, every few frames; tracked between) → crop → classify in a batch → annotate.

No Streamlit here: the Live page creates a LivePipeline per stream (model and settings) and calls process() from
streamlit-webrtc's frame callback thread.
"""

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .export import OnnxClassifier
from .faces import Face, FaceDetector
from .mtcnn import MIN_FACE_SIDE
from .predict import FacePrediction, TextStyle, classify_faces, draw_predictions


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
    frames: int = 0
    detections: int = 0
    faces_classified: int = 0
    labels: dict[str, int] = field(default_factory=dict)


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


def moving_average(average: float, value: float) -> float:
    """Exponential moving average, 0.1 weight on the new value; an average of 0 means none yet."""
    return value if average == 0 else 0.9 * average + 0.1 * value


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
        self._last_frame_end: float | None = None
        self.fps = 0.0
        self.stage_ms = {"detect": 0.0, "classify": 0.0}  # smoothed like fps: detection runs on every n-th frame only

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, FrameResult]:
        """Annotated copy of a frame (RGB, RGBA or grayscale uint8) and what was found in it."""
        with self._lock:
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
        for stage in self.stage_ms:
            self.stage_ms[stage] = moving_average(self.stage_ms[stage], timings[stage])
        mark = time.perf_counter()
        result = FrameResult(predictions, detect, len(self._faces), timings)
        annotated = frame.copy()
        draw_predictions(annotated, predictions, self.classifier.labels)
        self._overlay(annotated, result)
        timings["annotate"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        self._count(result)
        return annotated, result

    def _count(self, result: FrameResult) -> None:
        now = time.perf_counter()
        if self._last_frame_end is not None:
            self.fps = moving_average(self.fps, 1.0 / max(now - self._last_frame_end, 1e-6))
        self._last_frame_end = now
        self.counters.frames += 1
        self.counters.faces_classified += len(result.predictions)
        for prediction in result.predictions:
            self.counters.labels[prediction.label] = self.counters.labels.get(prediction.label, 0) + 1

    def _overlay(self, canvas: np.ndarray, result: FrameResult) -> None:
        """fps and per-stage milliseconds (moving averages) in the top-left corner, and a note when faces were
        capped."""
        style = TextStyle.for_image(canvas)
        ms = self.stage_ms
        lines = [f"{self.fps:.0f} fps  detect {ms['detect']:.0f} ms  classify {ms['classify']:.1f} ms"]
        if result.faces_found > len(result.predictions):
            lines.append(f"{result.faces_found} faces: classifying the {len(result.predictions)} largest")
        y = 0
        for line in lines:
            style.draw(canvas, line, 0, y, (0, 0, 0))
            y += style.size(line)[1]

    def snapshot(self) -> Counters:
        with self._lock:
            return Counters(self.counters.frames, self.counters.detections, self.counters.faces_classified,
                            dict(self.counters.labels))
