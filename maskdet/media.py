"""What the Live page runs besides widgets: the webcam frame callback, annotating an uploaded photo or short video,
and keeping uploaded model files. No Streamlit here."""

import io
import logging
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .export import load_classifier
from .imageio import decode_image
from .live import Counters, LivePipeline, LiveSettings, StreamSeats
from .predict import FacePrediction, TextStyle, annotate

MAX_VIDEO_SECONDS = 30  # an uploaded video is processed while the user waits (the longest: 20 s on 2 cores)
MAX_VIDEO_SIDE = 1280  # larger frames are scaled down before detection and in the output
MAX_VIDEO_PIXELS = 1920 * 1080  # a frame (Full HD): a 4K one costs 4x the decoding, and the CPU target has no room
MAX_DECODED_RATE = 60  # frames a second decoded: duration x min(rate, this) frames at most, whatever the file claims
# Frames annotated at most: a longer video is sampled evenly (30 s at 30 fps: every third frame). Measured on 30 s
# of Full HD at 60 fps with faces moving: 26 s of CPU beyond starting up for 360 frames (29-33 s for 450, beyond the
# target of 30 s for a 2 MB file); annotating all 1,800 frames would take about 4 times as long.
MAX_ANNOTATED_FRAMES = 360
VIDEO_TYPES = ("mp4", "mov", "m4v", "webm", "mkv", "avi")
ENCODERS = (("libx264", "mp4", "video/mp4"), ("libvpx", "webm", "video/webm"))  # what browsers play, best first
UPLOADED_MODELS = "uploaded-models"  # folder under the data home
LOG_EVERY = 100  # frames between two summary lines of a live stream

log = logging.getLogger("maskdet.live")


# ---- the webcam stream ---------------------------------------------------------------------------

def summary(counters: Counters) -> str:
    """One line of what a pipeline has done, for the server log."""
    labels = ", ".join(f"{label} {count}" for label, count in sorted(counters.labels.items()))
    return (f"{counters.frames} frames, {counters.dropped} dropped, {counters.detections} detections, "
            f"{counters.faces_classified} faces classified ({labels or 'none'}), {counters.fps:.1f} fps")


def full_message(seats: StreamSeats) -> list[str]:
    """What a viewer beyond the capacity is told, a line each (on the page, and on the picture of a stream that started
    anyway)."""
    streams = f"{seats.capacity} camera stream{'s' if seats.capacity > 1 else ''}"
    return [f"The dashboard is full: it serves {streams} at once.", "Press STOP, and try again when one ends."]


def frames_callback(pipeline: LivePipeline,
                    seats: StreamSeats) -> Callable[[list[av.VideoFrame]], Awaitable[list[av.VideoFrame]]]:
    """streamlit-webrtc's queued_video_frames_callback. It gets the frames that arrived since the last call (more
    than one when the pipeline was slower than the camera): the newest is annotated, the older ones are dropped and
    counted, so the picture never falls behind. A stream without a seat (the page checks before it starts one, but
    two viewers may start at the same moment) gets its picture back with full_message on it, unprocessed. A log line
    every LOG_EVERY frames."""
    async def callback(frames: list[av.VideoFrame]) -> list[av.VideoFrame]:
        picture = frames[-1].to_ndarray(format="rgb24")
        if not seats.take(pipeline, time.perf_counter()):
            style = TextStyle.for_image(picture)
            for line, text in enumerate(full_message(seats)):
                style.draw(picture, text, 0, line * style.size(text)[1], (160, 0, 0))
            return [av.VideoFrame.from_ndarray(picture, format="rgb24")]
        annotated, _ = pipeline.process(picture, dropped=len(frames) - 1)
        counters = pipeline.snapshot()
        if counters.frames % LOG_EVERY == 0:
            log.info("live: %s", summary(counters))
        return [av.VideoFrame.from_ndarray(annotated, format="rgb24")]
    return callback


def ended_callback(pipeline: LivePipeline, seats: StreamSeats) -> Callable[[], None]:
    """streamlit-webrtc's on_video_ended: free the stream's seat and log the pipeline's totals."""
    def ended() -> None:
        seats.release(pipeline)
        log.info("live stream ended: %s", summary(pipeline.snapshot()))
    return ended


