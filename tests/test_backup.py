"""Backup and restore (maskdet/runs/backup.py, `maskdet backup` and `maskdet restore`; the Home page's download is
tested in test_page_home.py): a project moved from SQLite to PostgreSQL and back keeps its rows, files, runs, active
model and evaluate figures; a home that is not empty and bad archives are refused with nothing written; a backup taken
while others write holds one snapshot and leaves out what was deleted meanwhile."""

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from maskdet.cli import resolve_model
from maskdet.core.errors import StoreError
from maskdet.core.settings import Settings
from maskdet.core.text import now
from maskdet.data.database import SCHEMA_VERSION, integrity_problems, meta_table
from maskdet.data.store import Store
from maskdet.runs import backup as backup_module
from maskdet.runs.backup import TABLES, backup, restore
from maskdet.runs.lifecycle import log_path
from maskdet.runs.views import run_dir
from maskdet.serving.classifier import load_classifier
from maskdet.serving.predict import evaluate_folder
from maskdet.vision.faces import Face
from tests.conftest import legacy_rows, write_dataset
from tests.test_store_concurrency import NoFaces

ROOT = Path(__file__).resolve().parents[1]


def home_at(root: Path, url: str | None = None) -> Store:
    """A data home and models folder under root, on SQLite in the home unless a database URL is given."""
    return Store(Settings(home=root / "home", models_dir=root / "models", backbone_weights=None, max_pixels=40_000_000,
                          database_url=url or f"sqlite:///{root / 'home' / 'maskdet.db'}"))


def make_project(store: Store, tmp_path: Path) -> tuple[str, str]:
    """8 generated photos in two classes with splits, the first with a face box set by hand; a failed run with its log
    only; a succeeded run with a folder and a log, made the active model. Returns the ids of the succeeded and the
    failed run."""
    store.import_folder(write_dataset(tmp_path / "photos", 4), NoFaces())
    store.assign_splits()
    store.set_face_box(store.faces()[0].id, (10, 8, 60, 70))
    failed = store.create_run({"epochs": 1})
    store.update_run(failed, status="failed", finished_at=now(), error="The training process stopped.")
    run_id = store.create_run({"epochs": 2})
    folder = store.settings.models_dir / run_id
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(os.urandom(300_000))
    (folder / "metrics.json").write_text('{"test": {"accuracy": 0.9}}')
    for run, text in ((failed, "stopped\n"), (run_id, "trained\n")):
        log_path(store.settings, run).parent.mkdir(parents=True, exist_ok=True)
        log_path(store.settings, run).write_text(text)
    store.update_run(run_id, status="succeeded", finished_at=now(), artefact_dir=str(folder),
                     metrics={"test": {"accuracy": 0.9, "labels": ["with_mask", "without_mask"]}})
    store.set_setting("active_run", run_id)
    return run_id, failed


def content(store: Store) -> dict:
    """What a restore carries over: every row (a run's folder path aside), the image files, the runs' files and logs."""
    with store.engine.connect() as conn:
        rows = {table.name: [dict(row) for row in conn.execute(
            sa.select(table).order_by(*table.primary_key.columns)).mappings()] for table in TABLES}
    for row in rows["runs"]:
        row.pop("artefact_dir")
    files = {record.sha256: store.image_path(record).read_bytes() for record in store.faces()}
    for run in store.runs():
        folder = run_dir(store, run)
        files.update({f"{run['id']}/{path.relative_to(folder)}": path.read_bytes() for path in folder.rglob("*")})
        log = log_path(store.settings, run["id"])
        files[f"{run['id']}.log"] = log.read_bytes() if log.exists() else None
    return {"rows": rows, "files": files}


