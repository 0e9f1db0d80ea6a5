"""What the Live page runs besides widgets: the webcam frame callback, annotating an uploaded photo or short video,
adding one of their faces to the dataset, and keeping uploaded model files. No Streamlit here."""

import hashlib
import io
import logging
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.core.imageio import decode_image
from maskdet.data.catalog import FaceRecord
from maskdet.data.store import Store
from maskdet.serving.classifier import load_classifier
from maskdet.serving.live import Counters, LivePipeline, LiveSettings, StreamSeats
from maskdet.serving.predict import FacePrediction, TextStyle, annotate
from maskdet.vision.faces import Face, FaceDetector, box_iou

MAX_VIDEO_SECONDS = 30  # an uploaded video is processed while the user waits (docs/performance.md)
MAX_VIDEO_SIDE = 1280  # larger frames are scaled down before detection and in the output
MAX_VIDEO_PIXELS = 1920 * 1080  # a frame (Full HD): a 4K one costs 4x the decoding, and the CPU target has no room
MAX_DECODED_RATE = 60  # frames a second decoded: duration x min(rate, this) frames at most, whatever the file claims
# Frames annotated at most: a longer video is sampled evenly (30 s at 30 fps: every third frame), so that the longest
# video keeps within the 30 s of CPU a 2 MB upload may cost (docs/performance.md).
MAX_ANNOTATED_FRAMES = 360
VIDEO_TYPES = ("mp4", "mov", "m4v", "webm", "mkv", "avi")
ENCODERS = (("libx264", "mp4", "video/mp4"), ("libvpx", "webm", "video/webm"))  # what browsers play, best first
UPLOADED_MODELS = "uploaded-models"  # folder under the data home
LOG_EVERY = 100  # frames between two summary lines of a live stream

log = logging.getLogger("maskdet.serving.live")


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


def full_picture(picture: np.ndarray, seats: StreamSeats) -> av.VideoFrame:
    """A stream's RGB picture with full_message drawn on it, as the frame sent back to a viewer without a seat."""
    style = TextStyle.for_image(picture)
    for line, text in enumerate(full_message(seats)):
        style.draw(picture, text, 0, line * style.size(text)[1], (160, 0, 0))
    return av.VideoFrame.from_ndarray(picture, format="rgb24")


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
            return [full_picture(picture, seats)]
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


# ---- a face of a photo or video frame into the dataset -------------------------------------------

SAME_FACE_IOU = 0.5  # boxes overlapping this much (intersection over union) are taken to be the same face


@dataclass(frozen=True)
class AddedFace:
    added: bool  # False: it was in the dataset already, nothing changed
    message: str  # what happened, as a sentence


def add_face(store: Store, data: bytes, name: str, number: int, box, label: str, detector: FaceDetector,
             quote: Callable[[str], str] = str) -> AddedFace:
    """Add face `number` of a photo file (its box in pixels of the decoded photo) to the existing class `label`: a new
    photo goes in through the store's import (SHA-256 duplicates, near-duplicate groups, rejections) with this face as
    its face; a photo in the dataset already gets this face beside its others, unless one of them is this face. A class
    deleted meanwhile or a rejected file raises a StoreError saying so; `quote` writes the file names in the
    sentences."""
    if label not in store.labels():
        raise StoreError(f"The class {label} is not in the dataset any more (deleted meanwhile?): choose another "
                         "class. Nothing was added.")
    stored = store.faces_of_photo(hashlib.sha256(data).hexdigest())
    if not stored:
        return import_face(store, name, data, box, label, detector, quote,
                           f"Added {quote(name)} to {label} with face {number}'s box.")
    same = [record for record in stored if record.face is not None and box_iou(record.face.box, box) >= SAME_FACE_IOU]
    if same:
        return AddedFace(False, f"{quote(name)} is already in the dataset with face {number} as {same[0].label}: "
                                "nothing added.")
    store.add_face(stored[0].photo_id, label, face_at(store, stored[0], box, detector))
    return AddedFace(True, f"Added face {number} of {quote(name)} to {label}: the photo was in the dataset already, "
                           f"and now holds {len(stored) + 1} faces.")


def import_face(store: Store, name: str, data: bytes, box, label: str, detector: FaceDetector,
                quote: Callable[[str], str], done: str) -> AddedFace:
    """Import one file into `label` and make `box` its face box (add_face)."""
    report = store.add_images([(name, data)], label, detector)
    if report.rejected:
        raise StoreError(f"{quote(name)} was not added: {report.rejected[0][1]}.")
    (record,) = store.faces_of_photo(hashlib.sha256(data).hexdigest())
    if report.duplicates:
        return AddedFace(False, f"{quote(name)} is already in the dataset as {record.label}: nothing added.")
    store.set_face(record.id, face_at(store, record, box, detector))
    return AddedFace(True, done)


def face_at(store: Store, record: FaceRecord, box, detector: FaceDetector) -> Face:
    """The face the dataset's detector finds in a stored photo where `box` is (its box and landmarks, like the other
    photos'), or `box` itself, kept inside the photo, as if drawn by hand when it finds none there."""
    faces = [face for face in store.detect_faces(record, detector) if box_iou(face.box, box) >= SAME_FACE_IOU]
    if faces:
        return max(faces, key=lambda face: box_iou(face.box, box))
    x1, y1, x2, y2 = box
    return Face((max(0.0, x1), max(0.0, y1), min(float(record.width), x2), min(float(record.height), y2)), 1.0)


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


