"""Importing photos: decoding them a batch at a time within a memory bound, finding their faces, hashing them, grouping
near-duplicates, and storing files and rows together."""

import hashlib
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.imageio import BadImage, NotAnImage, decode_image
from maskdet.core.text import now
from maskdet.data.annotations import AnnotatedSet, annotated_in_folder, annotated_in_zip
from maskdet.data.catalog import photo_id_of, validate_label
from maskdet.data.database import dialect_insert, faces_table, photos_table, write_lock
from maskdet.data.face_boxes import landmarks_json
from maskdet.data.files import ORPHAN_AGE_SECONDS
from maskdet.data.sources import Candidate, fill_batch, folder_candidates, open_zip, zip_candidates, zip_source
from maskdet.vision.faces import Face, FaceDetector, box_iou
from maskdet.vision.near_duplicates import HashIndex, hash_bytes


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    no_face: list[str] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)  # (name, the earlier file of this import it repeats)
    faces: int = 0  # faces stored with the added photos
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, reason): boxes of added photos not stored

    def merge(self, other: "ImportReport") -> None:
        for name in ("added", "duplicates", "rejected", "no_face", "repeated", "left_out"):
            getattr(self, name).extend(getattr(other, name))
        self.faces += other.faces

    def already_stored(self) -> list[str]:
        """The duplicates that were in the dataset before this import (the others repeat a file of the import)."""
        repeats, stored = Counter(name for name, _ in self.repeated), []
        for name in self.duplicates:
            if repeats[name]:
                repeats[name] -= 1
            else:
                stored.append(name)
        return stored

    def summary(self) -> dict:
        return {"added": len(self.added), "faces": self.faces, "duplicates": len(self.duplicates),
                "rejected": len(self.rejected), "no_face": len(self.no_face), "left_out": len(self.left_out)}

    def to_dict(self) -> dict:
        return {**self.summary(), "rejected_files": [{"name": n, "reason": r} for n, r in self.rejected],
                "duplicate_files": self.duplicates,
                "repeated_files": [{"name": n, "repeats": first} for n, first in self.repeated],
                "no_face_files": self.no_face,
                "left_out_boxes": [{"name": n, "reason": r} for n, r in self.left_out]}


