"""Backup and restore of a project: one zip of the database's rows, the image files and the chosen runs' folders and
logs, read from one snapshot while the dashboard runs, and loaded into an empty data home on either backend.

Layout of the zip: manifest.json (format, maskdet and schema version, backend, time, row counts, and the SHA-256 and
size of every run file), tables/<table>.jsonl (one JSON object per row), images/<sha[:2]>/<sha> (stored as they are:
photos are compressed already), runs/<run_id>/... (a run's folder) and logs/<run_id>.log."""

import hashlib
import io
import itertools
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path, PurePosixPath

import sqlalchemy as sa

from maskdet import __version__
from maskdet.core.atomic import written_in_place
from maskdet.core.errors import StoreError
from maskdet.core.json_text import parse_json
from maskdet.core.text import now
from maskdet.data.database import (ACTIVE_STATUSES, SCHEMA_VERSION, continue_ids, faces_from_images, faces_table,
                                   insert_rows, labels_table, legacy_images_table, legacy_manual_faces_table,
                                   manual_boxes_table, meta_table, photos_table, runs_table, shown_url, write_lock)
from maskdet.data.registry import ACTIVE_SETTING
from maskdet.data.sources import MAX_ENTRY_BYTES, zip_source
from maskdet.data.store import Store
from maskdet.runs.lifecycle import RUN_ID_PATTERN, active_training, log_path
from maskdet.runs.views import run_dir

FORMAT = "maskdet-backup"
# Restored in order (foreign keys). A backup of schema 5 or older holds images and manual_faces in place of photos,
# faces and manual_boxes, which restore makes of them as an upgrade does.
TABLES = (meta_table, labels_table, photos_table, faces_table, manual_boxes_table, runs_table)
LEGACY_TABLES = (meta_table, labels_table, legacy_images_table, legacy_manual_faces_table, runs_table)
ADDED_IN = {"manual_faces": 5}  # tables newer than the first backups, by schema version: an older backup has them empty
SHA256 = re.compile(r"[0-9a-f]{64}")
IMAGE_NAME = re.compile(r"images/([0-9a-f]{2})/\1[0-9a-f]{62}")  # images/<sha[:2]>/<sha>
CHUNK = 1024 * 1024
MAX_ROW_CHARS = 64 * 2**20  # a row of a table's JSON lines: far above a run's metrics, the largest
# A backup unpacks to at most MAX_PACKING times its size, above PACKING_FLOOR: its photos and models are stored as they
# are, its rows of JSON pack about 4 times (70 for 2,000 failed runs of one config), a zip bomb's about 1,000 times.
MAX_PACKING, PACKING_FLOOR = 100, 64 * 2**20
INSERT_BATCH = 500  # rows read and inserted at a time
ProgressCallback = Callable[[int, int], None] | None


# ---- backup --------------------------------------------------------------------------------------

def backup_runs(store: Store) -> list[dict]:
    """The runs a backup holds by default, newest first: every run but those queued or running (whose folders are not
    complete yet; one whose process died is failed first)."""
    active_training(store)
    return [run for run in store.runs() if run["status"] not in ACTIVE_STATUSES]


