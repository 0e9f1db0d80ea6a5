import io
import os
import threading
import time
import zipfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage
from maskdet.core.settings import Settings
from maskdet.data import sources
from maskdet.data.catalog import validate_label
from maskdet.data.database import SCHEMA_VERSION, open_database, photos_table
from maskdet.data.files import ORPHAN_AGE_SECONDS
from maskdet.data.importer import perceptual_hash
from maskdet.data.sources import folder_candidates
from maskdet.data.store import Store
from maskdet.vision.near_duplicates import NEAR_DUPLICATE_BITS, hash_distances
from tests.conftest import encode, make_old_home, overlapping_zip, pattern_image, write_dataset, zip_bytes


@pytest.fixture
def settings(backend_settings):
    """Every test of this file that uses a data home runs on SQLite and on PostgreSQL."""
    return backend_settings


def test_new_home_has_default_labels_wal_and_schema(store, settings):
    assert store.labels() == ["with_mask", "without_mask"]
    assert store.label_counts() == {"with_mask": 0, "without_mask": 0}
    assert store.get_setting("schema_version") == str(SCHEMA_VERSION)
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_reopening_keeps_data_and_newer_schema_is_refused(store, settings, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 2), detector)
    assert Store(settings).label_counts() == {"with_mask": 2, "without_mask": 2}
    store.set_setting("schema_version", "99")
    with pytest.raises(StoreError, match="newer maskdet"):
        Store(settings)


def test_several_processes_opening_a_new_home_at_once(settings):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: Store(settings), range(6)))
    assert all(s.labels() == ["with_mask", "without_mask"] for s in stores)


def test_reserved_label_name():
    with pytest.raises(StoreError, match="reserved"):
        validate_label("Uncertain")


def test_import_folder_stores_files_content_addressed(store, tmp_path, detector):
    report = store.import_folder(write_dataset(tmp_path / "d", 3), detector)
    assert report.summary() == {"added": 6, "faces": 6, "duplicates": 0, "rejected": 0, "no_face": 6, "left_out": 0}
    records = store.faces()
    assert len(records) == 6
    for record in records:
        path = store.image_path(record)
        assert path.name == record.sha256 and path.exists()
        assert record.face is None  # generated pictures have no faces: kept, flagged, used whole
        assert store.load_image(record).shape == (record.height, record.width, 3)
    assert len(store.faces(no_face=True)) == 6


def test_pages_of_images_and_the_dataset_counts_come_from_queries(store, tmp_path, detector):
    """The pages show a large dataset a page at a time and count it in the database: the same photos and numbers as
    going through every record."""
    store.import_folder(write_dataset(tmp_path / "d", 5), detector)  # 5 with_mask then 5 without_mask, no faces
    store.add_label("empty")
    every = store.faces()
    store.set_face_box(every[1].id, (2, 2, 40, 40))  # a with_mask face set by hand
    store.assign_splits((0.6, 0.2, 0.2), seed=0)
    every = store.faces()
    for filters in ({}, {"label": "with_mask"}, {"no_face": True}, {"no_face": False, "split": every[1].split},
                    {"label": "without_mask", "no_face": True}, {"ids": [every[0].id, every[7].id, every[9].id]}):
        records = store.faces(**filters)
        assert store.count_faces(**filters) == len(records) > 0
        if "ids" not in filters:
            assert store.face_ids(**filters) == [record.id for record in records]
        assert store.faces(**filters, offset=1, limit=2) == records[1:3]
    assert store.count_faces(label="empty") == 0 and store.faces(offset=10, limit=5) == []
    assert store.no_face_counts() == {"with_mask": 4, "without_mask": 5, "empty": 0}
    by_split = defaultdict(lambda: defaultdict(int))
    for record in every:
        by_split[record.split][record.label] += 1
    assert store.split_counts() == {split: dict(by_split[split]) for split in ("train", "val", "test")}
    assert store.groups_spanning_classes() == 0
    with store.engine.begin() as conn:  # a without_mask photo joins a with_mask photo's near-duplicate group
        conn.execute(photos_table.update().where(photos_table.c.id == every[7].photo_id)
                     .values(dup_group=every[0].dup_group))
    assert store.groups_spanning_classes() == 1


def test_exact_duplicates_are_skipped_even_under_another_label(store, tmp_path, detector):
    write_dataset(tmp_path / "d", 2)
    data = (tmp_path / "d" / "with_mask" / "img0.jpg").read_bytes()
    (tmp_path / "d" / "without_mask" / "copy.jpg").write_bytes(data)
    report = store.import_folder(tmp_path / "d", detector)
    assert report.summary()["added"] == 4 and report.duplicates == ["without_mask/copy.jpg"]
    again = store.import_folder(tmp_path / "d", detector)
    assert again.summary() == {"added": 0, "faces": 0, "duplicates": 5, "rejected": 0, "no_face": 0, "left_out": 0}
    assert len(store.faces()) == 4


