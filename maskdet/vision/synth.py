"""Mask synthesis: a face mask drawn from MTCNN's five landmarks onto an unmasked face, worn right or wrongly, or a
masked twin's real mask moved on its bare photo, as an extra training view (which class it trains as:
mask_rules.py)."""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from maskdet.vision.fabric import PATTERNS, Canvas, cup, drape, fold, grey3, lay_canvas, pleats, point, rings, seam

MASK_STYLES = {  # name: what the Train page calls it
    "surgical": "Surgical, pleated, ear loops",
    "cloth": "Fitted cloth",
    "n95": "N95 / KN95 cup",
    "bandana": "Bandana",
    "gaiter": "Neck gaiter",
}
PLACEMENTS = {  # name: what the Train page calls it
    "right": "Worn right",
    "under_nose": "Under the nose",
    "chin": "On the chin",
    "neck": "Pulled down to the neck",
    "one_ear": "Hanging from one ear",
}
WRONG_PLACEMENTS = tuple(name for name in PLACEMENTS if name != "right")


MIN_EYE_DISTANCE = 4.0  # pixels: a smaller face is returned unchanged
_FACE_HALF_WIDTH = 1.0  # cheek edge to the face's midline, in eye distances
_YAW_SHIFT = 1.5  # the face edges move by this times the nose's offset from the eye midpoint, away from the nose
_EYE_CLEARANCE = (0.36, 0.46)  # eye distances from an eye point: nothing drawn inside the first, all from the second
_BOTTOM = 99.0  # an outline point at this t is moved to just below the image (a gaiter runs down the neck)


