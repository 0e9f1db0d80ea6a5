"""Shared fixtures: a fresh data home per test, generated images, and the shared photos/weights when present.

MASKDET_TEST_DATA (a folder of class sub-folders) and MASKDET_BACKBONE_WEIGHTS point at real data and
ImageNet weights. Without them those tests are skipped, unless MASKDET_REQUIRE_SHARED=1 (CI), which turns
"missing" into a failure.
"""

import io
import os
import stat
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskdet.settings import load_settings
from maskdet.store import Store


def shared_path(variable: str) -> Path:
    value = os.environ.get(variable)
    if value and Path(value).exists():
        return Path(value)
    message = f"{variable} is not set or does not exist"
    if os.environ.get("MASKDET_REQUIRE_SHARED") == "1":
        pytest.fail(f"{message} (required: MASKDET_REQUIRE_SHARED=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path("MASKDET_TEST_DATA")


@pytest.fixture(scope="session")
def backbone_weights() -> Path:
    return shared_path("MASKDET_BACKBONE_WEIGHTS")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKDET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MASKDET_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("MASKDET_DATABASE_URL", raising=False)
    return load_settings()


@pytest.fixture
def store(settings) -> Store:
    return Store(settings)


@pytest.fixture(scope="session")
def detector():
    from maskdet.faces import FaceDetector

    return FaceDetector()


def pattern_image(seed: int, size=(96, 80), tint=(0, 0, 0)) -> np.ndarray:
    """A smooth random RGB picture (photo-like gradients); different seeds give visibly different pictures."""
    rng = np.random.default_rng(seed)
    coarse = np.clip(rng.integers(0, 200, (5, 6, 3)) + np.array(tint), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC))


def encode(image: np.ndarray, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def write_dataset(root: Path, per_class: int = 4, labels=("with_mask", "without_mask"), start: int = 0) -> Path:
    """Class folders of distinct generated JPEGs, each class tinted so a model can tell them apart."""
    tints = [(55, -40, -40), (-40, -40, 55), (-40, 55, -40)]
    for index, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            seed = start + 1000 * index + i
            (folder / f"img{seed}.jpg").write_bytes(encode(pattern_image(seed, tint=tints[index % 3])))
    return root


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] = {}) -> bytes:
    """A zip archive of the given entries, plus symbolic-link entries pointing at the given targets."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


@contextmanager
def data_home(root: Path):
    """Point MASKDET_HOME / MASKDET_MODELS into root (for module-scoped fixtures); restore the environment after."""
    env = {"MASKDET_HOME": str(root / "home"), "MASKDET_MODELS": str(root / "models")}
    saved = {key: os.environ.get(key) for key in (*env, "MASKDET_DATABASE_URL")}
    os.environ.update(env)
    os.environ.pop("MASKDET_DATABASE_URL", None)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
