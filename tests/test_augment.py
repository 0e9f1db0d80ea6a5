"""Tests for maskdet.vision.augment: the config round trip and validation, and the pipelines it builds."""

from dataclasses import fields
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest

from maskdet.vision.augment import AUGMENTATIONS, Augmentation, AugmentConfig, build_eval_pipeline, build_train_pipeline
from tests.conftest import pattern_image

NAMES = list(AUGMENTATIONS)
DEGRADATIONS = ["motion_blur", "downscale", "jpeg"]  # the real-photo ones: small, soft, compressed faces


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


def test_partial_entries_keep_that_augmentations_defaults():
    config = AugmentConfig.from_dict({"blur": {"enabled": False}, "jpeg": {"strength": 0.2}})
    assert config.blur == Augmentation(False, 0.2, 0.5)
    assert config.jpeg == Augmentation(True, 0.3, 0.2)
    assert config.flip == AugmentConfig().flip


def test_the_table_drives_the_config_fields_and_defaults():
    assert [f.name for f in fields(AugmentConfig)] == NAMES
    assert list(AugmentConfig().to_dict()) == NAMES
    for name, spec in AUGMENTATIONS.items():
        assert getattr(AugmentConfig(), name) == spec.default
        assert spec.label and spec.help
    assert {name for name, spec in AUGMENTATIONS.items() if not spec.has_strength} == {"flip", "grayscale"}
    config = AugmentConfig()
    config.flip.probability = 0.1  # each config has its own entries, not the table's
    assert AUGMENTATIONS["flip"].default.probability == 0.5 and AugmentConfig().flip.probability == 0.5


def test_new_degradations_are_on_by_default_with_moderate_probabilities():
    for name in DEGRADATIONS:
        default = AUGMENTATIONS[name].default
        assert default.enabled and 0.2 <= default.probability <= 0.3, name


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
    enabled = [name for name in NAMES if AUGMENTATIONS[name].default.enabled]
    assert enabled == [name for name in NAMES if name != "crowd"]  # off by default
    assert len(build_train_pipeline(AugmentConfig(), 64).transforms) == len(enabled) + 1


def test_pipeline_follows_the_table_order_and_resizes_last():
    everything = AugmentConfig.from_dict({name: {"enabled": True} for name in NAMES})
    kinds = [type(t) for t in build_train_pipeline(everything, 64).transforms]
    assert kinds == [type(spec.build(0.5, 0.5)) for spec in AUGMENTATIONS.values()] + [A.Resize]
    assert kinds[-6:-1] == [A.MotionBlur, A.Downscale, A.Downscale, A.GaussNoise, A.ImageCompression]  # the camera


@pytest.mark.parametrize("name", [n for n, spec in AUGMENTATIONS.items() if not spec.has_strength])
def test_strength_does_not_matter_where_the_table_says_so(name):
    image = textured_image()
    weak = run(build_train_pipeline(only(name, probability=0.5, strength=0.0), 64, seed=4), image, 6)
    strong = run(build_train_pipeline(only(name, probability=0.5, strength=1.0), 64, seed=4), image, 6)
    for a, b in zip(weak, strong):
        np.testing.assert_array_equal(a, b)


# ---- the real-photo degradations, on 160 px crops as training makes them -------------------------

@pytest.mark.parametrize("name", DEGRADATIONS)
def test_degradation_visibly_changes_a_crop_at_full_strength_and_is_seeded(name):
    image = textured_image(size=(160, 160))
    outputs = run(build_train_pipeline(only(name), 160, seed=5), image, 6)
    assert all(np.abs(out.astype(int) - image).mean() > 10 for out in outputs), name
    again = run(build_train_pipeline(only(name), 160, seed=5), image, 6)
    for a, b in zip(outputs, again):
        np.testing.assert_array_equal(a, b)
    assert len({out.tobytes() for out in outputs}) > 1  # random parameters per call


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_degradation_at_probability_zero_does_nothing(name):
    image = textured_image(size=(160, 160))
    for config in (only(name, probability=0.0), only(name, probability=0.0, strength=0.5)):
        for out in run(build_train_pipeline(config, 160, seed=6), image, 3):
            np.testing.assert_array_equal(out, image)


def test_degradations_at_strength_zero_are_identity_or_nearly():
    image = pattern_image(2, size=(160, 160))  # smooth, like skin
    for out in run(build_train_pipeline(only("downscale", strength=0.0), 160, seed=7), image, 3):
        np.testing.assert_array_equal(out, image)  # scale 1: nothing to lose
    for name in ("jpeg", "motion_blur"):  # JPEG quality 100; the shortest (3 px) smear albumentations allows
        for out in run(build_train_pipeline(only(name, strength=0.0), 160, seed=7), image, 3):
            assert np.abs(out.astype(int) - image).mean() < 2, name


@pytest.mark.parametrize("name", ["motion_blur", "downscale"])
def test_blurring_degradations_remove_fine_detail_more_at_full_strength(name):
    image = textured_image(size=(160, 160))

    def detail(picture: np.ndarray) -> float:
        return cv2.Laplacian(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    half = np.mean([detail(out) for out in run(build_train_pipeline(only(name, strength=0.5), 160, seed=8), image, 8)])
    full = np.mean([detail(out) for out in run(build_train_pipeline(only(name, strength=1.0), 160, seed=8), image, 8)])
    assert full < half < detail(image) / 2


def test_degradation_ranges_follow_strength():
    assert AUGMENTATIONS["jpeg"].build(1.0, 1.0).quality_range == (30, 70)
    assert AUGMENTATIONS["jpeg"].build(0.0, 1.0).quality_range == (100, 100)
    assert AUGMENTATIONS["downscale"].build(1.0, 1.0).scale_range == (0.25, 0.5)  # a 40 px face in a 160 px crop
    # crowd-size faces: a 160 px crop holds a 128 px face; shrunk to a 12-40 px face's crop at strength 1
    assert AUGMENTATIONS["crowd"].build(1.0, 1.0).scale_range == pytest.approx((12 / 128, 40 / 128))
    assert AUGMENTATIONS["crowd"].build(0.0, 1.0).scale_range == pytest.approx((40 / 128, 40 / 128))


def test_crowd_size_views_keep_the_crop_size_and_lose_its_detail():
    def detail(picture: np.ndarray) -> float:
        return cv2.Laplacian(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    image = cv2.resize(textured_image(), (160, 160), interpolation=cv2.INTER_NEAREST)
    views = run(build_train_pipeline(only("crowd", strength=1.0), 160, seed=3), image, 4)
    assert all(view.shape == (160, 160, 3) and view.dtype == np.uint8 for view in views)
    assert all(detail(view) < detail(image) / 3 for view in views)


def test_the_readme_lists_every_augmentation():
    readme = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert all(f"| `{name}` | {spec.label} |" in readme for name, spec in AUGMENTATIONS.items())