def backup(store: Store, target: Path, runs: Iterable[str] | None = None, progress: ProgressCallback = None) -> dict:
    """Write the project to the zip `target` (under a temporary name, renamed into place): the rows of one database
    snapshot, every image file checked against its SHA-256, and the folders and logs of `runs` (run ids; None: those of
    backup_runs). An image or run whose file was deleted after the snapshot is left out, as if deleted before it."""
    target = Path(target)
    active_training(store)  # a run whose process died is failed first, and backed up like one
    rows = _snapshot(store.engine)
    rows["runs"] = _chosen_runs(rows["runs"], runs)
    run_files = {run["id"]: _run_files(store, run) for run in rows["runs"]}
    total, done, skipped = len(rows["photos"]) + sum(len(files or {}) for files in run_files.values()), 0, []
    with written_in_place(target) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        photos = []
        for row in rows["photos"]:
            problem = _copy_image(store, archive, row)
            if problem:
                skipped.append({"item": f"image {row['source_name']}", "reason": problem})
            else:
                photos.append(row)
            done += 1
            if progress:
                progress(done, total)
        photo_ids = {row["id"] for row in photos}
        rows["photos"], rows["faces"] = photos, [row for row in rows["faces"] if row["photo_id"] in photo_ids]
        face_ids = {row["id"] for row in rows["faces"]}
        rows["manual_boxes"] = [row for row in rows["manual_boxes"] if row["face_id"] in face_ids]
        runs_kept, listed = [], {}
        for run in rows["runs"]:
            files = _copy_run(archive, run_files[run["id"]])
            if files is None:
                skipped.append({"item": f"run {run['id']}", "reason": "its folder was deleted during the backup"})
            else:
                runs_kept.append(run)
                listed.update(files)
            done += len(run_files[run["id"]] or {})
            if progress:
                progress(done, total)
        rows["runs"] = runs_kept
        kept_ids = {run["id"] for run in runs_kept}
        rows["meta"] = [row for row in rows["meta"] if row["key"] != ACTIVE_SETTING or row["value"] in kept_ids]
        for table in TABLES:
            lines = "".join(json.dumps(row) + "\n" for row in rows[table.name])
            archive.writestr(f"tables/{table.name}.jsonl", lines)
        manifest = {"format": FORMAT, "maskdet_version": __version__,
                    "schema_version": int(next(r["value"] for r in rows["meta"] if r["key"] == "schema_version")),
                    "backend": store.engine.dialect.name, "created_at": now(),
                    "counts": {table.name: len(rows[table.name]) for table in TABLES}, "files": listed}
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    return {"file": str(target), "bytes": target.stat().st_size, "created_at": manifest["created_at"],
            "labels": len(rows["labels"]), "images": len(rows["photos"]), "faces": len(rows["faces"]),
            "runs": [run["id"] for run in runs_kept],
            "active_run": next((r["value"] for r in rows["meta"] if r["key"] == ACTIVE_SETTING), None),
            "skipped": skipped}


def backup_bytes(store: Store, runs: Iterable[str] | None = None,
                 progress: ProgressCallback = None) -> tuple[dict, bytes]:
    """A backup for a download: written to a temporary file and read back."""
    with tempfile.TemporaryDirectory(prefix="maskdet-backup-") as folder:
        result = backup(store, Path(folder) / "backup.zip", runs, progress)
        return result, (Path(folder) / "backup.zip").read_bytes()


def download_name(result: dict) -> str:
    """maskdet-backup-YYYYMMDD-HHMMSS.zip, from the backup's time (UTC)."""
    return datetime.fromisoformat(result["created_at"]).strftime("maskdet-backup-%Y%m%d-%H%M%S.zip")


def _snapshot(engine: sa.Engine) -> dict[str, list[dict]]:
    """Every row of every table, read in one snapshot that writers do not wait for: a read transaction of SQLite in
    WAL mode, REPEATABLE READ on PostgreSQL. It lasts as long as the reading, not the copying of files."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn.exec_driver_sql("BEGIN")  # the driver starts no transaction for reads: all the reads share this one
        return {table.name: [dict(row) for row in conn.execute(
            sa.select(table).order_by(*table.primary_key.columns)).mappings()] for table in TABLES}


def _chosen_runs(rows: list[dict], ids: Iterable[str] | None) -> list[dict]:
    if ids is None:
        return [row for row in rows if row["status"] not in ACTIVE_STATUSES]
    by_id = {row["id"]: row for row in rows}
    ids = list(dict.fromkeys(ids))
    for run_id in ids:
        if run_id not in by_id:
            raise StoreError(f"No run with id '{run_id}'. See `python -m maskdet runs`.")
        if by_id[run_id]["status"] in ACTIVE_STATUSES:
            raise StoreError(f"Run {run_id} is still {by_id[run_id]['status']}: a backup holds finished runs only. "
                             "Wait for it to finish, or leave it out.")
    return [by_id[run_id] for run_id in ids]


def _run_files(store: Store, run: dict) -> dict[str, Path] | None:
    """Archive name -> file, for a run's folder and log (None: a succeeded run whose folder is gone)."""
    folder = run_dir(store, run)
    files = {f"runs/{run['id']}/{path.relative_to(folder).as_posix()}": path for path in sorted(folder.rglob("*"))
             if path.is_file() and not path.is_symlink()} if folder.is_dir() else {}
    if run["status"] == "succeeded" and not files:
        return None
    log = log_path(store.settings, run["id"])
    if log.is_file():
        files[f"logs/{run['id']}.log"] = log
    return files