def test_near_duplicates_share_a_group(store, detector):
    base = pattern_image(1, size=(120, 120))
    masked = base.copy()
    masked[70:, 20:100] = (90, 140, 200)  # "paste a mask" over the lower part
    other = pattern_image(2, size=(120, 120))
    assert hash_distances(np.frombuffer(bytes.fromhex(perceptual_hash(base)), np.uint8)[None],
                          perceptual_hash(masked))[0] <= NEAR_DUPLICATE_BITS
    store.add_image(encode(base), "without_mask", "a.jpg", detector)
    store.add_image(encode(masked), "with_mask", "a-with-mask.jpg", detector)
    store.add_image(encode(other), "with_mask", "b.jpg", detector)
    groups = {r.source_name: r.dup_group for r in store.faces()}
    assert groups["a.jpg"] == groups["a-with-mask.jpg"] != groups["b.jpg"]


def test_a_new_image_near_two_groups_merges_them(store, detector, monkeypatch):
    bits_b = np.zeros(256, np.uint8)
    bits_b[:60] = 1  # 60 bits from a: different groups
    bits_bridge = np.zeros(256, np.uint8)
    bits_bridge[:30] = 1  # 30 bits from a and from b: near both
    hashes = {1: "00" * 32, 2: np.packbits(bits_b).tobytes().hex(), 3: np.packbits(bits_bridge).tobytes().hex()}
    monkeypatch.setattr("maskdet.data.importer.perceptual_hash", lambda image: hashes[int(image[0, 0, 0] > 100) + 1 + int(image[0, 0, 1] > 100)])
    colours = {1: (0, 0, 0), 2: (200, 0, 0), 3: (200, 200, 0)}
    for key, name in ((1, "a"), (2, "b")):
        store.add_image(encode(np.full((40, 40, 3), colours[key], np.uint8), "PNG"), "with_mask", name, detector)
    groups = {r.source_name: r.dup_group for r in store.faces()}
    assert groups["a"] != groups["b"]
    store.add_image(encode(np.full((40, 40, 3), colours[3], np.uint8), "PNG"), "without_mask", "bridge", detector)
    groups = {r.source_name: r.dup_group for r in store.faces()}
    assert groups["a"] == groups["b"] == groups["bridge"]


