"""The fabric of a drawn mask: prints (patterns) and reliefs (folds, seams) painted on a canvas laid out in the
mask's own coordinates (s across from the midline, t down from the eyes, in eye distances).

Prints: (canvas, three colours (3, 3), rng) -> an (h, w, 3) colour canvas. Reliefs: (canvas, rng) -> brightness
factor of the fabric's folds and seams."""

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Canvas:
    """The mask's fabric laid flat: s across the columns and t down the rows, `scale` pixels per unit."""

    s: np.ndarray  # (1, w)
    t: np.ndarray  # (h, 1)
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.t.shape[0], self.s.shape[1]


def lay_canvas(outline: np.ndarray, eye_distance: float) -> Canvas:
    """A canvas covering the outline (at most 3.5 units tall: a gaiter's fabric repeats below) at about the image's
    resolution, capped."""
    scale = float(np.clip(eye_distance, 8, 80))
    (s0, t0), (s1, t1) = outline.min(axis=0) - 0.05, outline.max(axis=0) + 0.05
    t1 = min(t1, t0 + 3.5)
    s = (s0 + np.arange(int((s1 - s0) * scale) + 2) / scale).astype(np.float32)
    t = (t0 + np.arange(int((t1 - t0) * scale) + 2) / scale).astype(np.float32)
    return Canvas(s[None, :], t[:, None], scale)


def _mix(a, b, weight: np.ndarray) -> np.ndarray:
    """a + (b - a) * weight for colours or (h, w, 3) images a and b and an (h, w) weight, channel by channel (faster
    than numpy's broadcasting over three channels)."""
    return cv2.merge([np.broadcast_to(a[..., i] + (b[..., i] - a[..., i]) * weight, weight.shape).astype(np.float32)
                      for i in range(3)])


def grey3(field: np.ndarray) -> np.ndarray:
    """An (h, w) float field repeated over three channels."""
    return cv2.cvtColor(np.ascontiguousarray(field, dtype=np.float32), cv2.COLOR_GRAY2RGB)


def _bands(x, period: float, duty: float) -> np.ndarray:
    """Soft-edged stripes of `period` along x, `duty` of each period on (0..1)."""
    return np.clip((np.cos(2 * np.pi / period * x) - np.cos(np.pi * duty)) * 4 + 0.5, 0, 1)


def _solid(c: Canvas, colours, rng) -> np.ndarray:
    return np.broadcast_to(colours[0], (*c.shape, 3)).astype(np.float32)


def _stripes(c: Canvas, colours, rng) -> np.ndarray:
    angle = rng.choice([0, np.pi / 2, np.pi / 4, -np.pi / 4])
    x = c.s * np.sin(angle) + c.t * np.cos(angle)
    return _mix(colours[0], colours[1], _bands(x, rng.uniform(0.08, 0.3), rng.uniform(0.2, 0.6)))


def _checks(c: Canvas, colours, rng) -> np.ndarray:
    """Gingham, or plaid when thin lines of a third colour cross it."""
    period = rng.uniform(0.1, 0.3)
    checks = _mix(colours[0], colours[1], (_bands(c.s, period, 0.5) + _bands(c.t, period, 0.5)) / 2)
    if rng.random() < 0.5:
        return checks
    lines = np.maximum(_bands(c.s + period / 4, period, 0.12), _bands(c.t + period / 4, period, 0.12))
    return _mix(checks, colours[2], 0.8 * lines)


def _dots(c: Canvas, colours, rng) -> np.ndarray:
    period = rng.uniform(0.1, 0.25)
    x = c.s / period
    y = c.t / period + 0.5 * (np.floor(x) % 2)
    distance = np.hypot(x - np.floor(x) - 0.5, y - np.floor(y) - 0.5) * period
    return _mix(colours[0], colours[1], np.clip((rng.uniform(0.15, 0.3) * period - distance) * c.scale + 0.5, 0, 1))


def _motifs(c: Canvas, colours, rng, density: float, draw: Callable) -> np.ndarray:
    """Motifs scattered over a plain ground, `density` per unit area: draw(canvas, x, y, size in pixels, angle,
    colours) for each."""
    canvas = np.empty((*c.shape, 3), np.uint8)
    canvas[:] = colours[0]
    height, width = c.shape
    count = int(density * height * width / c.scale ** 2) + 1
    paints = [tuple(map(int, colour)) for colour in colours]
    for x, y, size, angle in zip(rng.uniform(0, width, count), rng.uniform(0, height, count),
                                 rng.uniform(0.05, 0.1, count) * c.scale, rng.uniform(0, 2 * np.pi, count)):
        draw(canvas, x, y, size, angle, paints)
    return canvas.astype(np.float32)


def point(x, y) -> tuple[int, int]:
    """A point for OpenCV's drawing with 4 fractional bits."""
    return int(round(x * 16)), int(round(y * 16))


def _disc(canvas: np.ndarray, x: float, y: float, radius: float, colour) -> None:
    cv2.circle(canvas, point(x, y), int(round(max(radius, 0.5) * 16)), colour, -1, cv2.LINE_AA, 4)


def _flower(canvas, x, y, size, angle, colours) -> None:
    for petal in angle + np.arange(5) * 2 * np.pi / 5:
        _disc(canvas, x + size * np.cos(petal), y + size * np.sin(petal), 0.6 * size, colours[1])
    _disc(canvas, x, y, 0.45 * size, colours[2])


_TEARDROP = np.array([(np.cos(a), np.sin(a) * np.sin(a / 2) ** 1.5 + 0.2 * (np.cos(a) + 1) ** 2)
                      for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)])  # round head, bent tip


