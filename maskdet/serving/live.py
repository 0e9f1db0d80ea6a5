"""The live frame pipeline: detect (downscaled, every few frames; tracked between) → crop → classify in a batch →
annotate.

No Streamlit here: the Live page creates a LivePipeline per stream (model and settings) and calls process() from
streamlit-webrtc's frame callback thread. A live stream's detection cadence adapts to the load of the process (Cadence).
"""

import json
import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from maskdet.bundle.mtcnn_cascade import DetectorSettings
from maskdet.core.json_text import parse_json
from maskdet.core.settings import usable_cores
from maskdet.core.threshold import DEFAULT_THRESHOLD
from maskdet.serving.classifier import OnnxClassifier
from maskdet.serving.predict import FacePrediction, TextStyle, classify_faces, draw_predictions
from maskdet.vision.faces import Face, FaceDetector

RATE_WINDOW_SECONDS = 3.0  # fps and stage times are over the frames processed in this much wall clock
STAGES = ("detect", "classify")
# The live streams of one process share this many seconds of processing per second of wall clock: all cores but one,
# which is left to WebRTC's decoding and encoding and to the dashboard (1 on a 2-core machine).
LIVE_BUSY_BUDGET = float(max(1, usable_cores() - 1))
MAX_DETECT_EVERY = 30  # the longest adapted detection interval: about once a second at a webcam's 30 fps
ADAPT_SECONDS = 0.5  # a stream's cadence steps up at most this often; back down at most every RATE_WINDOW_SECONDS
RELAX = 0.6  # a stream steps back when it is busy under this fraction of its share


@dataclass(frozen=True)
class LiveSettings:
    detector: DetectorSettings = DetectorSettings()  # how faces are found: a model's own, unless the viewer changes it
    class_threshold: float = DEFAULT_THRESHOLD  # below it a face is "uncertain"; a model carries its own
    detect_every: int = 3  # full detection on every n-th frame, the frames between track the last faces; a live
    # stream's minimum: under load it detects less often (Cadence)

    @classmethod
    def of_model(cls, classifier: OnnxClassifier) -> "LiveSettings":
        """The settings a model carries: its detector settings and class confidence threshold."""
        return cls(classifier.detector, classifier.class_threshold)


@dataclass
class FrameResult:
    predictions: list[FacePrediction]
    detected: bool  # whether MTCNN ran on this frame
    faces_found: int  # before the max_faces cap
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # not processed (the stream was over its share of the CPU): the last result again


@dataclass
class Counters:
    """Totals since the pipeline was made, and (in a snapshot) the rates of the last RATE_WINDOW_SECONDS and the
    cadence now."""

    frames: int = 0
    dropped: int = 0  # frames that arrived while the pipeline was busy with an earlier one: never processed
    detections: int = 0
    faces_classified: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    fps: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    detect_every: int = 0  # full detection on every n-th processed frame, as adapted (Cadence)
    skipping: bool = False  # whether frames are skipped to keep the stream within its share of the CPU


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


class LoadShare:
    """The processing time per second of wall clock that the live streams of a process share (`budget`), split
    evenly among the streams that processed a frame in the last RATE_WINDOW_SECONDS."""

    def __init__(self, budget: float = LIVE_BUSY_BUDGET):
        self.budget = budget
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # stream → when it last asked
        self._lock = threading.Lock()

    def share(self, stream: object, now: float) -> float:
        """`stream`'s share as of `now`, counting it as active."""
        with self._lock:
            self._seen[stream] = now
            active = sum(1 for seen in self._seen.values() if seen > now - RATE_WINDOW_SECONDS)
        return self.budget / active


LIVE_LOAD = LoadShare()


