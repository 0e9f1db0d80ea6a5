"""The dataset's photos and labelled face boxes written out as a PASCAL VOC or YOLO set, so that labelling work done
in maskdet can be taken to any other tool."""

import zipfile
from itertools import groupby
from pathlib import Path

from maskdet.core.atomic import written_in_place
from maskdet.core.errors import StoreError
from maskdet.data.annotations import ExportPhoto, LabelledBox, export_voc, export_yolo
from maskdet.data.store import Store

EXPORT_FORMATS = ("voc", "yolo")


def export_photos(store: Store):
    """Each stored photo with its faces' boxes in use (a face that is the whole photo: the whole photo's box)."""
    records = sorted(store.faces(), key=lambda record: (record.photo_id, record.id))
    for _, faces in groupby(records, key=lambda record: record.photo_id):
        faces = list(faces)
        photo = faces[0]
        boxes = [LabelledBox(face.label, face.face.box if face.face else (0.0, 0.0, photo.width, photo.height))
                 for face in faces]
        name = f"{Path(photo.source_name).stem[:80]}-{photo.sha256[:8]}{Path(photo.source_name).suffix.lower()}"
        yield ExportPhoto(f"images/{name}", store.image_path(photo).read_bytes(), photo.width, photo.height, boxes)


def export_dataset(store: Store, format: str, target: Path, progress=None) -> dict:
    """Write the dataset as a `format` zip at `target` (under a temporary name, renamed into place)."""
    if format not in EXPORT_FORMATS:
        raise StoreError(f"Datasets export as {' or '.join(EXPORT_FORMATS)}, not {format}.")
    total = store.count_photos()
    if not total:
        raise StoreError("The dataset holds no photos yet: import some first.")
    counted = {"photos": 0, "faces": 0}

    def photos():
        for photo in export_photos(store):
            counted["photos"] += 1
            counted["faces"] += len(photo.boxes)
            if progress:
                progress(counted["photos"], total)
            yield photo

    with written_in_place(target) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        if format == "voc":
            export_voc(photos(), archive)
        else:
            export_yolo(photos(), store.labels(), archive)
    return {"file": str(target), "format": format, **counted, "bytes": target.stat().st_size}