@dataclass(frozen=True)
class _Frame:
    """The face's frame: u along the eye line in eye distances from the eye midpoint, t towards the mouth in
    eye-to-mouth distances; the surface coordinate s runs from -1 at one face edge through the midline to 1 at the
    other, so each side's width follows the yaw."""

    origin: np.ndarray  # eye midpoint, pixels
    x_axis: np.ndarray  # pixels per unit of u
    y_axis: np.ndarray  # pixels per unit of t
    nose: float  # nose tip's u
    mouth: float  # mouth midpoint's u
    eyes: np.ndarray  # (2, 2) pixels
    nose_t: float  # nose tip's t

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*self.x_axis))

    def sides(self, t):
        """Midline u at height t and the half-widths to the left and right face edges."""
        midline = 0.6 * self.nose + (self.mouth - 0.6 * self.nose) * np.clip((t - 0.3) / 0.7, 0, 1)
        shift = _YAW_SHIFT * self.nose
        return (midline, np.maximum(midline + _FACE_HALF_WIDTH + shift, 0.2),
                np.maximum(_FACE_HALF_WIDTH - shift - midline, 0.2))

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """(n, 2) surface points s, t to image x, y."""
        s, t = points[:, 0], points[:, 1]
        midline, left, right = self.sides(t)
        u = midline + s * np.where(s < 0, left, right)
        return self.origin + u[:, None] * self.x_axis + t[:, None] * self.y_axis

    def to_surface(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Surface s, t of pixel columns x (1, w) and rows y (h, 1)."""
        inverse = np.linalg.inv(np.column_stack([self.x_axis, self.y_axis])).astype(np.float32)
        dx, dy = x - np.float32(self.origin[0]), y - np.float32(self.origin[1])
        u, t = inverse[0, 0] * dx + inverse[0, 1] * dy, inverse[1, 0] * dx + inverse[1, 1] * dy
        midline, left, right = self.sides(t)
        return (u - midline) / np.where(u < midline, left, right), t


def _face_frame(landmarks) -> _Frame | None:
    """The frame of a face from its five landmarks; None when they are not finite or the eyes are too close."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    if not np.isfinite(points).all():
        return None
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    x_axis = right_eye - left_eye
    eye_distance = float(np.hypot(*x_axis))
    if eye_distance < MIN_EYE_DISTANCE:
        return None
    origin, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    down = np.array([-x_axis[1], x_axis[0]]) / eye_distance
    depth = float(np.dot(mouth - origin, down))
    if depth < 0:  # mirrored landmarks: the mouth is on the other side of the eye line
        down, depth = -down, -depth
    across, y_axis = x_axis / eye_distance ** 2, down * np.clip(depth, 0.6 * eye_distance, 2.0 * eye_distance)
    return _Frame(origin, x_axis, y_axis, float(np.clip(np.dot(nose - origin, across), -0.35, 0.35)),
                  float(np.clip(np.dot(mouth - origin, across), -0.35, 0.35)), points[:2],
                  float(np.clip(np.dot(nose - origin, y_axis) / np.dot(y_axis, y_axis), 0.3, 0.7)))


@dataclass(frozen=True)
class _Shape:
    """A mask's cut: its outline's right half from the top centre to the bottom centre (s, t, mirrored for the left),
    the relief of its folds, strap polylines from the mask towards the ear (right side, mirrored) and a hem."""

    outline: tuple[tuple[float, float], ...]
    relief: Callable[[Canvas, np.random.Generator], np.ndarray]
    straps: tuple[tuple[tuple[float, float], ...], ...] = ()
    strap_width: float = 0.025  # eye distances
    hem: float = 0.0  # a stitched line this far inside the edge, eye distances (0: none)


_EAR_LOOPS = (((1.0, 0.64), (1.24, 0.42), (1.36, 0.22)), ((1.0, 1.2), (1.28, 1.0), (1.38, 0.7)))

_SHAPES = {
    "surgical": _Shape(((0, 0.32), (0.35, 0.39), (0.8, 0.49), (1.12, 0.56), (1.16, 0.9), (1.14, 1.28), (0.75, 1.72),
                        (0, 1.9)), pleats, _EAR_LOOPS, hem=0.05),
    "cloth": _Shape(((0, 0.28), (0.3, 0.39), (0.75, 0.53), (1.08, 0.66), (1.12, 1.05), (1.0, 1.45), (0.65, 1.82),
                     (0, 2.0)), seam, _EAR_LOOPS, hem=0.04),
    "n95": _Shape(tuple((float(np.sin(a)), float(1.15 - 0.82 * np.cos(a))) for a in np.linspace(0, np.pi, 9)), cup,
                  (((0.8, 0.75), (1.25, 0.58), (1.5, 0.48)), ((0.7, 1.62), (1.2, 1.72), (1.5, 1.68))),
                  strap_width=0.05, hem=0.03),
    "kn95": _Shape(((0, 0.3), (0.5, 0.43), (1.02, 0.6), (1.1, 0.95), (0.95, 1.4), (0.5, 1.8), (0, 1.98)), fold,
                   _EAR_LOOPS, hem=0.035),
    "bandana": _Shape(((0, 0.45), (1.42, 0.47), (1.48, 0.8), (1.05, 1.6), (0.18, 2.55), (0, 2.65)), drape, hem=0.03),
    "gaiter": _Shape(((0, 0.42), (0.6, 0.5), (1.12, 0.7), (1.32, 1.0), (1.32, 1.5), (1.25, _BOTTOM), (0, _BOTTOM)),
                     rings),
}

_COLOURS = {
    "white": (236, 236, 232), "surgical blue": (112, 168, 206), "light blue": (156, 196, 222), "black": (34, 34, 38),
    "grey": (128, 129, 132), "charcoal": (70, 70, 76), "navy": (34, 44, 84), "red": (168, 32, 38),
    "pink": (232, 164, 186), "green": (62, 118, 76), "mint": (164, 212, 194), "olive": (104, 108, 62),
    "beige": (218, 198, 170), "khaki": (188, 168, 122), "denim": (72, 98, 138), "teal": (36, 118, 128),
    "yellow": (226, 192, 66), "purple": (102, 62, 130), "brown": (110, 76, 52), "orange": (222, 120, 46),
}
_ANY_COLOUR = dict.fromkeys(_COLOURS, 1.0)


@dataclass(frozen=True)
class _Look:
    """What a style draws, each chosen by weight: shape, ground colour, print; and its fabric's grain."""

    shapes: dict[str, float]
    colours: dict[str, float]
    patterns: dict[str, float]
    grain: float


_LOOKS = {
    "surgical": _Look({"surgical": 1}, {"surgical blue": 4, "light blue": 2, "white": 3, "black": 2, "pink": 1,
                                        "mint": 1}, {"solid": 12, "flowers": 1}, 0.03),
    "cloth": _Look({"cloth": 1}, _ANY_COLOUR, {"solid": 4, "stripes": 1, "checks": 1, "dots": 1, "flowers": 1,
                                               "camouflage": 1, "knit": 1, "twill": 1}, 0.05),
    "n95": _Look({"n95": 1, "kn95": 1}, {"white": 6, "grey": 1, "black": 2, "beige": 1, "light blue": 1},
                 {"solid": 1}, 0.04),
    "bandana": _Look({"bandana": 1}, {**_ANY_COLOUR, "red": 5, "navy": 5, "black": 3},
                     {"paisley": 5, "dots": 1, "solid": 1, "checks": 1, "camouflage": 1}, 0.04),
    "gaiter": _Look({"gaiter": 1}, _ANY_COLOUR, {"solid": 3, "stripes": 1, "camouflage": 2, "knit": 1, "flowers": 1,
                                                 "paisley": 1}, 0.04),
}


def _choose(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    p = np.array(list(weights.values()), dtype=float)
    return names[rng.choice(len(names), p=p / p.sum())]


def _palette(look: _Look, rng: np.random.Generator) -> np.ndarray:
    """Ground colour by the style's weights, two other colours for prints; varied in brightness and tint."""
    ground = _choose(look.colours, rng)
    others = rng.choice([name for name in _COLOURS if name != ground], 2, replace=False)
    colours = np.array([_COLOURS[name] for name in (ground, *others)], np.float32)
    return np.clip(colours * rng.uniform(0.85, 1.1) + rng.normal(0, 6, (3, 3)), 0, 255).astype(np.float32)


def _chaikin(points: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A closed polygon with its corners cut `rounds` times: a smooth curve through the control points."""
    for _ in range(rounds):
        following = np.roll(points, -1, axis=0)
        points = np.stack([0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following], axis=1).reshape(-1, 2)
    return points


def _fit(points: np.ndarray, width: float, lift: float, chin: float) -> np.ndarray:
    """Surface points scaled to this mask: wider or narrower, the top edge higher or lower, the chin deeper."""
    s, t = points[:, 0] * width, points[:, 1]
    return np.column_stack([s, np.where(t < 1, t - lift * (1 - t), 1 + (t - 1) * chin)])


def _smoothstep(x, low: float, high: float):
    x = np.clip((x - low) / (high - low), 0, 1)
    return x * x * (3 - 2 * x)


def _polygon_alpha(shape: tuple[int, int], polygons, closed: bool, thickness: int = -1) -> np.ndarray:
    """Anti-aliased coverage (0..1) of filled polygons, or of polylines `thickness` wide."""
    alpha = np.zeros(shape, np.uint8)
    points = [np.round(polygon * 16).astype(np.int32) for polygon in polygons]
    if closed:
        cv2.fillPoly(alpha, points, 255, cv2.LINE_AA, 4)
    else:
        cv2.polylines(alpha, points, False, 255, thickness, cv2.LINE_AA, 4)
    return alpha.astype(np.float32) / 255


def _cut(shape: _Shape, frame: _Frame, bottom: float, rng: np.random.Generator):
    """This mask's outline and straps in surface coordinates, varied in size, the outline a little uneven."""
    size = rng.uniform(0.94, 1.08), rng.uniform(-0.03, 0.04), rng.uniform(0.94, 1.06)  # width, top lift, chin
    right = np.array(shape.outline)
    control = _fit(np.concatenate([right, right[-2:0:-1] * (-1, 1)]), *size)
    control += rng.uniform(-0.02, 0.02, control.shape)
    control[:, 1] = np.minimum(control[:, 1], bottom)
    straps = [_fit(np.array(line) * (side, 1), *size) for line in shape.straps for side in (-1, 1)
              if side * frame.nose < 0.2]  # the far side's straps are hidden behind a turned face
    return _chaikin(control), straps


_LOOSE_BOTTOM = 2.8  # t: a mask worn wrongly ends here before it moves (a gaiter pulled down bunches up)
_KEEP_FADE = 0.04  # s or t: drawing fades in over this much outside the face region a mask worn wrongly keeps


@dataclass(frozen=True)
class _Move:
    """Where a mask worn wrongly goes: an affine map (2, 3) of surface points s, t from where it is worn right; the
    face it leaves exactly as it was (|s| < keep_s above t = keep_t); the side of the ear it hangs from (0: none)."""

    matrix: np.ndarray
    keep_s: float
    keep_t: float
    ear: int = 0

    def apply(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    def strap(self, line: np.ndarray) -> np.ndarray:
        """A strap moved: its mask end with the mask, its ear end left on the ear (weighted along it); the other
        side's straps of a mask hanging from one ear hang with it."""
        weight = 1.0 if self.ear * line[0, 0] < 0 else np.linspace(1, 0, len(line))[:, None]
        return line + weight * (self.apply(line) - line)

    def unmove(self, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mask's own surface coordinates (where its fabric is laid out) of the face's s, t."""
        (a, b, c), (d, e, f) = cv2.invertAffineTransform(self.matrix).astype(float).tolist()
        return a * s + b * t + c, d * s + e * t + f

    def kept(self, frame: _Frame) -> np.ndarray:
        """The outline of the face region kept, in pixels (from well above the eyes)."""
        side = np.column_stack([np.full(32, self.keep_s), np.linspace(-3, self.keep_t, 32)])
        return frame.to_pixels(np.concatenate([side, side[::-1] * (-1, 1)]))


@dataclass(frozen=True)
class _Slide:
    """The mask slid down: its top edge to t = top (after the nose tip's t where from_nose), its height times squash
    and its width times narrow (bunched), by chance a little lower and off centre. The face within |s| < 0.9 above
    0.07 over that top edge is kept."""

    top: float
    squash: float
    narrow: float
    from_nose: bool = False

    def move(self, frame: _Frame, outline: np.ndarray, rng: np.random.Generator) -> _Move:
        top = self.top + (frame.nose_t if self.from_nose else 0.0)
        squash, narrow = self.squash * rng.uniform(0.9, 1.1), self.narrow * rng.uniform(0.95, 1.05)
        down = top + rng.uniform(0, 0.06) - squash * float(outline[:, 1].min())
        return _Move(np.array([[narrow, 0, rng.uniform(-0.06, 0.06)], [0, squash, down]]), 0.9, top - 0.07)


@dataclass(frozen=True)
class _Hang:
    """The mask hanging by one side's loops from that ear (the visible side of a turned face), on end beside the cheek
    and jaw: the middle of its side edge at `ear` (s, t on the right), its width turned down to `length`, its height
    across to `across`, swinging a little. The face within |s| < 0.62 down to t = 2 (nose, mouth, chin) is kept."""

    ear: tuple[float, float]
    length: float
    across: float

    def move(self, frame: _Frame, outline: np.ndarray, rng: np.random.Generator) -> _Move:
        side = 1 if rng.random() < 0.5 else -1
        if side * frame.nose >= 0.2:
            side = -side
        (s0, t0), (s1, t1) = outline.min(axis=0), outline.max(axis=0)
        angle = rng.uniform(-0.12, 0.12)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        linear = turn @ [[0, self.across / (t1 - t0)], [-self.length / (s1 - s0), 0]]  # width down, height across
        shift = np.array(self.ear) + rng.uniform(-0.05, 0.05, 2) - linear @ (s1, (t0 + t1) / 2)
        mirror = np.diag([side, 1])
        return _Move(np.column_stack([mirror @ linear @ mirror, mirror @ shift]), 0.62, 2.0, side)


_WRONG = {  # a placement of PLACEMENTS worn wrongly: how it moves the mask
    "under_nose": _Slide(0.22, 0.78, 0.94, from_nose=True),
    "chin": _Slide(1.3, 0.6, 0.9),
    "neck": _Slide(1.75, 0.5, 0.8),
    "one_ear": _Hang((1.15, 0.85), 1.6, 0.6),
}


@dataclass(frozen=True)
class _Grid:
    """The region of the image the mask can touch, and its samples every `step` pixels for smooth fields."""

    x0: int
    y0: int
    width: int
    height: int
    step: int

    @property
    def samples(self) -> tuple[int, int]:
        return -(-self.width // self.step), -(-self.height // self.step)

    def coarse(self) -> tuple[np.ndarray, np.ndarray]:
        """Sample columns (1, w) and rows (h, 1), at the pixel positions that cv2.resize stretches them back to."""
        columns, rows = self.samples
        xs = self.x0 + (np.arange(columns, dtype=np.float32) + 0.5) * self.step - 0.5
        ys = self.y0 + (np.arange(rows, dtype=np.float32) + 0.5) * self.step - 0.5
        return xs[None, :], ys[:, None]

    def fine(self, field: np.ndarray) -> np.ndarray:
        """A coarse field at every pixel of the region."""
        if self.step == 1:
            return field
        size = (field.shape[1] * self.step, field.shape[0] * self.step)
        return cv2.resize(field, size, interpolation=cv2.INTER_LINEAR)[:self.height, :self.width]

    def shrink(self, image: np.ndarray) -> np.ndarray:
        """A region-sized image averaged down to the coarse samples."""
        return cv2.resize(image, self.samples, interpolation=cv2.INTER_AREA)


def _grid(points: np.ndarray, margin: float, image_size: tuple[int, int], step: int) -> _Grid | None:
    """The box around the points plus a margin, inside the image; None when that is empty."""
    x0, y0 = np.maximum(np.floor(points.min(axis=0) - margin), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(points.max(axis=0) + margin), image_size).astype(int)
    return _Grid(int(x0), int(y0), int(x1 - x0), int(y1 - y0), step) if x1 > x0 and y1 > y0 else None


@dataclass(frozen=True)
class _Cover:
    """What lies on the region's pixels (0..1): the mask, its straps, and their soft shadow a little below."""

    mask: np.ndarray
    straps: np.ndarray
    shadow: np.ndarray


def _cover(grid: _Grid, frame: _Frame, polygon: np.ndarray, straps: list[np.ndarray], strap_width: float) -> _Cover:
    offset = np.array([grid.x0, grid.y0])
    size, eye_distance = (grid.height, grid.width), frame.eye_distance
    thickness = max(1, round(strap_width * eye_distance))
    drop = offset - frame.y_axis / np.hypot(*frame.y_axis) * 0.04 * eye_distance
    shadow = np.maximum(_polygon_alpha(size, [polygon - drop], True),
                        _polygon_alpha(size, [line - drop for line in straps], False, thickness))
    blur = 2 * int(0.05 * eye_distance) + 3
    return _Cover(_polygon_alpha(size, [polygon - offset], True),
                  _polygon_alpha(size, [line - offset for line in straps], False, thickness),
                  cv2.blur(shadow, (blur, blur)))


def _clearance(frame: _Frame, grid: _Grid, xs, ys, s, t, move: _Move | None) -> np.ndarray:
    """Per pixel, how much may be drawn: nothing near the eyes or above the eye line, nor in the face region a mask
    worn wrongly keeps; fading in."""
    eye_distance = frame.eye_distance
    gap = np.min([np.hypot(xs - float(x), ys - float(y)) for x, y in frame.eyes], axis=0) / eye_distance
    below = t * float(np.hypot(*frame.y_axis) / eye_distance)
    field = _smoothstep(gap, *_EYE_CLEARANCE) * _smoothstep(below, 0, 0.08)
    if move:
        field = field * np.maximum(_smoothstep(np.abs(s), move.keep_s, move.keep_s + _KEEP_FADE),
                                   _smoothstep(t, move.keep_t, move.keep_t + _KEEP_FADE))
    clear = grid.fine(field)
    for x, y in frame.eyes - (grid.x0, grid.y0):  # exactly nothing within the inner radius
        cv2.circle(clear, point(x, y), int((_EYE_CLEARANCE[0] * eye_distance + 1) * 16), 0, -1, cv2.LINE_8, 4)
    if move:  # and exactly nothing in the region kept
        kept = np.round((move.kept(frame) - (grid.x0, grid.y0)) * 16).astype(np.int32)
        cv2.fillPoly(clear, [kept], 0, cv2.LINE_8, 4)
    return clear


def _lighting(region: np.ndarray, mask: np.ndarray, grid: _Grid, eye_distance: float) -> np.ndarray:
    """The face's luminance blurred over about a sixth of an eye distance (its lighting and shadows, not its
    features), relative to the mean under the mask and clipped; on the coarse samples."""
    grey = grid.shrink(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), max(0.5, 0.16 * eye_distance / grid.step))
    weight = grid.shrink(mask)
    mean = max(float((grey * weight).sum() / max(float(weight.sum()), 1e-6)), 1.0)
    return np.clip(grey / mean, 0.45, 1.6)


def _fabric(look: _Look, shape: _Shape, canvas: Canvas, colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask's cloth laid flat: a print, the folds of its cut and the grain of its fabric."""
    pattern = PATTERNS[_choose(look.patterns, rng)](canvas, colours, rng)
    light = shape.relief(canvas, rng) * (1 + look.grain * rng.standard_normal(canvas.shape, dtype=np.float32))
    return pattern * grey3(light)


def _shade(light: np.ndarray, s: np.ndarray, mask: np.ndarray, grid: _Grid, hem: float, eye_distance: float):
    """The mask's brightness: the face's light, darker towards the sides of the face and at the mask's edge (where the
    cloth turns away), and along the stitched hem."""
    edge = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 3) / eye_distance
    shade = grid.fine(light * (1 - 0.15 * np.clip(s * s, 0, 1.5))) * (1 - 0.2 * np.exp(-edge / 0.08))
    if hem:
        shade *= 1 - 0.12 * np.exp(-((edge - hem) * eye_distance / max(0.8, 0.012 * eye_distance)) ** 2)
    return shade


def _composite(region: np.ndarray, cover: _Cover, clear: np.ndarray, cloth: np.ndarray, shade: np.ndarray,
               strap_colour: np.ndarray, strap_light: np.ndarray) -> np.ndarray:
    """The face darkened by the shadow, under the straps, under the mask; channel by channel (faster than broadcasting
    over three), and exactly the face where clear is 0."""
    on_mask = cover.mask * clear
    on_straps = cover.straps * clear * (1 - on_mask)
    face = (1 - 0.35 * cover.shadow * clear) * (1 - on_straps) * (1 - on_mask)
    straps, mask = on_straps * strap_light, on_mask * shade
    channels = [skin * face + float(paint) * straps + fabric * mask
                for skin, paint, fabric in zip(cv2.split(region), strap_colour, cv2.split(cloth))]
    return cv2.convertScaleAbs(cv2.merge(channels))


def draw_mask(image: np.ndarray, landmarks: np.ndarray, style: str, rng: np.random.Generator,
              placement: str = "right") -> np.ndarray:
    """A copy of an RGB uint8 image with a mask of `style` drawn on the face whose five landmarks (x, y in image
    pixels, MTCNN's order) are given, worn as `placement` says (right: over the nose, mouth and chin); colour,
    pattern, fabric and how far off a wrongly worn mask sits come from rng."""
    if style not in _LOOKS:
        raise ValueError(f"Unknown mask style {style!r}. Known: {', '.join(MASK_STYLES)}.")
    if placement not in PLACEMENTS:
        raise ValueError(f"Unknown mask placement {placement!r}. Known: {', '.join(PLACEMENTS)}.")
    out = image.copy()
    frame = _face_frame(landmarks)
    if frame is None:
        return out
    look, eye_distance = _LOOKS[style], frame.eye_distance
    shape = _SHAPES[_choose(look.shapes, rng)]
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64)
    bottom = max(float(((corners - frame.origin) @ frame.y_axis).max() / (frame.y_axis @ frame.y_axis)) + 0.3, 2.0)
    wrong = _WRONG.get(placement)
    outline, straps = _cut(shape, frame, min(bottom, _LOOSE_BOTTOM) if wrong else bottom, rng)
    move = wrong.move(frame, outline, rng) if wrong else None
    polygon = frame.to_pixels(move.apply(outline) if move else outline)
    straps = [frame.to_pixels(move.strap(line) if move else line) for line in straps]
    grid = _grid(np.concatenate([polygon, *straps]), 0.1 * eye_distance + 2, (width, height),
                 max(1, int(eye_distance / 16)))
    if grid is None:
        return out
    cover = _cover(grid, frame, polygon, straps, shape.strap_width)
    if not cover.mask.any():
        return out
    region = out[grid.y0:grid.y0 + grid.height, grid.x0:grid.x0 + grid.width]
    xs, ys = grid.coarse()
    s, t = frame.to_surface(xs, ys)
    own_s, own_t = move.unmove(s, t) if move else (s, t)
    light = _lighting(region, cover.mask, grid, eye_distance)

    colours = _palette(look, rng)
    canvas = lay_canvas(outline, eye_distance)
    fabric = _fabric(look, shape, canvas, colours, rng)
    map_x = grid.fine((np.clip(own_s, -4, 4) - canvas.s[0, 0]) * canvas.scale)
    map_y = grid.fine((np.clip(own_t, -1, 99) - canvas.t[0, 0]) * canvas.scale)
    cloth = cv2.remap(fabric, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    strap_colour = colours[0] * 0.85 if rng.random() < 0.5 else np.array(
        _COLOURS[_choose({"white": 3, "black": 1}, rng)], np.float32)

    region[:] = _composite(region, cover, _clearance(frame, grid, xs, ys, s, t, move), cloth,
                           _shade(light, s, cover.mask, grid, shape.hem, eye_distance), strap_colour, grid.fine(light))
    return out


TWIN_CHANGE = 40  # grey levels: a pixel the twin's mask changed (JPEG noise between twins stays under about 20)
_TWIN_BODY = 1.0  # |s|: the mask's body, without the ear loops beyond the cheeks, places a twin's mask
MAX_TWIN_ABOVE_EYES = 0.02  # share of the pixels above the eye line two twins may differ in: more, not the same photo
_TWIN_HOLE = 0.01  # share of the crop: a smaller unchanged patch inside the mask (its colour near the skin's) is mask


def twin_mask_alpha(bare: np.ndarray, twin: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """Where `twin` (the same crop with a mask pasted on) shows its mask over `bare`, 0..1; None when the two are not
    one photo (they differ above the eyes) or the twin shows no mask."""
    frame = _face_frame(landmarks)
    if frame is None or bare.shape != twin.shape:
        return None
    changed = (np.abs(twin.astype(np.int16) - bare).max(axis=2) >= TWIN_CHANGE).astype(np.uint8)
    eye_line = int(max(0, frame.eyes[:, 1].min() - 0.3 * frame.eye_distance))
    if eye_line and changed[:eye_line].mean() > MAX_TWIN_ABOVE_EYES:
        return None
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, patches, stats, _ = cv2.connectedComponentsWithStats(1 - changed, connectivity=4)
    height, width = changed.shape
    holes = [label for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] < _TWIN_HOLE * changed.size
             and stats[label, cv2.CC_STAT_LEFT] > 0 and stats[label, cv2.CC_STAT_TOP] > 0
             and stats[label, cv2.CC_STAT_LEFT] + stats[label, cv2.CC_STAT_WIDTH] < width
             and stats[label, cv2.CC_STAT_TOP] + stats[label, cv2.CC_STAT_HEIGHT] < height]
    changed[np.isin(patches, holes)] = 1
    if changed.mean() < 0.01:
        return None
    return cv2.blur(changed.astype(np.float32), (3, 3))


def move_twin_mask(bare: np.ndarray, twin: np.ndarray, alpha: np.ndarray, landmarks: np.ndarray, placement: str,
                   rng: np.random.Generator) -> np.ndarray:
    """The real mask of `twin` (where `alpha` says, see twin_mask_alpha) moved on `bare` as a mask worn wrongly at
    `placement` is: slid under the nose, to the chin or the neck, or hanging from one ear, the region a wrongly
    worn mask keeps left exactly as `bare` has it."""
    frame = _face_frame(landmarks)
    if frame is None or placement not in _WRONG:
        raise ValueError(f"A twin's mask moves to a placement worn wrongly ({', '.join(_WRONG)}) on a face with "
                         "landmarks.")
    height, width = bare.shape[:2]
    rows, columns = np.nonzero(alpha > 0.5)
    s, t = frame.to_surface(columns[None, :].astype(np.float32), rows[None, :].astype(np.float32))
    body = np.abs(s[0]) <= _TWIN_BODY
    if not body.any():
        return bare.copy()
    move = _WRONG[placement].move(frame, np.column_stack([s[0][body], t[0][body]]), rng)
    grid = _Grid(0, 0, width, height, 1)
    xs, ys = grid.coarse()
    s, t = frame.to_surface(xs, ys)
    own = frame.to_pixels(np.column_stack([part.ravel() for part in move.unmove(s, t)]))
    map_x, map_y = (own[:, axis].reshape(height, width).astype(np.float32) for axis in (0, 1))
    moved = cv2.remap(twin, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cover = (cover * _clearance(frame, grid, xs, ys, s, t, move))[:, :, None]
    return cv2.convertScaleAbs(bare * (1 - cover) + moved * cover)