@dataclass
class SampledVideo:
    rate: Fraction  # frames a second, as the file says
    step: int  # every step-th decoded frame is kept
    total: int  # frames kept, as far as the header tells
    frames: Iterator[av.VideoFrame]  # the kept frames, decoded one at a time


@contextmanager
def sampled_video(source: bytes | Path, max_seconds: float = MAX_VIDEO_SECONDS) -> Iterator[SampledVideo]:
    """Open a short video and decode the frames annotate_video uses: every step-th one, so that at most
    MAX_ANNOTATED_FRAMES are kept. What a file costs is bounded whatever its header says: at most max_seconds x
    MAX_DECODED_RATE frames of at most MAX_VIDEO_PIXELS are decoded; beyond that, a ValueError says why."""
    with open_video(source) as container:
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
        step = max(1, math.ceil(expected / MAX_ANNOTATED_FRAMES))
        yield SampledVideo(rate, step, math.ceil(expected / step),
                           kept_frames(container, stream, step, expected, max_seconds, rate))


def kept_frames(container: av.container.InputContainer, stream: av.VideoStream, step: int, expected: int,
                max_seconds: float, rate: Fraction) -> Iterator[av.VideoFrame]:
    most = max_seconds * min(rate, MAX_DECODED_RATE)  # frames decoded at most
    kept = 0
    try:
        for index, frame in enumerate(container.decode(stream)):
            if index >= most:
                raise ValueError(f"The video has more frames than {max_seconds:g} s at "
                                 f"{float(min(rate, MAX_DECODED_RATE)):g} frames a second: trim it to a short "
                                 f"clip (at most {MAX_DECODED_RATE} frames a second) and upload it again.")
            check_frame_size(frame.width, frame.height)
            if index % step:
                continue
            if kept == MAX_ANNOTATED_FRAMES:
                raise ValueError(f"The video has more frames than its header says ({expected}): re-export it "
                                 "as MP4 and upload it again.")
            kept += 1
            yield frame
    except av.FFmpegError as error:
        raise ValueError(f"The video could not be decoded after {kept} frames ({error.strerror}). "
                         "Re-export it as MP4 and upload it again.") from None
    if kept == 0:
        raise ValueError("The video has no frames that could be decoded. Re-export it as MP4 and upload it again.")


def frame_size(frame: av.VideoFrame) -> tuple[int, int]:
    """Width and height a frame is scaled to: at most MAX_VIDEO_SIDE on the longer side, even (H.264 needs it)."""
    scale = min(1.0, MAX_VIDEO_SIDE / max(frame.width, frame.height))
    return even(frame.width * scale), even(frame.height * scale)


def upright(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """The frame as RGB, scaled to `size` and turned upright (rotation metadata)."""
    return np.rot90(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"), round(frame.rotation / 90))


def annotate_video(source: bytes | Path, pipeline: LivePipeline, progress=None,
                   max_seconds: float = MAX_VIDEO_SECONDS) -> AnnotatedVideo:
    """Run a fresh pipeline over the frames of a short video (sampled_video: upright, scaled to frame_size, a longer
    video sampled evenly) and encode the annotated frames; audio is dropped. progress(done, total)."""
    codec, container_format, mime = video_encoder()
    with sampled_video(source, max_seconds) as video, tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"annotated.{container_format}"
        frames, size = 0, None
        with av.open(str(path), "w", format=container_format,
                     options={"movflags": "+faststart"} if container_format == "mp4" else {}) as output:
            for frame in video.frames:
                size = size or frame_size(frame)
                annotated, _ = pipeline.process(upright(frame, size))
                if frames == 0:
                    encoder = output.add_stream(codec, rate=video.rate / video.step,
                                                options={"crf": "23", "preset": "veryfast"} if codec == "libx264"
                                                else {"crf": "10", "b": "2M"})
                    encoder.height, encoder.width = annotated.shape[:2]
                    encoder.pix_fmt = "yuv420p"
                output.mux(encoder.encode(av.VideoFrame.from_ndarray(annotated, format="rgb24")))
                frames += 1
                if progress:
                    progress(frames, max(video.total, frames))
            output.mux(encoder.encode())
        seconds = float(frames * video.step / video.rate)
        return AnnotatedVideo(path.read_bytes(), mime, container_format, frames, seconds, encoder.width, encoder.height,
                              pipeline.snapshot())


def video_frame(source: bytes | Path, number: int, max_seconds: float = MAX_VIDEO_SECONDS) -> bytes:
    """Frame `number` (from 1) of the annotated video, as annotate_video saw it, as a JPEG file: to annotate on its own
    and add its faces to the dataset. The video is decoded again up to that frame, holding one frame at a time."""
    kept = 0
    with sampled_video(source, max_seconds) as video:
        for kept, frame in enumerate(video.frames, start=1):
            if kept == number:
                buffer = io.BytesIO()
                Image.fromarray(upright(frame, frame_size(frame))).save(buffer, format="JPEG", quality=95)
                return buffer.getvalue()
    raise ValueError(f"The video has {kept} frames: choose one from 1 to {kept}.")


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
