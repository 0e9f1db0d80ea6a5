"""Backup and restore of a project: one zip of the database's rows, the image files and the chosen runs' folders and
logs, read from one snapshot while the dashboard runs, and loaded into an empty data home on either backend.

Layout of the zip: manifest.json (format, maskdet and schema version, backend, time, row counts, and the SHA-256 and
size of every run file), tables/<table>.jsonl (one JSON object per row), images/<sha[:2]>/<sha> (stored as they are:
photos are compressed already), runs/<run_id>/... (a run's folder) and logs/<run_id>.log."""

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable
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
CHUNK = 1024 * 1024
MAX_ROW_CHARS = 64 * 2**20  # a row of a table's JSON lines: far above a run's metrics, the largest
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
    labels, the defaults of a new home, are replaced). Every file is checked against its SHA-256; the rows go in one
    transaction, and a restore that fails removes the files it wrote."""
    with _open_archive(source) as archive:
        manifest = _manifest(archive)
        rows = _backup_rows(archive, manifest["schema_version"], manifest["counts"])
        files = _check_layout(archive, manifest, rows)
        with store.engine.connect() as conn:
            _refuse_non_empty(store, conn, rows["runs"])
        models_dir = store.settings.models_dir
        staging = models_dir / f".restore-{uuid.uuid4().hex[:8]}.tmp"  # the next `train` removes one a kill left
        written, placed = [], []  # image files; run folders and logs moved into place
        total, done = len(rows["photos"]) + len(files), 0
        try:
            with store.rolled_back_files_removed(written):
                for row in rows["photos"]:
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
                    _refuse_non_empty(store, conn, rows["runs"])
                    _insert_rows(conn, rows, models_dir, with_folder)
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
    return {"home": str(store.home), "database": shown_url(store.settings.database_url),
            "backend": store.engine.dialect.name, "models": str(models_dir), "from_backend": manifest.get("backend"),
            "backup_created_at": manifest.get("created_at"), "labels": counts, "images": len(rows["photos"]),
            "faces": sum(counts.values()),
            "runs": [row["id"] for row in rows["runs"]], "active_run": store.get_setting(ACTIVE_SETTING)}


def _open_archive(source) -> zipfile.ZipFile:
    source = zip_source(source)
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise StoreError(f"Not a maskdet backup: the file is not a zip archive ({error}).") from None


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


def _backup_rows(archive: zipfile.ZipFile, version: int, counts: dict) -> dict[str, list[dict]]:
    """The rows of TABLES a backup holds: those of schema 5 or older made into photos, faces and manual_boxes."""
    tables = TABLES if version >= 6 else LEGACY_TABLES
    rows = {table.name: _table_rows(archive, table, version, counts.get(table.name, 0)) for table in tables}
    if version >= 6:
        return rows
    return {**{name: rows[name] for name in ("meta", "labels", "runs")},
            **faces_from_images(rows["images"], rows["manual_faces"])}


def _table_rows(archive: zipfile.ZipFile, table: sa.Table, version: int, count: int) -> list[dict]:
    """A table's rows, every column present (columns an older schema lacked are empty, as when maskdet upgrades a
    data home, and so is a table it lacked). Read a row at a time: a row over MAX_ROW_CHARS, or a row beyond the
    `count` the manifest gives, is refused before it is held, and fewer rows than that count too."""
    name, columns = f"tables/{table.name}.jsonl", table.columns.keys()
    if name not in archive.namelist():
        if version < ADDED_IN.get(table.name, 1):
            return []
        raise StoreError(f"The backup is incomplete: it has no {name}. Nothing was restored.")
    rows = []
    with _reading(name), archive.open(name) as handle:
        text = io.TextIOWrapper(handle, "utf-8")
        while line := text.readline(MAX_ROW_CHARS + 1):
            if len(line) > MAX_ROW_CHARS:
                raise StoreError(f"The backup is damaged: a row of {name} is over {MAX_ROW_CHARS // 2**20} MiB. "
                                 "Nothing was restored.")
            if len(rows) == count:
                raise StoreError(f"Not a usable maskdet backup: {name} holds more rows than its manifest counts "
                                 f"({count}). Nothing was restored.")
            row = parse_json(line)
            if not isinstance(row, dict) or not set(row) <= set(columns):
                raise StoreError(f"The backup is damaged: {name} holds something other than {table.name} rows. "
                                 "Nothing was restored.")
            rows.append({column: row.get(column) for column in columns})
    if len(rows) != count:
        raise StoreError("Not a usable maskdet backup: its tables do not hold the rows its manifest counts (changed or "
                         "cut short). Nothing was restored.")
    return rows


def _check_layout(archive: zipfile.ZipFile, manifest: dict, rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Refuse an archive whose rows, names or files are not those of a maskdet backup (a path out of the archive's
    folders among them); the run files to extract, with their SHA-256 and size, by archive name."""
    def refuse(reason: str):
        raise StoreError(f"Not a usable maskdet backup: {reason}. Nothing was restored.")

    for row in rows["photos"]:
        sha = row["sha256"]
        if not isinstance(sha, str) or not SHA256.fullmatch(sha) or row["file"] != f"{sha[:2]}/{sha}":
            refuse(f"image row {row['id']} names a file that is not its SHA-256 ({str(row['file'])[:80]!r})")
    run_ids = {row["id"] for row in rows["runs"]}
    for run_id in run_ids:
        if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
            refuse(f"a run id is not a folder name ({str(run_id)[:80]!r})")
    files = manifest["files"]
    for name, spec in files.items():
        parts = PurePosixPath(name).parts
        inside = (len(parts) >= 3 and parts[0] == "runs" and parts[1] in run_ids) or (
            len(parts) == 2 and parts[0] == "logs" and parts[1].endswith(".log") and parts[1][:-4] in run_ids)
        if not inside or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
            refuse(f"it names a file outside a run's folder ({name[:80]!r})")
        if not isinstance(spec, dict) or not SHA256.fullmatch(str(spec.get("sha256"))) \
                or type(spec.get("bytes")) is not int:
            refuse(f"its manifest gives no SHA-256 and size for {name[:80]!r}")
    images = {f"images/{row['file']}" for row in rows["photos"]}
    tables = TABLES if manifest["schema_version"] >= 6 else LEGACY_TABLES
    expected = {"manifest.json", *(f"tables/{table.name}.jsonl" for table in tables), *images, *files}
    for info in archive.infolist():
        if info.filename not in expected:
            refuse(f"it holds an entry outside a backup's layout ({info.filename[:80]!r})")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            refuse(f"{info.filename} is encrypted or compressed in a way maskdet backups are not")
    missing = sorted((images | set(files)) - set(archive.namelist()))
    if missing:
        refuse(f"{missing[0]} is missing ({len(missing)} files in all)")
    return files