def entries(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def zipped(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED,
           methods: dict[str, int] | None = None) -> bytes:
    """A zip of the files, each compressed as `methods` says, else by `compression`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data, compress_type=(methods or {}).get(name, compression))
    return buffer.getvalue()


def assert_empty(store: Store) -> None:
    """Nothing restored: no rows, no image file, no run file or log (empty folders aside), the default labels; the
    database passes its integrity check."""
    assert integrity_problems(store.engine) == []
    assert store.faces() == [] and store.runs() == [] and store.labels() == ["with_mask", "without_mask"]
    assert store.get_setting("active_run") is None
    assert [path for folder in (store.images_dir, store.settings.models_dir) for path in folder.rglob("*")
            if not path.is_dir()] == []


@pytest.fixture
def archive(tmp_path) -> Path:
    """A backup of a small generated project (SQLite) with a succeeded and a failed run."""
    make_project(home_at(tmp_path / "source"), tmp_path)
    backup(home_at(tmp_path / "source"), tmp_path / "backup.zip")
    return tmp_path / "backup.zip"


# ---- moving a project between backends -----------------------------------------------------------------------

def test_sqlite_to_postgresql_and_back_keeps_the_project_and_its_figures(trained_home, postgres_url, tmp_path,
                                                                         detector):
    source = home_at(trained_home.root)
    first = backup(source, tmp_path / "from-sqlite.zip")
    assert first["runs"] == [trained_home.run_id] and first["active_run"] == trained_home.run_id
    assert first["skipped"] == [] and first["images"] == 48

    postgres = home_at(tmp_path / "postgres", postgres_url)
    restored = restore(postgres, tmp_path / "from-sqlite.zip")
    assert (restored["from_backend"], restored["backend"]) == ("sqlite", "postgresql")
    assert restored["labels"] == {"with_mask": 24, "without_mask": 24} and restored["active_run"] == trained_home.run_id
    folder = postgres.run(trained_home.run_id)["artefact_dir"]
    assert folder == str(tmp_path / "postgres" / "models" / trained_home.run_id)
    backup(postgres, tmp_path / "from-postgres.zip")
    back = home_at(tmp_path / "back")
    restore(back, tmp_path / "from-postgres.zip")

    expected = content(source)
    assert {split for row in expected["rows"]["photos"] for split in [row["split"]]} == {"train", "val", "test"}
    assert len({row["dup_group"] for row in expected["rows"]["photos"]}) < 48  # near-duplicate groups
    assert content(postgres) == expected and content(back) == expected

    photos = tmp_path / "evaluate"
    for label in ("with_mask", "without_mask"):
        (photos / label).mkdir(parents=True)
        for path in sorted((trained_home.root / "photos" / label).glob("*.jpg"))[:3]:
            (photos / label / path.name).write_bytes(path.read_bytes())
    figures = [evaluate_folder(photos, detector, load_classifier(resolve_model(store, None)), store.settings.max_pixels)
               for store in (source, postgres, back)]
    assert figures[0]["num_samples"] == 6 and figures[1] == figures[0] and figures[2] == figures[0]

    top = max(record.id for record in source.faces())  # PostgreSQL's id sequences go on after the restored ids
    postgres.import_folder(write_dataset(tmp_path / "more", 1, labels=("mask_chin",), start=500), NoFaces())
    assert [record.id for record in postgres.faces(label="mask_chin")] == [top + 1]


# ---- refusals: a home in use, bad archives ------------------------------------------------------------------

def test_restore_refuses_a_home_with_images_or_runs(backend_settings, archive, tmp_path):
    target = Store(backend_settings)
    target.import_folder(write_dataset(tmp_path / "one", 1, labels=("with_mask",)), NoFaces())
    with pytest.raises(StoreError, match=r"Restore needs an empty data home: .* has 1 images and 0 runs\. Point "
                                         "MASKDET_HOME, MASKDET_MODELS and MASKDET_DATABASE_URL at new"):
        restore(target, archive)
    assert len(target.faces()) == 1 and target.runs() == []
    target.delete_faces([record.id for record in target.faces()])
    target.create_run({})
    with pytest.raises(StoreError, match="has 0 images and 1 runs"):
        restore(target, archive)
    assert len(target.runs()) == 1 and target.faces() == []


def test_restore_refuses_a_models_folder_holding_a_run_of_the_backup(store, archive):
    run_id = json.loads(entries(archive)["tables/runs.jsonl"].splitlines()[-1])["id"]
    (store.settings.models_dir / run_id).mkdir(parents=True)
    with pytest.raises(StoreError, match=f"already has a folder for run {run_id}: point MASKDET_MODELS at an empty"):
        restore(store, archive)
    assert store.faces() == [] and store.runs() == []


def changed_manifest(entries: dict[str, bytes], **changes) -> dict[str, bytes]:
    return {**entries, "manifest.json": json.dumps({**json.loads(entries["manifest.json"]), **changes}).encode()}


def succeeded_run(files: dict[str, bytes]) -> str:
    return next(name.split("/")[1] for name in files if name.startswith("runs/"))


def first_image(files: dict[str, bytes]) -> str:
    return next(name for name in files if name.startswith("images/"))


def flipped_byte(files: dict[str, bytes]) -> bytes:
    """The zip with one byte of an image's data changed, as in a damaged download (its CRC no longer matches)."""
    data, image = bytearray(zipped(files)), files[first_image(files)]
    data[data.find(image) + 100] ^= 0xFF
    return bytes(data)


def rows_of(files: dict[str, bytes], table: str) -> list[bytes]:
    return files[f"tables/{table}.jsonl"].splitlines()


def counted_rows(files: dict[str, bytes], table: str, lines: list[bytes]) -> dict[str, bytes]:
    """The table's rows replaced by these lines, counted by its manifest (as an attacker who read the format would)."""
    counts = {**json.loads(files["manifest.json"])["counts"], table: len(lines)}
    return {**changed_manifest(files, counts=counts), f"tables/{table}.jsonl": b"\n".join(lines) + b"\n"}


def unfitting_rows(files: dict[str, bytes]) -> dict[str, bytes]:
    """A face row whose class is not in the backup (the database refuses it once every file is written)."""
    lines = files["tables/faces.jsonl"].decode().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "label_id": 999})
    return {**files, "tables/faces.jsonl": ("\n".join(lines) + "\n").encode()}