def damaged(name: str) -> str | None:
    """The reason for a file named as a photo whose content is no image (None for other names)."""
    suffix = Path(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return None
    return f"a damaged photo: named {suffix} but its content cannot be read as an image (cut short or corrupted?)"


@dataclass(frozen=True)
class NewFace:
    """A face to store with its photo: its label, its box (None: the whole photo) and where the box came from."""

    label: str
    face: Face | None
    source: str  # one of FACE_SOURCES


FacesOf = Callable[[Candidate, np.ndarray, list[Face], ImportReport], list[NewFace]]


def largest_face(candidate: Candidate, image: np.ndarray, found: list[Face], report: ImportReport) -> list[NewFace]:
    """A photo of a class folder: its largest face found, or the whole photo (reported), under the folder's class."""
    if not found:
        report.no_face.append(candidate.name)
    return [NewFace(candidate.label, found[0] if found else None, "detected")]


def perceptual_hash(image: np.ndarray) -> str:
    """256-bit difference hash of the top 45% of the image (unchanged when a mask covers the lower face)."""
    gray = Image.fromarray(image).convert("L")
    top = gray.crop((0, 0, gray.width, max(1, int(gray.height * 0.45))))
    pixels = np.asarray(top.resize((17, 16), Image.BILINEAR), dtype=np.int16)
    return np.packbits((pixels[:, 1:] > pixels[:, :-1]).ravel()).tobytes().hex()


def opened_zip(source) -> zipfile.ZipFile:
    """A zip from a path, bytes or a file object; one that cannot be read is a StoreError sentence."""
    source = zip_source(source)
    try:
        return open_zip(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise StoreError(f"Not a readable zip archive ({error}).") from None


@contextmanager
def annotated_source(path: Path, format: str | None = None):
    """The set with face boxes in a folder or zip at `path` (read while the block runs), or None when it is class
    folders (and no `format` is named)."""
    if path.is_dir():
        yield annotated_in_folder(path, format)
        return
    with opened_zip(path) as archive:
        yield annotated_in_zip(archive, format)


def annotated_zip_classes(source) -> tuple[str, list[str]] | None:
    """The format and the classes of a zip of photos with face boxes, or None when it is a zip of class folders."""
    with opened_zip(source) as archive:
        annotated = annotated_in_zip(archive)
        return (annotated.format, annotated.classes) if annotated is not None else None


LANDMARK_IOU = 0.3  # an annotated box takes the landmarks of the MTCNN face overlapping it most, at least this much


def annotated_faces(annotated: AnnotatedSet, targets: dict[str, str | None]) -> FacesOf:
    """The faces of an annotated set's photos: their usable boxes under the dataset classes `targets` maps the set's
    classes to (None: skipped), with the landmarks of the face MTCNN finds on each box. Boxes left out are reported
    by photo; a photo left with none is rejected."""
    photos = {photo.candidate.name: photo for photo in annotated.photos}

    def faces_of(candidate: Candidate, image: np.ndarray, found: list[Face], report: ImportReport) -> list[NewFace]:
        boxes, problems = photos[candidate.name].boxes(image.shape[1], image.shape[0])
        report.left_out.extend((candidate.name, problem) for problem in problems)
        new = []
        for box in boxes:
            if box.label not in targets:
                report.left_out.append((candidate.name, f"a box of class '{box.label}', which is not one of the "
                                                        "dataset's classes and has no mapping"))
            elif targets[box.label] is not None:
                overlap, best = max(((box_iou(face.box, box.box), face) for face in found), key=lambda pair: pair[0],
                                    default=(0.0, None))
                landmarks = best.landmarks if best and overlap >= LANDMARK_IOU else None
                new.append(NewFace(targets[box.label], Face(box.box, 1.0, landmarks), "annotation"))
        if not new:
            report.rejected.append((candidate.name, "no face box of it could be used" if boxes or problems else
                                    "its annotation has no face box"))
        return new

    return faces_of


class Importer:
    """Importing photos from folders, zips, uploads and the webcam."""

    def import_folder(self, folder: Path, detector: FaceDetector, progress=None, mapping: dict | None = None,
                      format: str | None = None) -> ImportReport:
        """Import a folder of class folders, or a set with face boxes (VOC, YOLO or COCO: `format`, else recognised
        by its files) whose classes `mapping` maps (import_annotated)."""
        annotated = annotated_in_folder(Path(folder), format)
        if annotated is not None:
            return self.import_annotated(annotated, mapping or {}, detector, progress)
        candidates, rejected = folder_candidates(folder)
        return self._import(candidates, rejected, detector, progress)

    def import_zip(self, source, detector: FaceDetector, progress=None, mapping: dict | None = None,
                   format: str | None = None) -> ImportReport:
        """Import a zip (path, bytes or file object) of class folders, or of a set with face boxes (import_folder)."""
        with opened_zip(source) as archive:
            annotated = annotated_in_zip(archive, format)
            if annotated is not None:
                return self.import_annotated(annotated, mapping or {}, detector, progress)
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

    def import_annotated(self, annotated: AnnotatedSet, mapping: dict[str, str | None], detector: FaceDetector,
                         progress=None) -> ImportReport:
        """Import a set with face boxes (data/annotations.py): each photo with its annotated faces. A set class maps
        onto the dataset class `mapping` names (made if new; None: its boxes are skipped), else onto the dataset
        class of the same name; boxes of other classes are left out and reported."""
        classes = self.labels()
        targets = {name: name for name in annotated.classes if name in classes}
        targets.update({name: validate_label(target) if target is not None else None
                        for name, target in mapping.items()})
        return self._import([photo.candidate for photo in annotated.photos], annotated.problems, detector, progress,
                            faces_of=annotated_faces(annotated, targets))

    def _import(self, candidates: list[Candidate], rejected: list[tuple[str, str]], detector: FaceDetector,
                progress: Callable[[int, int], None] | None, batch_size: int = 32, require_any: bool = True,
                faces_of: FacesOf = largest_face) -> ImportReport:
        """Import in transactions of batch_size photos (fewer when they reach MAX_BATCH_BYTES), each with the faces
        `faces_of` gives it from those MTCNN finds (a photo given none is not stored); with require_any, importing
        nothing at all is an error."""
        report = ImportReport(rejected=list(rejected))
        if not candidates and not rejected:
            raise StoreError("No images found: expected class folders (for example with_mask/, without_mask/).")
        cutoff = time.time() - ORPHAN_AGE_SECONDS  # files a killed import left behind
        self._remove_unreferenced(path for path in self.images_dir.glob("*/*") if path.stat().st_mtime < cutoff)
        offered: dict[str, str] = {}  # SHA-256 -> name of the files of this import read and decoded so far
        index = HashIndex()  # the stored photos' hashes and near-duplicate groups
        seen_id, added_shas, done = 0, set(), 0
        while done < len(candidates):
            batch, taken = self._decode_batch(candidates[done:done + batch_size], offered, report)
            found = detector.detect([image for _, image, _, _ in batch],
                                    [candidate.arrived_size(data) for candidate, _, data, _ in batch])
            written = []  # files this batch creates: removed again if it rolls back
            with self.rolled_back_files_removed(written), self.engine.begin() as conn:
                write_lock(conn)  # batches of imports running at the same time take turns
                # Photos stored since the last batch by an import running at the same time join the comparison.
                rows = conn.execute(sa.select(photos_table.c.id, photos_table.c.sha256, photos_table.c.phash,
                                              photos_table.c.dup_group).where(photos_table.c.id > seen_id)).all()
                seen_id = max([seen_id] + [row.id for row in rows])
                others = [row for row in rows if row.sha256 not in added_shas]
                index.add(hash_bytes(*(row.phash for row in others)), [row.dup_group for row in others])
                for (candidate, image, data, sha), faces in zip(batch, found):
                    new_faces = faces_of(candidate, image, faces, report)
                    if not new_faces:
                        continue
                    phash = perceptual_hash(image)
                    group = self._near_duplicate_group(conn, index, phash)
                    insert = (dialect_insert(conn, photos_table).values(
                        sha256=sha, file=self.write_file(sha, data, written), source_name=candidate.name[:512],
                        width=image.shape[1], height=image.shape[0], phash=phash, dup_group=group, created_at=now())
                              .on_conflict_do_nothing(index_elements=["sha256"]).returning(photos_table.c.id))
                    photo_id = conn.execute(insert).scalar()
                    if photo_id is None:
                        report.duplicates.append(candidate.name)  # added by an import running at the same time
                        continue
                    conn.execute(faces_table.insert(), [self._face_row(conn, photo_id, new) for new in new_faces])
                    index.add(hash_bytes(phash), [group])
                    added_shas.add(sha)
                    report.added.append(candidate.name)
                    report.faces += len(new_faces)
            done += taken
            if progress:
                progress(done, len(candidates))
        if require_any and not report.added and not report.duplicates:
            reasons = "; ".join(f"{n}: {r}" for n, r in report.rejected[:3])
            raise StoreError(f"No images could be imported ({len(report.rejected)} rejected: {reasons}).")
        return report

    def _face_row(self, conn, photo_id: int, new: NewFace) -> dict:
        box = new.face.box if new.face else (None,) * 4
        return dict(photo_id=photo_id, label_id=self._ensure_label(conn, new.label),
                    **dict(zip(("face_x1", "face_y1", "face_x2", "face_y2"), box)),
                    face_probability=new.face.probability if new.face else None,
                    landmarks=landmarks_json(new.face) if new.face else None, source=new.source, created_at=now())

    def _decode_batch(self, candidates, offered: dict[str, str], report: ImportReport) -> tuple[list, int]:
        """Read, validate and decode candidates until the batch holds MAX_BATCH_BYTES of files and pixels; duplicates
        (of a stored photo, or repeating a file `offered` before in this import) and bad files go to the report.
        Returns the batch, (candidate, image, file bytes, SHA-256) each, and how many candidates were taken."""
        with self.engine.connect() as conn:
            return fill_batch(candidates, lambda candidate: self._decode(candidate, conn, offered, report))

    def _decode(self, candidate: Candidate, conn, offered: dict[str, str], report: ImportReport):
        """One candidate read, checked and decoded for a batch: ((candidate, image, file bytes, SHA-256), bytes held),
        or None when it is a duplicate or cannot be read (the report says which)."""
        try:
            label = validate_label(candidate.label) if candidate.label else ""  # an annotated photo's are its boxes'
            data = candidate.read()
            sha = hashlib.sha256(data).hexdigest()
            if sha in offered or photo_id_of(conn, sha) is not None:
                report.duplicates.append(candidate.name)
                if sha in offered:
                    report.repeated.append((candidate.name, offered[sha]))
                return None
            image = decode_image(data, self.settings.max_pixels, candidate.arrived_size(data))
        except NotAnImage as error:
            report.rejected.append((candidate.name, damaged(candidate.name) or str(error)))
            return None
        except (StoreError, BadImage, OSError) as error:
            report.rejected.append((candidate.name, str(error)))
            return None
        except Exception as error:  # one file's failure, whatever it is, is that file's rejection
            report.rejected.append((candidate.name, f"cannot be read ({type(error).__name__}: {error})"))
            return None
        offered[sha] = candidate.name
        return (replace(candidate, label=label), image, data, sha), len(data) + image.nbytes

    def _near_duplicate_group(self, conn, index: HashIndex, phash: str) -> int:
        """The group of the near-duplicates of phash (merging their groups), or a new group."""
        matches = sorted(set(index.groups[index.near(phash)].tolist()))
        if not matches:  # a new group: the index holds every stored photo (the batch's write lock keeps it so)
            return int(index.groups.max(initial=0)) + 1
        if len(matches) > 1:
            conn.execute(photos_table.update().where(photos_table.c.dup_group.in_(matches[1:]))
                         .values(dup_group=matches[0]))
            index.relabel(matches[1:], matches[0])
        return matches[0]