def _refuse_non_empty(store: Store, conn, runs: list[dict]) -> None:
    images = conn.execute(sa.select(sa.func.count()).select_from(photos_table)).scalar()
    count = conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar()
    if images or count:
        raise StoreError(f"Restore needs an empty data home: {store.home} (database "
                         f"{shown_url(store.settings.database_url)}) has {images} images and {count} runs. Point "
                         "MASKDET_HOME, MASKDET_MODELS and MASKDET_DATABASE_URL at new, empty places and restore "
                         "there.")
    taken = [run["id"] for run in runs if (store.settings.models_dir / run["id"]).exists()]
    if taken:
        raise StoreError(f"The models folder {store.settings.models_dir} already has a folder for run {taken[0]}: "
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


def _insert_rows(conn, rows: dict[str, list[dict]], models_dir: Path, with_folder: set[str]) -> None:
    """The backup's rows with their ids, in place of the new home's labels and settings; a run's folder is where this
    home keeps it. PostgreSQL's id sequences then continue
    after the highest id."""
    conn.execute(meta_table.delete().where(meta_table.c.key != "schema_version"))
    conn.execute(labels_table.delete())
    rows = {**rows, "meta": [row for row in rows["meta"] if row["key"] != "schema_version"],
            "runs": [{**row, "artefact_dir": str(models_dir / row["id"]) if row["id"] in with_folder else None}
                     for row in rows["runs"]]}
    try:
        for table in TABLES:
            insert_rows(conn, table, rows[table.name])
    except (sa.exc.IntegrityError, sa.exc.DataError) as error:
        reason = str(error.orig).strip().splitlines()[0]
        raise StoreError(f"Not a usable maskdet backup: its rows do not fit together ({reason}). Nothing was "
                         "restored.") from None
    continue_ids(conn, (labels_table, photos_table, faces_table))