BAD_ARCHIVES = {  # what is done to a good backup's entries, and what the refusal says
    "not a zip": (lambda files: b"PK\x03\x04 but not a zip", "Not a maskdet backup: the file is not a zip archive"),
    "damaged entry": (flipped_byte, r"The backup is damaged: images/.* cannot be read \(Bad CRC-32"),
    "bzip2 entries": (lambda files: zipped(files, zipfile.ZIP_BZIP2), "compressed in a way maskdet backups are not"),
    "no manifest": (lambda files: {k: v for k, v in files.items() if k != "manifest.json"},
                    "Not a maskdet backup: the archive has no manifest.json"),
    "another format": (lambda files: changed_manifest(files, format="something-else"),
                       "does not say format 'maskdet-backup'"),
    "newer schema": (lambda files: changed_manifest(files, schema_version=SCHEMA_VERSION + 1),
                     rf"written by a newer maskdet \(0.1.0, schema {SCHEMA_VERSION + 1}; this is 0.1.0, schema "
                     rf"{SCHEMA_VERSION}\): upgrade maskdet"),
    "path traversal": (lambda files: {**files, "../../escaped.txt": b"x"},
                       r"outside a backup's layout \('../../escaped.txt'\)"),
    "traversal in the manifest": (lambda files: changed_manifest(files, files={
        **json.loads(files["manifest.json"])["files"],
        f"runs/{succeeded_run(files)}/../../../escaped.txt": {"sha256": "0" * 64, "bytes": 1}}),
        "names a file outside a run's folder"),
    "missing image": (lambda files: {k: v for k, v in files.items() if k != first_image(files)},
                      r"images/.* is missing \(1 files in all\)"),
    "image not matching its hash": (lambda files: {**files, first_image(files): b"other bytes"},
                                    r"The backup is damaged: images/.* does not match its SHA-256"),
    "run file not matching its hash": (lambda files: {**files, f"runs/{succeeded_run(files)}/model.onnx": b"x" * 10},
                                       "model.onnx does not match the SHA-256 and size its manifest records"),
    "rows changed": (lambda files: {**files, "tables/labels.jsonl": b""},
                     "its tables do not hold the rows its manifest counts"),
    "rows that do not fit together": (unfitting_rows, "its rows do not fit together"),
    # Hostile files, round two (E, F): rows checked one at a time as they are read, and nesting bounded.
    "rows beyond the manifest's count": (lambda files: {**files, "tables/meta.jsonl": b"\n".join(
        [*rows_of(files, "meta"), *(b'{"key": "k%d", "value": "v"}' % index for index in range(1000))]) + b"\n"},
        r"tables/meta.jsonl holds more rows than its manifest counts \(\d+\)"),
    "rows without their key, counted": (lambda files: counted_rows(files, "meta", [b"{}"] * 200_000),
                                        r"row 1 of tables/meta.jsonl has no key of its own \(none, or an earlier"),
    "a row twice": (lambda files: counted_rows(files, "labels", [*rows_of(files, "labels")] * 2),
                    "row 3 of tables/labels.jsonl has no id of its own"),
    "a list as a value": (lambda files: counted_rows(files, "labels", [b'{"id": 7, "name": ["with_mask"]}']),
                          "tables/labels.jsonl holds something other than labels rows"),
    "an image no row names": (lambda files: {**files, f"images/ab/ab{'0' * 62}": b"x"},
                              "it holds 9 image files for 8 photos"),
    "a bzip2 manifest": (lambda files: zipped(files, methods={"manifest.json": zipfile.ZIP_BZIP2}),
                         "manifest.json is encrypted or compressed in a way maskdet backups are not"),
    "a deeply nested manifest": (lambda files: {**files, "manifest.json": b"[" * 100_000},
                                 "manifest.json is not valid JSON \\(nested more than 64 levels deep"),
    "a deeply nested row": (lambda files: {**files, "tables/labels.jsonl": b"[" * 100_000 + b"\n"},
                            "labels.jsonl is not valid JSON \\(nested more than 64 levels deep"),
    "counts that are not numbers": (lambda files: changed_manifest(files, counts={"meta": "many"}),
                                    "its manifest.json lists no files or counts"),
}