def _copy_image(store: Store, archive: zipfile.ZipFile, row: dict) -> str | None:
    """Add an image file, read whole and checked against its hash; why it was left out, if it was."""
    try:
        data = (store.images_dir / row["file"]).read_bytes()
    except FileNotFoundError:
        return "its file was deleted during the backup (or is missing)"
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        return "its file is damaged: its content no longer matches its SHA-256"
    archive.writestr(f"images/{row['sha256'][:2]}/{row['sha256']}", data, compress_type=zipfile.ZIP_STORED)
    return None


def _copy_run(archive: zipfile.ZipFile, files: dict[str, Path] | None) -> dict[str, dict] | None:
    """Stream a run's files into the archive; their SHA-256 and size by archive name. Every file is opened before any
    is copied, so a run deleted meanwhile is left out whole (None)."""
    if files is None:
        return None
    with ExitStack() as stack:
        try:
            handles = {name: stack.enter_context(open(path, "rb")) for name, path in files.items()}
        except FileNotFoundError:
            return None
        listed = {}
        for name, handle in handles.items():
            digest, size = hashlib.sha256(), 0
            with archive.open(name, "w", force_zip64=os.fstat(handle.fileno()).st_size > 2**31) as entry:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    entry.write(chunk)
                    size += len(chunk)
            listed[name] = {"sha256": digest.hexdigest(), "bytes": size}
        return listed


# ---- restore -------------------------------------------------------------------------------------

def restore(store: Store, source, progress: ProgressCallback = None) -> dict:
    """Load a backup (path, bytes or file object) into this data home, which must hold no images and no runs (its
    labels, the defaults of a new home, are replaced). The archive is read as streams: its sizes, compression and
    layout are checked before any entry is read, then every table a row at a time without holding its rows; every file
    is checked against its SHA-256; the rows go in one transaction, and a restore that fails removes the files it
    wrote."""
    with _open_archive(source) as archive:
        _check_packing(archive)
        manifest = _manifest(archive)
        files = _check_layout(archive, manifest)
        with store.engine.connect() as conn:
            _refuse_non_empty(store, conn)
        _check_rows(store, archive, manifest, files)
        models_dir = store.settings.models_dir
        staging = models_dir / f".restore-{uuid.uuid4().hex[:8]}.tmp"  # the next `train` removes one a kill left
        written, placed = [], []  # image files; run folders and logs moved into place
        images = manifest["counts"].get(_photo_table(manifest).name, 0)
        total, done = images + len(files), 0
        try:
            with store.rolled_back_files_removed(written):
                for row in _rows(archive, manifest, _photo_table(manifest)):
                    store.write_file(row["sha256"], _image_bytes(archive, row), written)
                    done += 1
                    if progress:
                        progress(done, total)
                for name, spec in files.items():
                    _extract(archive, name, spec, staging / name)
                    done += 1
                    if progress:
                        progress(done, total)
                with_folder = {name.split("/")[1] for name in files if name.startswith("runs/")}
                with store.engine.begin() as conn:
                    write_lock(conn)
                    _refuse_non_empty(store, conn)
                    _insert_rows(store, conn, archive, manifest, with_folder)
                    for run_id in sorted(with_folder):
                        os.replace(staging / "runs" / run_id, models_dir / run_id)
                        placed.append(models_dir / run_id)
                    for log in (staging / "logs").glob("*.log"):
                        target = log_path(store.settings, log.stem)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(log, target)
                        placed.append(target)
        except BaseException:
            for path in placed:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    counts = store.label_counts()
    with store.engine.connect() as conn:
        runs = list(conn.execute(sa.select(runs_table.c.id).order_by(runs_table.c.id)).scalars())
    return {"home": str(store.home), "database": shown_url(store.settings.database_url),
            "backend": store.engine.dialect.name, "models": str(models_dir), "from_backend": manifest.get("backend"),
            "backup_created_at": manifest.get("created_at"), "labels": counts, "images": images,
            "faces": sum(counts.values()), "runs": runs, "active_run": store.get_setting(ACTIVE_SETTING)}


def _open_archive(source) -> zipfile.ZipFile:
    source = zip_source(source)
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise StoreError(f"Not a maskdet backup: the file is not a zip archive ({error}).") from None


