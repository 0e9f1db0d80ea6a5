"""The database's integrity check (maskdet.data.database.integrity_problems): it passes on a sound data home, names
rows whose links lead nowhere and a damaged SQLite file, and passes after hostile files went through the importer
(the restores of hostile backups are checked in test_backup.py, the replays of benchmarks/hostile_inputs.py by the
benchmark itself)."""

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from maskdet.core.errors import StoreError
from maskdet.data.database import integrity_problems
from maskdet.data.store import Store
from tests.conftest import overlapping_zip, write_dataset
from tests.test_store_concurrency import NoFaces


@pytest.fixture(scope="module")
def many_scans():
    """benchmarks/hostile_inputs.py's maker of a progressive JPEG of many empty scans (hostile files, round two: A)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from hostile_inputs import many_scans

    return many_scans


def test_a_sound_home_passes_and_rows_leading_nowhere_and_a_damaged_file_are_named(store, tmp_path):
    store.import_folder(write_dataset(tmp_path / "photos", 2), NoFaces())
    assert integrity_problems(store.engine) == []
    database = store.settings.home / "maskdet.db"
    conn = sqlite3.connect(database)  # foreign keys are off in a plain connection, as in a careless writer's
    with conn:
        conn.execute("UPDATE faces SET label_id = 999 WHERE id = 1")
    conn.close()
    assert integrity_problems(store.engine) == ["1 faces rows name a labels row that is not there (label_id)."]
    store.engine.dispose()  # the last connection closed: the database is all in its file
    size = database.stat().st_size
    with open(database, "r+b") as file:  # every page but the first overwritten, as a failing disk would
        file.seek(4096)
        file.write(os.urandom(size - 4096))
    problems = integrity_problems(store.engine)
    assert problems and problems[0].startswith(("SQLite's integrity check says", "The database cannot be read"))


def test_the_database_stays_intact_through_hostile_files(backend_settings, many_scans, tmp_path):
    """Hostile files, round two: a JPEG of many scans, a FIFO, a link to /dev/zero, a zip bomb; on both backends."""
    store = Store(backend_settings)
    folder = write_dataset(tmp_path / "photos", 1, labels=("with_mask",))
    many_scans(tmp_path, True).rename(folder / "with_mask" / "scans.jpg")
    os.mkfifo(folder / "with_mask" / "pipe.jpg")
    (folder / "with_mask" / "zeros.jpg").symlink_to("/dev/zero")
    report = store.import_folder(folder, NoFaces())
    assert len(report.added) == 1 and {name for name, _ in report.rejected} == {
        "with_mask/scans.jpg", "with_mask/pipe.jpg", "with_mask/zeros.jpg"}
    with pytest.raises(StoreError, match="entries overlap one another"):
        store.import_zip(overlapping_zip(50), NoFaces())
    assert integrity_problems(store.engine) == []
    assert [record.source_name for record in store.faces()] == ["with_mask/img0.jpg"]
