"""Annotated sets (PASCAL VOC, YOLO, COCO) read from real folders and zips: several faces a photo, each bad file or box
with its sentence while the rest reads, hostile files refused, and VOC and YOLO exports read back as written."""

import io
import json
import os
import shutil
import stat
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.data.annotations import (ExportPhoto, LabelledBox, detect_format, export_voc, export_yolo,
                                      is_annotated_folder, is_annotated_zip, read_annotated_folder, read_annotated_zip)

CORNERS = ("xmin", "ymin", "xmax", "ymax")
SCENES = Path(os.environ.get("MASKDET_SCENES_DEV_DATA", "/work/shared/datasets/masks-scenes-dev"))
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + ']>\n<annotation><object><name>&i;</name></object></annotation>')


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 90, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def voc(*objects: tuple) -> str:
    """A VOC XML of (name, xmin, ymin, xmax, ymax) objects, 1-based as VOC writes them."""
    parts = "".join(f"<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                    f"<ymax>{y2}</ymax></bndbox></object>" for name, x1, y1, x2, y2 in objects)
    return f"<annotation><filename>wrong.jpg</filename>{parts}</annotation>"


def read(files: dict[str, bytes | str], tmp_path: Path, how: str, format: str | None = None):
    """The set of these files, read from a folder or a zip."""
    if how == "folder":
        for name, content in files.items():
            path = tmp_path / "set" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return read_annotated_folder(tmp_path / "set", format)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return read_annotated_zip(zipfile.ZipFile(buffer), format)


def boxes_of(annotated, width: int, height: int) -> dict[str, tuple[list[LabelledBox], list[str]]]:
    return {photo.candidate.name: photo.boxes(width, height) for photo in annotated.photos}


def too_large(how: str) -> str:
    return f"{'file' if how == 'folder' else 'entry'} larger than 1 MiB"


@pytest.mark.parametrize("how", ["folder", "zip"])
def test_voc_set_reads_several_faces_a_photo_and_says_why_each_bad_one_is_left_out(tmp_path, how):
    files = {
        "images/a.jpg": jpeg(64, 48),
        "annotations/a.xml": voc(("with_mask", 11, 11, 30, 30), ("without_mask", 40, 5, 60, 25),
                                 ("with_mask", 101, 101, 120, 120), ("without_mask", 51, 31, 70, 50)),
        "images/b.jpg": jpeg(64, 48),
        "annotations/b.xml": voc(("mask_incorrect", 1, 1, 20, 40), ("with_mask", 21, 21, 23, 40),
                                 ("with_mask", "abc", 1, 20, 20)),
        "images/c.jpg": jpeg(64, 48),
        "annotations/d.xml": voc(("with_mask", 1, 1, 20, 20)),
        "images/e.jpg": jpeg(64, 48),
        "annotations/e.xml": LAUGHS,
        "images/f.jpg": jpeg(64, 48),
        "annotations/f.xml": voc(("with_mask", 1, 1, 20, 20)) + "<!--" + "x" * 2**20 + "-->",
        "images/g.jpg": jpeg(64, 48),
        "annotations/g.xml": voc(),
        "images/h.jpg": jpeg(64, 48),
        "images/h.png": jpeg(64, 48),
        "annotations/h.xml": voc(("with_mask", 1, 1, 20, 20)),
        "images/.hidden.jpg": jpeg(8, 8),
        "images/Thumbs.db": b"ignored",
    }
    annotated = read(files, tmp_path, how)

    assert annotated.format == "voc"
    assert annotated.classes == ["with_mask", "without_mask", "mask_incorrect"]
    assert [photo.candidate.name for photo in annotated.photos] == ["images/a.jpg", "images/b.jpg", "images/g.jpg"]
    assert [photo.candidate.label for photo in annotated.photos] == ["", "", ""]
    assert annotated.photos[0].candidate.read() == files["images/a.jpg"]
    assert boxes_of(annotated, 64, 48) == {
        "images/a.jpg": ([LabelledBox("with_mask", (10, 10, 30, 30)), LabelledBox("without_mask", (39, 4, 60, 25)),
                          LabelledBox("without_mask", (50, 30, 64, 48))],
                         ["box 3 (with_mask) lies outside the 64 x 48 photo"]),
        "images/b.jpg": ([LabelledBox("mask_incorrect", (0, 0, 20, 40))],
                         ["box 2 (with_mask) is too small (3 x 20 pixels in the photo, under 4)"]),
        "images/g.jpg": ([], []),
    }
    # The same boxes in a smaller photo: the one that was clipped is now mostly outside.
    assert annotated.photos[0].boxes(60, 40)[1][-1] == "box 4 (without_mask) lies mostly outside the 60 x 40 photo"
    assert annotated.problems == [
        ("annotations/b.xml", "box 3 cannot be read (Invalid 'xmin' value 'abc' in Pascal VOC annotation.)"),
        ("annotations/d.xml", "annotation without its image (no d.jpg, .png or other image file)"),
        ("annotations/e.xml", "cannot be read as PASCAL VOC XML (it declares entities, which are refused)"),
        ("annotations/f.xml", too_large(how)),
        ("annotations/h.xml", "its image may be any of images/h.jpg, images/h.png: cannot tell which"),
        ("images/c.jpg", "image without an annotation"),
        ("images/h.jpg", "image without an annotation"),
        ("images/h.png", "image without an annotation"),
    ]


@pytest.mark.parametrize("how", ["folder", "zip"])
def test_yolo_set_in_split_folders_converts_fractions_with_the_photo_size(tmp_path, how):
    files = {
        "classes.txt": "with_mask\nwithout_mask\n",
        "README.roboflow.txt": "not a label file",
        "train/images/p.jpg": jpeg(100, 50),
        "train/labels/p.txt": "0 0.5 0.5 0.2 0.4\n1 0.25 0.5 0.1 0.2\n7 0.5 0.5 0.1 0.1\n0 0.5 0.5 0 0.2\n"
                              "1 abc 0.5 0.1 0.1\n0 0.5 0.5 0.02 0.5\n0 1.2 0.5 0.2 0.2\n",
        "valid/images/p.jpg": jpeg(100, 50),
        "valid/labels/p.txt": "\n",
        "valid/images/q.png": jpeg(100, 50),
        "valid/labels/r.txt": "0 0.5 0.5 0.2 0.2\n",
        "test/labels/huge.txt": "0 0.5 0.5 0.2 0.2\n" * 60_000,
        "test/images/huge.jpg": jpeg(100, 50),
    }
    annotated = read(files, tmp_path, how)

    assert annotated.format == "yolo"
    assert annotated.classes == ["with_mask", "without_mask"]
    assert boxes_of(annotated, 100, 50) == {
        "train/images/p.jpg": ([LabelledBox("with_mask", pytest.approx((40, 15, 60, 35))),
                                LabelledBox("without_mask", pytest.approx((20, 20, 30, 30)))],
                               ["box 4 (with_mask) is empty (0 x 10 pixels)",
                                "box 6 (with_mask) is too small (2 x 25 pixels in the photo, under 4)",
                                "box 7 (with_mask) lies outside the 100 x 50 photo"]),
        "valid/images/p.jpg": ([], []),
    }
    assert annotated.problems == [
        ("test/labels/huge.txt", too_large(how)),
        ("train/labels/p.txt", "box 3: class id 7 is not in classes.txt"),
        ("train/labels/p.txt", "box 5 cannot be read (could not convert string to float: 'abc')"),
        ("valid/images/q.png", "image without an annotation"),
        ("valid/labels/r.txt", "annotation without its image (no r.jpg, .png or other image file)"),
    ]


def test_yolo_class_names_from_data_yaml_and_a_yaml_bomb_refused(tmp_path):
    files = {"x.jpg": jpeg(40, 40), "x.txt": "2 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.5 0.5\n",
             "data.yaml": "nc: 2\nnames: {0: with_mask, 2: without_mask}\n"}
    annotated = read(files, tmp_path, "folder")
    assert annotated.classes == ["with_mask", "without_mask"]
    assert annotated.photos[0].boxes(40, 40) == ([LabelledBox("without_mask", (10, 10, 30, 30)),
                                                  LabelledBox("with_mask", (0, 0, 20, 20))], [])

    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "names: *i\n"
    annotated = read({**files, "data.yaml": bomb}, tmp_path / "bomb", "zip")
    assert annotated.problems == [("data.yaml", "cannot be read as YOLO class names (no list of class names under "
                                                "`names`)")]
    assert annotated.classes == ["2", "0"]  # without class names, a box is labelled with its class id


@pytest.mark.parametrize("how", ["folder", "zip"])
def test_coco_set_matches_file_names_and_refuses_json_nested_1000_deep(tmp_path, how):
    coco = {
        "images": [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"},
                   {"id": 3, "file_name": "missing.jpg"}, {"id": 4, "file_name": "../../outside.jpg"}],
        "categories": [{"id": 2, "name": "without_mask"}, {"id": 1, "name": "with_mask"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 30]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 5, 15.5, 20]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 10, 0, 14]},
            {"id": 4, "image_id": 2, "category_id": 9, "bbox": [10, 10, 20, 20]},
            {"id": 5, "image_id": 2, "category_id": 1, "bbox": ["abc", 10, 20, 20]},
            {"id": 6, "image_id": 2, "category_id": 2, "bbox": [1e999, 10, 20, 20]},
            {"id": 7, "image_id": 99, "category_id": 1, "bbox": [1, 1, 9, 9]},
        ],
    }
    files = {
        "train/_annotations.coco.json": json.dumps(coco),
        "train/x.jpg": jpeg(80, 60),
        "train/y.jpg": jpeg(80, 60),
        "valid/_annotations.coco.json": "[" * 1000 + "]" * 1000,
        "valid/z.jpg": jpeg(80, 60),
    }
    annotated = read(files, tmp_path, how)

    assert annotated.format == "coco"
    assert annotated.classes == ["with_mask", "without_mask"]
    assert boxes_of(annotated, 80, 60) == {
        "train/x.jpg": ([LabelledBox("with_mask", (10, 10, 30, 40)), LabelledBox("without_mask", (50, 5, 65.5, 25))],
                        []),
        "train/y.jpg": ([], ["box 1 (with_mask) is empty (0 x 14 pixels)"]),
    }
    json_name = "train/_annotations.coco.json"
    assert annotated.problems == [
        (json_name, "box 2 of y.jpg: category id 9 is not in its categories"),
        (json_name, "box 3 of y.jpg cannot be read (ValueError: could not convert string to float: 'abc')"),
        (json_name, "box 4 of y.jpg cannot be read (ValueError: xyxy must contain only finite numeric values (no NaN "
                    "or inf).)"),
        (json_name, "annotation without its image (no file missing.jpg)"),
        (json_name, "annotation without its image (no file ../../outside.jpg)"),
        (json_name, "1 annotation of no image in its images list left out"),
        ("valid/_annotations.coco.json", "cannot be read as COCO JSON (nested more than 64 levels deep: line 1 "
                                         "column 65 (char 64))"),
        ("valid/z.jpg", "image without an annotation"),
    ]