# ---- an uploaded photo ---------------------------------------------------------------------------

@dataclass
class AnnotatedPhoto:
    png: bytes
    predictions: list[FacePrediction]
    faces_found: int  # before the max_faces cap
    width: int  # of the photo, in pixels


def photo_settings(settings: LiveSettings) -> LiveSettings:
    """Photos are unrelated frames: detect faces in every one."""
    return replace(settings, detect_every=1)


def annotate_photo(data: bytes, pipeline: LivePipeline, max_pixels: int) -> AnnotatedPhoto:
    """Find, classify and draw the faces of a photo file; `pipeline` must detect on every frame (photo_settings)."""
    image = decode_image(data, max_pixels)
    _, result = pipeline.process(image)
    buffer = io.BytesIO()
    Image.fromarray(annotate(image, result.predictions, pipeline.classifier.labels)).save(buffer, format="PNG")
    return AnnotatedPhoto(buffer.getvalue(), result.predictions, result.faces_found, image.shape[1])


def prediction_rows(predictions: list[FacePrediction]) -> list[dict]:
    """One table row per face: label, probability, each class's probability and the box."""
    return [{"face": number, "label": p.label, "probability": round(p.probability, 3),
             **{f"p({label})": round(value, 3) for label, value in p.probabilities.items()},
             "box": ", ".join(f"{v:.0f}" for v in p.box)} for number, p in enumerate(predictions, start=1)]


# ---- an uploaded video ---------------------------------------------------------------------------

@dataclass
class AnnotatedVideo:
    data: bytes
    mime: str  # video/mp4 (H.264) or video/webm (VP8)
    suffix: str
    frames: int
    seconds: float
    width: int
    height: int
    counters: Counters


def video_encoder() -> tuple[str, str, str]:
    """(codec, container format, mime type) of the best encoder this PyAV build has that browsers play."""
    for codec, container_format, mime in ENCODERS:
        try:
            av.Codec(codec, "w")
            return codec, container_format, mime
        except ValueError:  # av.codec.codec.UnknownCodecError
            continue
    raise ValueError("This installation can encode neither H.264 nor VP8 video; reinstall the 'av' package.")


def open_video(source: bytes | Path) -> av.container.InputContainer:
    """Open a video file, or raise ValueError saying why it is not one."""
    try:
        container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except av.FFmpegError:
        raise ValueError("This file is not a video in a readable format. Upload an MP4, MOV, WebM, MKV or AVI "
                         "video.") from None
    if container.format.name.endswith("_pipe") or container.format.name == "image2":
        container.close()
        raise ValueError("This file is a still image, not a video: upload it as a photo instead.")
    if not container.streams.video:
        container.close()
        raise ValueError("This file has no video track (audio only?). Upload a video recording.")
    return container