def test_bad_files_are_rejected_by_name_and_good_ones_kept(store, tmp_path, detector, settings):
    root = write_dataset(tmp_path / "d", 2)
    good = (root / "with_mask" / "img0.jpg").read_bytes()
    (root / "with_mask" / "truncated.jpg").write_bytes((lambda d: d[: len(d) // 2])(encode(pattern_image(77))))
    (root / "with_mask" / "notes.txt").write_bytes(b"just some text")
    (root / "with_mask" / "empty.png").write_bytes(b"")
    (root / "without_mask" / "garbage.jpg").write_bytes(good[:20] + os.urandom(3000))
    (root / "stray.jpg").write_bytes(encode(pattern_image(78)))
    report = store.import_folder(root, detector)
    reasons = dict(report.rejected)
    assert report.summary()["added"] == 4
    assert set(reasons) == {"with_mask/truncated.jpg", "with_mask/notes.txt", "with_mask/empty.png",
                            "without_mask/garbage.jpg", "stray.jpg"}
    assert "not an image" in reasons["with_mask/notes.txt"]
    assert "corrupt or truncated" in reasons["with_mask/truncated.jpg"]
    assert "empty file" in reasons["with_mask/empty.png"]
    assert "class folder" in reasons["stray.jpg"]
    assert len(store.faces()) == 4


def test_decompression_bomb_is_rejected(store, detector):
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # 400 megapixels in a few dozen KB
    assert len(bomb.getvalue()) < 1_000_000
    with pytest.raises(StoreError, match="too large"):
        store.add_image(bomb.getvalue(), "with_mask", "bomb.png", detector)
    assert store.faces() == []


def test_zip_import_and_hostile_entries(store, detector):
    good = {f"dataset/with_mask/{i}.jpg": encode(pattern_image(i)) for i in range(2)}
    good.update({f"dataset/without_mask/{i}.jpg": encode(pattern_image(10 + i)) for i in range(2)})
    hostile = {
        "/etc/evil.jpg": encode(pattern_image(20)),
        "dataset/../../escape.jpg": encode(pattern_image(21)),
        "rootfile.jpg": encode(pattern_image(22)),
        "__MACOSX/dataset/with_mask/._0.jpg": b"resource fork",
        "dataset/with_mask/.DS_Store": b"finder",
    }
    data = zip_bytes({**good, **hostile}, symlinks={"dataset/with_mask/link.jpg": "/etc/passwd"})
    report = store.import_zip(data, detector)
    reasons = dict(report.rejected)
    assert report.summary()["added"] == 4
    assert "absolute" in reasons["/etc/evil.jpg"]
    assert "escapes" in reasons["dataset/../../escape.jpg"]
    assert "class folder" in reasons["rootfile.jpg"]
    assert "symbolic link" in reasons["dataset/with_mask/link.jpg"]
    assert len(reasons) == 4  # macOS metadata is ignored silently
    assert store.label_counts() == {"with_mask": 2, "without_mask": 2}
    assert not (store.home.parent / "escape.jpg").exists()


def test_a_blank_photo_is_counted_by_the_bytes_it_takes_in_the_zip(store, detector, tmp_path):
    """A blank JPEG deflates to a few hundred bytes whatever its size, so a 2 MB zip could hold thousands: in a zip
    its pixels a byte are counted on its compressed entry, in a folder on its file."""
    blank = encode(np.full((300, 300, 3), 128, np.uint8))
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes({"with_mask/blank.jpg": blank}, compression=zipfile.ZIP_DEFLATED)))
    stored = archive.getinfo("with_mask/blank.jpg").compress_size
    assert 300 * 300 / len(blank) < 100 < 300 * 300 / stored
    report = store.import_zip(zip_bytes({"with_mask/blank.jpg": blank, "with_mask/photo.jpg": encode(pattern_image(1))},
                                        compression=zipfile.ZIP_DEFLATED), detector)
    assert report.added == ["with_mask/photo.jpg"]
    assert report.rejected == [("with_mask/blank.jpg", f"image too large for its file: 300x300 pixels in {stored} "
                                "bytes, over 100 pixels a byte (a nearly blank picture, as decompression bombs are; "
                                "re-save it as JPEG if it is a photo)")]
    (tmp_path / "folder" / "with_mask").mkdir(parents=True)
    (tmp_path / "folder" / "with_mask" / "blank.jpg").write_bytes(blank)
    assert store.import_folder(tmp_path / "folder", detector).added == ["with_mask/blank.jpg"]


def test_folder_and_zip_of_the_same_tree_give_the_same_labels(store, tmp_path, detector, settings):
    """A photo's label is the folder it is in, at any depth (Train/WithMask/, Test/WithMask/ are one class)."""
    tree = {"Face Mask Dataset/Train/WithMask/a.jpg": encode(pattern_image(31)),
            "Face Mask Dataset/Test/WithMask/b.jpg": encode(pattern_image(32)),
            "Face Mask Dataset/Train/WithoutMask/c.jpg": encode(pattern_image(33)),
            "loose.jpg": encode(pattern_image(34))}
    for name, data in tree.items():
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_bytes(data)
    from_folder = store.import_folder(tmp_path / "tree", detector)
    other_home = tmp_path / "other-home"
    other = Store(replace(settings, home=other_home, database_url=f"sqlite:///{other_home / 'maskdet.db'}"))
    from_zip = other.import_zip(zip_bytes(tree), detector)
    assert from_folder.summary()["added"] == from_zip.summary()["added"] == 3
    expected = {"with_mask": 0, "without_mask": 0, "WithMask": 2, "WithoutMask": 1}
    assert store.label_counts() == other.label_counts() == expected
    assert from_folder.rejected == from_zip.rejected == [("loose.jpg", "not inside a class folder")]


def test_zip_with_new_class_folder_creates_the_label(store, detector):
    report = store.import_zip(zip_bytes({"mask_incorrect/a.jpg": encode(pattern_image(5))}), detector)
    assert report.summary()["added"] == 1
    assert store.label_counts()["mask_incorrect"] == 1


@pytest.mark.parametrize("data, message", [
    (b"this is not a zip", "Not a readable zip"),
    (zip_bytes({}), "No images found"),
    (zip_bytes({"a/readme.txt": b"hello"}), "No images could be imported"),
])
def test_unusable_archives_say_why(store, detector, data, message):
    with pytest.raises(StoreError, match=message):
        store.import_zip(data, detector)
    assert store.faces() == []


@pytest.mark.parametrize("name", ["", "   ", "a/b", "..", "back\\slash", "x" * 65, "tab\there"])
def test_bad_label_names(name):
    with pytest.raises(StoreError):
        validate_label(name)


def test_zip_folder_with_bad_label_is_rejected(store, detector):
    report = store.import_zip(zip_bytes({"ok/a.jpg": encode(pattern_image(1)),
                                         "bad:name/b.jpg": encode(pattern_image(2))}), detector)
    assert report.summary()["added"] == 1
    assert "path characters" in dict(report.rejected)["bad:name/b.jpg"]


def test_add_rename_delete_labels_and_relabel(store, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 2), detector)
    assert store.add_label("  mask_chin ") == "mask_chin"
    store.rename_label("mask_chin", "mask under chin")
    with pytest.raises(StoreError, match="already exists"):
        store.rename_label("mask under chin", "with_mask")
    with pytest.raises(StoreError, match="No label"):
        store.relabel([1], "nope")
    moved = [r.id for r in store.faces(label="with_mask")][:1]
    store.relabel(moved, "mask under chin")
    assert store.label_counts() == {"with_mask": 1, "without_mask": 2, "mask under chin": 1}
    files = [store.image_path(r) for r in store.faces(label="without_mask")]
    assert store.delete_label("without_mask") == 2
    assert not any(f.exists() for f in files)
    assert store.labels() == ["with_mask", "mask under chin"]
    store.delete_faces(moved)
    assert store.label_counts() == {"with_mask": 1, "mask under chin": 0}


