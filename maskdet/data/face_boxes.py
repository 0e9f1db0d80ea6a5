"""Face boxes of stored faces: found again, set by hand, reset; landmarks filled in for faces stored without them."""

import json
from collections.abc import Callable, Iterable

import numpy as np
import sqlalchemy as sa

from maskdet.core.errors import StoreError
from maskdet.core.text import now
from maskdet.data.catalog import FaceRecord
from maskdet.data.database import dialect_insert, faces_table, manual_box_of_face, manual_boxes_table, photos_table
from maskdet.vision.faces import Face, FaceDetector, box_iou

MIN_BOX_SIDE = 8  # pixels: the narrowest and lowest face box that can be set by hand


def landmarks_json(face: Face) -> str:
    return json.dumps([[round(x, 2), round(y, 2)] for x, y in face.landmarks or ()])


def checked_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    """A face box as four numbers, or a StoreError saying what is wrong with it: it must lie inside the width x height
    photo, its right edge right of its left and its bottom below its top, MIN_BOX_SIDE pixels or more each way."""
    try:
        x1, y1, x2, y2 = (float(value) for value in box)
        finite = bool(np.isfinite([x1, y1, x2, y2]).all())
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise StoreError("A face box is four numbers: left, top, right and bottom, in pixels of the photo. Nothing "
                         "was changed.")
    shown = f"left {x1:g}, top {y1:g}, right {x2:g}, bottom {y2:g}"
    if x2 <= x1 or y2 <= y1:
        raise StoreError(f"The face box's right edge must be right of its left edge and its bottom below its top "
                         f"({shown}). Nothing was changed.")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise StoreError(f"The face box ({shown}) goes outside the photo, which is {width} x {height} pixels: keep "
                         f"left and right within 0 to {width}, top and bottom within 0 to {height}. Nothing was "
                         "changed.")
    if min(x2 - x1, y2 - y1) < MIN_BOX_SIDE:
        raise StoreError(f"The face box is {x2 - x1:g} x {y2 - y1:g} pixels: make it at least {MIN_BOX_SIDE} pixels "
                         "wide and high. Nothing was changed.")
    return x1, y1, x2, y2


class FaceBoxes:
    """Face boxes and landmarks of stored faces."""

    def detect_faces(self, record: FaceRecord, detector: FaceDetector) -> list[Face]:
        """Every face MTCNN finds in a stored face's photo, largest first, to pick from when the import took the wrong
        one (the search bounded by the file's size, as at import)."""
        return detector.detect([self.load_image(record)], [self.image_path(record).stat().st_size])[0]

    def set_face(self, face_id: int, face: Face) -> FaceRecord:
        """Make `face` (one of detect_faces', or a box drawn by hand) the face's box: training crops it from now on. A
        box that checked_box refuses is a StoreError and nothing changes."""
        record = self.face(face_id)
        x1, y1, x2, y2 = checked_box(face.box, record.width, record.height)
        values = dict(face_x1=x1, face_y1=y1, face_x2=x2, face_y2=y2, face_probability=float(face.probability),
                      landmarks=landmarks_json(face) if face.landmarks else None, created_at=now())
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, manual_boxes_table).values(face_id=record.id, **values)
                         .on_conflict_do_update(index_elements=["face_id"], set_=values))
        return self.face(face_id)

    def add_face(self, photo_id: int, label: str, face: Face) -> FaceRecord:
        """Add a face set by hand (checked_box) under an existing class to a stored photo beside its others."""
        with self.engine.begin() as conn:
            photo = conn.execute(sa.select(photos_table).where(photos_table.c.id == photo_id)).first()
            if photo is None:
                raise StoreError(f"No photo with id {photo_id}: it has been deleted.")
            x1, y1, x2, y2 = checked_box(face.box, photo.width, photo.height)
            face_id = conn.execute(faces_table.insert().values(
                photo_id=photo_id, label_id=self._label_id(conn, label), face_x1=x1, face_y1=y1, face_x2=x2,
                face_y2=y2, face_probability=float(face.probability),
                landmarks=landmarks_json(face) if face.landmarks else None, source="manual", created_at=now())
                                   ).inserted_primary_key[0]
        return self.face(face_id)

    def set_face_box(self, face_id: int, box) -> FaceRecord:
        """A face box drawn by hand (x1, y1, x2, y2 in pixels): no landmarks, so a drawn mask skips the face."""
        return self.set_face(face_id, Face(tuple(box), 1.0))

    def reset_face(self, face_id: int) -> FaceRecord:
        """Drop the box set by hand: the face's own (found at import, or annotated; none: the whole photo) is used
        again."""
        record = self.face(face_id)
        with self.engine.begin() as conn:
            conn.execute(manual_boxes_table.delete().where(manual_boxes_table.c.face_id == record.id))
        return self.face(face_id)

    def without_landmarks(self, ids: Iterable[int] | None = None) -> list[FaceRecord]:
        """Faces with a box of their own (none set by hand) whose landmarks were never looked for (imported before
        maskdet stored them)."""
        query = (sa.select(faces_table.c.id)
                 .select_from(faces_table.outerjoin(manual_boxes_table, manual_box_of_face))
                 .where(faces_table.c.face_x1.is_not(None), faces_table.c.landmarks.is_(None),
                        manual_boxes_table.c.face_id.is_(None)))
        with self.engine.connect() as conn:
            missing = set(conn.execute(query).scalars())
        return self.faces(ids=sorted(missing if ids is None else missing & set(ids)))

    def fill_landmarks(self, detector: FaceDetector, ids: Iterable[int] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict:
        """Find the landmarks of stored faces that have none yet: the detected face that best overlaps the stored
        box gives them ("[]" when none overlaps it by half). Returns counts of faces filled and not found."""
        records = self.without_landmarks(ids)
        found = 0
        for start in range(0, len(records), 32):
            batch = records[start:start + 32]
            values = []
            for record, faces in zip(batch, detector.detect([self.load_image(r) for r in batch])):
                overlap, best = max(((box_iou(face.box, record.face.box), face) for face in faces),
                                    key=lambda pair: pair[0], default=(0.0, None))
                face = best if overlap >= 0.5 else None
                found += face is not None
                values.append({"face_id": record.id, "value": landmarks_json(face) if face else "[]"})
            with self.engine.begin() as conn:
                conn.execute(faces_table.update().where(faces_table.c.id == sa.bindparam("face_id"))
                             .values(landmarks=sa.bindparam("value")), values)
            if progress:
                progress(start + len(batch), len(records))
        return {"filled": found, "not_found": len(records) - found}
