"""Shared fixtures: a fresh data home per test, generated images, and the shared photos/weights when present.

MASKDET_TEST_DATA (a folder of class sub-folders), MASKDET_REAL_DEV_DATA (the same, a measuring set) and
MASKDET_BACKBONE_WEIGHTS point at real data and ImageNet weights; MASKDET_TEST_POSTGRES_URL at a PostgreSQL server
whose role may create databases (.ci/run starts one). Without them those tests are skipped, unless
MASKDET_REQUIRE_SHARED=1 (CI), which turns "missing" into a failure.
"""

import io
import os
import stat
import struct
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn

import numpy as np
import pytest

# Pages refuse to show anything when the dashboard listens beyond this machine without a password, and Streamlit's
# unset address means every interface: page tests run as `make run` serves, on 127.0.0.1 (before Streamlit's config
# is read).
os.environ.setdefault("STREAMLIT_SERVER_ADDRESS", "127.0.0.1")
import sqlalchemy as sa
from PIL import Image
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from maskdet.core.settings import Settings, load_settings
from maskdet.data.database import (FACE_COLUMNS, faces_table, legacy_images_table, manual_boxes_table, open_database,
                                   photos_table)
from maskdet.data.store import Store


def shared_path(variable: str) -> Path:
    value = os.environ.get(variable)
    if value and Path(value).exists():
        return Path(value)
    missing(f"{variable} is not set or does not exist")


def missing(message: str) -> NoReturn:
    """Skip the test for want of shared data or a server, or fail it where they are required (CI)."""
    if os.environ.get("MASKDET_REQUIRE_SHARED") == "1":
        pytest.fail(f"{message} (required: MASKDET_REQUIRE_SHARED=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path("MASKDET_TEST_DATA")


@pytest.fixture(scope="session")
def backbone_weights() -> Path:
    return shared_path("MASKDET_BACKBONE_WEIGHTS")


@pytest.fixture(scope="session")
def real_dev_data() -> Path:
    """masks-real-dev: real photos to measure with (scoring, agreement), never to train on."""
    return shared_path("MASKDET_REAL_DEV_DATA")


def photo_pairs(shared_data: Path) -> list[str]:
    """Names of masks-small photos that exist as a pair: without_mask/N.jpg and with_mask/N-with-mask.jpg."""
    return sorted(p.stem for p in (shared_data / "without_mask").glob("*.jpg")
                  if p.stem.isdigit() and (shared_data / "with_mask" / f"{p.stem}-with-mask.jpg").exists())


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory, shared_data, backbone_weights, detector) -> SimpleNamespace:
    """A data home whose active model is a real one: 24 photo pairs of masks-small and the ImageNet weights.

    Has root, env (MASKDET_HOME and MASKDET_MODELS to point a test or a server at it), run_id and model (path)."""
    from maskdet.runs.active import model_path, set_active_run
    from maskdet.runs.execute import execute_run
    from maskdet.training.config import TrainConfig

    root = tmp_path_factory.mktemp("trained")
    for name in photo_pairs(shared_data)[-24:]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (root / "photos" / label).mkdir(parents=True, exist_ok=True)
            (root / "photos" / label / file).write_bytes((shared_data / label / file).read_bytes())
    with data_home(root) as env:
        store = Store(load_settings())
        store.import_folder(root / "photos", detector)
        config = TrainConfig(views_per_image=1, quantize=False, backbone_weights=str(backbone_weights))
        run = set_active_run(store, execute_run(store, config, store.settings.models_dir)["run_id"])
    return SimpleNamespace(root=root, env=env, run_id=run["id"], model=model_path(store, run))


