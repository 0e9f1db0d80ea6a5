"""A reproducible test clip built from face photos, for the live benchmark and the fake-camera browser test."""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def clip_photos(data: Path, count: int = 3) -> list[Path]:
    """The first `count` photos of each class folder of masks-small (or any folder of class folders), interleaved."""
    folders = sorted(p for p in Path(data).iterdir() if p.is_dir())
    return [photo for group in zip(*(sorted(folder.glob("*.jpg"))[:count] for folder in folders)) for photo in group]


def make_clip(photos: list[Path], frames: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """RGB frames with 1-4 faces (one joins or leaves every second) drifting across and growing/shrinking."""
    rng = np.random.default_rng(seed)
    width, height = size
    faces = [Image.open(p).convert("RGB") for p in photos]
    clip = []
    for index in range(frames):
        count = (1, 2, 3, 4, 3, 2)[(index // 25) % 6]
        frame = Image.new("RGB", size, (70, 90, 80))
        for k in range(count):
            t = index / 25
            side = int(height * (0.31 + 0.1 * np.sin(t * 1.3 + k)))
            x = int((k * width / 4 + 40 * np.sin(t + k * 2)) % (width - side))
            y = int(height * 0.29 + 60 * np.cos(t * 0.8 + k))
            face = faces[k % len(faces)].resize((side, int(side * 1.2)))
            frame.paste(face, (x, min(y, height - face.height)))
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