@pytest.mark.parametrize("case", BAD_ARCHIVES)
def test_a_bad_archive_is_refused_in_a_sentence_and_nothing_is_written(case, archive, backend_settings):
    change, message = BAD_ARCHIVES[case]
    bad = change(entries(archive))
    target = Store(backend_settings)
    with pytest.raises(StoreError, match=message):
        restore(target, bad if isinstance(bad, bytes) else zipped(bad))
    assert_empty(target)


def test_a_backup_unpacking_to_far_more_than_its_size_is_refused_before_a_row_is_read(archive, backend_settings,
                                                                                     tmp_path):
    """Hostile files, round two (E): a 1.85 MB backup whose tables/meta.jsonl unpacks to 1.9 GB of `{}` lines filled
    memory. Here 192 MiB of them, counted by its manifest: refused from the archive's directory, in far less than a
    second, whatever the manifest says."""
    files, lines = entries(archive), 64 * 2**20
    files = changed_manifest(files, counts={**json.loads(files["manifest.json"])["counts"], "meta": lines})
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as bomb:
        for name, data in files.items():
            if name != "tables/meta.jsonl":
                bomb.writestr(name, data)
        with bomb.open("tables/meta.jsonl", "w", force_zip64=True) as table:
            for _ in range(64):
                table.write(b"{}\n" * 2**20)
    target = Store(backend_settings)
    started = time.process_time()
    with pytest.raises(StoreError, match=r"Not a usable maskdet backup: it unpacks to 192 MiB from 0\.\d MiB, over "
                                         "100 times its size, which only a zip bomb does. Nothing was restored."):
        restore(target, tmp_path / "bomb.zip")
    assert time.process_time() - started < 2
    assert_empty(target)


def test_a_row_over_the_size_bound_is_refused_before_it_is_held(archive, store, monkeypatch):
    monkeypatch.setattr(backup_module, "MAX_ROW_CHARS", 2**20)
    files = entries(archive)
    files["tables/labels.jsonl"] = json.dumps({"name": "x" * 2**21}).encode() + b"\n"
    with pytest.raises(StoreError, match="a row of tables/labels.jsonl is over 1 MiB"):
        restore(store, zipped(files))
    assert_empty(store)