def test_failed_batch_leaves_no_partial_rows(store, tmp_path, detector, monkeypatch):
    root = write_dataset(tmp_path / "d", 40)  # 80 images: three batches of 32
    calls = {"n": 0}
    real_write = Store.write_file

    def failing_write(self, sha, data, written):
        calls["n"] += 1
        if calls["n"] == 40:  # in the middle of the second batch
            raise OSError("disk full")
        return real_write(self, sha, data, written)

    monkeypatch.setattr(Store, "write_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        store.import_folder(root, detector)
    assert len(store.faces()) == 32  # the first batch committed, the second rolled back whole
    assert len(list(store.images_dir.glob("*/*"))) == 32  # and the files it had written are gone
    monkeypatch.setattr(Store, "write_file", real_write)
    report = store.import_folder(root, detector)
    assert report.summary()["added"] == 48 and len(report.duplicates) == 32
    assert len(store.faces()) == 80


def test_splits_are_stratified_seeded_and_keep_groups_together(store, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 30), detector)
    # make near-duplicate groups by hand: pairs across the two classes
    records = store.faces()
    with store.engine.begin() as conn:
        from maskdet.data.database import photos_table
        for a, b in zip(records[:30:2], records[30::2]):
            conn.execute(photos_table.update().where(photos_table.c.id.in_([a.photo_id, b.photo_id]))
                         .values(dup_group=a.dup_group))
    counts = store.assign_splits((0.6, 0.2, 0.2), seed=1)
    by_group = defaultdict(set)
    for record in store.faces():
        by_group[record.dup_group].add(record.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    for split, expected in (("train", 36), ("val", 12), ("test", 12)):
        assert abs(sum(counts[split].values()) - expected) <= 4, counts
        assert set(counts[split]) == {"with_mask", "without_mask"}
    first = {r.id: r.split for r in store.faces()}
    store.assign_splits((0.6, 0.2, 0.2), seed=1)
    assert {r.id: r.split for r in store.faces()} == first
    store.assign_splits((0.6, 0.2, 0.2), seed=2)
    assert {r.id: r.split for r in store.faces()} != first


def test_tiny_classes_still_get_validation_and_test_images(store, tmp_path, detector):
    store.import_folder(write_dataset(tmp_path / "d", 3), detector)
    counts = store.assign_splits()
    assert all(counts[split].get(label) == 1 for split in ("train", "val", "test")
               for label in ("with_mask", "without_mask"))


@pytest.mark.parametrize("ratios", [(0.5, 0.5, 0.5), (0, 0.5, 0.5), (-0.1, 0.6, 0.5), (1.0, 0.0)])
def test_bad_split_ratios(store, ratios):
    with pytest.raises(StoreError, match="Split ratios"):
        store.assign_splits(ratios)


def test_runs_registry(store):
    run_id = store.create_run({"epochs": 3})
    run = store.run(run_id)
    assert run["status"] == "queued" and run["config"] == {"epochs": 3} and not run["cancel_requested"]
    store.update_run(run_id, status="running", progress={"stage": "head", "step": 1})
    store.update_run(run_id, status="succeeded", metrics={"test": {"accuracy": 1.0}})
    run = store.run(run_id)
    assert run["progress"]["stage"] == "head" and run["metrics"]["test"]["accuracy"] == 1.0
    assert [r["id"] for r in store.runs()] == [run_id]
    with pytest.raises(StoreError, match="Unknown run status"):
        store.update_run(run_id, status="exploded")
    store.delete_run(run_id)
    with pytest.raises(StoreError, match="No run"):
        store.run(run_id)


def test_a_run_is_refused_while_another_is_active(store):
    first = store.create_run({"epochs": 1})
    with pytest.raises(StoreError, match="Another training run"):
        store.create_run({"epochs": 2})
    store.update_run(first, status="running")
    with pytest.raises(StoreError, match="Another training run"):
        store.create_run({"epochs": 2})
    assert [run["id"] for run in store.runs()] == [first]
    store.update_run(first, status="succeeded")
    second = store.create_run({"epochs": 2})
    assert store.run(second)["config"] == {"epochs": 2} and store.run(second)["status"] == "queued"


def test_an_old_home_with_two_active_runs_keeps_the_newest(store, settings):
    """Before schema 4 nothing stopped two runs being queued or running together; the upgrade fails the older."""
    make_old_home(settings.database_url)
    older, newer = store.create_run({"epochs": 1}), store.create_run({"epochs": 2})
    store.update_run(older, status="running", created_at="2026-01-01T10:00:00.000+00:00")
    store.update_run(newer, status="queued", created_at="2026-01-01T11:00:00.000+00:00")
    upgraded = Store(settings)
    assert upgraded.run(newer)["status"] == "queued"
    failed = upgraded.run(older)
    assert failed["status"] == "failed" and failed["finished_at"] and newer in failed["error"]
    with pytest.raises(StoreError, match="Another training run"):
        upgraded.create_run({})


def test_database_urls_that_cannot_work_are_one_sentence():
    assert open_database("postgresql://user:secret@db.example/maskdet").dialect.driver == "psycopg"
    with pytest.raises(StoreError, match=r"No driver for the database mysql://user:\*\*\*@db.example/maskdet") as error:
        open_database("mysql://user:secret@db.example/maskdet")
    assert "secret" not in str(error.value)
    with pytest.raises(StoreError, match="not a database URL"):
        open_database("maskdet.db")


def test_a_refused_connection_is_one_sentence(tmp_path):
    url = "postgresql://user:secret@127.0.0.1:9/maskdet"  # the discard port: nothing listens there
    with pytest.raises(StoreError) as error:
        Store(Settings(tmp_path / "home", tmp_path / "models", url, None, 40_000_000))
    message = str(error.value)
    assert message.startswith("Cannot open the database postgresql://user:***@127.0.0.1:9/maskdet (")
    assert "refused" in message and "secret" not in message and "\n" not in message


def test_sessions_starting_runs_together_get_one(settings):
    """Eight stores (as eight dashboard sessions) on one database ask for a run at the same moment."""
    stores = [Store(settings) for _ in range(8)]
    start = threading.Barrier(len(stores))

    def attempt(store: Store) -> str | None:
        start.wait()
        try:
            return store.create_run({})
        except StoreError:
            return None

    with ThreadPoolExecutor(len(stores)) as pool:
        created = [run_id for run_id in pool.map(attempt, stores) if run_id]
    assert len(created) == 1 and [run["id"] for run in stores[0].runs()] == created


def test_an_import_running_beside_another_counts_its_files_as_duplicates(settings, detector, tmp_path):
    """Two sessions import the same folder: the second one's files arrive between the first one's batches."""
    folder = write_dataset(tmp_path / "d", 20)  # 40 photos: two batches of the first import
    first, second = Store(settings), Store(settings)
    reports = []

    def after_batch(done: int, total: int) -> None:
        if done == 32:  # the first batch is stored; the second session now imports everything
            reports.append(second.import_folder(folder, detector))

    report = first.import_folder(folder, detector, progress=after_batch)
    assert len(reports[0].added) == 8 and len(reports[0].duplicates) == 32
    assert len(report.added) == 32 and len(report.duplicates) == 8 and not report.rejected
    assert sum(first.label_counts().values()) == 40


def test_near_duplicates_stored_by_an_import_running_beside_are_grouped(settings, detector, tmp_path):
    """A session adds a masked copy of a photo that the other session's import reaches in its second batch."""
    folder = write_dataset(tmp_path / "d", 20)  # 40 photos: two batches of the first import
    last = sorted(folder.rglob("*.jpg"))[-1]  # in the first import's second batch
    masked = np.asarray(Image.open(last).convert("RGB")).copy()
    masked[masked.shape[0] * 6 // 10:] = (90, 140, 200)  # "paste a mask" below the part the hash looks at
    first, second = Store(settings), Store(settings)

    def after_batch(done: int, total: int) -> None:
        if done == 32:
            second.add_image(encode(masked), "with_mask", "masked-copy.jpg", detector)

    first.import_folder(folder, detector, progress=after_batch)
    groups = {record.source_name: record.dup_group for record in first.faces()}
    assert len(groups) == 41 and groups["masked-copy.jpg"] == groups[str(last.relative_to(folder))]
    assert len(set(groups.values())) == 40


def test_real_photos_get_faces_and_pasted_mask_pairs_are_grouped(store, shared_data, detector, tmp_path):
    names = ["212", "100", "37", "439", "422"]
    root = tmp_path / "real"
    for name in names:
        for label, file in (("without_mask", f"{name}.jpg"), ("with_mask", f"{name}-with-mask.jpg")):
            (root / label).mkdir(parents=True, exist_ok=True)
            (root / label / file).write_bytes((shared_data / label / file).read_bytes())
    report = store.import_folder(root, detector)
    assert report.summary()["added"] == 10
    records = {r.source_name: r for r in store.faces()}
    assert sum(r.face is not None for r in records.values()) >= 9
    for record in records.values():
        if record.face:
            x1, y1, x2, y2 = record.face.box
            assert 0 <= x1 < x2 <= record.width and 0 <= y1 < y2 <= record.height
            assert (x2 - x1) * (y2 - y1) > 0.05 * record.width * record.height  # dataset faces are large
            (left_eye, right_eye, nose, mouth_left, mouth_right) = record.face.landmarks  # stored with the face
            assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in record.face.landmarks)
            assert left_eye[0] < right_eye[0] and max(left_eye[1], right_eye[1]) < nose[1] < mouth_left[1]
    for name in names:
        assert records[f"without_mask/{name}.jpg"].dup_group == records[f"with_mask/{name}-with-mask.jpg"].dup_group
    assert len({r.dup_group for r in records.values()}) == 5


def test_an_old_home_opens_migrated_and_gets_landmarks_when_asked(settings, shared_data, detector, tmp_path):
    names = ["212", "100", "37"]
    for name in names:
        (tmp_path / "photos" / "without_mask").mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / "without_mask" / f"{name}.jpg").write_bytes(
            (shared_data / "without_mask" / f"{name}.jpg").read_bytes())
    (tmp_path / "photos" / "with_mask").mkdir()
    (tmp_path / "photos" / "with_mask" / "flat.png").write_bytes(encode(pattern_image(3), "PNG"))  # no face
    Store(settings).import_folder(tmp_path / "photos", detector)
    fresh = {r.source_name: r.face for r in Store(settings).faces()}
    make_old_home(settings.database_url)

    old = Store(settings)
    assert old.get_setting("schema_version") == str(SCHEMA_VERSION)
    assert old.label_counts() == {"with_mask": 1, "without_mask": 3}
    assert [r.face.landmarks for r in old.faces(no_face=False)] == [None] * 3
    assert len(old.without_landmarks()) == 3  # the faceless photo has nothing to look for
    first = old.faces(label="without_mask")[0]
    assert old.fill_landmarks(detector, ids=[first.id]) == {"filled": 1, "not_found": 0}
    assert len(old.without_landmarks()) == 2
    assert old.fill_landmarks(detector) == {"filled": 2, "not_found": 0}
    migrated = {r.source_name: r.face for r in old.faces()}
    for name, face in fresh.items():
        assert (migrated[name] is None) == (face is None)
        if face:
            assert migrated[name].box == face.box
            np.testing.assert_allclose(migrated[name].landmarks, face.landmarks, atol=0.01)
    assert old.fill_landmarks(detector) == {"filled": 0, "not_found": 0}  # nothing left to look for