def test_hostile_entries_and_links_are_refused_with_the_reasons_sources_gives(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.jpg", jpeg(20, 20))
        archive.writestr("a.xml", voc(("with_mask", 1, 1, 10, 10)))
        archive.writestr("b.jpg", jpeg(20, 20))
        link = zipfile.ZipInfo("b.xml")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("c.jpg", jpeg(20, 20), compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("c.xml", voc(("with_mask", 1, 1, 10, 10)))
    annotated = read_annotated_zip(zipfile.ZipFile(buffer))
    assert [photo.candidate.name for photo in annotated.photos] == ["a.jpg"]
    assert annotated.problems == [("b.xml", "symbolic link in archive"),
                                  ("c.jpg", "entry cannot be decompressed (compression method bzip2 is not supported: "
                                            "zip it again with standard compression)")]

    (tmp_path / "set").mkdir()
    (tmp_path / "secret.xml").write_text(voc(("with_mask", 1, 1, 10, 10)))
    (tmp_path / "set" / "b.jpg").write_bytes(jpeg(20, 20))
    (tmp_path / "set" / "b.xml").symlink_to(tmp_path / "secret.xml")
    assert read_annotated_folder(tmp_path / "set").problems == [("b.xml", "symbolic link to outside the folder")]


def test_over_size_coco_json_is_refused_before_reading(tmp_path):
    files = {"a.jpg": jpeg(20, 20), "instances.json": " " * (64 * 2**20 + 1)}
    annotated = read(files, tmp_path, "zip")
    assert annotated.problems == [("a.jpg", "image without an annotation"),
                                  ("instances.json", "entry larger than 64 MiB")]
    assert annotated.photos == []


def test_format_detected_from_names_and_a_wrong_stated_format_refused(tmp_path):
    assert detect_format(["images/a.jpg", "annotations/a.xml"]) == "voc"
    assert detect_format(["a.jpg", "a.xml", "b.JPG"]) == "voc"
    assert detect_format(["train\\images\\a.jpg", "train\\labels\\a.txt"]) == "yolo"
    assert detect_format(["a.jpg", "a.txt", "classes.txt"]) == "yolo"
    assert detect_format(["a.jpg", "a.txt"]) is None  # a note beside a photo, not YOLO labels
    assert detect_format(["images/a.jpg", "instances.json"]) == "coco"
    assert detect_format(["with_mask/a.jpg", "without_mask/b.png"]) is None
    assert detect_format(["__MACOSX/a.jpg", "__MACOSX/a.xml", ".x/a.jpg", ".x/a.xml"]) is None

    files = {"with_mask/a.jpg": jpeg(20, 20), "without_mask/b.jpg": jpeg(20, 20)}
    with pytest.raises(StoreError, match=r"No annotated photos found\. The layouts read are PASCAL VOC"):
        read(files, tmp_path, "folder")
    assert not is_annotated_folder(tmp_path / "set")
    files = {"images/a.jpg": jpeg(20, 20), "annotations/a.xml": voc(("with_mask", 1, 1, 10, 10))}
    with pytest.raises(StoreError, match=r"^The set holds no COCO annotations \(an instances \.json file\)\.$"):
        read(files, tmp_path / "voc", "folder", format="coco")
    with pytest.raises(StoreError, match="Unknown annotation format 'labelme'"):
        read(files, tmp_path / "voc", "folder", format="labelme")
    assert is_annotated_folder(tmp_path / "voc" / "set")
    assert read(files, tmp_path / "voc", "zip", format="voc").format == "voc"


EXPORTED = [
    ExportPhoto("abc.jpg", jpeg(120, 90), 120, 90, [LabelledBox("with_mask", (10, 12, 40, 50)),
                                                   LabelledBox("without_mask", (60.4, 20.6, 100.2, 70.7))]),
    ExportPhoto("images/def.png", jpeg(50, 40), 50, 40, [LabelledBox("mask_incorrect", (0, 0, 50, 40))]),
    ExportPhoto("ghi.jpg", jpeg(30, 30), 30, 30, []),
]


@pytest.mark.parametrize("export", ["voc", "yolo"])
def test_export_reads_back_with_the_same_boxes_and_labels(tmp_path, export):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        if export == "voc":
            export_voc(EXPORTED, out)
        else:
            export_yolo(EXPORTED, ["with_mask", "without_mask", "mask_incorrect"], out)
    archive = zipfile.ZipFile(buffer)
    assert is_annotated_zip(archive)
    annotated = read_annotated_zip(archive)
    archive.extractall(tmp_path)
    assert read_annotated_folder(tmp_path).photos[0].boxes(120, 90) == annotated.photos[0].boxes(120, 90)

    assert annotated.format == export and annotated.problems == []
    assert sorted(annotated.classes) == ["mask_incorrect", "with_mask", "without_mask"]
    read_back = {photo.candidate.name: photo for photo in annotated.photos}
    assert list(read_back) == ["images/abc.jpg", "images/def.png", "images/ghi.jpg"]
    for photo in EXPORTED:
        back = read_back[f"images/{photo.name.removeprefix('images/')}"]
        assert back.candidate.read() == photo.data
        boxes, left_out = back.boxes(photo.width, photo.height)
        assert left_out == [] and [box.label for box in boxes] == [box.label for box in photo.boxes]
        for box, original in zip(boxes, photo.boxes):
            assert box.box == pytest.approx(original.box, abs=0.5)


def test_export_refuses_a_name_leaving_the_export_and_an_unknown_label():
    out = zipfile.ZipFile(io.BytesIO(), "w")
    with pytest.raises(StoreError, match="Cannot export a photo as '../x.jpg'"):
        export_voc([ExportPhoto("../x.jpg", b"", 10, 10, [])], out)
    with pytest.raises(StoreError, match="The label 'hat' is not among the export's classes"):
        export_yolo([ExportPhoto("x.jpg", b"", 10, 10, [LabelledBox("hat", (1, 1, 5, 5))])], ["with_mask"], out)


@pytest.mark.skipif(not (SCENES / "annotations").is_dir(), reason=f"no VOC set at {SCENES}")
def test_real_voc_sample_gives_every_object_as_a_box_with_its_label(tmp_path):
    expected = {}
    for xml in sorted((SCENES / "annotations").glob("*.xml"))[:20]:
        image = SCENES / "images" / f"{xml.stem}.jpg"
        for source, target in ((xml, tmp_path / "annotations" / xml.name), (image, tmp_path / "images" / image.name)):
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(source, target)
        with Image.open(image) as photo:
            width, height = photo.size
        objects = [(item.findtext("name"), tuple(float(item.findtext(f"bndbox/{corner}")) for corner in CORNERS))
                   for item in ElementTree.parse(xml).getroot().findall("object")]
        expected[f"images/{image.name}"] = (width, height, objects)

    annotated = read_annotated_folder(tmp_path)
    assert annotated.problems == [] and len(annotated.photos) == 20
    assert set(annotated.classes) <= {"with_mask", "without_mask", "mask_incorrect"}
    faces = 0
    for photo in annotated.photos:
        width, height, objects = expected[photo.candidate.name]
        boxes, left_out = photo.boxes(width, height)
        assert left_out == []
        assert [box.label for box in boxes] == [name for name, _ in objects]
        for box, (_, (x1, y1, x2, y2)) in zip(boxes, objects):
            assert box.box == pytest.approx((max(x1 - 1, 0), max(y1 - 1, 0), min(x2, width), min(y2, height)))
        faces += len(boxes)
    assert faces == sum(len(objects) for _, _, objects in expected.values()) > 20
