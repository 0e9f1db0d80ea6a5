"""Safe image decoding: every failure becomes a BadImage with a reason a user can act on."""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from maskdet.bundle.pixels import FORMATS, scans_problem, to_rgb
from maskdet.core.errors import MaskdetError

# A JPEG holds under 100 pixels a byte however flat the photo (docs/performance.md); a larger picture holding more is
# a flat PNG/GIF/TIFF, the shape of a decompression bomb. Bytes are counted as the file arrived: a blank JPEG deflates
# to a few hundred bytes in a zip whatever its size, so a 2 MB zip could otherwise hold thousands of blank megapixel
# photos. This bounds the pixels, so the memory and time, that an upload of a given size can cost.
MAX_PIXELS_PER_BYTE = 100
BOMB_FLOOR_PIXELS = 256 * 256  # pictures up to this size cost little to decode: flat icons and drawings pass


class BadImage(MaskdetError):
    """The bytes are not a usable image; str(error) says why."""


class NotAnImage(BadImage):
    """The bytes are no image format maskdet reads (another kind of file, or a damaged photo)."""


def decode_image(data: bytes, max_pixels: int, arrived_bytes: int | None = None) -> np.ndarray:
    """Decode bytes to an RGB uint8 array (EXIF orientation applied), refusing huge or broken files. arrived_bytes:
    what the file took as it arrived, compressed in a zip (default len(data)); pixels a byte are counted on it."""
    if not data:
        raise BadImage("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise BadImage(f"image too large ({error})") from None
    except Exception:
        raise NotAnImage("not an image file (JPEG, PNG, BMP, WebP, GIF or TIFF expected)") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    size = min(len(data), arrived_bytes or len(data))
    if width * height > max(BOMB_FLOOR_PIXELS, MAX_PIXELS_PER_BYTE * size):
        raise BadImage(f"image too large for its file: {width}x{height} pixels in {size:,} bytes, over "
                       f"{MAX_PIXELS_PER_BYTE} pixels a byte (a nearly blank picture, as decompression bombs are; "
                       "re-save it as JPEG if it is a photo)")
    problem = scans_problem(data) if image.format in ("JPEG", "MPO") else None
    if problem:
        raise BadImage(problem)
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
