"""The dataset and run registry: content-addressed image files plus a SQL database (SQLite by default)."""

import hashlib
import io
import json
import os
import random
import re
import sqlite3
import stat
import time
import uuid
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.dialects import postgresql, sqlite

from maskdet.core.contract import UNCERTAIN
from maskdet.core.imageio import BadImage, decode_image
from maskdet.core.settings import DEFAULT_LABELS, Settings, load_settings
from maskdet.vision.faces import Face, FaceDetector, box_iou
from maskdet.vision.near_duplicates import HashIndex, hash_bytes

SCHEMA_VERSION = 5  # 2: images.landmarks; 3: runs.heartbeat_at; 4: index one_active_run; 5: table manual_faces
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
MAX_ENTRY_BYTES = 64 * 2**20  # one photo file or zip entry: far above any camera's JPEG, read whole into memory
MAX_ARCHIVE_ENTRIES = 100_000  # entries of one zip: an import of that many photos already takes hours
MAX_ARCHIVE_BYTES = 16 * 2**30  # a zip's declared unpacked size: MAX_ARCHIVE_ENTRIES photos of 160 KB (1 megapixel)
MAX_DIRECTORY_BYTES = 32 * 2**20  # a zip's central directory, which zipfile holds as ~0.5 KB a record before any check
# The compression methods read. Python's zipfile decompresses bzip2 and LZMA a whole read at a time with no output
# limit, so a few KB of them can expand to gigabytes in one call, whatever size the entry declares.
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
METHOD_NAMES = {9: "Deflate64", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 93: "Zstandard"}
MAX_BATCH_BYTES = 256 * 2**20  # file bytes plus decoded RGB an import or evaluation batch holds (bounds its memory)
ORPHAN_AGE_SECONDS = 600  # an unreferenced image file this old was left by a killed import (no batch lasts this long)
MIN_BOX_SIDE = 8  # pixels: the narrowest and lowest face box that can be set by hand
SPLITS = ("train", "val", "test")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
BACKENDS = ("sqlite", "postgresql")
LOCK_KEY = 0x6D61736B646574  # "maskdet": PostgreSQL advisory lock that serialises schema changes and import batches