def home_settings(tmp_path: Path, monkeypatch, database_url: str | None = None) -> Settings:
    """Point MASKDET_HOME, MASKDET_MODELS and MASKDET_DATABASE_URL (unset: SQLite in the home) into tmp_path."""
    monkeypatch.setenv("MASKDET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MASKDET_MODELS", str(tmp_path / "models"))
    if database_url:
        monkeypatch.setenv("MASKDET_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("MASKDET_DATABASE_URL", raising=False)
    return load_settings()


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    return home_settings(tmp_path, monkeypatch)


DROP_ATTEMPTS = 10  # a test database is dropped a second apart until no autovacuum worker is in it


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server (MASKDET_TEST_POSTGRES_URL), dropped after the test."""
    server = os.environ.get("MASKDET_TEST_POSTGRES_URL") or missing("MASKDET_TEST_POSTGRES_URL is not set")
    name = f"maskdet_test_{uuid.uuid4().hex[:12]}"
    admin = open_database(server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    for attempt in range(DROP_ATTEMPTS):
        try:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
            break
        except sa.exc.ProgrammingError:  # an autovacuum worker in it, which FORCE may not end: it ends soon itself
            if attempt == DROP_ATTEMPTS - 1:
                raise
            time.sleep(1)
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_settings(request, tmp_path, monkeypatch) -> Settings:
    """A fresh data home on each backend in turn: SQLite, then a new PostgreSQL database. For the store and
    concurrency tests (test_store.py makes it its `settings`); the suite's plain `settings` stays on SQLite."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return home_settings(tmp_path, monkeypatch, url)


@pytest.fixture
def store(settings) -> Store:
    return Store(settings)


@pytest.fixture(scope="session")
def detector():
    from maskdet.vision.faces import FaceDetector

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


def zip_bytes(entries: dict[str, bytes], symlinks: dict[str, str] = {}, compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip archive of the given entries, plus symbolic-link entries pointing at the given targets."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def overlapping_zip(copies: int, size: int = 2**20) -> bytes:
    """A zip bomb: one entry's directory record repeated, every copy unpacking the same bytes."""
    one = zip_bytes({"with_mask/bomb.jpg": bytes(size)})
    start, end = one.index(b"PK\x01\x02"), one.rindex(b"PK\x05\x06")
    directory = one[start:end] * copies
    return one[:start] + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, copies, copies, len(directory),
                                                 start, 0)


def legacy_rows(photos: list[dict], faces: list[dict]) -> list[dict]:
    """Schema 5's images rows of photos and faces rows of one face a photo (the image takes the face's id)."""
    by_id = {photo["id"]: photo for photo in photos}
    return [{**{k: v for k, v in by_id[face["photo_id"]].items() if k != "id"}, "id": face["id"],
             "label_id": face["label_id"], **{name: face[name] for name in FACE_COLUMNS}} for face in faces]


def make_old_home(database: Path | str) -> None:
    """Turn a data home's database (an SQLite file, or a URL) of one face a photo into what maskdet wrote at schema 1:
    one images table, no face landmarks, no heartbeats, no one_active_run index, no face boxes set by hand."""
    engine = open_database(database if isinstance(database, str) else f"sqlite:///{database}")
    with engine.begin() as conn:
        photos = [dict(row) for row in conn.execute(sa.select(photos_table)).mappings()]
        faces = [dict(row) for row in conn.execute(sa.select(faces_table)).mappings()]
        for table in (manual_boxes_table, faces_table, photos_table):
            table.drop(conn)
        legacy_images_table.create(conn)
        if faces:
            conn.execute(legacy_images_table.insert(), legacy_rows(photos, faces))
        conn.execute(sa.text("DROP INDEX one_active_run"))
        conn.execute(sa.text("ALTER TABLE images DROP COLUMN landmarks"))
        conn.execute(sa.text("ALTER TABLE runs DROP COLUMN heartbeat_at"))
        conn.execute(sa.text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    engine.dispose()


def two_person_photo(shared_data: Path) -> bytes:
    """A JPEG of two masks-small faces side by side, the right one smaller: MTCNN finds both, the left one largest."""
    left = Image.open(shared_data / "without_mask" / "212.jpg").convert("RGB")
    right = Image.open(shared_data / "without_mask" / "100.jpg").convert("RGB")
    right = right.resize((right.width * 6 // 10, right.height * 6 // 10))
    canvas = Image.new("RGB", (left.width + right.width + 40, max(left.height, right.height) + 20), (128, 128, 128))
    canvas.paste(left, (10, 10))
    canvas.paste(right, (left.width + 30, 10 + (left.height - right.height) // 2))
    return encode(np.asarray(canvas))


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


@pytest.fixture
def downloads(monkeypatch) -> dict[str, tuple[str, bytes]]:
    """Bytes the page hands to Streamlit's media storage, by file id (the last part of a download button's or a
    video's url)."""
    files = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        files[file_id] = (filename, self._files_by_id[file_id].content)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return files


def download_data(at, downloads: dict) -> dict[str, tuple[str, bytes]]:
    """{button label: (file name, bytes)} for every download button on the page."""
    return {button.label: downloads[Path(button.proto.url).stem] for button in at.download_button}


def video_bytes(frames: list[np.ndarray], fps: int = 10, container_format: str = "mp4", codec: str = "libx264",
                pixel_format: str = "yuv420p", rotation: int = 0) -> bytes:
    """RGB frames encoded as a video file in memory (H.264 mp4 by default; its sides must be even)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pixel_format
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def page_in_app(page: str):
    """A dashboard page opened through app.py, so that its st.page_link calls find the other pages."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page(page).run()
    return at


@pytest.fixture
def seat_taken(monkeypatch):
    """The dashboard serves one camera stream (MASKDET_LIVE_STREAMS) and another session's stream holds it; the value
    ends that stream."""
    from maskdet.serving.live import stream_seats

    class OtherSession:
        """Its pipeline, holding the seat."""

    monkeypatch.setenv("MASKDET_LIVE_STREAMS", "1")
    other, seats = OtherSession(), stream_seats(1)
    assert seats.take(other, time.perf_counter())
    yield lambda: seats.release(other)
    seats.release(other)