class StreamSeats:
    """The camera streams a process serves at once (`capacity`: MASKDET_LIVE_STREAMS, one per core by default).

    Why: each stream costs the server its WebRTC decoding and encoding, every frame, whatever its pipeline skips
    (streamlit-webrtc sends one picture back for each that comes in). Past what the cores hold, every stream's latency
    grows (docs/performance.md, "Capacity"). So a viewer beyond the capacity is told the dashboard is full, and the
    streams it serves keep their speed.

    A stream takes its seat with each frame and holds it until RATE_WINDOW_SECONDS after its last one (a closed tab
    sends none), or until released. Thread-safe; times are seconds of one monotonic clock."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # stream → its last frame's time
        self._lock = threading.Lock()

    def take(self, stream: object, now: float) -> bool:
        """Whether `stream` may be served now; if so, it holds a seat."""
        with self._lock:
            for other in [other for other, seen in self._held.items() if seen <= now - RATE_WINDOW_SECONDS]:
                del self._held[other]
            if stream in self._held or len(self._held) < self.capacity:
                self._held[stream] = now
                return True
            return False

    def open_for(self, stream: object, now: float) -> bool:
        """Whether `stream` holds a seat or could take one now (without taking it)."""
        with self._lock:
            held = sum(1 for other, seen in self._held.items() if other is not stream and seen > now - RATE_WINDOW_SECONDS)
        return held < self.capacity

    def release(self, stream: object) -> None:
        with self._lock:
            self._held.pop(stream, None)


@lru_cache(maxsize=None)
def stream_seats(capacity: int) -> StreamSeats:
    """The process's seats for a capacity: the Live page's sessions all use one."""
    return StreamSeats(capacity)


class Cadence:
    """How often a live stream runs full detection, and whether it skips frames, adapted to the load.

    Why: streamlit-webrtc hands the pipeline the newest frame and drops the ones that came while it was busy, so the
    pipeline alone never falls behind. But when the streams of a process need more CPU than it has, the WebRTC
    decoding, encoding and packet handling around them fall behind too, and there frames queue without a bound: the
    latency grows for as long as the overload lasts. Full detection (MTCNN) costs several tracked frames, so
    detecting less often is the cheapest way to need less.

    The rule. A stream adapts once frames have been dropped for it (a webcam whose frames come faster than they are
    processed; a video file or a photo, whose every frame is processed, never adapts). It compares `busy`, the part
    of the wall clock it spent processing frames, with its share: the LoadShare budget (LIVE_BUSY_BUDGET) over the
    live streams of the process.
    - Busy above its share over the last ADAPT_SECONDS (or since its last step, when longer): it picks the interval
      at which it would be busy just its share. With frames arriving r a second, detected ones taking D seconds and
      tracked ones T, a stream detecting every n-th frame is busy r·(D + (n−1)·T)/n, so n ≥ (D − T) / (share/r − T);
      it takes at least double its interval, at most MAX_DETECT_EVERY. When no interval up to that maximum is
      enough, it also skips frames: after a frame that took t, frames that come within t·(1/share − 1) are skipped
      (the last annotated frame is shown again), which keeps it busy at most its share.
    - Busy under RELAX × its share over the last RATE_WINDOW_SECONDS, with no change in that time: one step back,
      first to no skipping, then halving the interval, down to the settings' detect_every (a minimum). Slower down
      than up, so that it settles instead of swinging.
    Wall-clock processing time grows with contention from any source (the other streams, their codecs, another
    process), so a stream also backs off when others load the CPU. One stream alone has the whole budget: on a
    2-core machine (budget 1) it never adapts, as it cannot be busy more than all the time.

    Not thread-safe: the pipeline calls it under its lock. Times are seconds of one monotonic clock."""

    def __init__(self, minimum: int, load: LoadShare = LIVE_LOAD, maximum: int = MAX_DETECT_EVERY):
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.interval = self.minimum
        self.skipping = False
        self.live = False  # whether frames have been dropped for this stream
        self.load = load
        self.share = load.budget
        self._frames: deque[tuple[float, float, bool, int]] = deque()  # the window's (start, end, detected, arrived)
        self._cost: dict[bool, float] = {}  # the last known mean seconds of a detected (True) and a tracked frame
        self._since = 0.0  # when the stream went live or last changed its cadence

    def busy(self, now: float, seconds: float = RATE_WINDOW_SECONDS) -> float:
        """The part of the last `seconds` (at most RATE_WINDOW_SECONDS) spent processing frames."""
        begin = now - seconds
        spent = sum(end - max(start, begin) for start, end, _, _ in self._frames if end > begin)
        return spent / seconds if seconds > 0 else 0.0

    def skip(self, now: float) -> bool:
        """Whether a frame that arrives now is skipped (only while skipping)."""
        if not self.skipping or not self._frames:
            return False
        start, end, _, _ = self._frames[-1]
        return now - end < (end - start) * (1 / self.share - 1)

    def processed(self, start: float, end: float, detected: bool, arrived: int) -> None:
        """Record a frame processed from `start` to `end` (`detected`: with full detection); `arrived`: the frames
        that came since the previous processed one, this one included (the others were dropped or skipped). Adapt."""
        self._frames.append((start, end, detected, arrived))
        while self._frames[0][1] <= end - RATE_WINDOW_SECONDS:
            self._frames.popleft()
        if not self.live and arrived > 1:
            self.live, self._since = True, start
        if not self.live:
            return
        self.share = self.load.share(self, end)
        held = min(end - self._since, RATE_WINDOW_SECONDS)
        if held >= ADAPT_SECONDS and self.busy(end, held) > self.share:
            fit = self.fitting_interval(end, held)
            self.skipping = self.skipping or self.interval == self.maximum or fit > self.maximum
            self.interval = min(self.maximum, max(2 * self.interval, fit))
            self._since = end
        elif held >= RATE_WINDOW_SECONDS and self.busy(end) < RELAX * self.share and (
                self.skipping or self.interval > self.minimum):
            if self.skipping:
                self.skipping = False
            else:
                self.interval = max(self.minimum, self.interval // 2)
            self._since = end

    def fitting_interval(self, now: float, seconds: float) -> float:
        """The detection interval at which the last `seconds` would have kept the stream busy just its share
        (math.inf when none would; 0 while a detected or a tracked frame has not been timed yet)."""
        recent = [frame for frame in self._frames if frame[1] > now - seconds]
        for detected in (True, False):
            durations = [end - start for start, end, kind, _ in recent if kind == detected]
            if durations:
                self._cost[detected] = sum(durations) / len(durations)
        if len(self._cost) < 2:
            return 0
        rate = sum(arrived for *_, arrived in recent) / seconds
        room = self.share / rate - self._cost[False] if rate else math.inf
        if room <= 0:
            return math.inf
        return max(1, math.ceil((self._cost[True] - self._cost[False]) / room))


def rtc_configuration(ice_servers: str) -> dict:
    """The WebRTC configuration from MASKDET_ICE_SERVERS (a JSON list of RTCIceServer objects)."""
    try:
        servers = parse_json(ice_servers or "[]")
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
    """Thread-safe: one frame at a time goes through the pipeline; counters can be read from any thread.

    `settings.detect_every` is a minimum: in a live stream the detection interval adapts to the load (Cadence)."""

    def __init__(self, classifier: OnnxClassifier, settings: LiveSettings = LiveSettings(),
                 load: LoadShare = LIVE_LOAD):
        self.classifier = classifier
        self.settings = settings
        self.detector = FaceDetector.for_photos(settings.detector)
        self.detector.mtcnn  # built now, not while the first frame waits
        self.counters = Counters()
        self._faces: list[Face] = []
        self._lock = threading.Lock()
        self.rates = RateWindow()
        self.cadence = Cadence(settings.detect_every, load)
        self._tracked: int | None = None  # frames tracked since the last detection (None: no detection yet)
        self._last: tuple[np.ndarray, FrameResult] | None = None  # of a live stream, shown again for a skipped frame
        self._arrived = 0  # frames that came since the last processed one

    def process(self, frame: np.ndarray, dropped: int = 0) -> tuple[np.ndarray, FrameResult]:
        """Annotated copy of a frame (RGB, RGBA or grayscale uint8) and what was found in it; `dropped`: frames
        that arrived before this one while the pipeline was busy, skipped to keep the latency bounded. While a live
        stream is over its share of the CPU (Cadence), a frame may be skipped: the last annotated frame comes back
        (result.skipped) and the frame is counted as dropped."""
        with self._lock:
            self.counters.dropped += dropped
            self._arrived += dropped + 1
            start = time.perf_counter()
            if self._last is not None and self.cadence.skip(start):
                self.counters.dropped += 1
                annotated, result = self._last
                return annotated, replace(result, detected=False, timings_ms={}, skipped=True)
            annotated, result = self._process(as_rgb(frame))
            self.cadence.processed(start, time.perf_counter(), result.detected, self._arrived)
            self._arrived = 0
            self._last = (annotated, result) if self.cadence.live else None
            return annotated, result

    def _process(self, frame: np.ndarray) -> tuple[np.ndarray, FrameResult]:
        timings, start = {}, time.perf_counter()
        detect = self._tracked is None or self._tracked >= self.cadence.interval - 1
        self._tracked = 0 if detect else self._tracked + 1
        if detect:
            self._faces = self.detector.detect([frame])[0]
            self.counters.detections += 1
        else:
            self._faces = self.detector.track(frame, self._faces)
        timings["detect"] = (time.perf_counter() - start) * 1000
        faces = self._faces[: self.settings.detector.max_faces]
        mark = time.perf_counter()
        predictions = classify_faces(frame, faces, self.classifier, self.settings.class_threshold)
        timings["classify"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        result = FrameResult(predictions, detect, len(self._faces), timings)
        self._count(result)
        self.rates.add(start, mark, {stage: timings[stage] for stage in STAGES})
        annotated = frame.copy()
        stats, style = self._stats(result, mark), TextStyle.for_image(annotated)
        corner = (0, 0, max(style.size(line)[0] for line in stats), sum(style.size(line)[1] for line in stats))
        draw_predictions(annotated, predictions, self.classifier.labels, keep_clear=[corner])  # no label under it
        self._overlay(annotated, stats, style)
        timings["annotate"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        return annotated, result

    def _count(self, result: FrameResult) -> None:
        self.counters.frames += 1
        self.counters.faces_classified += len(result.predictions)
        for prediction in result.predictions:
            self.counters.labels[prediction.label] = self.counters.labels.get(prediction.label, 0) + 1

    def _stats(self, result: FrameResult, now: float) -> list[str]:
        """The overlay's lines: fps and per-stage milliseconds (over the rate window), and a note when the stream is
        busy or faces were capped."""
        ms = self.rates.stage_ms(now)
        lines = [f"{self.rates.fps(now):.0f} fps  detect {ms['detect']:.0f} ms  classify {ms['classify']:.1f} ms"]
        if self.cadence.interval != self.cadence.minimum or self.cadence.skipping:
            lines.append(f"busy: detecting every {self.cadence.interval} frames"
                         + (", skipping frames" if self.cadence.skipping else ""))
        if result.faces_found > len(result.predictions):
            lines.append(f"{result.faces_found} faces: classifying the {len(result.predictions)} largest")
        return lines

    def _overlay(self, canvas: np.ndarray, lines: list[str], style: TextStyle) -> None:
        """The overlay's lines in the top-left corner, one strip each."""
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
                            self.rates.stage_ms(now), self.cadence.interval, self.cadence.skipping)
