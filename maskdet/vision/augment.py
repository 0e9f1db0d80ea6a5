"""albumentations pipelines built from a plain config; images stay uint8 RGB (the model normalises).

AUGMENTATIONS is the one list: the config's fields, their defaults and validation, the pipeline order, the preview
and the Train page's augmentation table all come from it. A new augmentation is one new entry.
"""

from __future__ import annotations  # annotations name albumentations' classes without loading it

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from functools import partial

import cv2
import numpy as np


def lazy_module(name: str):
    """A module loaded on first attribute access (Python's LazyLoader recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Loaded on first use, for speed: albumentations imports torch (seconds), which reading a config does not need.
A = lazy_module("albumentations")


@dataclass
class Augmentation:
    """One transform: whether it is used, how often (0-1) and how strongly (0-1, scaled per transform)."""

    enabled: bool = True
    probability: float = 0.5
    strength: float = 0.5


@dataclass(frozen=True)
class Spec:
    """An augmentation as the config, the pipeline and the Train page know it; build(strength, probability)."""

    label: str
    default: Augmentation
    build: Callable[[float, float], A.BasicTransform]
    help: str
    has_strength: bool = True


CROWD_SCALES = (12 * 1.25 / 160, 40 * 1.25 / 160)  # a 12 px and a 40 px face's crop at the default margin and size

# In pipeline order: the scene (pose, light, colour, occluders), then the camera (blur, resolution, noise, compression).
# Defaults are chosen for generalisation from pasted masks to real ones: mask colour and texture vary widely, and
# real faces are often small, soft and compressed; probabilities stay moderate so that most views stay clean.
AUGMENTATIONS: dict[str, Spec] = {
    "flip": Spec(
        "Horizontal flip", Augmentation(True, 0.5, 1.0),
        lambda s, p: A.HorizontalFlip(p=p),
        "Mirrors the face left to right.", has_strength=False),
    "affine": Spec(
        "Shift, scale, rotate", Augmentation(True, 0.7, 0.5),
        lambda s, p: A.Affine(translate_percent=(-0.15 * s, 0.15 * s), scale=(1 - 0.3 * s, 1 + 0.3 * s),
                              rotate=(-30 * s, 30 * s), border_mode=cv2.BORDER_REFLECT_101, p=p),
        "Moves the face by up to 15% of the crop, scales it by up to ±30% and turns it by up to 30° at strength 1."),
    "brightness_contrast": Spec(
        "Brightness and contrast", Augmentation(True, 0.6, 0.6),
        lambda s, p: A.RandomBrightnessContrast(brightness_limit=0.4 * s, contrast_limit=0.4 * s, p=p),
        "Changes brightness and contrast by up to ±40% at strength 1."),
    "hue_saturation": Spec(
        "Hue and saturation", Augmentation(True, 0.7, 1.0),
        lambda s, p: A.HueSaturationValue(hue_shift_limit=round(90 * s), sat_shift_limit=round(60 * s),
                                          val_shift_limit=round(30 * s), p=p),
        "Shifts the colours, so that a mask's colour alone does not give the class away."),
    "grayscale": Spec(
        "Grayscale", Augmentation(True, 0.15, 1.0),
        lambda s, p: A.ToGray(p=p),
        "Removes the colour.", has_strength=False),
    "coarse_dropout": Spec(
        "Cut-out patches", Augmentation(True, 0.3, 0.5),
        lambda s, p: A.CoarseDropout(num_holes_range=(1, 1 + round(3 * s)), hole_height_range=(0.05, 0.05 + 0.2 * s),
                                     hole_width_range=(0.05, 0.05 + 0.2 * s), fill="random_uniform", p=p),
        "Covers up to 4 patches of up to a quarter of the crop's side with noise, like a hand or a strand of hair."),
    "blur": Spec(
        "Blur", Augmentation(True, 0.2, 0.5),
        lambda s, p: A.GaussianBlur(blur_limit=(3, 3 + 2 * round(3 * s)), sigma_limit=(0.1, 0.2 + 2.5 * s), p=p),
        "Gaussian blur, like an out-of-focus camera; strength 0 is almost no blur."),
    # p 0.25, strength 0.5: a head moving at a webcam smears a 40 px face by 1-2 px, by 4-7 px in its 160 px crop.
    "motion_blur": Spec(
        "Motion blur", Augmentation(True, 0.25, 0.5),
        lambda s, p: A.MotionBlur(blur_limit=(3, 3 + 2 * round(4 * s)), p=p),
        "Smears the face along a random direction, like a head moving in front of a webcam: up to 7 px at strength "
        "0.5, 11 px at strength 1 (3 px, the least, at strength 0)."),
    # p 0.3, strength 1: Live finds faces down to 40 px, whose 160 px crop is ~4x enlarged: hence scales 0.25-0.5.
    "downscale": Spec(
        "Low resolution", Augmentation(True, 0.3, 1.0),
        lambda s, p: A.Downscale(scale_range=(1 - 0.75 * s, 1 - 0.5 * s),
                                 interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=p),
        "Shrinks the crop and enlarges it back, like a small face far from the camera: to between a quarter and half "
        "of its size at strength 1 (a 40 px webcam face fills a 160 px crop about 4x enlarged); none at strength 0."),
    # Crowd and street photos hold faces of 12-40 px, a 20 px one ~6x enlarged in its 160 px crop. Off by default: on
    # (p 0.15) it did not raise real scenes' small faces classified right (docs/performance.md, Real scenes).
    "crowd": Spec(
        "Crowd-size faces", Augmentation(False, 0.15, 1.0),
        lambda s, p: A.Downscale(scale_range=(CROWD_SCALES[1] - s * (CROWD_SCALES[1] - CROWD_SCALES[0]),
                                              CROWD_SCALES[1]),
                                 interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=p),
        "Shrinks the crop to the size of a face far away in a crowd photo and enlarges it back: a face of 12-40 px "
        "at strength 1 in the default 160 px crop, so that a small masked face is not called bare; 40 px at "
        "strength 0."),
    "noise": Spec(
        "Noise", Augmentation(True, 0.2, 0.4),
        lambda s, p: A.GaussNoise(std_range=(0.01, 0.02 + 0.15 * s), p=p),
        "Sensor noise, as in a dim room."),
    # p 0.3, strength 1 (quality 30-70): webcam streams and web photos are often compressed hard.
    "jpeg": Spec(
        "JPEG compression", Augmentation(True, 0.3, 1.0),
        lambda s, p: A.ImageCompression(quality_range=(round(100 - 70 * s), round(100 - 30 * s)), p=p),
        "JPEG artefacts (blocks, ringing) of a compressed photo or video stream: quality 30–70 at strength 1, "
        "100 at strength 0."),
}


def _augmentation(name: str, value) -> Augmentation:
    """Validate one {"enabled", "probability", "strength"} entry; keys left out keep that augmentation's defaults."""
    keys = {"enabled", "probability", "strength"}
    if not isinstance(value, dict) or set(value) - keys:
        raise ValueError(f"Augmentation '{name}' must be an object with keys {', '.join(sorted(keys))}.")
    item = replace(AUGMENTATIONS[name].default, **value)
    numbers = (item.probability, item.strength)
    if not isinstance(item.enabled, bool) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                      for v in numbers):
        raise ValueError(f"Augmentation '{name}': enabled must be true/false, probability and strength numbers.")
    if not all(0 <= v <= 1 for v in numbers):
        raise ValueError(f"Augmentation '{name}': probability and strength must be between 0 and 1.")
    return item