# ---- hostile and careless files: one bad file never ends an import -----------------------------------------

def zip_with_broken_entries() -> bytes:
    """Two good photos, one entry with deflate64 compression (unsupported) and one with corrupt deflate data."""
    good = {f"with_mask/ok{i}.jpg": encode(pattern_image(300 + i)) for i in range(2)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in good.items():
            archive.writestr(name, data)
        archive.writestr("with_mask/deflate64.jpg", encode(pattern_image(310)))
        archive.writestr("with_mask/corrupt.jpg", encode(pattern_image(311)))
    data = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        infos = {info.filename: info for info in archive.infolist()}
    for offset in (infos["with_mask/deflate64.jpg"].header_offset + 8,):  # the local header's compression method
        data[offset:offset + 2] = (9).to_bytes(2, "little")
    central = data.rfind(b"with_mask/deflate64.jpg") - 46 + 10  # the central directory's compression method
    data[central:central + 2] = (9).to_bytes(2, "little")
    corrupt = infos["with_mask/corrupt.jpg"]
    start = corrupt.header_offset + 30 + len(corrupt.filename) + 20
    data[start:start + 40] = bytes(40)  # zeros in the middle of the deflate stream
    return bytes(data)


def test_a_zip_with_undecompressable_entries_imports_the_rest(store, detector):
    report = store.import_zip(zip_with_broken_entries(), detector)
    assert sorted(report.added) == ["with_mask/ok0.jpg", "with_mask/ok1.jpg"]
    reasons = dict(report.rejected)
    assert set(reasons) == {"with_mask/deflate64.jpg", "with_mask/corrupt.jpg"}
    assert all(reason.startswith(("entry cannot be decompressed", "corrupt or truncated image", "not an image file"))
               for reason in reasons.values())
    assert "compression method" in reasons["with_mask/deflate64.jpg"]
    again = store.import_zip(zip_with_broken_entries(), detector)  # a re-run finishes too
    assert len(again.duplicates) == 2 and len(again.rejected) == 2


@pytest.mark.timeout(60)
def test_fifos_devices_outside_links_huge_and_non_utf8_files_in_a_folder(store, detector, tmp_path):
    root = write_dataset(tmp_path / "photos", 2)
    classes = root / "with_mask"
    os.mkfifo(classes / "pipe.jpg")  # reading it would wait forever
    (classes / "zeros.jpg").symlink_to("/dev/zero")  # reading it would fill the memory
    (tmp_path / "outside.jpg").write_bytes(encode(pattern_image(320)))
    (classes / "outside.jpg").symlink_to(tmp_path / "outside.jpg")
    with open(classes / "huge.jpg", "wb") as handle:
        handle.truncate(65 * 2**20)  # sparse: big, but costs no disk
    (classes / "inside.jpg").symlink_to(classes / "img0.jpg")  # a link within the folder is fine (a duplicate here)
    odd_name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes, not UTF-8
    (classes / odd_name).write_bytes(encode(pattern_image(321)))
    report = store.import_folder(root, detector)
    reasons = dict(report.rejected)
    assert reasons == {"with_mask/pipe.jpg": "not a regular file (a FIFO, device or socket)",
                       "with_mask/zeros.jpg": "symbolic link to outside the folder",
                       "with_mask/outside.jpg": "symbolic link to outside the folder",
                       "with_mask/huge.jpg": "file larger than 64 MiB"}
    assert "with_mask/caf\ufffd.jpg" in report.added and len(report.added) == 5
    assert report.duplicates == ["with_mask/inside.jpg"]
    assert {r.source_name for r in store.faces()} >= {"with_mask/caf\ufffd.jpg"}


def test_files_a_killed_import_left_are_removed_by_the_next(store, detector, tmp_path):
    store.import_folder(write_dataset(tmp_path / "first", 2), detector)
    kept = len(list(store.images_dir.glob("*/*")))
    old_orphan, young_orphan = store.images_dir / "ab" / ("ab" + "0" * 62), store.images_dir / "cd" / ".cd.tmp"
    for path in (old_orphan, young_orphan):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"left behind")
    stale = time.time() - ORPHAN_AGE_SECONDS - 60
    os.utime(old_orphan, (stale, stale))
    store.import_folder(write_dataset(tmp_path / "second", 2, start=50), detector)
    assert not old_orphan.exists() and young_orphan.exists()  # a young file may belong to an import in progress
    assert len(list(store.images_dir.glob("*/*"))) == kept + 4 + 1
    assert all(store.image_path(record).exists() for record in store.faces())