def _unusable(reason: str) -> StoreError:
    return StoreError(f"Not a usable maskdet backup: {reason}. Nothing was restored.")


def _check_packing(archive: zipfile.ZipFile) -> None:
    """Refuse, before any entry is read, entries that zipfile would unpack without a bound (bzip2, LZMA) or cannot
    read (encrypted), and an archive that unpacks to more than MAX_PACKING times its size: a zip bomb, of one entry or
    of entries sharing their data. Each entry is then read no further than the size it declares."""
    for info in archive.infolist():
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _unusable(f"{info.filename[:80]} is encrypted or compressed in a way maskdet backups are not")
    declared, size = sum(info.file_size for info in archive.infolist()), archive.start_dir  # where its entries end
    if declared > MAX_PACKING * size + PACKING_FLOOR:
        raise _unusable(f"it unpacks to {declared / 2**20:,.0f} MiB from {size / 2**20:,.1f} MiB, over {MAX_PACKING} "
                        "times its size, which only a zip bomb does")


@contextmanager
def _reading(name: str):
    """A damaged or unreadable entry, as a sentence."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise StoreError(f"The backup is damaged: {name} cannot be read ({error}). Nothing was restored.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StoreError(f"The backup is damaged: {name} is not valid JSON ({error}). Nothing was restored.") from None


def _manifest(archive: zipfile.ZipFile) -> dict:
    if "manifest.json" not in archive.namelist():
        raise StoreError("Not a maskdet backup: the archive has no manifest.json (`python -m maskdet backup FILE` "
                         "makes one).")
    with _reading("manifest.json"):
        manifest = parse_json(_entry_bytes(archive, "manifest.json", MAX_ENTRY_BYTES))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"Not a maskdet backup: its manifest.json does not say format '{FORMAT}'.")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError("The backup is damaged: its manifest.json has no schema version.")
    if version > SCHEMA_VERSION:
        raise StoreError(f"This backup was written by a newer maskdet ({manifest.get('maskdet_version')}, schema "
                         f"{version}; this is {__version__}, schema {SCHEMA_VERSION}): upgrade maskdet to restore it.")
    counts = manifest.get("counts")
    if not isinstance(manifest.get("files"), dict) or not isinstance(counts, dict) or not all(
            type(count) is int and count >= 0 for count in counts.values()):
        raise StoreError("The backup is damaged: its manifest.json lists no files or counts.")
    return manifest


def _tables(manifest: dict) -> tuple[sa.Table, ...]:
    """The tables a backup holds, in the order they are restored."""
    return TABLES if manifest["schema_version"] >= 6 else LEGACY_TABLES


def _photo_table(manifest: dict) -> sa.Table:
    """The table whose rows name the backup's image files: photos, or images for a backup of schema 5 or older."""
    return photos_table if manifest["schema_version"] >= 6 else legacy_images_table


def _check_layout(archive: zipfile.ZipFile, manifest: dict) -> dict[str, dict]:
    """Refuse, from the names alone, an archive holding an entry outside a maskdet backup's layout (a path out of its
    folders among them) or lacking a run file its manifest lists; the run files to extract, with their SHA-256 and
    size, by archive name."""
    files = manifest["files"]
    for name, spec in files.items():
        parts = PurePosixPath(name).parts
        inside = (len(parts) >= 3 and parts[0] == "runs" and RUN_ID_PATTERN.fullmatch(parts[1])) or (
            len(parts) == 2 and parts[0] == "logs" and parts[1].endswith(".log")
            and RUN_ID_PATTERN.fullmatch(parts[1][:-4]))
        if not inside or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            raise _unusable(f"it names a file outside a run's folder ({name[:80]!r})")
        if not isinstance(spec, dict) or not SHA256.fullmatch(str(spec.get("sha256"))) \
                or type(spec.get("bytes")) is not int:
            raise _unusable(f"its manifest gives no SHA-256 and size for {name[:80]!r}")
    tables = {f"tables/{table.name}.jsonl" for table in _tables(manifest)}
    for name in archive.namelist():
        if name != "manifest.json" and name not in tables and name not in files and not IMAGE_NAME.fullmatch(name):
            raise _unusable(f"it holds an entry outside a backup's layout ({name[:80]!r})")
    missing = sorted(set(files) - set(archive.namelist()))
    if missing:
        raise _unusable(f"{missing[0]} is missing ({len(missing)} files in all)")
    return files


