"""Sets with face boxes in the dataset: imported as several labelled faces a photo (classes mapped, bad boxes left out
with their sentence), split by photo, exported as VOC and YOLO and read back the same, and scored box by box by
`maskdet evaluate`. The readers themselves are tested in test_annotations.py, the scorer in test_box_scores.py."""

import json
import os
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from maskdet.core.errors import StoreError
from maskdet.data.dataset_export import export_dataset
from maskdet.serving.box_evaluation import default_counts_as
from tests.conftest import encode, pattern_image, zip_bytes
from tests.test_annotations import voc
from tests.test_cli import cli

SCENES = Path(os.environ.get("MASKDET_SCENES_DEV_DATA", "/work/shared/datasets/masks-scenes-dev"))


def scenes_sample(tmp_path: Path, count: int) -> Path:
    """The first `count` photos of masks-scenes-dev with their annotations, as a VOC folder."""
    if not SCENES.is_dir():
        pytest.skip("masks-scenes-dev is not here (MASKDET_SCENES_DEV_DATA)")
    folder = tmp_path / "scenes"
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
    for xml in sorted((SCENES / "annotations").glob("*.xml"))[:count]:
        shutil.copy(xml, folder / "annotations" / xml.name)
        shutil.copy(SCENES / "images" / f"{xml.stem}.jpg", folder / "images" / f"{xml.stem}.jpg")
    return folder


def objects(folder: Path) -> list[tuple[str, str]]:
    """(photo stem, class) of every object of a VOC folder's annotations."""
    return sorted((xml.stem, name.text) for xml in (folder / "annotations").glob("*.xml")
                  for name in ElementTree.parse(xml).getroot().iter("name"))


def test_a_voc_zip_imports_several_faces_a_photo_with_classes_mapped_and_bad_boxes_told(store, detector):
    archive = zip_bytes({
        "images/two.jpg": encode(pattern_image(1, (200, 120))), "images/one.jpg": encode(pattern_image(2, (90, 90))),
        "annotations/two.xml": voc(("with_mask", 11, 11, 60, 70), ("mask_weared_incorrect", 101, 21, 150, 90),
                                   ("without_mask", 170, 10, 260, 60)),
        "annotations/one.xml": voc(("without_mask", 6, 6, 80, 80), ("hat", 1, 1, 30, 30))})
    report = store.import_zip(archive, detector)
    assert (len(report.added), report.faces) == (2, 2)
    assert sorted(report.left_out) == [
        ("images/one.jpg", "a box of class 'hat', which is not one of the dataset's classes and has no mapping"),
        ("images/two.jpg", "a box of class 'mask_weared_incorrect', which is not one of the dataset's classes and has "
                           "no mapping"),
        ("images/two.jpg", "box 3 (without_mask) lies mostly outside the 200 x 120 photo")]
    store.delete_faces(store.face_ids())
    report = store.import_zip(archive, detector, mapping={"mask_weared_incorrect": "without_mask", "hat": None})
    assert (len(report.added), report.faces, len(report.left_out)) == (2, 3, 1)
    faces = store.faces()
    assert [(f.source_name, f.label, f.face.box, f.face_source) for f in faces] == [
        ("images/one.jpg", "without_mask", (5.0, 5.0, 80.0, 80.0), "annotation"),
        ("images/two.jpg", "with_mask", (10.0, 10.0, 60.0, 70.0), "annotation"),
        ("images/two.jpg", "without_mask", (100.0, 20.0, 150.0, 90.0), "annotation")]
    assert store.photo_faces({f.photo_id for f in faces}) == {faces[0].photo_id: [faces[0].id],
                                                              faces[1].photo_id: [faces[1].id, faces[2].id]}
    store.assign_splits((0.5, 0.25, 0.25))
    assert faces[1].photo_id == faces[2].photo_id and len({f.split for f in store.faces()[1:]}) == 1


def test_an_annotated_set_whose_classes_are_not_mapped_is_told_by_class(store, detector):
    archive = zip_bytes({"images/a.jpg": encode(pattern_image(1)), "annotations/a.xml": voc(("hat", 1, 1, 40, 40))})
    with pytest.raises(StoreError, match=r"No images could be imported \(1 rejected: images/a.jpg: no face box of it "
                                         r"could be used\)"):
        store.import_zip(archive, detector)
    assert store.faces() == []