metadata = sa.MetaData()
meta_table = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
labels_table = sa.Table(
    "labels", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
)
images_table = sa.Table(
    "images", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("file", sa.String(128), nullable=False),
    sa.Column("label_id", sa.Integer, sa.ForeignKey("labels.id"), nullable=False, index=True),
    sa.Column("source_name", sa.String(512), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("face_x1", sa.Float), sa.Column("face_y1", sa.Float),
    sa.Column("face_x2", sa.Float), sa.Column("face_y2", sa.Float),
    sa.Column("face_probability", sa.Float),
    # JSON [[x, y] * 5] of the stored face; "[]": looked for, none found; NULL: not looked for yet (older data homes)
    sa.Column("landmarks", sa.Text),
    sa.Column("phash", sa.String(64), nullable=False),
    sa.Column("dup_group", sa.Integer, nullable=False, index=True),
    sa.Column("split", sa.String(8)),
    sa.Column("created_at", sa.String(32), nullable=False),
)
# Face boxes set by hand (drawn, or one of MTCNN's faces picked), by the photo's SHA-256: they replace the detected box
# (kept in images) wherever an image is read, and stay when the photo is deleted: importing it again brings them back.
manual_faces_table = sa.Table(
    "manual_faces", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("face_x1", sa.Float, nullable=False), sa.Column("face_y1", sa.Float, nullable=False),
    sa.Column("face_x2", sa.Float, nullable=False), sa.Column("face_y2", sa.Float, nullable=False),
    sa.Column("face_probability", sa.Float, nullable=False),  # a box drawn by hand: 1
    sa.Column("landmarks", sa.Text),  # JSON as in images; NULL: a box drawn by hand has none
    sa.Column("created_at", sa.String(32), nullable=False),
)
_manual_face_of_image = manual_faces_table.c.sha256 == images_table.c.sha256
FACE_COLUMNS = ("face_x1", "face_y1", "face_x2", "face_y2", "face_probability", "landmarks")  # in both tables
# One training at a time, kept by the database: all queued or running runs share one index key.
_active = sa.text("status IN ('queued', 'running')")
one_active_run = sa.Index("one_active_run", sa.literal_column("(1)"), unique=True,
                          sqlite_where=_active, postgresql_where=_active)
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("started_at", sa.String(32)),
    sa.Column("finished_at", sa.String(32)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("progress", sa.Text),
    sa.Column("metrics", sa.Text),
    sa.Column("artefact_dir", sa.String(512)),
    sa.Column("error", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.Column("heartbeat_at", sa.String(32)),  # written every few seconds by the process running it
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    one_active_run,
)


class StoreError(ValueError):
    """A user mistake against the store (unknown label, bad name, ...); str(error) says what to do."""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    file: str
    label: str
    source_name: str
    width: int
    height: int
    face: Face | None  # the box training uses
    dup_group: int
    split: str | None
    face_source: str  # "detected" (by MTCNN at import; face None: none found) or "manual" (set on the Dataset page)


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    no_face: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # of the duplicates, those repeating a file of this import

    def merge(self, other: "ImportReport") -> None:
        for name in ("added", "duplicates", "rejected", "no_face", "repeated"):
            getattr(self, name).extend(getattr(other, name))

    def already_stored(self) -> list[str]:
        """The duplicates that were in the dataset before this import (the others repeat a file of the import)."""
        repeats, stored = Counter(self.repeated), []
        for name in self.duplicates:
            if repeats[name]:
                repeats[name] -= 1
            else:
                stored.append(name)
        return stored

    def summary(self) -> dict:
        return {"added": len(self.added), "duplicates": len(self.duplicates),
                "rejected": len(self.rejected), "no_face": len(self.no_face)}

    def to_dict(self) -> dict:
        return {**self.summary(), "rejected_files": [{"name": n, "reason": r} for n, r in self.rejected],
                "duplicate_files": self.duplicates, "repeated_files": self.repeated, "no_face_files": self.no_face}


@dataclass(frozen=True)
class Candidate:
    """One file offered for import: where it came from, its label, and a way to read its bytes."""

    name: str
    label: str
    read: Callable[[], bytes]
    stored_size: int | None = None  # bytes it takes compressed in its zip; None: its own size

    def arrived_size(self, data: bytes) -> int:
        """Bytes the file took as it arrived: they bound the decoded pixels and the face search it may cost."""
        return min(len(data), self.stored_size or len(data))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def validate_label(name: str) -> str:
    """Return the cleaned label or raise StoreError saying what is wrong with it."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise StoreError("Label names cannot be empty.")
    if len(cleaned) > 64:
        raise StoreError(f"Label '{cleaned[:20]}...' is longer than 64 characters.")
    if cleaned in (".", "..") or re.search(r'[/\\:*?"<>|\x00-\x1f]', cleaned):
        raise StoreError(f"Label '{cleaned}' contains path characters; use letters, digits, spaces, - or _.")
    if cleaned.lower() == UNCERTAIN:
        raise StoreError(f"'{UNCERTAIN}' is reserved for faces below the confidence threshold; pick another label.")
    return cleaned


def perceptual_hash(image: np.ndarray) -> str:
    """256-bit difference hash of the top 45% of the image (unchanged when a mask covers the lower face)."""
    gray = Image.fromarray(image).convert("L")
    top = gray.crop((0, 0, gray.width, max(1, int(gray.height * 0.45))))
    pixels = np.asarray(top.resize((17, 16), Image.BILINEAR), dtype=np.int16)
    return np.packbits((pixels[:, 1:] > pixels[:, :-1]).ravel()).tobytes().hex()


def folder_candidates(folder: Path) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Files of a folder of class folders at any depth (label = the file's parent folder, as in a zip), and the
    entries rejected before reading."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreError(f"Folder not found: {folder}")
    candidates, rejected = [], []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or path.name in IGNORED_NAMES or any(p.startswith(".") for p in relative.parts):
            continue
        name = printable(str(relative))
        problem = "not inside a class folder" if len(relative.parts) < 2 else file_problem(path, folder)
        if problem:
            rejected.append((name, problem))
            continue
        candidates.append(Candidate(name, printable(relative.parts[-2]), lambda path=path: read_file(path)))
    return candidates, rejected


def printable(text: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as surrogates) become the replacement
    character, so the name can be shown and stored."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def file_problem(path: Path, folder: Path) -> str | None:
    """Why a file of an imported folder is not read, checked before reading it (None: it may be read). A FIFO
    would block the import forever and a link to /dev/zero would fill the memory."""
    try:
        target = path.resolve(strict=True)
        info = target.stat()
    except (OSError, RuntimeError) as error:
        return f"cannot be read ({getattr(error, 'strerror', None) or error})"
    if path.is_symlink() and not target.is_relative_to(folder.resolve()):
        return "symbolic link to outside the folder"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, device or socket)"
    if info.st_size > MAX_ENTRY_BYTES:
        return f"file larger than {MAX_ENTRY_BYTES // 2**20} MiB"
    return None


def read_file(path: Path) -> bytes:
    """A folder file's bytes, never more than MAX_ENTRY_BYTES (the file may have grown since file_problem)."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_ENTRY_BYTES + 1)
    if len(data) > MAX_ENTRY_BYTES:
        raise BadImage(f"file larger than {MAX_ENTRY_BYTES // 2**20} MiB")
    return data


def open_zip(source) -> zipfile.ZipFile:
    """A zip archive from a path or file object, refused (StoreError) when its central directory is larger than
    MAX_DIRECTORY_BYTES before zipfile reads it; zipfile.BadZipFile or OSError when it is not a zip."""
    with open(source, "rb") if isinstance(source, (str, Path)) else nullcontext(source) as file:
        end = zipfile._EndRecData(file)  # zipfile's own reader of the end record (zip64 too); private but long stable
    if end and end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:
        raise StoreError(f"The zip's table of contents is {end[zipfile._ECD_SIZE] / 2**20:.0f} MiB, more than "
                         f"{MAX_ARCHIVE_ENTRIES:,} photos need: split it into smaller zips.")
    return zipfile.ZipFile(source)


def check_archive(archive: zipfile.ZipFile) -> None:
    """Refuse (StoreError), before any entry is read, a zip with too many entries, too large a declared unpacked size,
    or entries whose data overlap: that is a zip bomb, many entries unpacking the same compressed bytes."""
    infos = archive.infolist()
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise StoreError(f"The zip has {len(infos):,} entries; the limit is {MAX_ARCHIVE_ENTRIES:,}. Split it into "
                         "smaller zips.")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_ARCHIVE_BYTES:
        raise StoreError(f"The zip unpacks to {declared / 2**30:,.1f} GiB; the limit is {MAX_ARCHIVE_BYTES // 2**30} "
                         "GiB. Split it into smaller zips.")
    infos = sorted(infos, key=lambda info: info.header_offset)
    starts = [info.header_offset for info in infos[1:]] + [archive.start_dir]  # the central directory follows the last
    if any(data_end(info) > start for info, start in zip(infos, starts)):
        raise StoreError("The zip's entries overlap one another, which only a zip bomb does: it was refused. Zip the "
                         "class folders again with an ordinary zip tool.")


def data_end(info: zipfile.ZipInfo) -> int:
    """Where an entry's local header and data end, at the least (its local header may carry more extra fields)."""
    name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
    return info.header_offset + 30 + len(name) + info.compress_size


def zip_candidates(archive: zipfile.ZipFile) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Image entries of a zip of class folders (label = the entry's parent folder); hostile entries rejected, and a
    hostile archive refused (check_archive)."""
    check_archive(archive)
    candidates, rejected = [], []
    for info in archive.infolist():
        name = info.filename
        parts = [p for p in name.replace("\\", "/").split("/") if p]
        if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1] in IGNORED_NAMES:
            continue
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            rejected.append((name, "absolute path in archive"))
        elif ".." in parts:
            rejected.append((name, "path escapes the archive ('..')"))
        elif stat.S_ISLNK(info.external_attr >> 16):
            rejected.append((name, "symbolic link in archive"))
        elif info.flag_bits & 0x1:
            rejected.append((name, "encrypted entry"))
        elif info.compress_type not in ZIP_METHODS:
            method = METHOD_NAMES.get(info.compress_type, f"number {info.compress_type}")
            rejected.append((name, f"entry cannot be decompressed (compression method {method} is not supported: "
                                   "zip it again with standard compression)"))
        elif info.file_size > MAX_ENTRY_BYTES:
            rejected.append((name, f"entry larger than {MAX_ENTRY_BYTES // 2**20} MiB"))
        elif len(parts) < 2:
            rejected.append((name, "not inside a class folder"))
        else:
            candidates.append(Candidate(name, parts[-2], lambda info=info: _read_entry(archive, info),
                                        info.compress_size))
    return candidates, rejected


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes. zipfile stops at the declared size (at most MAX_ENTRY_BYTES, checked before): data that
    unpacks to more is cut there, and its checksum then fails."""
    try:
        with archive.open(info) as handle:
            return handle.read(info.file_size)
    except (NotImplementedError, zlib.error, EOFError, zipfile.BadZipFile, OSError) as error:
        raise BadImage(f"entry cannot be decompressed ({error})") from None


class Store:
    """Labels, images, near-duplicate groups, splits and training runs of one data home."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self.home = self.settings.home
        self.images_dir = self.home / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.engine = open_database(self.settings.database_url)
        self._migrate()

    def _migrate(self) -> None:
        """Create, check or upgrade the schema, one process at a time (several may open a new data home at once)."""
        try:
            self.engine.connect().close()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
            reason = str(error.orig).strip().splitlines()[0]
            raise StoreError(f"Cannot open the database {shown_url(self.settings.database_url)} ({reason}): check "
                             "MASKDET_DATABASE_URL and that the database server is running.") from None
        with self.engine.begin() as conn:
            write_lock(conn)
            metadata.create_all(conn)
            version = conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).scalar()
            if version is None:
                conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                conn.execute(labels_table.insert(), [{"name": n, "created_at": now()} for n in DEFAULT_LABELS])
            elif int(version) > SCHEMA_VERSION:
                raise StoreError(f"The database was written by a newer maskdet (schema {version}); upgrade maskdet.")
            elif int(version) < SCHEMA_VERSION:
                _upgrade(conn, int(version))

    # ---- labels ---------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(labels_table.c.name).order_by(labels_table.c.id)).scalars())

    def label_counts(self) -> dict[str, int]:
        query = (sa.select(labels_table.c.name, sa.func.count(images_table.c.id))
                 .select_from(labels_table.outerjoin(images_table))
                 .group_by(labels_table.c.id).order_by(labels_table.c.id))
        with self.engine.connect() as conn:
            return {name: count for name, count in conn.execute(query)}

    def add_label(self, name: str) -> str:
        name = validate_label(name)
        with self.engine.begin() as conn:
            self._ensure_label(conn, name)
        return name

    def _ensure_label(self, conn, name: str) -> int:
        """The label's id, adding the label unless it exists (also when another process adds it at the same time)."""
        conn.execute(_insert(conn, labels_table).values(name=name, created_at=now())
                     .on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(sa.select(labels_table.c.id).where(labels_table.c.name == name)).scalar_one()

    def _label_id(self, conn, name: str) -> int:
        label_id = conn.execute(sa.select(labels_table.c.id).where(labels_table.c.name == name)).scalar()
        if label_id is None:
            raise StoreError(f"No label named '{name}'. Labels: {', '.join(self.labels()) or 'none'}.")
        return label_id

    def rename_label(self, old: str, new: str) -> None:
        new = validate_label(new)
        try:
            with self.engine.begin() as conn:
                label_id = self._label_id(conn, old)
                conn.execute(labels_table.update().where(labels_table.c.id == label_id).values(name=new))
        except sa.exc.IntegrityError:
            raise StoreError(f"A label named '{new}' already exists; relabel its images instead.") from None

    def delete_label(self, name: str) -> int:
        """Delete a label and all its images; returns how many images went with it."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, name)
            ids = list(conn.execute(sa.select(images_table.c.id).where(images_table.c.label_id == label_id)).scalars())
            files = self._delete_rows(conn, ids)
            conn.execute(labels_table.delete().where(labels_table.c.id == label_id))
        self._remove_files(files)
        return len(ids)

    # ---- images ---------------------------------------------------------------------------------
    def images(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
               ids: Iterable[int] | None = None, offset: int = 0, limit: int | None = None) -> list[ImageRecord]:
        """Images with the face box training uses: the one set by hand where there is one, else the detected one;
        `limit` of them from the `offset`-th on, in the order they were stored."""
        manual = manual_faces_table
        query = (sa.select(images_table, labels_table.c.name.label("label"),
                           *(manual.c[name].label(f"manual_{name}") for name in FACE_COLUMNS))
                 .order_by(images_table.c.id).offset(offset).limit(limit))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(_images_where(query, label, split, no_face, ids)).mappings()]

    def image_ids(self, label: str | None = None, split: str | None = None, no_face: bool | None = None) -> list[int]:
        """The ids of the images images() with these filters returns, in the same order."""
        query = _images_where(sa.select(images_table.c.id).order_by(images_table.c.id), label, split, no_face)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def count_images(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                     ids: Iterable[int] | None = None) -> int:
        """How many images images() with these filters returns."""
        query = _images_where(sa.select(sa.func.count(images_table.c.id)), label, split, no_face, ids)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def no_face_counts(self) -> dict[str, int]:
        """Per label, the photos where no face was found and none was set by hand."""
        query = _images_where(sa.select(labels_table.c.name, sa.func.count(images_table.c.id)), no_face=True)
        with self.engine.connect() as conn:
            counts = dict(conn.execute(query.group_by(labels_table.c.name)).all())
        return {label: counts.get(label, 0) for label in self.labels()}

    def groups_spanning_classes(self) -> int:
        """Near-duplicate groups holding photos of more than one class."""
        spanning = (sa.select(images_table.c.dup_group).group_by(images_table.c.dup_group)
                    .having(sa.func.count(sa.distinct(images_table.c.label_id)) > 1).subquery())
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(spanning)).scalar_one()

    def image(self, image_id: int) -> ImageRecord:
        """One image, or a StoreError when there is none with that id (deleted meanwhile)."""
        found = self.images(ids=[image_id])
        if not found:
            raise StoreError(f"No photo with id {image_id}: it has been deleted.")
        return found[0]

    def image_with_sha256(self, sha256: str) -> ImageRecord | None:
        """The image whose file has this SHA-256, or None when the dataset holds no such file."""
        with self.engine.connect() as conn:
            image_id = _image_id(conn, sha256)
        found = self.images(ids=[image_id]) if image_id is not None else []
        return found[0] if found else None

    def image_path(self, record: ImageRecord) -> Path:
        return self.images_dir / record.file

    def load_image(self, record: ImageRecord) -> np.ndarray:
        return decode_image(self.image_path(record).read_bytes(), self.settings.max_pixels)

    def relabel(self, image_ids: Iterable[int], label: str) -> int:
        """Move images to an existing label; returns how many were moved (ids deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, label)
            return conn.execute(images_table.update().where(images_table.c.id.in_(list(image_ids)))
                                .values(label_id=label_id)).rowcount

    def delete_images(self, image_ids: Iterable[int]) -> int:
        """Delete images; returns how many were deleted (ids deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            files = self._delete_rows(conn, list(image_ids))
        self._remove_files(files)
        return len(files)

    def _delete_rows(self, conn, ids: list[int]) -> list[str]:
        files = list(conn.execute(sa.select(images_table.c.file).where(images_table.c.id.in_(ids))).scalars())
        conn.execute(images_table.delete().where(images_table.c.id.in_(ids)))
        return files

    def _remove_files(self, files: list[str]) -> None:
        for name in files:
            (self.images_dir / name).unlink(missing_ok=True)

    # ---- import ---------------------------------------------------------------------------------
    def import_folder(self, folder: Path, detector: FaceDetector, progress=None) -> ImportReport:
        candidates, rejected = folder_candidates(folder)
        return self._import(candidates, rejected, detector, progress)

    def import_zip(self, source, detector: FaceDetector, progress=None) -> ImportReport:
        """Import a zip (path, bytes or file object) of class folders."""
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        elif isinstance(source, (str, Path)) and not Path(source).is_file():
            raise StoreError(f"No such file: {source}.")
        try:
            archive = open_zip(source)
        except (zipfile.BadZipFile, OSError) as error:
            raise StoreError(f"Not a readable zip archive ({error}).") from None
        with archive:
            candidates, rejected = zip_candidates(archive)
            return self._import(candidates, rejected, detector, progress)

    def add_image(self, data: bytes, label: str, source_name: str, detector: FaceDetector) -> ImportReport:
        """Add one image (a webcam capture) under `label`, creating the label if new; a rejected image raises."""
        return self._import([Candidate(source_name, label, lambda: data)], [], detector, None)

    def add_images(self, files: list[tuple[str, bytes]], label: str, detector: FaceDetector,
                   progress=None) -> ImportReport:
        """Add uploaded (name, bytes) photos under one label; rejected files are in the report, never raised."""
        label = validate_label(label)
        if not files:
            raise StoreError("No files to import: choose one or more photos first.")
        candidates = [Candidate(name, label, lambda data=data: data) for name, data in files]
        return self._import(candidates, [], detector, progress, require_any=False)

    def import_into_classes(self, candidates: list[Candidate], detector: FaceDetector,
                            progress=None) -> ImportReport:
        """Import chosen files under their labels with the usual rules, into the dataset's classes only: a file whose
        class is not there (deleted meanwhile) is rejected saying so, rather than the class made again. No files: an
        empty report."""
        if not candidates:
            return ImportReport()
        classes = set(self.labels())
        missing = [(c.name, f"its class {c.label} is not in the dataset (deleted meanwhile?): add the class, then "
                            "import it again") for c in candidates if c.label not in classes]
        kept = [c for c in candidates if c.label in classes]
        return self._import(kept, missing, detector, progress, require_any=False)

    def _import(self, candidates: list[Candidate], rejected: list[tuple[str, str]], detector: FaceDetector,
                progress: Callable[[int, int], None] | None, batch_size: int = 32,
                require_any: bool = True) -> ImportReport:
        """Import in transactions of batch_size photos (fewer when they reach MAX_BATCH_BYTES); with require_any,
        importing nothing at all is an error."""
        report = ImportReport(rejected=list(rejected))
        if not candidates and not rejected:
            raise StoreError("No images found: expected class folders (for example with_mask/, without_mask/).")
        cutoff = time.time() - ORPHAN_AGE_SECONDS  # files a killed import left behind
        self._remove_unreferenced(path for path in self.images_dir.glob("*/*") if path.stat().st_mtime < cutoff)
        offered: set[str] = set()  # SHA-256 of the files of this import read and decoded so far
        index = HashIndex()  # the stored photos' hashes and near-duplicate groups
        seen_id, added_shas, done = 0, set(), 0
        while done < len(candidates):
            batch, taken = self._decode_batch(candidates[done:done + batch_size], offered, report)
            faces = detector.largest_faces([image for _, image, _, _ in batch],
                                           [candidate.arrived_size(data) for candidate, _, data, _ in batch])
            written = []  # files this batch creates: removed again if it rolls back
            with self.rolled_back_files_removed(written), self.engine.begin() as conn:
                write_lock(conn)  # batches of imports running at the same time take turns
                # Images stored since the last batch by an import running at the same time join the comparison.
                rows = conn.execute(sa.select(images_table.c.id, images_table.c.sha256, images_table.c.phash,
                                              images_table.c.dup_group).where(images_table.c.id > seen_id)).all()
                seen_id = max([seen_id] + [row.id for row in rows])
                others = [row for row in rows if row.sha256 not in added_shas]
                index.add(hash_bytes(*(row.phash for row in others)), [row.dup_group for row in others])
                for (candidate, image, data, sha), face in zip(batch, faces):
                    phash = perceptual_hash(image)
                    group = self._near_duplicate_group(conn, index, phash)
                    file = self.write_file(sha, data, written)
                    values = dict(
                        sha256=sha, file=file, label_id=self._ensure_label(conn, candidate.label),
                        source_name=candidate.name[:512], width=image.shape[1], height=image.shape[0],
                        face_x1=face.box[0] if face else None, face_y1=face.box[1] if face else None,
                        face_x2=face.box[2] if face else None, face_y2=face.box[3] if face else None,
                        face_probability=face.probability if face else None,
                        landmarks=landmarks_json(face) if face else None,
                        phash=phash, dup_group=group, created_at=now())
                    insert = (_insert(conn, images_table).values(values)
                              .on_conflict_do_nothing(index_elements=["sha256"]).returning(images_table.c.id))
                    if conn.execute(insert).first() is None:
                        report.duplicates.append(candidate.name)  # added by an import running at the same time
                        continue
                    index.add(hash_bytes(phash), [group])
                    added_shas.add(sha)
                    report.added.append(candidate.name)
                    if face is None:
                        report.no_face.append(candidate.name)
            done += taken
            if progress:
                progress(done, len(candidates))
        if require_any and not report.added and not report.duplicates:
            reasons = "; ".join(f"{n}: {r}" for n, r in report.rejected[:3])
            raise StoreError(f"No images could be imported ({len(report.rejected)} rejected: {reasons}).")
        return report

    def _decode_batch(self, candidates, offered: set[str], report: ImportReport) -> tuple[list, int]:
        """Read, validate and decode candidates until the batch holds MAX_BATCH_BYTES of files and pixels; duplicates
        (of a stored photo, or repeating a file `offered` before in this import) and bad files go to the report.
        Returns the batch, (candidate, image, file bytes, SHA-256) each, and how many candidates were taken."""
        batch, held = [], 0
        with self.engine.connect() as conn:
            for taken, candidate in enumerate(candidates, start=1):
                try:
                    label = validate_label(candidate.label)
                    data = candidate.read()
                    sha = hashlib.sha256(data).hexdigest()
                    if sha in offered or _image_id(conn, sha) is not None:
                        report.duplicates.append(candidate.name)
                        if sha in offered:
                            report.repeated.append(candidate.name)
                        continue
                    image = decode_image(data, self.settings.max_pixels, candidate.arrived_size(data))
                except (StoreError, BadImage, OSError) as error:
                    report.rejected.append((candidate.name, str(error)))
                    continue
                except Exception as error:  # one file's failure, whatever it is, is that file's rejection
                    report.rejected.append((candidate.name, f"cannot be read ({type(error).__name__}: {error})"))
                    continue
                offered.add(sha)
                batch.append((replace(candidate, label=label), image, data, sha))
                held += len(data) + image.nbytes
                if held >= MAX_BATCH_BYTES:
                    return batch, taken
        return batch, len(candidates)

    def _near_duplicate_group(self, conn, index: HashIndex, phash: str) -> int:
        """The group of the near-duplicates of phash (merging their groups), or a new group."""
        matches = sorted(set(index.groups[index.near(phash)].tolist()))
        if not matches:  # a new group: the index holds every stored photo (the batch's write lock keeps it so)
            return int(index.groups.max(initial=0)) + 1
        if len(matches) > 1:
            conn.execute(images_table.update().where(images_table.c.dup_group.in_(matches[1:]))
                         .values(dup_group=matches[0]))
            index.relabel(matches[1:], matches[0])
        return matches[0]

    def write_file(self, sha: str, data: bytes, written: list[Path]) -> str:
        """Write bytes content-addressed (temporary name, then rename), noting a new file in `written`; return the
        relative file name."""
        name = f"{sha[:2]}/{sha}"
        path = self.images_dir / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            temporary = path.with_name(f".{sha}.{uuid.uuid4().hex}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            written.append(path)
        return name

    @contextmanager
    def rolled_back_files_removed(self, written: list[Path]):
        """When the block fails, remove the files it wrote that no row refers to."""
        try:
            yield
        except BaseException:
            self._remove_unreferenced(written)
            raise

    def _remove_unreferenced(self, paths: Iterable[Path]) -> None:
        """Delete those image files that no row refers to. Holds the import lock, so that no batch of an import
        running at the same time is between writing a file and committing its row."""
        paths = {f"{path.parent.name}/{path.name}": path for path in paths}
        if not paths:
            return
        with self.engine.begin() as conn:
            write_lock(conn)
            names = list(paths)
            referenced = {file for chunk in range(0, len(names), 500) for file in conn.execute(
                sa.select(images_table.c.file).where(images_table.c.file.in_(names[chunk:chunk + 500]))).scalars()}
            for name, path in paths.items():
                if name not in referenced:
                    path.unlink(missing_ok=True)

    # ---- face boxes set by hand ----------------------------------------------------------------------
    def detect_faces(self, record: ImageRecord, detector: FaceDetector) -> list[Face]:
        """Every face MTCNN finds in a stored photo, largest first, to pick from when the import took the wrong one
        (the search bounded by the file's size, as at import)."""
        return detector.detect([self.load_image(record)], [self.image_path(record).stat().st_size])[0]

    def set_face(self, image_id: int, face: Face) -> ImageRecord:
        """Make `face` (one of detect_faces', or a box drawn by hand) the photo's face box: training crops it from now
        on, and it comes back when the same file is imported again. A box that checked_box refuses is a StoreError and
        nothing changes."""
        record = self.image(image_id)
        x1, y1, x2, y2 = checked_box(face.box, record.width, record.height)
        values = dict(face_x1=x1, face_y1=y1, face_x2=x2, face_y2=y2, face_probability=float(face.probability),
                      landmarks=landmarks_json(face) if face.landmarks else None, created_at=now())
        with self.engine.begin() as conn:
            conn.execute(_insert(conn, manual_faces_table).values(sha256=record.sha256, **values)
                         .on_conflict_do_update(index_elements=["sha256"], set_=values))
        return self.image(image_id)

    def set_face_box(self, image_id: int, box) -> ImageRecord:
        """A face box drawn by hand (x1, y1, x2, y2 in pixels): no landmarks, so a drawn mask skips the photo."""
        return self.set_face(image_id, Face(tuple(box), 1.0))

    def reset_face(self, image_id: int) -> ImageRecord:
        """Drop the box set by hand: the one MTCNN found at import (or none: the whole photo) is used again."""
        record = self.image(image_id)
        with self.engine.begin() as conn:
            conn.execute(manual_faces_table.delete().where(manual_faces_table.c.sha256 == record.sha256))
        return self.image(image_id)

    # ---- landmarks of older data homes ---------------------------------------------------------------
    def without_landmarks(self, ids: Iterable[int] | None = None) -> list[ImageRecord]:
        """Images with a detected face (none set by hand) whose landmarks were never looked for (imported before
        maskdet stored them)."""
        query = (sa.select(images_table.c.id)
                 .select_from(images_table.outerjoin(manual_faces_table, _manual_face_of_image))
                 .where(images_table.c.face_x1.is_not(None), images_table.c.landmarks.is_(None),
                        manual_faces_table.c.sha256.is_(None)))
        with self.engine.connect() as conn:
            missing = set(conn.execute(query).scalars())
        return self.images(ids=sorted(missing if ids is None else missing & set(ids)))

    def fill_landmarks(self, detector: FaceDetector, ids: Iterable[int] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict:
        """Find the landmarks of stored faces that have none yet: the detected face that best overlaps the stored
        box gives them ("[]" when none overlaps it by half). Returns counts of images filled and not found."""
        records = self.without_landmarks(ids)
        found = 0
        for start in range(0, len(records), 32):
            batch = records[start:start + 32]
            values = []
            for record, faces in zip(batch, detector.detect([self.load_image(r) for r in batch])):
                overlap, best = max(((box_iou(face.box, record.face.box), face) for face in faces),
                                    key=lambda pair: pair[0], default=(0.0, None))
                face = best if overlap >= 0.5 else None
                found += face is not None
                values.append({"image_id": record.id, "value": landmarks_json(face) if face else "[]"})
            with self.engine.begin() as conn:
                conn.execute(images_table.update().where(images_table.c.id == sa.bindparam("image_id"))
                             .values(landmarks=sa.bindparam("value")), values)
            if progress:
                progress(start + len(batch), len(records))
        return {"filled": found, "not_found": len(records) - found}

    # ---- splits ---------------------------------------------------------------------------------
    def assign_splits(self, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict:
        """Stratified, seeded train/val/test split that keeps each near-duplicate group in one split."""
        if len(ratios) != 3 or min(ratios) < 0 or not 0.99 < sum(ratios) < 1.01 or ratios[0] == 0:
            raise StoreError("Split ratios must be three non-negative numbers summing to 1, train above 0.")
        records = self.images()
        members: dict[int, list[ImageRecord]] = defaultdict(list)
        for record in records:
            members[record.dup_group].append(record)
        by_label: dict[str, list[int]] = defaultdict(list)
        for group, items in members.items():
            by_label[Counter(r.label for r in items).most_common(1)[0][0]].append(group)
        assignment = {}
        for label, label_groups in by_label.items():
            rng = random.Random(f"{seed}:{label}")
            label_groups.sort(key=lambda g: min(r.sha256 for r in members[g]))
            rng.shuffle(label_groups)
            assignment.update(_cut_groups(label_groups, {g: len(members[g]) for g in label_groups}, ratios))
        with self.engine.begin() as conn:
            for split in SPLITS:
                ids = [r.id for g, s in assignment.items() if s == split for r in members[g]]
                for chunk in range(0, len(ids), 500):
                    conn.execute(images_table.update().where(images_table.c.id.in_(ids[chunk:chunk + 500]))
                                 .values(split=split))
        return self.split_counts()

    def split_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        query = (sa.select(images_table.c.split, labels_table.c.name, sa.func.count(images_table.c.id))
                 .select_from(images_table.join(labels_table)).where(images_table.c.split.is_not(None))
                 .group_by(images_table.c.split, labels_table.c.id).order_by(labels_table.c.id))
        with self.engine.connect() as conn:
            for split, label, count in conn.execute(query):
                counts[split][label] = count
        return counts

    # ---- runs -----------------------------------------------------------------------------------
    def create_run(self, config: dict) -> str:
        """A queued run, refused while another run is queued or running: the index one_active_run keeps one training
        at a time, so two sessions pressing Start together cannot both get one."""
        run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        values = dict(id=run_id, created_at=now(), status="queued", config=json.dumps(config), cancel_requested=False)
        try:
            with self.engine.begin() as conn:
                conn.execute(runs_table.insert().values(**values))
        except sa.exc.IntegrityError:
            raise StoreError("Another training run was started a moment ago: wait for it or cancel it first.") from None
        return run_id

    def update_run(self, run_id: str, while_status: str | None = None, **fields) -> bool:
        """Write the run's fields; with while_status, only while the run has that status, in one statement (of two
        processes doing so, one wins). Whether the run was written."""
        for key in ("config", "progress", "metrics"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key])
        if fields.get("status") not in (None, *RUN_STATUSES):
            raise StoreError(f"Unknown run status {fields['status']!r}.")
        query = runs_table.update().where(runs_table.c.id == run_id).values(**fields)
        if while_status is not None:
            query = query.where(runs_table.c.status == while_status)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    def run(self, run_id: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs_table).where(runs_table.c.id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"No run with id '{run_id}'. See `python -m maskdet runs`.")
        return _run_dict(row)

    def runs(self) -> list[dict]:
        """Every run, newest first."""
        query = sa.select(runs_table).order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc())
        with self.engine.connect() as conn:
            return [_run_dict(row) for row in conn.execute(query).mappings().all()]

    def delete_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(runs_table.delete().where(runs_table.c.id == run_id))
            conn.execute(meta_table.delete().where(meta_table.c.key == "active_run", meta_table.c.value == run_id))

    # ---- settings ------------------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_insert(conn, meta_table).values(key=key, value=value)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def _cut_groups(groups: list[int], sizes: dict[int, int], ratios) -> dict[int, str]:
    """Assign shuffled groups to splits by cumulative image count; val/test get a group when there are 3+."""
    total = sum(sizes.values())
    bounds = (ratios[0] * total, (ratios[0] + ratios[1]) * total)
    assignment, seen = {}, 0
    for group in groups:
        middle = seen + sizes[group] / 2
        assignment[group] = "train" if middle < bounds[0] else "val" if middle < bounds[1] else "test"
        seen += sizes[group]
    if len(groups) >= 3:
        for split, position, ratio in (("test", -1, ratios[2]), ("val", -2, ratios[1])):
            if ratio > 0 and split not in assignment.values():
                assignment[groups[position]] = split
    return assignment


def _upgrade(conn, version: int) -> None:
    """Bring a data home written by an older maskdet to SCHEMA_VERSION (its data stays as it was, except that of
    several queued or running runs, which older versions allowed, only the newest stays so: the others fail). New
    tables (manual_faces) were made by create_all before."""
    for table, column, kind in (("images", "landmarks", "TEXT"), ("runs", "heartbeat_at", "VARCHAR(32)")):
        if column not in {existing["name"] for existing in sa.inspect(conn).get_columns(table)}:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    if version < 4:
        newest_first = list(conn.execute(sa.select(runs_table.c.id).where(runs_table.c.status.in_(ACTIVE_STATUSES))
                                         .order_by(runs_table.c.created_at.desc(), runs_table.c.id.desc())).scalars())
        if len(newest_first) > 1:
            conn.execute(runs_table.update().where(runs_table.c.id.in_(newest_first[1:])).values(
                status="failed", finished_at=now(), error="Failed when maskdet moved to one training at a time: the "
                                                          f"newer run {newest_first[0]} stayed active."))
        one_active_run.create(conn)
    conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))


_faceless = sa.and_(images_table.c.face_x1.is_(None), manual_faces_table.c.sha256.is_(None))


def _images_where(query: sa.Select, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                  ids: Iterable[int] | None = None) -> sa.Select:
    """A query over the images, their labels and the faces set by hand, kept to the images matching the filters."""
    query = query.select_from(images_table.join(labels_table).outerjoin(manual_faces_table, _manual_face_of_image))
    if label is not None:
        query = query.where(labels_table.c.name == label)
    if split is not None:
        query = query.where(images_table.c.split == split)
    if no_face is not None:
        query = query.where(_faceless if no_face else sa.not_(_faceless))
    if ids is not None:
        query = query.where(images_table.c.id.in_(list(ids)))
    return query


def landmarks_json(face: Face) -> str:
    return json.dumps([[round(x, 2), round(y, 2)] for x, y in face.landmarks or ()])


def _image_id(conn, sha: str) -> int | None:
    """The id of the photo with this SHA-256 (one lookup of the unique index), or None when the dataset has none."""
    return conn.execute(sa.select(images_table.c.id).where(images_table.c.sha256 == sha)).scalar()


def checked_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    """A face box as four numbers, or a StoreError saying what is wrong with it: it must lie inside the width x height
    photo, its right edge right of its left and its bottom below its top, MIN_BOX_SIDE pixels or more each way."""
    try:
        x1, y1, x2, y2 = (float(value) for value in box)
        finite = bool(np.isfinite([x1, y1, x2, y2]).all())
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise StoreError("A face box is four numbers: left, top, right and bottom, in pixels of the photo. Nothing "
                         "was changed.")
    shown = f"left {x1:g}, top {y1:g}, right {x2:g}, bottom {y2:g}"
    if x2 <= x1 or y2 <= y1:
        raise StoreError(f"The face box's right edge must be right of its left edge and its bottom below its top "
                         f"({shown}). Nothing was changed.")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise StoreError(f"The face box ({shown}) goes outside the photo, which is {width} x {height} pixels: keep "
                         f"left and right within 0 to {width}, top and bottom within 0 to {height}. Nothing was "
                         "changed.")
    if min(x2 - x1, y2 - y1) < MIN_BOX_SIDE:
        raise StoreError(f"The face box is {x2 - x1:g} x {y2 - y1:g} pixels: make it at least {MIN_BOX_SIDE} pixels "
                         "wide and high. Nothing was changed.")
    return x1, y1, x2, y2


def _record(row) -> ImageRecord:
    """A record from an image row joined with its label and its manual_faces row (as manual_* columns, NULL if none)."""
    source = "manual" if row["manual_face_x1"] is not None else "detected"
    columns = {name: row[f"manual_{name}" if source == "manual" else name] for name in FACE_COLUMNS}
    face = None
    if columns["face_x1"] is not None:
        points = json.loads(columns["landmarks"]) if columns["landmarks"] else None
        face = Face((columns["face_x1"], columns["face_y1"], columns["face_x2"], columns["face_y2"]),
                    columns["face_probability"], tuple((x, y) for x, y in points) if points else None)
    return ImageRecord(row["id"], row["sha256"], row["file"], row["label"], row["source_name"], row["width"],
                       row["height"], face, row["dup_group"], row["split"], source)


def _run_dict(row) -> dict:
    run = dict(row)
    for key in ("config", "progress", "metrics"):
        run[key] = json.loads(run[key]) if run[key] else None
    return run


def open_database(url: str) -> sa.Engine:
    """An engine for a SQLite or PostgreSQL URL (postgresql:// means psycopg 3, which maskdet installs); a URL that
    cannot be used is a StoreError saying why."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError("MASKDET_DATABASE_URL is not a database URL: use sqlite:///PATH or "
                         "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = sa.create_engine(parsed)
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise StoreError(f"No driver for the database {shown_url(url)} ({error}): use a sqlite:/// or a postgresql:// "
                         "URL, or install that driver into maskdet's environment.") from None
    if engine.dialect.name not in BACKENDS:
        raise StoreError(f"maskdet keeps its registry in SQLite or PostgreSQL, not {engine.dialect.name} "
                         f"({shown_url(url)}): use a sqlite:/// or a postgresql:// URL.")
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def _insert(conn, table: sa.Table):
    """The backend's INSERT, which can say what to do ON CONFLICT."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def write_lock(conn) -> None:
    """Hold the database's write lock until this transaction ends, so that transactions which read before they write
    (schema creation, import batches) run one at a time."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(connection, _record, attempts: int = 50) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    for attempt in range(attempts):  # a new database refuses the switch at once, not waiting, while another makes it
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02)
    cursor.close()