def _to_dict(config) -> dict:
    return asdict(config)


def _from_dict(cls, data: dict):
    unknown = set(data) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"Unknown augmentation(s): {', '.join(sorted(unknown))}. "
                         f"Known: {', '.join(sorted(AUGMENTATIONS))}.")
    return cls(**{name: _augmentation(name, value) for name, value in data.items()})


AugmentConfig = make_dataclass(
    "AugmentConfig",
    [(name, Augmentation, field(default_factory=partial(replace, spec.default)))
     for name, spec in AUGMENTATIONS.items()],
    namespace={"__module__": __name__, "to_dict": _to_dict, "from_dict": classmethod(_from_dict),
               "__doc__": "One Augmentation field per AUGMENTATIONS entry, defaulting to its Spec's default."})


def build_train_pipeline(config: AugmentConfig, size: int, seed: int | None = None) -> A.Compose:
    """The enabled augmentations in the table's order, then resize to the model input size."""
    steps = [spec.build(item.strength, item.probability) for name, spec in AUGMENTATIONS.items()
             if (item := getattr(config, name)).enabled and item.probability > 0]
    return A.Compose([*steps, A.Resize(size, size)], seed=seed)


def build_eval_pipeline(size: int) -> A.Compose:
    """Evaluation: resize only (normalisation is inside the model)."""
    return A.Compose([A.Resize(size, size)])


def preview(crop: np.ndarray, config: AugmentConfig, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`count` augmented variants of one face crop, as training will see them."""
    pipeline = build_train_pipeline(config, crop.shape[0], seed=seed)
    return [pipeline(image=crop)["image"] for _ in range(count)]
