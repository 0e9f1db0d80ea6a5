"""Labelled sets with several boxed faces a photo, as analysts bring them in a folder or a zip: PASCAL VOC, YOLO and
COCO, parsed record by record with supervision's parsers behind the caps sources puts on photos (each annotation file
checked and capped before it is read, XML through defusedxml, JSON through parse_json); and VOC or YOLO exports."""

import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element, ParseError, SubElement

import numpy as np
import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage
from maskdet.core.json_text import parse_json
from maskdet.core.text import plural, printable
from maskdet.data.sources import (IGNORED_NAMES, MAX_ENTRY_BYTES, Candidate, entry_problem, file_problem,
                                  folder_entries, path_parts, read_entry, read_file, zip_entries)

FORMAT_NAMES = {"voc": "PASCAL VOC", "yolo": "YOLO", "coco": "COCO"}
FORMATS = tuple(FORMAT_NAMES)
MIN_BOX_SIDE = 4  # pixels: a box narrower or lower than this inside its photo shows no face to learn from
# Annotation files are capped far below photos: a photo's VOC XML or YOLO .txt (or a classes.txt, a data.yaml) takes a
# few KB, so 1 MiB is thousands of boxes; a COCO JSON holds the whole set's boxes at ~300 bytes each, so 64 MiB is
# some 200,000 boxes (and about 1 GB once parsed).
MAX_LABEL_BYTES = 2**20
MAX_COCO_BYTES = 64 * 2**20
CLASS_FILES = ("classes.txt", "data.yaml", "data.yml")  # YOLO's class names, the first found nearest the top
SET_FOLDERS = {"images", "jpegimages", "annotations", "labels"}  # stand for one another when matching files to images
NAMES = {"voc": "PASCAL VOC annotations (.xml files)", "yolo": "YOLO labels (.txt files in labels/ or beside "
         "classes.txt or data.yaml)", "coco": "COCO annotations (an instances .json file)"}
LAYOUTS = ("No annotated photos found. The layouts read are PASCAL VOC (images/x.jpg with annotations/x.xml, or x.jpg "
           "with x.xml), YOLO (images/x.jpg with labels/x.txt, and classes.txt or data.yaml) and COCO (the images "
           "with an instances .json file).")


@dataclass(frozen=True)
class LabelledBox:
    label: str  # the set's own class name, as written in the file
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the photo


@dataclass(frozen=True)
class AnnotatedPhoto:
    candidate: Candidate  # the image (name: its path in the set; label "")
    # Given the decoded photo's width and height: its usable boxes, and a sentence for each box left out.
    boxes: Callable[[int, int], tuple[list[LabelledBox], list[str]]]


@dataclass
class AnnotatedSet:
    format: str  # one of FORMATS
    photos: list[AnnotatedPhoto]  # the images with an annotation (one with no objects says "no faces here")
    classes: list[str]  # the class names the set uses, in declared or first-seen order
    problems: list[tuple[str, str]]  # (file name, why it or part of it is not read), sorted by file name


@dataclass(frozen=True)
class ExportPhoto:
    name: str  # the image's file name in the export, under images/ (a leading "images/" is not doubled)
    data: bytes  # the image file's bytes, written unchanged
    width: int
    height: int
    boxes: list[LabelledBox]


@dataclass(frozen=True)
class _Box:
    """A box as its file gives it, before it meets its photo's size."""

    number: int  # its place among its file's boxes for its image, from 1
    label: str
    xyxy: tuple[float, float, float, float]
    relative: bool = False  # YOLO: fractions of the photo's width and height


Opener = Callable[[int], Candidate | str]  # a file's Candidate, read within that many bytes, or why it is not read


def detect_format(names: list[str]) -> str | None:
    """The annotation format of a set from its file names: "voc" when an .xml has an image's stem, "yolo" when a
    label .txt does, "coco" when a .json lies among images; None when there are no annotations (class folders)."""
    names = [name for name in ("/".join(path_parts(name)) for name in names) if _visible(name)]
    images = {_stem(name) for name in names if _suffix(name) in IMAGE_SUFFIXES}
    if any(_suffix(name) == ".xml" and _stem(name) in images for name in names):
        return "voc"
    if any(_stem(name) in images for name in _yolo_labels(names)):
        return "yolo"
    return "coco" if images and any(_suffix(name) == ".json" for name in names) else None