def test_an_archive_of_an_older_schema_restores_with_the_newer_columns_empty(archive, store):
    """A schema 1 backup: one images table (no landmarks), no manual_faces, runs without heartbeats. Each image is
    restored as a photo with one face of its id."""
    files = entries(archive)
    manifest = json.loads(files["manifest.json"])
    tables = {name: [json.loads(line) for line in files.pop(f"tables/{name}.jsonl").decode().splitlines()]
              for name in ("photos", "faces", "manual_boxes")}
    images = [{k: v for k, v in row.items() if k != "landmarks"} for row in legacy_rows(tables["photos"],
                                                                                         tables["faces"])]
    files["tables/images.jsonl"] = "".join(json.dumps(row) + "\n" for row in images).encode()
    rows = [json.loads(line) for line in files["tables/runs.jsonl"].splitlines()]
    files["tables/runs.jsonl"] = "".join(json.dumps({k: v for k, v in row.items() if k != "heartbeat_at"}) + "\n"
                                         for row in rows).encode()
    counts = {**{k: v for k, v in manifest["counts"].items() if k not in tables}, "images": len(images)}
    files = changed_manifest(files, schema_version=1, counts=counts)
    result = restore(store, zipped(files))
    assert result["images"] == 8 and result["faces"] == 8 and len(result["runs"]) == 2
    assert {run["heartbeat_at"] for run in store.runs()} == {None}
    assert {record.face_source for record in store.faces()} == {"detected"}
    assert [(r.id, r.photo_id) for r in store.faces()] == [(row["id"], row["id"]) for row in images]


def test_a_photo_of_several_faces_and_their_boxes_set_by_hand_are_restored(backend_settings, tmp_path):
    source = home_at(tmp_path / "source")
    make_project(source, tmp_path)
    last = source.faces()[-1]
    added = source.add_face(last.photo_id, "with_mask", Face((5, 5, 40, 50), 1.0))
    source.set_face_box(added.id, (6, 6, 41, 51))
    assert backup(source, tmp_path / "backup.zip")["faces"] == 9
    target = Store(backend_settings)
    assert restore(target, tmp_path / "backup.zip")["faces"] == 9
    assert content(target) == content(source)
    restored = target.face(added.id)
    assert (restored.photo_id, restored.face_source, restored.face.box) == (last.photo_id, "manual", (6, 6, 41, 51))
    assert target.reset_face(added.id).face.box == (5.0, 5.0, 40.0, 50.0)


# ---- while the dashboard runs ---------------------------------------------------------------------------------

def test_a_backup_reads_one_snapshot_while_another_connection_writes(backend_settings, tmp_path):
    """Writes committed between the backup's first and last read (a training's heartbeat, an import of a new class, a
    relabel) wait for nothing and are not in the archive, which holds the database as it was at its first read."""
    store = Store(backend_settings)
    run_id, failed = make_project(store, tmp_path)
    writer = Store(backend_settings)  # its own engine and connections
    training = writer.create_run({})
    writer.update_run(training, status="running", started_at=now(), heartbeat_at=now())
    first = store.faces()[0]
    waited = []

    def write_meanwhile(conn, statement, *args) -> None:
        if waited or not isinstance(statement, sa.Select) or meta_table not in statement.get_final_froms():
            return  # the snapshot's first read is of meta
        started = time.monotonic()
        writer.update_run(training, heartbeat_at=now())
        writer.import_folder(write_dataset(tmp_path / "new", 2, labels=("mask_chin",), start=500), NoFaces())
        writer.relabel([first.id], "without_mask")
        waited.append(time.monotonic() - started)

    sa.event.listen(store.engine, "after_execute", write_meanwhile)
    try:
        result = backup(store, tmp_path / "backup.zip")
    finally:
        sa.event.remove(store.engine, "after_execute", write_meanwhile)
    assert waited and waited[0] < 5
    assert store.label_counts() == {"with_mask": 3, "without_mask": 5, "mask_chin": 2}
    assert sorted(result["runs"]) == sorted([run_id, failed])  # the running one is not finished
    restored = home_at(tmp_path / "restored")
    restore(restored, tmp_path / "backup.zip")
    assert restored.label_counts() == {"with_mask": 4, "without_mask": 4}
    assert restored.faces(ids=[first.id])[0].label == first.label


