"""albumentations pipelines built from a plain config; images stay uint8 RGB (the model normalises)."""

from dataclasses import asdict, dataclass, field, fields

import albumentations as A
import cv2
import numpy as np


@dataclass
class Augmentation:
    """One transform: whether it is used, how often (0-1) and how strongly (0-1, scaled per transform)."""

    enabled: bool = True
    probability: float = 0.5
    strength: float = 0.5


@dataclass
class AugmentConfig:
    """Defaults chosen for generalisation from pasted masks to real ones: mask colour and texture vary widely."""

    flip: Augmentation = field(default_factory=lambda: Augmentation(True, 0.5, 1.0))
    affine: Augmentation = field(default_factory=lambda: Augmentation(True, 0.7, 0.5))
    brightness_contrast: Augmentation = field(default_factory=lambda: Augmentation(True, 0.6, 0.6))
    hue_saturation: Augmentation = field(default_factory=lambda: Augmentation(True, 0.7, 1.0))
    grayscale: Augmentation = field(default_factory=lambda: Augmentation(True, 0.15, 1.0))
    blur: Augmentation = field(default_factory=lambda: Augmentation(True, 0.2, 0.5))
    noise: Augmentation = field(default_factory=lambda: Augmentation(True, 0.2, 0.4))
    coarse_dropout: Augmentation = field(default_factory=lambda: Augmentation(True, 0.3, 0.5))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AugmentConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown augmentation(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}.")
        return cls(**{name: _augmentation(name, value) for name, value in data.items()})


def _augmentation(name: str, value) -> Augmentation:
    """Validate one {"enabled", "probability", "strength"} entry."""
    keys = {"enabled", "probability", "strength"}
    if not isinstance(value, dict) or set(value) - keys:
        raise ValueError(f"Augmentation '{name}' must be an object with keys {', '.join(sorted(keys))}.")
    item = Augmentation(**value)
    numbers = (item.probability, item.strength)
    if not isinstance(item.enabled, bool) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in numbers):
        raise ValueError(f"Augmentation '{name}': enabled must be true/false, probability and strength numbers.")
    if not all(0 <= v <= 1 for v in numbers):
        raise ValueError(f"Augmentation '{name}': probability and strength must be between 0 and 1.")
    return item


def _transform(name: str, s: float, p: float) -> A.BasicTransform:
    """The albumentations transform for one config entry at strength s."""
    if name == "flip":
        return A.HorizontalFlip(p=p)
    if name == "affine":
        return A.Affine(translate_percent=(-0.15 * s, 0.15 * s), scale=(1 - 0.3 * s, 1 + 0.3 * s),
                        rotate=(-30 * s, 30 * s), border_mode=cv2.BORDER_REFLECT_101, p=p)
    if name == "brightness_contrast":
        return A.RandomBrightnessContrast(brightness_limit=0.4 * s, contrast_limit=0.4 * s, p=p)
    if name == "hue_saturation":
        return A.HueSaturationValue(hue_shift_limit=round(90 * s), sat_shift_limit=round(60 * s),
                                    val_shift_limit=round(30 * s), p=p)
    if name == "grayscale":
        return A.ToGray(p=p)
    if name == "blur":
        return A.GaussianBlur(blur_limit=(3, 3 + 2 * round(3 * s)), sigma_limit=(0.1, 0.2 + 2.5 * s), p=p)
    if name == "noise":
        return A.GaussNoise(std_range=(0.01, 0.02 + 0.15 * s), p=p)
    if name == "coarse_dropout":
        return A.CoarseDropout(num_holes_range=(1, 1 + round(3 * s)), hole_height_range=(0.05, 0.05 + 0.2 * s),
                               hole_width_range=(0.05, 0.05 + 0.2 * s), fill="random_uniform", p=p)
    raise ValueError(f"Unknown augmentation '{name}'.")


def build_train_pipeline(config: AugmentConfig, size: int, seed: int | None = None) -> A.Compose:
    """The enabled augmentations in a fixed order, then resize to the model input size."""
    steps = [_transform(f.name, item.strength, item.probability)
             for f in fields(config) if (item := getattr(config, f.name)).enabled and item.probability > 0]
    return A.Compose([*steps, A.Resize(size, size)], seed=seed)


def build_eval_pipeline(size: int) -> A.Compose:
    """Evaluation: resize only (normalisation is inside the model)."""
    return A.Compose([A.Resize(size, size)])


def preview(crop: np.ndarray, config: AugmentConfig, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`count` augmented variants of one face crop, as training will see them."""
    pipeline = build_train_pipeline(config, crop.shape[0], seed=seed)
    return [pipeline(image=crop)["image"] for _ in range(count)]
