"""Safe image decoding: every failure becomes a BadImage with a reason a user can act on."""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from .bundle.pixels import FORMATS, to_rgb


class BadImage(ValueError):
    """The bytes are not a usable image; str(error) says why."""


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode bytes to an RGB uint8 array (EXIF orientation applied), refusing huge or broken files."""
    if not data:
        raise BadImage("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise BadImage(f"image too large ({error})") from None
    except Exception:
        raise BadImage("not an image file (JPEG, PNG, BMP, WebP, GIF or TIFF expected)") from None
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
