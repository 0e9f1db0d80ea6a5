"""Scoring a run's model on an uploaded zip (class folders, or a set with face boxes), and importing what it
scored."""

import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.contract import CropRule
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage, decode_image
from maskdet.data.annotations import annotated_in_zip
from maskdet.data.importer import ImportReport, annotated_zip_classes
from maskdet.data.sources import Candidate, open_zip, zip_candidates
from maskdet.data.store import Store
from maskdet.runs.active import model_path
from maskdet.serving.box_evaluation import evaluate_boxes
from maskdet.serving.classifier import OnnxClassifier, load_classifier
from maskdet.serving.media import AddedFace, add_face
from maskdet.serving.predict import evaluate_candidates, import_evaluated
from maskdet.vision.faces import crop_face


def open_upload(data: bytes) -> zipfile.ZipFile:
    """An uploaded zip, read in place (no copy of its bytes); one that is not a zip is a StoreError sentence."""
    try:
        return open_zip(io.BytesIO(data))
    except StoreError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StoreError("The upload is not a readable zip archive. Zip a folder of class folders "
                         "(for example with_mask/ and without_mask/) and upload that.") from None


def run_classifier(store: Store, run_id: str, int8: bool = False) -> OnnxClassifier:
    """The model of a succeeded run, to score with."""
    run = store.run(run_id)
    if run["status"] != "succeeded":
        raise StoreError(f"Run {run_id} {run['status']}: choose a succeeded run to evaluate.")
    return load_classifier(model_path(store, run, int8))


def evaluate_zip(store: Store, run_id: str, data: bytes, detector, progress=None, int8: bool = False) -> dict:
    """Score a run's model on a zip of class folders (with_mask/..., without_mask/...).

    The zip is read with the store's import rules (hostile entries rejected) and scored like
    `maskdet evaluate`: largest face per photo, the model's crop rule. Files that are not images, and images
    in folders that are not the model's classes, are skipped and listed in rejected_files (skipped_classes
    counts the latter); when no image is left that is an error."""
    with open_upload(data) as archive:
        candidates, rejected = zip_candidates(archive)
        classifier = run_classifier(store, run_id, int8)
        kept, unknown = [], Counter()
        for candidate in candidates:
            if Path(candidate.name).suffix.lower() not in IMAGE_SUFFIXES:
                rejected.append((candidate.name, "not an image file"))
                continue
            if candidate.label not in classifier.labels:
                unknown[candidate.label] += 1
                rejected.append((candidate.name, f"'{candidate.label}' is not one of the model's classes"))
                continue
            kept.append(candidate)  # read while scored, a batch at a time
        if not kept and unknown:
            raise StoreError(f"Folder classes not known to the model: {', '.join(sorted(unknown))}. The model's "
                             f"classes: {', '.join(classifier.labels)}; name the zip's folders after them.")
        if not kept:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in rejected[:3])
            raise StoreError("No images found in the zip: it should hold class folders such as with_mask/ and "
                             "without_mask/ with photos inside" + (f" (rejected: {reasons})." if reasons else "."))
        report = evaluate_candidates(kept, rejected, detector, classifier, store.settings.max_pixels, progress)
    report["skipped_classes"] = dict(unknown)
    report["run_id"] = run_id
    report["model_file"] = classifier.path.name
    return report


def import_evaluated_zip(store: Store, data: bytes, report: dict, detector, errors_only: bool,
                         progress=None) -> ImportReport:
    """Import the photos of a zip scored by evaluate_zip (its report) into the dataset under their true label (their
    folder): only the misclassified ones, or all it scored; see predict.import_evaluated."""
    with open_upload(data) as archive:
        candidates, _ = zip_candidates(archive)
        return import_evaluated(store, candidates, report, detector, errors_only, progress)


@dataclass(frozen=True)
class MistakePhoto:
    """A photo of a zip of class folders that the model misclassified, with its picture."""

    name: str  # the photo's name in the zip
    truth: str  # its folder's class
    predicted: str
    probability: float  # the model's probability for `predicted`
    face_found: bool  # False: the whole photo was classified
    picture: np.ndarray | None  # the face with some surroundings (or the whole photo); None: `note` says why
    note: str = ""


def mistake_photos(data: bytes, report: dict, start: int, max_pixels: int,
                   limit: int | None = None) -> list[MistakePhoto]:
    """The misclassified photos `start` to `start + limit` (most confident mistakes first, as the report lists them)
    of a zip scored by evaluate_zip, each read again from the zip: the face it was classified on, or the whole photo
    where no face was found."""
    limit = GALLERY_SIZE if limit is None else limit
    chosen = report["misclassified"][start:start + limit]
    with open_upload(data) as archive:
        candidates = {candidate.name: candidate for candidate in zip_candidates(archive)[0]} if chosen else {}
        photos = []
        for mistake in chosen:
            box, picture, note = mistake.get("box"), None, ""
            try:
                image = decode_image(candidates[mistake["name"]].read(), max_pixels)
                picture = crop_face(image, box, GALLERY_CROP) if box else _fitted(image, GALLERY_CROP.size)
            except (BadImage, OSError, StoreError, KeyError):  # the upload changed since: say so beside the photo
                note = "it cannot be read from the upload again"
            photos.append(MistakePhoto(mistake["name"], mistake["true"], mistake["predicted"], mistake["score"],
                                       box is not None, picture, note))
    return photos


