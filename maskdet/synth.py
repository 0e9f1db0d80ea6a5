"""Mask synthesis: a face mask drawn from MTCNN's five landmarks onto an unmasked face, as an extra training view
of the masked class (see SyntheticMasks)."""

from dataclasses import asdict, dataclass, field

import numpy as np

MASK_STYLES = {  # name: what the Train page calls it
    "surgical": "Surgical, pleated, ear loops",
    "cloth": "Fitted cloth",
    "n95": "N95 / KN95 cup",
    "bandana": "Bandana",
    "gaiter": "Neck gaiter",
}


@dataclass
class SyntheticMasks:
    """Which class's faces get a drawn mask (source) and which class the drawn faces train as (target).

    source/target None: the classes named without_mask and with_mask, when both are trained on; otherwise off.
    probability: for each augmented view of a source face with landmarks, the chance of one extra drawn view."""

    enabled: bool = True
    source: str | None = None
    target: str | None = None
    probability: float = 0.25
    styles: list[str] = field(default_factory=lambda: list(MASK_STYLES))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SyntheticMasks":
        if not isinstance(data, dict):
            raise ValueError("synthetic_masks must be an object with enabled, source, target, probability, styles.")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown synthetic_masks setting(s): {', '.join(sorted(unknown))}. "
                             f"Known: {', '.join(cls.__dataclass_fields__)}.")
        masks = cls(**data)
        if not isinstance(masks.enabled, bool):
            raise ValueError("synthetic_masks.enabled must be true or false.")
        for name in ("source", "target"):
            if getattr(masks, name) is not None and not isinstance(getattr(masks, name), str):
                raise ValueError(f"synthetic_masks.{name} must be a class name or null (automatic).")
        probability = masks.probability
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise ValueError("synthetic_masks.probability must be a number between 0 and 1.")
        if not isinstance(masks.styles, list) or not masks.styles or set(masks.styles) - set(MASK_STYLES):
            raise ValueError(f"synthetic_masks.styles must be a non-empty list of: {', '.join(MASK_STYLES)}.")
        if masks.source is not None and masks.source == masks.target:
            raise ValueError("synthetic_masks: the source and target classes must differ.")
        return masks


def draw_mask(image: np.ndarray, landmarks: np.ndarray, style: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of an RGB uint8 image with a mask of `style` drawn over the nose, mouth and chin of the face whose
    five landmarks (x, y in image pixels, MTCNN's order) are given; colour, pattern and fabric come from rng."""
    raise NotImplementedError