# ---- bounded cost: caps checked before the work they bound -------------------------------------------------------

def test_a_zip_bomb_of_overlapping_entries_is_refused_before_anything_is_read(store, detector):
    bomb = overlapping_zip(1000)  # 1,000 MiB declared in a few KB
    with pytest.raises(StoreError) as error:
        store.import_zip(bomb, detector)
    assert str(error.value) == ("The zip's entries overlap one another, which only a zip bomb does: it was refused. "
                                "Zip the class folders again with an ordinary zip tool.")
    assert store.faces() == [] and list(store.images_dir.rglob("*")) == []


@pytest.mark.parametrize("cap, value, message", [
    ("MAX_ARCHIVE_ENTRIES", 3, "The zip has 4 entries; the limit is 3. Split it into smaller zips."),
    ("MAX_ARCHIVE_BYTES", 2**30, "The zip unpacks to 2.0 GiB; the limit is 1 GiB. Split it into smaller zips."),
    ("MAX_DIRECTORY_BYTES", 100, "The zip's table of contents is 0 MiB, more than 100,000 photos need: split it into "
                                 "smaller zips."),
])
def test_zip_caps_are_checked_from_its_directory(store, detector, monkeypatch, cap, value, message):
    entries = {f"with_mask/{i}.jpg": encode(pattern_image(330 + i)) for i in range(4)}
    data = declaring(zip_bytes(entries), "with_mask/3.jpg", 2**31 - 1)  # with the others: just over 2 GiB
    monkeypatch.setattr(sources, cap, value)
    with pytest.raises(StoreError) as error:
        store.import_zip(data, detector)
    assert str(error.value) == message
    assert store.faces() == []


