"""Photos as maskdet and the bundle's script both read them: which files, which formats, any mode to 8-bit RGB.
Needs only numpy and Pillow."""

import stat
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF")  # the formats read (the JPEG opener also reads cameras' MPO)
WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # greyscale with more than 8 bits a sample
ALPHA = ("RGBA", "LA", "PA", "La", "RGBa")
# Progressive JPEGs from real encoders have about ten scans; each scan is a pass over the whole picture, so a small file
# of thousands of empty scans costs minutes of decoding.
MAX_JPEG_SCANS = 100


def grey_to_8bit(samples: np.ndarray, mode: str) -> np.ndarray:
    """16-bit samples divided by 257 (65535 -> 255); 32-bit integers likewise when above 255; floats in 0-1 times
    255; anything larger scaled by its maximum."""
    values = samples.astype(np.float32)  # one float copy, scaled in place: a 40-megapixel image costs 160 MB, not 1 GB
    top = float(values.max(initial=0.0))
    if mode.startswith("I;16"):
        scale = 1 / 257
    elif mode == "F" and top <= 1.0:
        scale = 255.0
    else:
        scale = 1.0 if top <= 255 else 1 / 257 if top <= 65535 else 255 / top
    values *= scale
    return np.clip(np.round(values, out=values), 0, 255, out=values).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode Pillow opens: wide greyscale scaled (not clipped), transparency laid on white."""
    if image.mode in WIDE_GREY:
        samples = np.asarray(image)
        grey = Image.fromarray(grey_to_8bit(samples, image.mode)).convert("RGB")
        if "transparency" not in image.info:
            return grey
        opaque = Image.fromarray(np.where(samples == image.info["transparency"], 0, 255).astype(np.uint8))
        return Image.composite(grey, Image.new("RGB", image.size, (255, 255, 255)), opaque)
    if image.mode in ALPHA or "transparency" in image.info:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def file_size_problem(path: Path, max_bytes: int) -> str | None:
    """Why a photo file is not read, checked before reading it (None: it may be): it is not a regular file once links
    are followed (a FIFO would block forever, a link to /dev/zero would fill the memory), or it is over max_bytes."""
    try:
        info = Path(path).stat()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, device or socket)"
    if info.st_size > max_bytes:
        return f"file larger than {max_bytes // 2**20} MiB"
    return None


def scans_problem(data: bytes) -> str | None:
    """Why a JPEG's bytes are not decoded (None: they may be): more scans (SOS markers, which entropy-coded data never
    holds) than MAX_JPEG_SCANS."""
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        return (f"a progressive JPEG of {scans:,} scans, where cameras and encoders write at most a few tens: decoding "
                "it would take minutes (re-save it if it is a photo)")
    return None


def image_files(names: list[str]) -> list[str]:
    """Image files named directly, plus the image files inside named folders; a name that does not exist raises
    FileNotFoundError."""
    files = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            files += [str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.exists():
            files.append(name)
        else:
            raise FileNotFoundError(f"No such file: {name}.")
    return files
