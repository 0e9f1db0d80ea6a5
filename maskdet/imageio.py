"""Safe image decoding: every failure becomes a BadImage with a reason a user can act on."""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # we enforce our own limit before decoding pixels


class BadImage(ValueError):
    """The bytes are not a usable image; str(error) says why."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB; an image with transparency (alpha, or a palette's transparent entries) is laid on white first."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode bytes to an RGB uint8 array (EXIF orientation applied), refusing huge or broken files."""
    if not data:
        raise BadImage("empty file")
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:
        raise BadImage("not an image file (unrecognised format)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image)
    except Exception as error:
        raise BadImage(f"corrupt or truncated image ({error})") from None
    if min(rgb.size) < 8:
        raise BadImage(f"image too small: {width}x{height} pixels")
    return np.asarray(rgb)