def _fitted(image: np.ndarray, size: int) -> np.ndarray:
    """A whole photo fitted into size x size."""
    picture = Image.fromarray(image)
    picture.thumbnail((size, size))
    return np.asarray(picture)


# ---- a zip of photos with face boxes -------------------------------------------------------------

def boxed_upload(data: bytes) -> tuple[str, list[str]] | None:
    """The format and classes of an uploaded zip with face boxes; None for a zip of class folders, or one that cannot
    be read (scoring it says why)."""
    try:
        return annotated_zip_classes(data)
    except StoreError:
        return None


def evaluate_boxed_zip(store: Store, run_id: str, data: bytes, counts_as: dict[str, str] | None = None,
                       progress=None) -> dict:
    """Score a run's model on a zip of photos with face boxes (PASCAL VOC, YOLO or COCO) like `maskdet evaluate`: the
    box report of serving/box_evaluation.py, with the run and its model file."""
    classifier = run_classifier(store, run_id)
    with open_upload(data) as archive:
        annotated = annotated_in_zip(archive)
        if annotated is None:
            raise StoreError("The zip holds no face boxes (PASCAL VOC, YOLO or COCO): a zip of class folders is "
                             "scored photo by photo instead.")
        report = evaluate_boxes(annotated, classifier, store.settings.max_pixels, counts_as, progress)
    return {**report, "run_id": run_id, "model_file": classifier.path.name}


@dataclass(frozen=True)
class ScoredFace:
    """An annotated face of a boxed evaluation that was missed or misclassified, with its picture."""

    photo: str  # the photo's name in the set
    number: int  # its place among the photo's annotated faces, from 1
    faces_in_photo: int
    truth: str  # the set's class
    counted_as: str  # the model class it counted as
    box: tuple[float, float, float, float]
    predicted: str | None  # None: no face was found on it
    probability: float | None  # the model's probability for `predicted`
    crop: np.ndarray | None  # None when the photo cannot be read again (`note` says why)
    note: str = ""


GALLERY_CROP = CropRule(margin=1.5, size=192)  # a face with some of its surroundings, as a thumbnail
GALLERY_SIZE = 24  # faces shown per gallery: the largest missed ones, the most confident mistakes


def scored_faces(data: bytes, report: dict, iou: float, kind: str, max_pixels: int,
                 limit: int = GALLERY_SIZE) -> list[ScoredFace]:
    """The faces a boxed evaluation missed (`kind` "misses": largest first) or misclassified ("wrongs": most confident
    first) at `iou`, at most `limit`, each cut from its photo in the uploaded zip."""
    items = report[f"iou_{iou}"][kind]
    photos = report["photos"]

    def truth(item) -> dict:
        return photos[item["photo"]]["truth"][item["truth"]]

    if kind == "wrongs":
        items = sorted(items, key=lambda item: -item["probability"])
    else:
        items = sorted(items, key=lambda item: -np.prod(np.subtract(truth(item)["box"][2:], truth(item)["box"][:2])))
    items = items[:limit]
    images: dict[str, np.ndarray | str] = {}
    with open_upload(data) as archive:
        candidates = _set_photos(archive) if items else {}
        for name in {photos[item["photo"]]["name"] for item in items}:
            try:
                images[name] = decode_image(candidates[name].read(), max_pixels)
            except (BadImage, OSError, StoreError, KeyError):  # the upload changed since: say so beside the face
                images[name] = "its photo cannot be read from the upload again"
    faces = []
    for item in items:
        photo, face = photos[item["photo"]], truth(item)
        image = images[photo["name"]]
        crop = crop_face(image, face["box"], GALLERY_CROP) if isinstance(image, np.ndarray) else None
        faces.append(ScoredFace(photo["name"], item["truth"] + 1, len(photo["truth"]), face["label"],
                                report["counts_as"].get(face["label"], face["label"]), tuple(face["box"]),
                                item.get("label"), item.get("probability"), crop,
                                "" if crop is not None else image))
    return faces


def import_scored_face(store: Store, data: bytes, face: ScoredFace, detector, quote=str) -> AddedFace:
    """Add a face of a boxed evaluation to the dataset under the class it counted as: its photo imported with it as
    its face, or the face added beside the photo's others when the photo is in the dataset already."""
    with open_upload(data) as archive:
        candidate = _set_photos(archive).get(face.photo)
        if candidate is None:
            raise StoreError(f"{quote(face.photo)} is not in the uploaded zip any more: upload it again.")
        photo_data = candidate.read()
    return add_face(store, photo_data, face.photo, face.number, face.box, face.counted_as, detector, quote)


def _set_photos(archive: zipfile.ZipFile) -> dict[str, Candidate]:
    """The photos of a zip with face boxes, by name in the set."""
    annotated = annotated_in_zip(archive)
    return {photo.candidate.name: photo.candidate for photo in annotated.photos} if annotated else {}