def _paisley(canvas, x, y, size, angle, colours) -> None:
    """A teardrop filled and outlined in two colours, an eye in its head, dots around it."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    outline = np.round((_TEARDROP * 1.6 * size @ rotation.T + (x, y)) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [outline], colours[2], cv2.LINE_AA, 4)
    cv2.polylines(canvas, [outline], True, colours[1], max(1, int(size / 5)), cv2.LINE_AA, 4)
    _disc(canvas, *(np.array([-0.5 * size, 0]) @ rotation.T + (x, y)), 0.38 * size, colours[1])
    for a in angle + np.array([1.2, 2.0, 4.3, 5.1]):
        _disc(canvas, x + 2.4 * size * np.cos(a), y + 2.4 * size * np.sin(a), 0.12 * size + 0.5, colours[1])


def _flowers(c: Canvas, colours, rng) -> np.ndarray:
    return _motifs(c, colours, rng, 7, _flower)


def _paisleys(c: Canvas, colours, rng) -> np.ndarray:
    return _motifs(c, colours, rng, 5, _paisley)


_CAMOUFLAGE = (((92, 100, 62), (150, 134, 92), (84, 66, 46), (38, 44, 32)),  # woodland
               ((196, 196, 192), (140, 140, 144), (86, 86, 92), (44, 44, 50)),  # urban
               ((200, 178, 136), (168, 140, 100), (128, 100, 70), (96, 92, 66)))  # desert


def _camouflage(c: Canvas, colours, rng) -> np.ndarray:
    """Four colours where two blurred noise fields cross their thresholds."""
    height, width = c.shape
    cells = (max(2, int(width / (0.2 * c.scale))), max(2, int(height / (0.2 * c.scale))))
    fields = [cv2.resize(rng.random(cells[::-1], dtype=np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
              for _ in range(2)]
    palette = np.array(_CAMOUFLAGE[rng.integers(len(_CAMOUFLAGE))], np.float32)
    return palette[(fields[0] > 0.5).astype(int) + 2 * (fields[1] > 0.55)]


def _knit(c: Canvas, colours, rng) -> np.ndarray:
    """Knitted columns of V-shaped stitches."""
    period = max(rng.uniform(0.035, 0.06), 4 / c.scale)
    column = c.s / period - np.floor(c.s / period)
    stitch = c.t / period + np.abs(column - 0.5)
    light = (0.82 + 0.18 * np.sin(np.pi * (stitch - np.floor(stitch)))) * (0.88 + 0.12 * np.sin(np.pi * column))
    return _mix(np.zeros(3), colours[0], light)


def _twill(c: Canvas, colours, rng) -> np.ndarray:
    """Diagonal weave lines, as in denim."""
    period = max(rng.uniform(0.02, 0.04), 3 / c.scale)
    return _mix(np.zeros(3), colours[0], 0.88 + 0.12 * _bands(c.s + c.t, period, 0.5))


PATTERNS = {"solid": _solid, "stripes": _stripes, "checks": _checks, "dots": _dots, "flowers": _flowers,
            "paisley": _paisleys, "camouflage": _camouflage, "knit": _knit, "twill": _twill}


def pleats(c: Canvas, rng) -> np.ndarray:
    """Three horizontal pleats, fanning out from the sides: a lit fold edge over a shadow line."""
    fan = np.clip(1 - 0.4 * c.s ** 2, 0.35, 1)
    light = np.ones(c.shape, np.float32)
    for fold in np.array([0.75, 1.08, 1.41]) + rng.uniform(-0.04, 0.04, 3):
        distance = (c.t - (1.08 + (fold - 1.08) * fan)) / fan
        light += 0.12 * np.exp(-((distance + 0.06) / 0.06) ** 2) - 0.3 * np.exp(-((distance - 0.015) / 0.02) ** 2)
    return light


def seam(c: Canvas, rng) -> np.ndarray:
    """A vertical centre seam between two panels lit slightly differently."""
    return 1 - 0.3 * np.exp(-(c.s / 0.02) ** 2) + 0.06 * rng.choice([-1, 1]) * np.tanh(c.s / 0.15)


def cup(c: Canvas, rng) -> np.ndarray:
    """A moulded dome, sometimes with an exhalation valve on one side."""
    light = 1.1 - 0.2 * (c.s ** 2 + ((c.t - 1.15) / 0.8) ** 2)
    if rng.random() < 0.4:
        distance = np.hypot(c.s - rng.choice([-0.45, 0.45]), c.t - 1.3)
        light = light * (1 - 0.3 * np.clip((0.16 - distance) * c.scale, 0, 1)) + 0.2 * np.exp(
            -((distance - 0.09) / 0.015) ** 2)
    return light


def fold(c: Canvas, rng) -> np.ndarray:
    """A KN95's vertical centre fold: a crease between two halves facing the light differently."""
    return 1 + 0.08 * rng.choice([-1, 1]) * np.tanh(c.s / 0.06) - 0.25 * np.exp(-(c.s / 0.015) ** 2)


def drape(c: Canvas, rng) -> np.ndarray:
    """Folds hanging from a bandana's point."""
    angle = np.arctan2(c.s, 2.7 - c.t)
    return 1 + 0.1 * np.clip((c.t - 0.9) / 0.8, 0, 1) * np.cos(angle * rng.uniform(7, 11) + rng.uniform(0, 2 * np.pi))


def rings(c: Canvas, rng) -> np.ndarray:
    """A gaiter's fabric bunched in rings around the neck, below the chin."""
    wave = c.t / rng.uniform(0.22, 0.32) + 0.3 * np.sin(3 * c.s + rng.uniform(0, 2 * np.pi))
    return 1 + 0.1 * np.clip((c.t - 1.7) / 0.4, 0, 1) * np.cos(2 * np.pi * wave)