def declaring(data: bytes, name: str, size: int) -> bytes:
    """The zip with entry `name` declaring `size` unpacked bytes in both its headers (a lie)."""
    data = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        local = archive.getinfo(name).header_offset
    central = data.rindex(name.encode()) - 46
    data[local + 22:local + 26] = data[central + 24:central + 28] = size.to_bytes(4, "little")
    return bytes(data)


def test_entries_that_lie_or_would_expand_without_limit_are_rejected_and_the_rest_imported(store, detector):
    good = {f"with_mask/ok{i}.jpg": encode(pattern_image(340 + i)) for i in range(2)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in good.items():
            archive.writestr(name, data)
        archive.writestr("with_mask/lying.jpg", bytes(2**20))  # will declare 1 KB
        archive.writestr("with_mask/bzip2.jpg", encode(pattern_image(342)), zipfile.ZIP_BZIP2)  # no output limit
    report = store.import_zip(declaring(buffer.getvalue(), "with_mask/lying.jpg", 1024), detector)
    assert sorted(report.added) == sorted(good)
    assert dict(report.rejected) == {
        "with_mask/lying.jpg": "entry cannot be decompressed (Bad CRC-32 for file 'with_mask/lying.jpg')",
        "with_mask/bzip2.jpg": "entry cannot be decompressed (compression method bzip2 is not supported: zip it "
                               "again with standard compression)"}
    assert len(store.faces()) == 2


def test_import_batches_end_at_the_byte_budget(store, detector, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_BATCH_BYTES", 1)  # every photo fills a batch of its own
    calls = []
    report = store.import_folder(write_dataset(tmp_path / "photos", 2), detector, lambda *done: calls.append(done))
    assert len(report.added) == 4 and len(store.faces()) == 4
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_folder_file_that_grew_after_it_was_checked_is_read_no_further(tmp_path, monkeypatch):
    candidates, _ = folder_candidates(write_dataset(tmp_path / "photos", 1))
    monkeypatch.setattr(sources, "MAX_ENTRY_BYTES", 100)
    with pytest.raises(BadImage, match="file larger than 0 MiB"):
        candidates[0].read()


def test_repeats_within_an_import_are_told_apart_from_photos_already_stored(store, detector):
    first, second = encode(pattern_image(350)), encode(pattern_image(351))
    store.add_images([("old.jpg", first)], "with_mask", detector)
    report = store.import_zip(zip_bytes({"with_mask/a.jpg": second, "with_mask/b.jpg": second,
                                         "without_mask/c.jpg": second, "with_mask/old-again.jpg": first}), detector)
    assert report.added == ["with_mask/a.jpg"]
    assert report.duplicates == ["with_mask/b.jpg", "without_mask/c.jpg", "with_mask/old-again.jpg"]  # all skipped
    assert report.repeated == [("with_mask/b.jpg", "with_mask/a.jpg"), ("without_mask/c.jpg", "with_mask/a.jpg")]
    assert report.already_stored() == ["with_mask/old-again.jpg"]
    assert report.to_dict()["repeated_files"] == [{"name": "with_mask/b.jpg", "repeats": "with_mask/a.jpg"},
                                                  {"name": "without_mask/c.jpg", "repeats": "with_mask/a.jpg"}]
    [stored] = store.faces_of_photo(store.faces(label="with_mask")[1].sha256)
    assert (stored.source_name, stored.label) == ("with_mask/a.jpg", "with_mask")
    assert store.faces_of_photo("0" * 64) == []


def test_a_run_is_written_only_while_it_has_the_status_asked_for(backend_settings):
    store = Store(backend_settings)
    run_id = store.create_run({})
    assert store.update_run(run_id, while_status="queued", status="running", pid=7)
    assert not store.update_run(run_id, while_status="queued", status="failed", pid=8)  # a second taker loses
    assert (store.run(run_id)["status"], store.run(run_id)["pid"]) == ("running", 7)
    assert store.update_run(run_id, status="succeeded") and store.run(run_id)["status"] == "succeeded"