def test_masks_scenes_sample_imports_every_face_and_its_voc_and_yolo_exports_import_the_same(tmp_path, settings,
                                                                                               store, detector):
    folder = scenes_sample(tmp_path, 12)
    report = store.import_folder(folder, detector, mapping={"mask_incorrect": "mask_incorrect"})
    expected = objects(folder)
    assert report.faces == len(expected) and not report.left_out and not report.rejected
    assert sorted((Path(f.source_name).stem, f.label) for f in store.faces()) == expected
    stored = sorted((f.sha256, f.label, f.face.box) for f in store.faces())
    for format in ("voc", "yolo"):
        result = export_dataset(store, format, tmp_path / f"{format}.zip")
        assert (result["photos"], result["faces"]) == (12, len(expected))
        home = tmp_path / f"home-{format}"
        home.mkdir()
        assert cli(home, "import", tmp_path / f"{format}.zip", "--map", "mask_incorrect=mask_incorrect").returncode == 0
        listed = json.loads(cli(home, "labels").stdout)["labels"]
        assert listed == {"with_mask": sum(c == "with_mask" for _, c in expected),
                          "without_mask": sum(c == "without_mask" for _, c in expected),
                          "mask_incorrect": sum(c == "mask_incorrect" for _, c in expected)}
        os.environ["MASKDET_HOME"] = str(home / "data")
        try:
            from maskdet.core.settings import load_settings
            from maskdet.data.store import Store
            again = sorted((f.sha256, f.label, f.face.box) for f in Store(load_settings()).faces())
        finally:
            os.environ["MASKDET_HOME"] = str(settings.home)
        assert [(sha, label) for sha, label, _ in again] == [(sha, label) for sha, label, _ in stored]
        assert max(abs(a - b) for (_, _, x), (_, _, y) in zip(again, stored) for a, b in zip(x, y)) <= 0.5


def test_evaluate_scores_a_boxed_set_face_by_face(tmp_path, trained_home):
    folder = scenes_sample(tmp_path, 8)
    done = cli(tmp_path, "evaluate", folder, "--model", str(trained_home.model), "--curves")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    expected = objects(folder)
    assert report["format"] == "voc" and report["faces"] == len(expected) and report["photos_scored"] == 8
    assert report["counts_as"] == ({"mask_incorrect": "without_mask"}
                                   if any(c == "mask_incorrect" for _, c in expected) else {})
    for key in ("iou_0.4", "iou_0.5"):
        scores = report[key]
        assert scores["faces"] == len(expected)
        assert scores["recall"] == pytest.approx(scores["found"] / scores["faces"], abs=1e-4)
        assert sum(band["faces"] for band in scores["by_size"].values()) == len(expected)
        assert sum(map(sum, scores["confusion"])) == scores["found"]
        assert set(scores["ap"]) == {"with_mask", "without_mask"} and set(scores["curves"]) == set(scores["ap"])
    assert report["iou_0.4"]["found"] >= report["iou_0.5"]["found"]


def test_a_class_the_model_lacks_counts_as_without_mask_only_when_it_means_a_mask_worn_wrongly():
    assert default_counts_as(["with_mask", "mask_weared_incorrect", "hat"], ["with_mask", "without_mask"]) == {
        "mask_weared_incorrect": "without_mask"}
    assert default_counts_as(["mask_incorrect"], ["masked", "bare"]) == {}


def test_a_worn_wrong_class_the_model_lacks_counts_as_the_models_own_worn_wrong_class():
    model = ["mask_incorrect", "with_mask", "without_mask"]
    assert default_counts_as(["with_mask", "mask_weared_incorrect", "Mask_Worn_Wrong", "mask_incorrect", "hat"],
                             model) == {"mask_weared_incorrect": "mask_incorrect", "Mask_Worn_Wrong": "mask_incorrect"}
    assert default_counts_as(["mask_weared_incorrect"], ["masked", "bare", "worn_wrongly"]) == {
        "mask_weared_incorrect": "worn_wrongly"}  # no without_mask needed
