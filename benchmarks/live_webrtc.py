"""The Live page end to end through real WebRTC: delivered fps and glass-to-glass latency, one JSON line per stream
count.

    python benchmarks/live_webrtc.py [--model RUN_ID|file.onnx] [--int8] [--streams 1 2 4] [--seconds 30]

Each stream is a pair of aiortc peers in this one process, connected over this machine's network interface, VP8 both
ways (forced by codec preferences; the answer's codecs are reported):
- a "browser" that sends the generated 640x480 clip (maskdet/vision/clip.py: one to four faces) at 30 fps like a webcam,
  each frame stamped with its number, and reads the annotated video that comes back;
- the dashboard side, built by streamlit-webrtc's own WebRtcWorker as the Live page's webrtc_streamer builds it
  (SENDRECV, async_processing, one MediaRelay for the process, media.frames_callback on a LivePipeline of its own,
  like one per browser session; all streams share one classifier, as the page's cache does).

The stamp: 24 bits of the frame number and a CRC-8, as 16-pixel black and white blocks in the bottom-right corner
(below the clip's faces, away from the overlay), read back from block means: it survives two VP8 encodings. Latency
is from the frame's capture (its 30 fps slot) to its arrival, decoded, at the browser: glass to glass but for the
display's refresh. The browser side hands a frame to its decoder once the frame's last packet is in, as browsers do
(aiortc's own jitter buffer waits for the next frame's first packet, 33 ms more; --aiortc-browser measures with
it); the dashboard side keeps aiortc's, as the page has it. Delivered fps counts distinct frames (streamlit-webrtc
sends the last annotated frame again while no new one is ready). Like a browser's encoder, the sender takes the
newest camera frame when it is ready to encode and skips the ones it was too late for ("skipped_by_sender");
"dropped_by_pipeline" are the frames the Live page's callback did not process (they came while the pipeline was
busy, or the stream skipped them to stay within its share of the CPU: maskdet.serving.live.Cadence). Both peers of every
stream run on the same CPU cores, so the browser's encoding and decoding are charged to the server too: in real use
the browser does that on its own machine.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
logging.disable(logging.WARNING)  # Streamlit warns, while streamlit-webrtc is imported, that no script is running

import streamlit.logger  # noqa: E402
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.jitterbuffer import JitterBuffer, JitterFrame  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from live_benchmark import ROOT, load_or_make_classifier  # noqa: E402
from streamlit_webrtc import WebRtcMode  # noqa: E402
from streamlit_webrtc.webrtc import WebRtcWorker  # noqa: E402

from maskdet.core.settings import load_settings  # noqa: E402
from maskdet.serving import media  # noqa: E402
from maskdet.serving.live import LIVE_BUSY_BUDGET, LivePipeline, LiveSettings, StreamSeats  # noqa: E402
from maskdet.vision.clip import clip_photos, make_clip  # noqa: E402

logging.disable(logging.NOTSET)

FPS = 30
CODE_BLOCK = 16  # pixels: a VP8 macroblock, so every block is flat inside one
CODE_COLUMNS, CODE_ROWS = 16, 2  # 32 bits: the frame number's low 24 bits, then their CRC-8
CODE_WRAP = 2**24
CHECK_MASK = 0x5A  # xored into the CRC: an all-black or all-white corner is not a valid stamp
TARGETS = {1: {"delivered_fps": 25, "latency_p95_ms": 150}, 2: {"delivered_fps": 15, "latency_p95_ms": 250}}
SEVERAL_STREAMS_TARGET = {"latency_p95_ms": 250}  # more streams served: fps reported
GRACE_SECONDS = 2.0  # after a window, frames captured in it may still be on their way back
CONNECT_SECONDS = 60.0


# ---- the frame number stamp ---------------------------------------------------------------------

def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def stamp_blocks(number: int) -> np.ndarray:
    """The stamp of `number` (mod CODE_WRAP): a 2-D uint8 image of black (0) and white (255) blocks."""
    data = (number % CODE_WRAP).to_bytes(3, "big")
    value = int.from_bytes(data + bytes([crc8(data) ^ CHECK_MASK]), "big")
    bits = np.array([(value >> (31 - i)) & 1 for i in range(32)], np.uint8).reshape(CODE_ROWS, CODE_COLUMNS)
    return np.kron(bits * 255, np.ones((CODE_BLOCK, CODE_BLOCK), np.uint8))


def stamp_i420(planes: np.ndarray, width: int, height: int, number: int) -> None:
    """Write `number` into the bottom-right corner of a frame in I420 layout (a (height * 3 / 2, width) array:
    Y, then U and V at a quarter size each), in place: luma 16 or 235, neutral chroma."""
    blocks = stamp_blocks(number)
    rows, columns = blocks.shape
    planes[height - rows:height, width - columns:width] = 16 + blocks * (219 / 255)
    flat = planes.reshape(-1)
    for offset in (width * height, width * height * 5 // 4):
        chroma = flat[offset: offset + width * height // 4].reshape(height // 2, width // 2)
        chroma[(height - rows) // 2:, (width - columns) // 2:] = 128


def luma(frame: av.VideoFrame) -> np.ndarray:
    """A frame's Y plane as a 2-D array, without conversion for yuv420p frames (what the VP8 decoder gives)."""
    if frame.format.name != "yuv420p":
        return frame.to_ndarray(format="gray")
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:frame.height, :frame.width]