def is_annotated_folder(folder: Path) -> bool:
    return detect_format([relative.as_posix() for _, relative in folder_entries(folder)]) is not None


def is_annotated_zip(archive: zipfile.ZipFile) -> bool:
    return detect_format(archive.namelist()) is not None


def annotated_in_folder(folder: Path, format: str | None = None) -> AnnotatedSet | None:
    """The set with face boxes in a folder, or None when it holds class folders (and no `format` is named)."""
    return read_annotated_folder(folder, format) if format or is_annotated_folder(folder) else None


def annotated_in_zip(archive: zipfile.ZipFile, format: str | None = None) -> AnnotatedSet | None:
    """The set with face boxes in a zip, or None when it holds class folders (and no `format` is named)."""
    return read_annotated_zip(archive, format) if format or is_annotated_zip(archive) else None


def read_annotated_folder(folder: Path, format: str | None = None) -> AnnotatedSet:
    """The annotated set in a folder (format None: detected from its file names)."""
    folder = Path(folder)
    files = {}
    for path, relative in folder_entries(folder):
        name = printable(relative.as_posix())
        files[name] = partial(_open_file, name, path, folder)
    return _read_set(files, format)


def read_annotated_zip(archive: zipfile.ZipFile, format: str | None = None) -> AnnotatedSet:
    """The annotated set in a zip (format None: detected from its entry names); a hostile zip is refused."""
    files = {}
    for info, parts in zip_entries(archive):
        name = printable("/".join(parts))
        files[name] = partial(_open_entry, name, archive, info)
    return _read_set(files, format)


def _open_file(name: str, path: Path, folder: Path, max_bytes: int) -> Candidate | str:
    return file_problem(path, folder, max_bytes) or Candidate(name, "", partial(read_file, path, max_bytes))