def video_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """The length the file's header states; 0 when it states none (the frame count is checked while decoding)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def annotate_video(source: bytes | Path, pipeline: LivePipeline, progress=None,
                   max_seconds: float = MAX_VIDEO_SECONDS) -> AnnotatedVideo:
    """Run a fresh pipeline over the frames of a short video and encode the annotated frames.

    Frames are turned upright (rotation metadata) and scaled to at most MAX_VIDEO_SIDE pixels on the longer side,
    with even sides (H.264 needs them); a video of more than MAX_ANNOTATED_FRAMES frames is sampled evenly down to
    them, and audio is dropped. What a file costs is bounded whatever its header says: at most max_seconds x
    MAX_DECODED_RATE frames of at most MAX_VIDEO_PIXELS are decoded, and at most MAX_ANNOTATED_FRAMES annotated.
    progress(done, total)."""
    codec, container_format, mime = video_encoder()
    with open_video(source) as container, tempfile.TemporaryDirectory() as folder:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        check_frame_size(stream.codec_context.width, stream.codec_context.height)
        stream.codec_context.options = {"max_pixels": str(MAX_VIDEO_PIXELS)}  # the decoder refuses larger frames
        seconds = video_seconds(container, stream)
        if seconds > max_seconds:
            raise ValueError(f"The video is {seconds:.0f} s long; the limit is {max_seconds:g} s. "
                             "Trim it to a short clip and upload it again.")
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        expected = stream.frames or math.ceil(seconds * rate)
        step = max(1, math.ceil(expected / MAX_ANNOTATED_FRAMES))  # annotate every step-th frame
        most = max_seconds * min(rate, MAX_DECODED_RATE)  # frames decoded at most
        total = math.ceil(expected / step)
        path = Path(folder) / f"annotated.{container_format}"
        frames, size = 0, None
        with av.open(str(path), "w", format=container_format,
                     options={"movflags": "+faststart"} if container_format == "mp4" else {}) as output:
            try:
                for index, frame in enumerate(container.decode(stream)):
                    if index >= most:
                        raise ValueError(f"The video has more frames than {max_seconds:g} s at "
                                         f"{float(min(rate, MAX_DECODED_RATE)):g} frames a second: trim it to a short "
                                         f"clip (at most {MAX_DECODED_RATE} frames a second) and upload it again.")
                    check_frame_size(frame.width, frame.height)
                    if index % step:
                        continue
                    if frames == MAX_ANNOTATED_FRAMES:
                        raise ValueError(f"The video has more frames than its header says ({expected}): re-export it "
                                         "as MP4 and upload it again.")
                    if size is None:
                        scale = min(1.0, MAX_VIDEO_SIDE / max(frame.width, frame.height))
                        size = even(frame.width * scale), even(frame.height * scale)
                    rgb = np.rot90(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"),
                                   round(frame.rotation / 90))
                    annotated, _ = pipeline.process(rgb)
                    if frames == 0:
                        encoder = output.add_stream(codec, rate=rate / step, options={"crf": "23", "preset": "veryfast"}
                                                    if codec == "libx264" else {"crf": "10", "b": "2M"})
                        encoder.height, encoder.width = annotated.shape[:2]
                        encoder.pix_fmt = "yuv420p"
                    output.mux(encoder.encode(av.VideoFrame.from_ndarray(annotated, format="rgb24")))
                    frames += 1
                    if progress:
                        progress(frames, max(total, frames))
            except av.FFmpegError as error:
                raise ValueError(f"The video could not be decoded after {frames} frames ({error.strerror}). "
                                 "Re-export it as MP4 and upload it again.") from None
            if frames == 0:
                raise ValueError("The video has no frames that could be decoded. Re-export it as MP4 and upload "
                                 "it again.")
            output.mux(encoder.encode())
        return AnnotatedVideo(path.read_bytes(), mime, container_format, frames, float(frames * step / rate),
                              encoder.width, encoder.height, pipeline.snapshot())


def check_frame_size(width: int, height: int) -> None:
    """Refuse frames above MAX_VIDEO_PIXELS, which cost memory and time before they can be scaled down."""
    if width * height > MAX_VIDEO_PIXELS:
        raise ValueError(f"The video's frames are {width}x{height} pixels; the limit is {MAX_VIDEO_PIXELS:,} pixels "
                         "a frame. Export it at Full HD (1920x1080) or less and upload it again.")


# ---- uploaded model files ------------------------------------------------------------------------

def uploaded_models(home: Path) -> list[Path]:
    """Model files uploaded on the Live page, newest first."""
    folder = Path(home) / UPLOADED_MODELS
    return sorted(folder.glob("*.onnx"), key=lambda path: path.stat().st_mtime, reverse=True)


def save_uploaded_model(home: Path, name: str, data: bytes) -> Path:
    """Keep an uploaded maskdet ONNX file under the data home; a file that is not one raises NotAMaskdetModel and
    leaves nothing behind (a same-named model already there is kept)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem).strip("-") or "model"
    folder = Path(home) / UPLOADED_MODELS
    incoming = folder / f".incoming-{uuid.uuid4().hex[:8]}"
    incoming.mkdir(parents=True)
    candidate = incoming / f"{stem}.onnx"
    try:
        candidate.write_bytes(data)
        load_classifier(candidate)
        os.replace(candidate, folder / candidate.name)
    finally:
        candidate.unlink(missing_ok=True)
        incoming.rmdir()
    return folder / candidate.name