def read_stamp(luma: np.ndarray) -> int | None:
    """The number stamped in a frame's luma (2-D uint8), or None when the check fails."""
    b = CODE_BLOCK
    region = luma[-CODE_ROWS * b:, -CODE_COLUMNS * b:].reshape(CODE_ROWS, b, CODE_COLUMNS, b)
    means = region[:, b // 4: 3 * b // 4, :, b // 4: 3 * b // 4].mean(axis=(1, 3)).reshape(-1)
    value = int("".join("1" if m > 128 else "0" for m in means), 2)
    data = (value >> 8).to_bytes(3, "big")
    return value >> 8 if crc8(data) ^ CHECK_MASK == value & 0xFF else None


# ---- one stream: a browser and a Live page session -----------------------------------------------

class Camera(MediaStreamTrack):
    """A webcam at `fps` playing the clip in a loop, each frame stamped with its number. When the sender asks for a
    frame it gets the newest one; frames it was too late for are skipped, as a browser's encoder skips them."""

    kind = "video"

    def __init__(self, clip: list[np.ndarray], fps: int = FPS):
        super().__init__()
        self.height, self.width = clip[0].shape[:2]
        self.clip = [av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
                     for frame in clip]  # converted once, as a camera delivers them: the loop stays free
        self.fps = fps
        self.start: float | None = None
        self.number = -1
        self.sent = self.skipped = 0
        self.captured: dict[int, float] = {}  # frame number → capture time, until the frame comes back

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.start is None:
            self.start = now
        newest = int((now - self.start) * self.fps)
        if newest > self.number:
            self.skipped += newest - self.number - 1 if self.number >= 0 else 0
            number = newest
        else:
            number = self.number + 1
            await asyncio.sleep(self.start + number / self.fps - now)
        self.number = number
        planes = self.clip[number % len(self.clip)].copy()
        stamp_i420(planes, self.width, self.height, number)
        frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base = round(number * 90000 / self.fps), Fraction(1, 90000)
        self.captured[number % CODE_WRAP] = self.start + number / self.fps
        if number % 300 == 0:  # frames that never came back (dropped): keep the map small on long runs
            for old in [n for n, captured in self.captured.items() if captured < self.start + number / self.fps - 10]:
                del self.captured[old]
        self.sent += 1
        return frame


class BrowserJitterBuffer(JitterBuffer):
    """Hands a video frame to the decoder as soon as its last packet (RTP marker bit) is in, as browsers do. aiortc's
    own buffer waits for the first packet of the next frame: one frame interval more (33 ms at 30 fps), which a
    browser does not add. Used on the browser side only; the dashboard side keeps aiortc's, as the page has it."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        packets = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if packets and packet.timestamp != packets[0].timestamp:  # a frame whose marker was lost
                return self._take(packets, count)
            packets.append(packet)
            if packet.marker:
                return self._take(packets, count + 1)
        return None

    def _take(self, packets: list, count: int) -> JitterFrame:
        self.remove(count)
        return JitterFrame(data=b"".join(packet._data for packet in packets), timestamp=packets[0].timestamp)


class Stream:
    """A browser peer sending the clip and the Live page's server side for it (its own LivePipeline)."""

    def __init__(self, clip: list[np.ndarray], classifier, settings: LiveSettings, relay: MediaRelay,
                 loop: asyncio.AbstractEventLoop, seats: StreamSeats, fps: int = FPS, aiortc_browser: bool = False):
        self.aiortc_browser = aiortc_browser
        self.camera = Camera(clip, fps)
        self.pipeline = LivePipeline(classifier, settings)
        self.worker = WebRtcWorker(
            mode=WebRtcMode.SENDRECV, rtc_configuration=RTCConfiguration(iceServers=[]),
            source_video_track=None, source_audio_track=None, sink_video_track=None, sink_audio_track=None,
            player_factory=None, in_recorder_factory=None, out_recorder_factory=None, video_frame_callback=None,
            audio_frame_callback=None, queued_video_frames_callback=media.frames_callback(self.pipeline, seats),
            queued_audio_frames_callback=None, on_video_ended=media.ended_callback(self.pipeline, seats),
            on_audio_ended=None,
            video_processor_factory=None, audio_processor_factory=None, async_processing=True,
            video_receiver_size=4, audio_receiver_size=4, sendback_video=True, sendback_audio=True,
            loop=loop, relay=relay)
        self.browser = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.arrivals: list[tuple[float, float]] = []  # (capture time, latency in s) of each distinct frame back
        self.undecoded = self.repeats = 0
        self.codecs: list[str] = []
        self.first = asyncio.Event()
        self.reader: asyncio.Task | None = None

    async def connect(self) -> None:
        transceiver = self.browser.addTransceiver(self.camera, direction="sendrecv")
        transceiver.setCodecPreferences([codec for codec in RTCRtpSender.getCapabilities("video").codecs
                                         if codec.mimeType == "video/VP8"])
        if not self.aiortc_browser:  # a private attribute of aiortc 1.16's RTCRtpReceiver
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = BrowserJitterBuffer(capacity=512, is_video=True)
        self.browser.on("track", lambda track: setattr(self, "reader", asyncio.ensure_future(self.read(track))))
        await self.browser.setLocalDescription(await self.browser.createOffer())
        offer = self.browser.localDescription
        answer = await asyncio.to_thread(self.worker.process_offer, offer.sdp, offer.type, CONNECT_SECONDS)
        self.codecs = sorted({line.split()[1].split("/")[0] for line in answer.sdp.splitlines()
                              if line.startswith("a=rtpmap:")})
        await self.browser.setRemoteDescription(answer)

    async def read(self, track: MediaStreamTrack) -> None:
        """The returned video: the arrival of each distinct stamped frame."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            number = read_stamp(luma(frame))
            if number is None:
                self.undecoded += 1
                continue
            captured = self.camera.captured.pop(number, None)
            if captured is None:  # the last annotated frame sent again
                self.repeats += 1
                continue
            self.arrivals.append((captured, now - captured))
            self.first.set()

    def take(self, since: float, until: float) -> list[tuple[float, float]]:
        """The arrivals of frames captured in [since, until); forgets everything captured before `until`."""
        taken = [(captured, latency) for captured, latency in self.arrivals if since <= captured < until]
        self.arrivals = [arrival for arrival in self.arrivals if arrival[0] >= until]
        return taken

    def totals(self) -> dict:
        counters = self.pipeline.snapshot()
        return {"sent": self.camera.sent, "skipped": self.camera.skipped, "processed": counters.frames,
                "dropped": counters.dropped, "detections": counters.detections,
                "detect_every": counters.detect_every, "skipping": counters.skipping}

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.stop, 5)
        await self.browser.close()
        if self.reader:
            self.reader.cancel()


# ---- measuring ----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def window_stats(arrivals: list[tuple[float, float]], before: dict, after: dict, seconds: float,
                 overlay_fps: list[float]) -> dict:
    """One stream's figures over a window: `before`/`after` are its totals() at the window's ends, overlay_fps the
    fps its overlay showed, sampled every second of the window."""
    latencies = [latency * 1000 for _, latency in sorted(arrivals)]
    thirds = [part for part in np.array_split(np.array(latencies), 3)] if latencies else []
    delta = {key: after[key] - before[key] for key in ("sent", "skipped", "processed", "dropped", "detections")}
    return {
        "delivered_fps": round(len(latencies) / seconds, 1),
        "frames_delivered": len(latencies),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "max": round(max(latencies), 1) if latencies else None},
        "latency_p50_ms_by_third": [percentile(list(part), 50) for part in thirds],
        "frames_sent": delta["sent"], "skipped_by_sender": delta["skipped"],
        "frames_processed": delta["processed"], "dropped_by_pipeline": delta["dropped"],
        "detections": delta["detections"],
        "pipeline_fps": round(delta["processed"] / seconds, 1),
        "overlay_fps_mean": round(float(np.mean(overlay_fps)), 1),
        "overlay_fps_error_pct": round(100 * (float(np.mean(overlay_fps)) * seconds / delta["processed"] - 1), 1)
        if delta["processed"] else None,
        "detect_every_at_end": after["detect_every"], "skipping_at_end": after["skipping"],
    }


async def open_streams(count: int, clip: list[np.ndarray], classifier, settings: LiveSettings, capacity: int,
                       fps: int = FPS, aiortc_browser: bool = False) -> list[Stream]:
    """`count` viewers arriving one after another (one MediaRelay and one StreamSeats, as the page's process): each
    one the page lets start (StreamSeats.open_for) is connected and has a first annotated frame back before the next
    one arrives. Returns the connected streams."""
    loop, relay, seats = asyncio.get_running_loop(), MediaRelay(), StreamSeats(capacity)
    streams = []
    for _ in range(count):
        stream = Stream(clip, classifier, settings, relay, loop, seats, fps, aiortc_browser)
        if not seats.open_for(stream.pipeline, time.perf_counter()):
            continue
        await stream.connect()
        await asyncio.wait_for(stream.first.wait(), CONNECT_SECONDS)
        streams.append(stream)
    return streams


async def close_streams(streams: list[Stream]) -> None:
    for stream in streams:
        await stream.close()


async def measure(count: int, clip: list[np.ndarray], classifier, settings: LiveSettings, seconds: float,
                  warmup: float, capacity: int, fps: int = FPS, aiortc_browser: bool = False) -> dict:
    """`count` viewers: connect those served, stream `warmup` seconds, then measure `seconds`; the JSON line's
    fields (the targets are those of the streams served)."""
    streams = await open_streams(count, clip, classifier, settings, capacity, fps, aiortc_browser)
    try:
        await asyncio.sleep(warmup)
        since, before = time.monotonic(), [stream.totals() for stream in streams]
        overlays = [[] for _ in streams]
        while (left := since + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            for stream, shown in zip(streams, overlays):
                shown.append(stream.pipeline.snapshot().fps)
        until, after = time.monotonic(), [stream.totals() for stream in streams]
        await asyncio.sleep(GRACE_SECONDS)
        per_stream = [window_stats(stream.take(since, until), b, a, until - since, shown)
                      for stream, b, a, shown in zip(streams, before, after, overlays)]
        extra = {"codecs": streams[0].codecs, "undecoded_frames": sum(s.undecoded for s in streams)}
    finally:
        await close_streams(streams)
    worst_fps = min(s["delivered_fps"] for s in per_stream)
    p95s = [s["latency_ms"]["p95"] for s in per_stream]
    worst_p95 = None if None in p95s else max(p95s)
    target = TARGETS.get(len(streams), SEVERAL_STREAMS_TARGET)
    met = bool(worst_fps >= target.get("delivered_fps", 0) and worst_p95 is not None
               and worst_p95 <= target["latency_p95_ms"])
    return {"streams": count, "served": len(streams), "refused": count - len(streams), "capacity": capacity,
            "seconds": round(until - since, 1), "camera_fps": fps, "model": classifier.path.name,
            "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "browser_receiver": "aiortc" if aiortc_browser else "marker bit", "live_busy_budget": LIVE_BUSY_BUDGET,
            "delivered_fps_min": worst_fps, "latency_p95_ms_max": worst_p95, "targets": target, "targets_met": met,
            **extra, "per_stream": per_stream}


def quiet_logs() -> None:
    """aiortc and streamlit-webrtc log every connection step; Streamlit warns that no script is running."""
    streamlit.logger.set_log_level("ERROR")
    for name in ("aiortc", "aioice", "streamlit_webrtc"):
        logging.getLogger(name).setLevel(logging.ERROR)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and clip arguments the WebRTC benchmark and the soak share."""
    parser.add_argument("--model", help="RUN_ID or an .onnx file; default: a random-weights model (same speed)")
    parser.add_argument("--int8", action="store_true",
                        help="the run's model.int8.onnx (the Live page starts with it where the run timed it faster)")
    parser.add_argument("--clip-frames", type=int, default=150, help="frames of the clip, played in a loop")
    parser.add_argument("--fps", type=int, default=FPS, help="the camera's frame rate")
    parser.add_argument("--data", default=os.environ.get("MASKDET_TEST_DATA")
                        or str((ROOT / "../shared/datasets/masks-small").resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="stream counts, one line each")
    parser.add_argument("--seconds", type=float, default=30, help="measured seconds per stream count")
    parser.add_argument("--capacity", type=int, default=load_settings().live_streams,
                        help="camera streams served at once (MASKDET_LIVE_STREAMS; default: one per core)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds streamed before measuring")
    parser.add_argument("--aiortc-browser", action="store_true", help="the browser side receives with aiortc's own "
                        "jitter buffer, which holds each frame until the next one starts (33 ms more at 30 fps)")
    args = parser.parse_args()
    quiet_logs()
    clip = make_clip(clip_photos(Path(args.data)), args.clip_frames)
    classifier = load_or_make_classifier(args.model, args.int8, clip)
    for count in args.streams:
        print(json.dumps(asyncio.run(measure(count, clip, classifier, LiveSettings(), args.seconds, args.warmup,
                                             args.capacity, args.fps, args.aiortc_browser))), flush=True)


if __name__ == "__main__":
    main()