def test_images_deleted_or_damaged_during_a_backup_are_left_out_and_the_rest_restores(store, tmp_path):
    make_project(store, tmp_path)
    records = store.faces()
    store.image_path(records[1]).write_bytes(b"changed on disk")
    other = Store(store.settings)

    def delete_two_meanwhile(done: int, total: int) -> None:
        if done == 1:
            other.delete_faces([records[-1].id, records[-2].id])

    result = backup(store, tmp_path / "backup.zip", progress=delete_two_meanwhile)
    assert result["images"] == 5
    reasons = {item["item"]: item["reason"] for item in result["skipped"]}
    assert reasons == {f"image {records[1].source_name}": "its file is damaged: its content no longer matches its "
                                                          "SHA-256",
                       **{f"image {record.source_name}": "its file was deleted during the backup (or is missing)"
                          for record in records[-2:]}}
    restored = home_at(tmp_path / "restored")
    assert restore(restored, tmp_path / "backup.zip")["images"] == 5
    assert [record.sha256 for record in restored.faces()] == [records[i].sha256 for i in (0, 2, 3, 4, 5)]
    assert all(restored.image_path(record).read_bytes() == store.image_path(record).read_bytes()
               for record in restored.faces())


def test_runs_chosen_for_a_backup(store, tmp_path):
    """Default: every run but a queued or running one (one whose process died is failed first, then backed up);
    --no-runs leaves out the runs and the active model; a run still training or unknown is refused; a failed run comes
    with its log."""
    run_id, failed = make_project(store, tmp_path)
    training = store.create_run({})
    assert sorted(backup(store, tmp_path / "all.zip")["runs"]) == sorted([run_id, failed])
    for ids, message in (([training], f"Run {training} is still queued: a backup holds finished runs only"),
                         (["nope"], "No run with id 'nope'")):
        with pytest.raises(StoreError, match=message):
            backup(store, tmp_path / "refused.zip", runs=ids)
    assert not (tmp_path / "refused.zip").exists() and not list(tmp_path.glob(".refused.zip.*"))
    none = backup(store, tmp_path / "none.zip", runs=[])
    assert none["runs"] == [] and none["active_run"] is None
    only_failed = backup(store, tmp_path / "failed.zip", runs=[failed])
    assert only_failed["runs"] == [failed] and only_failed["active_run"] is None
    for name, runs in (("none", []), ("failed", [failed])):
        restored = home_at(tmp_path / f"restored-{name}")
        restore(restored, tmp_path / f"{name}.zip")
        assert [run["id"] for run in restored.runs()] == runs and restored.get_setting("active_run") is None
    assert restored.run(failed)["artefact_dir"] is None
    assert restored.run(failed)["error"] == "The training process stopped."
    assert log_path(restored.settings, failed).read_text() == "stopped\n"
    store.update_run(training, status="running", heartbeat_at="2026-01-01T00:00:00+00:00")  # its process died
    assert training in backup(store, tmp_path / "dead.zip")["runs"] and store.run(training)["status"] == "failed"


# ---- the command line -----------------------------------------------------------------------------------------

def maskdet(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m maskdet ARGS` on the home under root; fails when the command loaded torch."""
    script = ("import sys; from maskdet.cli import main; code = main(sys.argv[1:]); "
              "assert 'torch' not in sys.modules, 'torch was loaded'; sys.exit(code)")
    env = {**os.environ, "MASKDET_HOME": str(root / "home"), "MASKDET_MODELS": str(root / "models")}
    env.pop("MASKDET_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_backup_and_restore_print_a_summary_and_load_no_torch(tmp_path):
    run_id, failed = make_project(home_at(tmp_path / "source"), tmp_path)
    made = maskdet(tmp_path / "source", "backup", str(tmp_path / "out" / "project.zip"))
    assert made.returncode == 0, made.stderr
    assert f"Backed up to {tmp_path / 'out' / 'project.zip'} (0.3 MB): 8 images in 2 classes; runs: " in made.stdout
    assert run_id in made.stdout and failed in made.stdout
    loaded = maskdet(tmp_path / "target", "restore", str(tmp_path / "out" / "project.zip"))
    assert loaded.returncode == 0, loaded.stderr
    assert (f"Restored into {tmp_path / 'target' / 'home'} (sqlite:///{tmp_path / 'target' / 'home' / 'maskdet.db'}): "
            f"8 images (with_mask 4, without_mask 4); runs: ") in loaded.stdout
    assert f"; active model: {run_id}." in loaded.stdout
    again = maskdet(tmp_path / "target", "restore", str(tmp_path / "out" / "project.zip"))
    assert again.returncode == 2 and again.stderr.startswith("error: Restore needs an empty data home")
