"""Tests for maskdet.augment: the config round trip and validation, and the pipelines it builds."""

from dataclasses import fields

import cv2
import numpy as np
import pytest

from maskdet.augment import AugmentConfig, Augmentation, build_eval_pipeline, build_train_pipeline
from tests.conftest import pattern_image

NAMES = [f.name for f in fields(AugmentConfig)]


def textured_image(seed: int = 3, size=(120, 100)) -> np.ndarray:
    """A photo-like picture with fine detail too, so blur and noise visibly change it."""
    detail = np.random.default_rng(seed).integers(-40, 40, (size[1], size[0], 3))
    return np.clip(pattern_image(seed, size=size).astype(int) + detail, 0, 255).astype(np.uint8)


def only(name: str | None, probability: float = 1.0, strength: float = 1.0) -> AugmentConfig:
    """A config with just `name` enabled (None: nothing enabled)."""
    return AugmentConfig.from_dict({n: {"enabled": n == name, "probability": probability, "strength": strength}
                                    for n in NAMES})


def plain_resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def run(pipeline, image: np.ndarray, times: int) -> list[np.ndarray]:
    return [pipeline(image=image)["image"] for _ in range(times)]


# ---- config -------------------------------------------------------------------------------------

def test_config_round_trip():
    config = AugmentConfig()
    config.flip = Augmentation(False, 0.25, 0.75)
    config.noise = Augmentation(True, 1.0, 0.0)
    data = config.to_dict()
    assert set(data) == set(NAMES)
    assert data["flip"] == {"enabled": False, "probability": 0.25, "strength": 0.75}
    assert AugmentConfig.from_dict(data) == config
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()
    assert AugmentConfig.from_dict({}) == AugmentConfig()  # missing entries keep their defaults


def test_partial_entries_use_field_defaults():
    config = AugmentConfig.from_dict({"blur": {"enabled": False}})
    assert config.blur == Augmentation(False, 0.5, 0.5)
    assert config.flip == AugmentConfig().flip


def test_unknown_augmentation_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match=r"Unknown augmentation\(s\): sharpen, zoom\. Known: .*hue_saturation"):
        AugmentConfig.from_dict({"zoom": {}, "sharpen": {}, "flip": {}})


@pytest.mark.parametrize("entry", [
    {"probability": 1.5}, {"probability": -0.1}, {"strength": 2.0}, {"strength": -1.0},
    {"probability": float("nan")},
])
def test_out_of_range_probability_or_strength_is_rejected(entry):
    with pytest.raises(ValueError, match="'affine': probability and strength must be between 0 and 1"):
        AugmentConfig.from_dict({"affine": entry})


def test_bounds_are_inclusive():
    config = AugmentConfig.from_dict({"affine": {"probability": 0.0, "strength": 1.0},
                                      "blur": {"probability": 1.0, "strength": 0.0}})
    assert config.affine.probability == 0.0 and config.blur.strength == 0.0


# ---- pipelines ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 96])
def test_train_pipeline_gives_uint8_of_the_requested_size(size):
    pipeline = build_train_pipeline(AugmentConfig(), size, seed=0)
    for image in (textured_image(1, (120, 100)), textured_image(2, (50, 200))):
        for out in run(pipeline, image, 3):
            assert out.dtype == np.uint8 and out.shape == (size, size, 3)


def test_everything_disabled_is_a_plain_resize():
    image = textured_image()
    for config in (only(None), AugmentConfig.from_dict({n: {"probability": 0.0} for n in NAMES})):
        pipeline = build_train_pipeline(config, 64, seed=1)
        for out in run(pipeline, image, 3):
            np.testing.assert_array_equal(out, plain_resize(image, 64))


def test_eval_pipeline_only_resizes():
    for image in (textured_image(4, (120, 100)), textured_image(5, (64, 64))):
        pipeline = build_eval_pipeline(72)
        for out in run(pipeline, image, 3):
            np.testing.assert_array_equal(out, plain_resize(image, 72))


def test_same_seed_gives_the_same_sequence_of_outputs():
    image = textured_image()
    first = run(build_train_pipeline(AugmentConfig(), 64, seed=7), image, 6)
    second = run(build_train_pipeline(AugmentConfig(), 64, seed=7), image, 6)
    other = run(build_train_pipeline(AugmentConfig(), 64, seed=8), image, 6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert len({a.tobytes() for a in first}) > 1  # the calls differ from each other...
    assert any(not np.array_equal(a, c) for a, c in zip(first, other))  # ...and from another seed's


@pytest.mark.parametrize("name", NAMES)
def test_each_augmentation_changes_the_image_when_always_on(name):
    image = textured_image()
    base = plain_resize(image, 64)
    outputs = run(build_train_pipeline(only(name), 64, seed=3), image, 5)
    changed = [not np.array_equal(out, base) for out in outputs]
    assert sum(changed) >= 4, f"{name} changed only {sum(changed)} of 5 outputs"
    if name == "flip":
        for out in outputs:
            np.testing.assert_array_equal(out, plain_resize(image[:, ::-1].copy(), 64))
    if name == "grayscale":
        for out in outputs:
            assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_probability_zero_entries_are_left_out_of_the_pipeline():
    config = only("affine", probability=0.0)
    assert len(build_train_pipeline(config, 64).transforms) == 1  # the resize alone
    assert len(build_train_pipeline(AugmentConfig(), 64).transforms) == len(NAMES) + 1
