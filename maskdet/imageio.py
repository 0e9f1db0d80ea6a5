"""Safe image decoding: every failure becomes a BadImage with a reason a user can act on."""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from .bundle.pixels import FORMATS, to_rgb

# A JPEG holds under 100 pixels a byte however flat the photo (measured: a blank 4:2:0 JPEG 60-64, the real photos
# of masks-small at most 20); a larger picture holding more is a flat PNG/GIF/TIFF, the shape of a decompression
# bomb. This bounds the pixels, so the memory and time, that a file of a given size can cost.
MAX_PIXELS_PER_BYTE = 100
BOMB_FLOOR_PIXELS = 1_000_000  # pictures up to this size cost little (3 MB decoded): flat icons and drawings pass


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
    if width * height > max(BOMB_FLOOR_PIXELS, MAX_PIXELS_PER_BYTE * len(data)):
        raise BadImage(f"image too large for its file: {width}x{height} pixels in {len(data):,} bytes, over "
                       f"{MAX_PIXELS_PER_BYTE} pixels a byte (a nearly blank picture, as decompression bombs are; "
                       "re-save it as JPEG if it is a photo)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = to_rgb(image)
    except Exception as error:
        raise BadImage(f"corrupt or truncated image ({error})") from None
    if min(rgb.size) < 8:
        raise BadImage(f"image too small: {width}x{height} pixels")
    return np.asarray(rgb)
