"""maskdet's crop rule, the one of training, evaluation and prediction. Needs only numpy and Pillow."""

import numpy as np
from PIL import Image


def square_crop_box(box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """A square of side margin * the face box's longer side, centred on the face, shifted (and if needed shrunk) to
    stay inside the width x height image: left, top, right, bottom in whole pixels."""
    x1, y1, x2, y2 = box
    side = min(max(x2 - x1, y2 - y1) * margin, width, height)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    side_px = max(1, round(side))
    left_px, top_px = round(left), round(top)
    return left_px, top_px, min(left_px + side_px, width), min(top_px + side_px, height)


def crop(image: np.ndarray, box, margin: float, size: int) -> np.ndarray:
    """The face cut out of an RGB array by the crop rule, resized to size x size (bilinear); box None: the whole
    image."""
    height, width = image.shape[:2]
    if box is not None:
        left, top, right, bottom = square_crop_box(box, width, height, margin)
        image = image[top:bottom, left:right]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
