"""A reproducible test clip built from face photos, for the live benchmark and the fake-camera browser test."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskdet.bundle.crop_rule import square_crop_box
from maskdet.vision.faces import FaceDetector


def clip_photos(data: Path, count: int = 3) -> list[Path]:
    """The first `count` photos of each class folder of masks-small (or any folder of class folders), interleaved."""
    folders = sorted(p for p in Path(data).iterdir() if p.is_dir())
    return [photo for group in zip(*(sorted(folder.glob("*.jpg"))[:count] for folder in folders)) for photo in group]


def portraits(photos: list[Path], margin: float = 1.8) -> list[Image.Image]:
    """Each photo cut to a square around its largest face (photos without a face are left out)."""
    detector = FaceDetector()
    cuts = []
    for path in photos:
        image = np.asarray(Image.open(path).convert("RGB"))
        faces = detector.detect([image])[0]
        if faces:
            left, top, right, bottom = square_crop_box(faces[0].box, image.shape[1], image.shape[0], margin)
            cuts.append(Image.fromarray(image[top:bottom, left:right]))
    if not cuts:
        raise ValueError("None of the clip photos has a face.")
    return cuts


def make_clip(photos: list[Path], frames: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """RGB frames with 1-4 faces (one joins or leaves every second) drifting across and growing/shrinking.

    Faces are 60-120 pixels wide at 640x480, like people one to two metres from a webcam."""
    rng = np.random.default_rng(seed)
    width, height = size
    faces = portraits(photos)
    clip = []
    for index in range(frames):
        count = (1, 2, 3, 4, 3, 2)[(index // 25) % 6]
        frame = Image.new("RGB", size, (70, 90, 80))
        for k in range(count):
            t = index / 25
            side = int(height * (0.3 + 0.1 * np.sin(t * 1.3 + k)))
            x = int(min(k * width / 4 + 40 + 40 * np.sin(t + k * 2), width - side))
            y = int(height * 0.29 + 60 * np.cos(t * 0.8 + k))
            frame.paste(faces[k % len(faces)].resize((side, side)), (x, min(y, height - side)))
        pixels = np.asarray(frame).astype(np.int16) + rng.integers(-4, 5, (height, width, 3))
        clip.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return clip


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 25) -> Path:
    """Write RGB frames as a YUV4MPEG2 (4:2:0) file, the format Chromium's fake camera reads."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return Path(path)