def _check_rows(store: Store, archive: zipfile.ZipFile, manifest: dict, files: dict[str, dict]) -> None:
    """Read every table once, a row at a time, holding no rows (_rows checks each): photos whose image file is in the
    archive, every image file named by one; runs whose id is a folder name not yet in the models folder, and every run
    file of the manifest in the folder of one of them."""
    names, photo_table, photos, missing = set(archive.namelist()), _photo_table(manifest), 0, []
    owners = {name.split("/")[1] if name.startswith("runs/") else name[len("logs/"):-len(".log")]: name
              for name in files}
    for table in _tables(manifest):
        for row in _rows(archive, manifest, table):
            if table is photo_table:
                sha, photos = row["sha256"], photos + 1
                if not isinstance(sha, str) or not SHA256.fullmatch(sha) or row["file"] != f"{sha[:2]}/{sha}":
                    raise _unusable(f"image row {row['id']} names a file that is not its SHA-256 "
                                    f"({str(row['file'])[:80]!r})")
                if f"images/{row['file']}" not in names:
                    missing.append(f"images/{row['file']}")
            elif table is runs_table:
                if not isinstance(row["id"], str) or not RUN_ID_PATTERN.fullmatch(row["id"]):
                    raise _unusable(f"a run id is not a folder name ({str(row['id'])[:80]!r})")
                _refuse_taken(store, row["id"])
                owners.pop(row["id"], None)
    if missing:
        raise _unusable(f"{missing[0]} is missing ({len(missing)} files in all)")
    if owners:
        raise _unusable(f"it names a file outside a run's folder ({next(iter(owners.values()))[:80]!r})")
    images = sum(1 for name in names if name.startswith("images/"))
    if images != photos:
        raise _unusable(f"it holds {images} image files for {photos} photos")


def _rows(archive: zipfile.ZipFile, manifest: dict, table: sa.Table) -> Iterator[dict]:
    """A table's rows, decoded one at a time, every column present (columns an older schema lacked are empty, as when
    maskdet upgrades a data home, and so is a table it lacked). Refused before it is held: a row over MAX_ROW_CHARS, or
    beyond the count the manifest gives; refused as it is read: a row that is not one of the table's, holds a list or
    an object as a value, or lacks a key of its own (none, or an earlier row's); and fewer rows than that count."""
    name, columns, keys = f"tables/{table.name}.jsonl", table.columns.keys(), table.primary_key.columns.keys()
    count, version = manifest["counts"].get(table.name, 0), manifest["schema_version"]
    if name not in archive.namelist():
        if version < ADDED_IN.get(table.name, 1):
            return
        raise StoreError(f"The backup is incomplete: it has no {name}. Nothing was restored.")
    read, seen = 0, set()
    with _reading(name), archive.open(name) as handle:
        text = io.TextIOWrapper(handle, "utf-8")
        while line := text.readline(MAX_ROW_CHARS + 1):
            if len(line) > MAX_ROW_CHARS:
                raise StoreError(f"The backup is damaged: a row of {name} is over {MAX_ROW_CHARS // 2**20} MiB. "
                                 "Nothing was restored.")
            if read == count:
                raise _unusable(f"{name} holds more rows than its manifest counts ({count})")
            read += 1
            row = parse_json(line)
            if not isinstance(row, dict) or not set(row) <= set(columns) \
                    or any(isinstance(value, (list, dict)) for value in row.values()):
                raise StoreError(f"The backup is damaged: {name} holds something other than {table.name} rows. "
                                 "Nothing was restored.")
            key = tuple(row.get(column) for column in keys)
            if not all(isinstance(value, (str, int)) for value in key) or key in seen:
                raise StoreError(f"The backup is damaged: row {read} of {name} has no {'/'.join(keys)} of its own "
                                 "(none, or an earlier row's). Nothing was restored.")
            seen.add(key)
            yield {column: row.get(column) for column in columns}
    if read != count:
        raise _unusable("its tables do not hold the rows its manifest counts (changed or cut short)")