def _open_entry(name: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> Candidate | str:
    return entry_problem(info, max_bytes) or Candidate(name, "", partial(read_entry, archive, info),
                                                       info.compress_size)


def _read_set(files: dict[str, Opener], format: str | None) -> AnnotatedSet:
    files = {name: files[name] for name in sorted(files) if _visible(name)}
    format = format or detect_format(list(files))
    if format is None:
        raise StoreError(LAYOUTS)
    if format not in FORMATS:
        raise StoreError(f"Unknown annotation format {format!r}: it is one of {', '.join(FORMATS)}.")
    images = [name for name in files if _suffix(name) in IMAGE_SUFFIXES]
    problems = []
    read = {"voc": _read_voc, "yolo": _read_yolo, "coco": _read_coco}[format]
    found, classes = read(list(files), images, partial(_load, files, problems), problems)
    photos = []
    for image in images:
        if image in found and found[image] is None:
            continue  # its annotation file is not read, as its problem says
        opened = files[image](MAX_ENTRY_BYTES) if image in found else "image without an annotation"
        if isinstance(opened, str):
            problems.append((image, opened))
        else:
            photos.append(AnnotatedPhoto(opened, partial(_usable, found[image])))
    return AnnotatedSet(format, photos, classes, sorted(problems, key=lambda problem: problem[0]))


def _load(files: dict[str, Opener], problems: list, name: str, max_bytes: int) -> bytes | None:
    """A file's bytes, read within max_bytes; None, with why in problems, when it is not read."""
    opened = files[name](max_bytes)
    if isinstance(opened, str):
        problems.append((name, opened))
        return None
    try:
        return opened.read()
    except BadImage as error:
        problems.append((name, str(error)))
    except OSError as error:
        problems.append((name, f"cannot be read ({error.strerror or error})"))
    return None


def _read_voc(names: list[str], images: list[str], load: Callable, problems: list) -> tuple[dict, list[str]]:
    """The boxes of each image that has a PASCAL VOC XML (None where it cannot be read), and the class names in
    first-seen order."""
    xmls = [name for name in names if _suffix(name) == ".xml"]
    if not xmls:
        raise StoreError(f"The set holds no {NAMES['voc']}.")
    found = {}
    for xml, image in _pair(xmls, images, problems).items():
        data = load(xml, MAX_LABEL_BYTES)
        found[image] = None if data is None else _voc_boxes(xml, data, problems)
    return found, list(dict.fromkeys(box.label for boxes in found.values() for box in boxes or []))


def _voc_boxes(name: str, data: bytes, problems: list) -> list[_Box] | None:
    """An XML's boxes, each object parsed on its own so that one bad object leaves out only itself; None when the
    file is not PASCAL VOC XML."""
    from supervision.dataset.formats.pascal_voc import detections_from_xml_obj  # lazy: ~1 s, only annotated sets

    try:
        root = fromstring(data)
        problem = None if root.tag == "annotation" else f"its root element is <{root.tag}>, not <annotation>"
    except DefusedXmlException:
        problem = "it declares entities, which are refused"
    except (ParseError, ValueError, LookupError) as error:  # LookupError: an unknown declared encoding
        problem = str(error)
    if problem:
        problems.append((name, f"cannot be read as PASCAL VOC XML ({problem})"))
        return None
    boxes = []
    for number, element in enumerate(root.findall("object"), start=1):
        alone = Element("annotation")  # the object without its polygons: only its box is read, no mask drawn
        SubElement(alone, "object").extend(child for child in element if child.tag != "polygon")
        try:
            detections, classes = detections_from_xml_obj(alone, [], (1, 1))
        except ValueError as error:
            problems.append((name, f"box {number} cannot be read ({error})"))
            continue
        boxes.append(_Box(number, classes[int(detections.class_id[0])], tuple(map(float, detections.xyxy[0]))))
    return boxes


def _read_yolo(names: list[str], images: list[str], load: Callable, problems: list) -> tuple[dict, list[str]]:
    """The boxes of each image that has a YOLO label file, and the class names as declared (without a classes.txt
    or data.yaml: the class ids, first seen first)."""
    labels = _yolo_labels(names)
    if not labels:
        raise StoreError(f"The set holds no {NAMES['yolo']}.")
    class_files = [name for name in names if _base(name) in CLASS_FILES]
    class_file = min(class_files, key=lambda name: (name.count("/"), CLASS_FILES.index(_base(name))), default=None)
    declared = class_file and _yolo_classes(class_file, load(class_file, MAX_LABEL_BYTES), problems)
    found = {}
    for label_file, image in _pair(labels, images, problems).items():
        data = load(label_file, MAX_LABEL_BYTES)
        found[image] = None if data is None else _yolo_boxes(label_file, data, declared, class_file, problems)
    if declared:
        return found, list(declared.values())
    return found, list(dict.fromkeys(box.label for boxes in found.values() for box in boxes or []))


def _yolo_labels(names: list[str]) -> list[str]:
    """YOLO's label files: the .txt files in labels/ folders, or, with none there, all beside a class file."""
    texts = [name for name in names if _suffix(name) == ".txt" and _base(name) not in CLASS_FILES]
    in_labels = [name for name in texts if "labels" in (part.lower() for part in name.split("/")[:-1])]
    return in_labels or (texts if any(_base(name) in CLASS_FILES for name in names) else [])


def _yolo_classes(name: str, data: bytes | None, problems: list) -> dict[int, str] | None:
    """Class names by class id from a classes.txt (a name a line) or a data.yaml (its `names`, a list or a mapping
    of ids); None, with why in problems, when they cannot be read."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8-sig")
        if _suffix(name) == ".txt":
            return dict(enumerate(line.strip() for line in text.splitlines() if line.strip()))
        # libyaml's loader where built in: fast, and it refuses deep nesting before Python's recursion limit
        content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        names = content.get("names") if isinstance(content, dict) else None
        names = dict(enumerate(names)) if isinstance(names, list) else names
        # Scalars only: YAML aliases can make a small file of a list nested a billion names deep
        if isinstance(names, dict) and all(type(key) is int and isinstance(value, (str, int, float))
                                           for key, value in names.items()):
            return {key: _text(value) for key, value in sorted(names.items())}
        problem = "no list of class names under `names`"
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        problem = str(error)
    problems.append((name, f"cannot be read as YOLO class names ({problem})"))
    return None


def _yolo_boxes(name: str, data: bytes, declared: dict[int, str] | None, class_file: str | None,
                problems: list) -> list[_Box] | None:
    """A label file's boxes, each line parsed on its own; None when it is not text."""
    from supervision.dataset.formats.yolo import yolo_annotations_to_detections  # lazy: ~1 s, only annotated sets

    try:
        lines = [line for line in data.decode("utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        problems.append((name, f"cannot be read as YOLO labels ({error})"))
        return None
    boxes = []
    for number, line in enumerate(lines, start=1):
        try:  # size (1, 1): the box in fractions of the photo, which _usable scales by the photo's size
            detections = yolo_annotations_to_detections([line], (1, 1), with_masks=False)
        except (ValueError, OverflowError) as error:
            problems.append((name, f"box {number} cannot be read ({error})"))
            continue
        class_id = int(detections.class_id[0])
        if declared and class_id not in declared:
            problems.append((name, f"box {number}: class id {class_id} is not in {_base(class_file)}"))
            continue
        label = declared[class_id] if declared else str(class_id)
        boxes.append(_Box(number, label, tuple(map(float, detections.xyxy[0])), relative=True))
    return boxes


def _read_coco(names: list[str], images: list[str], load: Callable, problems: list) -> tuple[dict, list[str]]:
    """The boxes of each image a COCO instances file lists, and the class names of its categories by id."""
    jsons = [name for name in names if _suffix(name) == ".json"]
    if not jsons:
        raise StoreError(f"The set holds no {NAMES['coco']}.")
    by_base = defaultdict(list)
    for image in images:
        by_base[image.split("/")[-1]].append(image)
    found, classes = {}, []
    for name in jsons:
        data = load(name, MAX_COCO_BYTES)
        if data is not None:
            classes += _coco_file(name, data, by_base, found, problems)
    return found, list(dict.fromkeys(classes))


def _coco_file(name: str, data: bytes, by_base: dict[str, list[str]], found: dict, problems: list) -> list[str]:
    """Add the boxes of a COCO file's images to `found`; its class names by category id."""
    from supervision.dataset.formats.coco import (  # lazy: ~1 s to import, only annotated sets need it
        coco_annotations_to_detections, coco_categories_to_classes, group_coco_annotations_by_image_id)

    try:
        coco = parse_json(data)
    except ValueError as error:  # malformed, too deep, or not UTF-8
        problems.append((name, f"cannot be read as COCO JSON ({error})"))
        return []
    if not (isinstance(coco, dict) and isinstance(coco.get("images"), list)
            and isinstance(coco.get("annotations"), list)):
        problems.append((name, 'not a COCO instances file (no "images" and "annotations" lists)'))
        return []
    categories = [category for category in coco.get("categories") or [] if isinstance(category, dict)
                  and type(category.get("id")) is int and "name" in category]
    labels = {category["id"]: _text(category["name"]) for category in categories}
    annotations = [annotation for annotation in coco["annotations"]
                   if isinstance(annotation, dict) and type(annotation.get("image_id")) in (int, str)]
    by_image = group_coco_annotations_by_image_id(annotations)
    unplaced = len(coco["annotations"])
    for entry in coco["images"]:
        entry = entry if isinstance(entry, dict) else {}
        records = by_image.pop(entry.get("id"), []) if type(entry.get("id")) in (int, str) else []
        unplaced -= len(records)
        image = _coco_image(entry.get("file_name"), name, by_base, found, problems)
        if image is None:
            continue
        found[image] = []
        for number, record in enumerate(records, start=1):
            where = f"box {number} of {_text(entry['file_name'])}"
            try:
                detections = coco_annotations_to_detections([record], (1, 1), with_masks=False, use_iscrowd=False)
            except (KeyError, TypeError, IndexError, ValueError, OverflowError) as error:
                problems.append((name, f"{where} cannot be read ({type(error).__name__}: {error})"))
                continue
            category = int(detections.class_id[0])
            if category in labels:
                found[image].append(_Box(number, labels[category], tuple(map(float, detections.xyxy[0]))))
            else:
                problems.append((name, f"{where}: category id {category} is not in its categories"))
    if unplaced:
        problems.append((name, f"{plural(unplaced, 'annotation')} of no image in its images list left out"))
    return [_text(label) for label in coco_categories_to_classes(categories)]


def _coco_image(file_name: object, name: str, by_base: dict[str, list[str]], found: dict,
                problems: list) -> str | None:
    """The image a COCO file's `file_name` names (by_base: the set's images by base name): the path from the JSON's
    folder or from the top of the set, else the only image of that base name; None, with why in problems, when there
    is none or no telling which."""
    parts = path_parts(file_name) if isinstance(file_name, str) else []
    if not parts:
        problems.append((name, "an entry of its images list has no file_name"))
        return None
    same_base = by_base.get(parts[-1], [])
    matches = [path for path in ("/".join(path_parts(name)[:-1] + parts), "/".join(parts)) if path in same_base]
    matches = matches or same_base
    if not matches:
        problems.append((name, f"annotation without its image (no file {_text(file_name)})"))
    elif len(matches) > 1:
        problems.append((name, f"{_text(file_name)} may be any of {', '.join(matches)}: cannot tell which"))
    elif matches[0] in found:
        problems.append((name, f"a second annotation of {matches[0]} left out"))
    else:
        return matches[0]
    return None


def _pair(annotations: list[str], images: list[str], problems: list) -> dict[str, str]:
    """Each annotation file's image: the image of its stem anywhere in the set; between several, the one in the same
    place (images/ standing for annotations/ or labels/)."""
    by_stem = defaultdict(list)
    for image in images:
        by_stem[_stem(image)].append(image)
    pairs, taken = {}, {}
    for name in annotations:
        same_stem = by_stem[_stem(name)]
        found = same_stem if len(same_stem) == 1 else [image for image in same_stem if _place(image) == _place(name)]
        if not same_stem:
            problems.append((name, f"annotation without its image (no {_stem(name)}.jpg, .png or other image file)"))
        elif len(found) != 1:
            problems.append((name, f"its image may be any of {', '.join(same_stem)}: cannot tell which"))
        elif found[0] in taken:
            problems.append((name, f"a second annotation of {found[0]} left out ({taken[found[0]]} is read)"))
        else:
            pairs[name] = found[0]
            taken[found[0]] = name
    return pairs


def _usable(boxes: list[_Box], width: int, height: int) -> tuple[list[LabelledBox], list[str]]:
    """The boxes that show a face in a width x height photo, clipped to it, and a sentence for each one left out:
    empty, less than half inside the photo, or narrower or lower than MIN_BOX_SIDE inside it. (Coordinates that are
    not finite numbers never get here: supervision's Detections refuses them, and the box cannot be read.)"""
    usable, left_out = [], []
    for box in boxes:
        scale = (width, height, width, height) if box.relative else (1, 1, 1, 1)
        x1, y1, x2, y2 = (value * factor for value, factor in zip(box.xyxy, scale))
        left, top, right, bottom = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
        what = f"box {box.number} ({box.label})"
        if x2 <= x1 or y2 <= y1:
            left_out.append(f"{what} is empty ({_pixels(x2 - x1)} x {_pixels(y2 - y1)} pixels)")
        elif max(right - left, 0) * max(bottom - top, 0) < (x2 - x1) * (y2 - y1) / 2:
            mostly = "mostly " if right > left and bottom > top else ""
            left_out.append(f"{what} lies {mostly}outside the {width} x {height} photo")
        elif min(right - left, bottom - top) < MIN_BOX_SIDE - 0.01:  # a YOLO fraction's rounding is no reason
            left_out.append(f"{what} is too small ({_pixels(right - left)} x {_pixels(bottom - top)} pixels in the "
                            f"photo, under {MIN_BOX_SIDE})")
        else:
            usable.append(LabelledBox(box.label, (left, top, right, bottom)))
    return usable, left_out


def export_voc(photos: Iterable[ExportPhoto], out: zipfile.ZipFile) -> None:
    """Write photos and their boxes as a PASCAL VOC set: images/NAME and annotations/STEM.xml."""
    from supervision.dataset.formats.pascal_voc import detections_to_pascal_voc  # lazy: ~1 s, only exports need it

    for photo in photos:
        name = _export_name(photo)
        classes = list(dict.fromkeys(box.label for box in photo.boxes))
        xml = detections_to_pascal_voc(_detections(photo.boxes, classes), classes, name.split("/")[-1],
                                       (photo.height, photo.width, 3))
        out.writestr(f"images/{name}", photo.data)
        out.writestr(f"annotations/{PurePosixPath(name).with_suffix('.xml')}", xml)


def export_yolo(photos: Iterable[ExportPhoto], classes: list[str], out: zipfile.ZipFile) -> None:
    """Write photos and their boxes as a YOLO set: images/NAME, labels/STEM.txt, classes.txt and data.yaml."""
    from supervision.dataset.formats.yolo import detections_to_yolo_annotations  # lazy: ~1 s, only exports need it

    out.writestr("classes.txt", "".join(f"{label}\n" for label in classes))
    out.writestr("data.yaml", yaml.safe_dump({"nc": len(classes), "names": list(classes)}, sort_keys=False))
    for photo in photos:
        name = _export_name(photo)
        lines = detections_to_yolo_annotations(_detections(photo.boxes, classes), (photo.height, photo.width, 3))
        out.writestr(f"images/{name}", photo.data)
        out.writestr(f"labels/{PurePosixPath(name).with_suffix('.txt')}", "".join(f"{line}\n" for line in lines))


def _export_name(photo: ExportPhoto) -> str:
    """The photo's path under images/ in an export; a name that would leave the export is refused."""
    parts = path_parts(photo.name.removeprefix("images/"))
    if not parts or ".." in parts or _suffix(parts[-1]) not in IMAGE_SUFFIXES:
        raise StoreError(f"Cannot export a photo as {photo.name!r}: give it an image file name (.jpg, .png, ...) "
                         "inside the export.")
    return "/".join(parts)


def _detections(boxes: list[LabelledBox], classes: list[str]):
    """supervision's Detections of boxes, their class ids indexing classes."""
    import supervision  # lazy: ~1 s to import, only exports need it

    unknown = [box.label for box in boxes if box.label not in classes]
    if unknown:
        raise StoreError(f"The label {unknown[0]!r} is not among the export's classes ({', '.join(classes)}).")
    return supervision.Detections(xyxy=np.array([box.box for box in boxes], dtype=float).reshape(-1, 4),
                                  class_id=np.array([classes.index(box.label) for box in boxes], dtype=int))


def _text(value: object) -> str:
    """A name from a JSON or YAML file as text that can be stored and shown (escapes in them can make lone
    surrogates, which UTF-8 cannot encode)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _pixels(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _visible(name: str) -> bool:
    """Whether a file of a set is read: not hidden, not macOS's __MACOSX copies, not a file sources ignores."""
    parts = name.split("/")
    return parts[0] != "__MACOSX" and parts[-1] not in IGNORED_NAMES and not any(p.startswith(".") for p in parts)


def _place(name: str) -> tuple[str, ...]:
    """A file's folders, the set's images/, annotations/ and labels/ folders all alike."""
    return tuple("" if part.lower() in SET_FOLDERS else part for part in name.split("/")[:-1])


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


def _base(name: str) -> str:
    return name.split("/")[-1].lower()