def _batches(archive: zipfile.ZipFile, manifest: dict) -> Iterator[tuple[sa.Table, list[dict]]]:
    """The rows to insert, table by table in TABLES' order, INSERT_BATCH at a time; those of a backup of schema 5 or
    older made into photos, faces and manual_boxes as an upgrade does (its boxes set by hand held meanwhile: at most
    one a photo)."""
    def batches(table: sa.Table) -> Iterator[list[dict]]:
        rows = _rows(archive, manifest, table)
        while batch := list(itertools.islice(rows, INSERT_BATCH)):
            yield batch

    if manifest["schema_version"] >= 6:
        yield from ((table, batch) for table in TABLES for batch in batches(table))
        return
    yield from ((table, batch) for table in (meta_table, labels_table) for batch in batches(table))
    manual = list(_rows(archive, manifest, legacy_manual_faces_table))
    for batch in batches(legacy_images_table):
        converted = faces_from_images(batch, manual)
        yield from ((table, converted[table.name]) for table in (photos_table, faces_table, manual_boxes_table))
    yield from ((runs_table, batch) for batch in batches(runs_table))


def _refuse_non_empty(store: Store, conn) -> None:
    images = conn.execute(sa.select(sa.func.count()).select_from(photos_table)).scalar()
    count = conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar()
    if images or count:
        raise StoreError(f"Restore needs an empty data home: {store.home} (database "
                         f"{shown_url(store.settings.database_url)}) has {images} images and {count} runs. Point "
                         "MASKDET_HOME, MASKDET_MODELS and MASKDET_DATABASE_URL at new, empty places and restore "
                         "there.")


def _refuse_taken(store: Store, run_id: str) -> None:
    if (store.settings.models_dir / run_id).exists():
        raise StoreError(f"The models folder {store.settings.models_dir} already has a folder for run {run_id}: "
                         "point MASKDET_MODELS at an empty folder and restore there.")


def _entry_bytes(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """An entry's bytes, refused when they are more than `limit` (an image: more than an import accepts)."""
    with _reading(name), archive.open(name) as entry:
        data = entry.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"The backup is damaged: {name} is larger than {limit // 2**20} MiB. Nothing was restored.")
    return data


def _image_bytes(archive: zipfile.ZipFile, row: dict) -> bytes:
    name = f"images/{row['file']}"
    data = _entry_bytes(archive, name, MAX_ENTRY_BYTES)
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise StoreError(f"The backup is damaged: {name} does not match its SHA-256. Nothing was restored.")
    return data


def _extract(archive: zipfile.ZipFile, name: str, spec: dict, path: Path) -> None:
    """Copy a run file out of the archive, no more bytes than its manifest says, and check its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with _reading(name), archive.open(name) as entry, open(path, "wb") as output:
        while size <= spec["bytes"] and (chunk := entry.read(CHUNK)):
            digest.update(chunk)
            output.write(chunk)
            size += len(chunk)
    if size != spec["bytes"] or digest.hexdigest() != spec["sha256"]:
        raise StoreError(f"The backup is damaged: {name} does not match the SHA-256 and size its manifest records. "
                         "Nothing was restored.")


def _insert_rows(store: Store, conn, archive: zipfile.ZipFile, manifest: dict, with_folder: set[str]) -> None:
    """The backup's rows with their ids, a batch at a time, in place of the new home's labels and settings; a run's
    folder is where this home keeps it (refused if the models folder has one of its id meanwhile). PostgreSQL's id
    sequences then continue after the highest id."""
    conn.execute(meta_table.delete().where(meta_table.c.key != "schema_version"))
    conn.execute(labels_table.delete())
    models_dir = store.settings.models_dir
    try:
        for table, rows in _batches(archive, manifest):
            if table is meta_table:
                rows = [row for row in rows if row["key"] != "schema_version"]
            if table is runs_table:
                for row in rows:
                    _refuse_taken(store, row["id"])
                rows = [{**row, "artefact_dir": str(models_dir / row["id"]) if row["id"] in with_folder else None}
                        for row in rows]
            insert_rows(conn, table, rows)
    except (sa.exc.IntegrityError, sa.exc.DataError) as error:
        reason = str(error.orig).strip().splitlines()[0]
        raise _unusable(f"its rows do not fit together ({reason})") from None
    continue_ids(conn, (labels_table, photos_table, faces_table))
