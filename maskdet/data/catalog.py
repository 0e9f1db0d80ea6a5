"""The catalog: labels, and the labelled faces of the stored photos with the box each one trains on."""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from maskdet.core.contract import UNCERTAIN
from maskdet.core.errors import StoreError
from maskdet.core.text import now
from maskdet.data.database import (FACE_COLUMNS, dialect_insert, faces_table, labels_table, manual_box_of_face,
                                   manual_boxes_table, photos_table)
from maskdet.vision.faces import Face


@dataclass(frozen=True)
class FaceRecord:
    """A labelled face and the photo it is in."""

    id: int
    photo_id: int
    sha256: str
    file: str
    label: str
    source_name: str
    width: int
    height: int
    face: Face | None  # the box training uses; None: the whole photo
    dup_group: int
    split: str | None
    face_source: str  # one of FACE_SOURCES, or "manual" (set on the Dataset page)


def validate_label(name: str) -> str:
    """Return the cleaned label or raise StoreError saying what is wrong with it."""
    cleaned = (name or "").strip()
    if not cleaned:
        raise StoreError("Label names cannot be empty.")
    if len(cleaned) > 64:
        raise StoreError(f"Label '{cleaned[:20]}...' is longer than 64 characters.")
    if cleaned in (".", "..") or re.search(r'[/\\:*?"<>|\x00-\x1f]', cleaned):
        raise StoreError(f"Label '{cleaned}' contains path characters; use letters, digits, spaces, - or _.")
    if cleaned.lower() == UNCERTAIN:
        raise StoreError(f"'{UNCERTAIN}' is reserved for faces below the confidence threshold; pick another label.")
    return cleaned


_faceless = sa.and_(faces_table.c.face_x1.is_(None), manual_boxes_table.c.face_id.is_(None))


def _faces_where(query: sa.Select, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                 ids: Iterable[int] | None = None) -> sa.Select:
    """A query over the faces, their photos, labels and boxes set by hand, kept to the faces matching the filters."""
    query = query.select_from(faces_table.join(photos_table).join(labels_table)
                              .outerjoin(manual_boxes_table, manual_box_of_face))
    if label is not None:
        query = query.where(labels_table.c.name == label)
    if split is not None:
        query = query.where(photos_table.c.split == split)
    if no_face is not None:
        query = query.where(_faceless if no_face else sa.not_(_faceless))
    if ids is not None:
        query = query.where(faces_table.c.id.in_(list(ids)))
    return query


def photo_id_of(conn, sha: str) -> int | None:
    """The id of the photo with this SHA-256 (one lookup of the unique index), or None when the dataset has none."""
    return conn.execute(sa.select(photos_table.c.id).where(photos_table.c.sha256 == sha)).scalar()


def _record(row) -> FaceRecord:
    """A record from a face row joined with its photo, label and manual_boxes row (as manual_* columns, NULL if
    none)."""
    hand_set = row["manual_face_x1"] is not None
    columns = {name: row[f"manual_{name}" if hand_set else name] for name in FACE_COLUMNS}
    face = None
    if columns["face_x1"] is not None:
        points = json.loads(columns["landmarks"]) if columns["landmarks"] else None
        face = Face((columns["face_x1"], columns["face_y1"], columns["face_x2"], columns["face_y2"]),
                    columns["face_probability"], tuple((x, y) for x, y in points) if points else None)
    return FaceRecord(row["id"], row["photo_id"], row["sha256"], row["file"], row["label"], row["source_name"],
                      row["width"], row["height"], face, row["dup_group"], row["split"],
                      "manual" if hand_set else row["source"])


class Catalog:
    """Labels and faces: listing, counting, relabelling and deleting them."""

    def labels(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(labels_table.c.name).order_by(labels_table.c.id)).scalars())

    def label_counts(self) -> dict[str, int]:
        """Faces per label."""
        query = (sa.select(labels_table.c.name, sa.func.count(faces_table.c.id))
                 .select_from(labels_table.outerjoin(faces_table))
                 .group_by(labels_table.c.id).order_by(labels_table.c.id))
        with self.engine.connect() as conn:
            return {name: count for name, count in conn.execute(query)}

    def add_label(self, name: str) -> str:
        name = validate_label(name)
        with self.engine.begin() as conn:
            self._ensure_label(conn, name)
        return name

    def _ensure_label(self, conn, name: str) -> int:
        """The label's id, adding the label unless it exists (also when another process adds it at the same time)."""
        conn.execute(dialect_insert(conn, labels_table).values(name=name, created_at=now())
                     .on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(sa.select(labels_table.c.id).where(labels_table.c.name == name)).scalar_one()

    def _label_id(self, conn, name: str) -> int:
        label_id = conn.execute(sa.select(labels_table.c.id).where(labels_table.c.name == name)).scalar()
        if label_id is None:
            raise StoreError(f"No label named '{name}'. Labels: {', '.join(self.labels()) or 'none'}.")
        return label_id

    def rename_label(self, old: str, new: str) -> None:
        new = validate_label(new)
        try:
            with self.engine.begin() as conn:
                label_id = self._label_id(conn, old)
                conn.execute(labels_table.update().where(labels_table.c.id == label_id).values(name=new))
        except sa.exc.IntegrityError:
            raise StoreError(f"A label named '{new}' already exists; relabel its faces instead.") from None

    def delete_label(self, name: str) -> int:
        """Delete a label and all its faces (and the photos left with none); returns how many faces went with it."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, name)
            ids = list(conn.execute(sa.select(faces_table.c.id).where(faces_table.c.label_id == label_id)).scalars())
            deleted, files = self._delete_rows(conn, ids)
            conn.execute(labels_table.delete().where(labels_table.c.id == label_id))
        self._remove_files(files)
        return deleted

    def faces(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
              ids: Iterable[int] | None = None, offset: int = 0, limit: int | None = None) -> list[FaceRecord]:
        """Faces with the box training uses: the one set by hand where there is one, else their own; `limit` of them
        from the `offset`-th on, in the order they were stored."""
        manual = manual_boxes_table
        query = (sa.select(faces_table, photos_table.c.sha256, photos_table.c.file, photos_table.c.source_name,
                           photos_table.c.width, photos_table.c.height, photos_table.c.dup_group, photos_table.c.split,
                           labels_table.c.name.label("label"),
                           *(manual.c[name].label(f"manual_{name}") for name in FACE_COLUMNS))
                 .order_by(faces_table.c.id).offset(offset).limit(limit))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(_faces_where(query, label, split, no_face, ids)).mappings()]

    def face_ids(self, label: str | None = None, split: str | None = None, no_face: bool | None = None) -> list[int]:
        """The ids of the faces faces() with these filters returns, in the same order."""
        query = _faces_where(sa.select(faces_table.c.id).order_by(faces_table.c.id), label, split, no_face)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def count_faces(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                    ids: Iterable[int] | None = None) -> int:
        """How many faces faces() with these filters returns."""
        query = _faces_where(sa.select(sa.func.count(faces_table.c.id)), label, split, no_face, ids)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def photo_faces(self, photo_ids: Iterable[int]) -> dict[int, list[int]]:
        """The ids of the faces of each of these photos, in the order they were stored."""
        query = (sa.select(faces_table.c.photo_id, faces_table.c.id)
                 .where(faces_table.c.photo_id.in_(list(photo_ids))).order_by(faces_table.c.id))
        found: dict[int, list[int]] = {}
        with self.engine.connect() as conn:
            for photo_id, face_id in conn.execute(query):
                found.setdefault(photo_id, []).append(face_id)
        return found

    def count_photos(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(photos_table)).scalar_one()

    def no_face_counts(self) -> dict[str, int]:
        """Per label, the faces that are a whole photo: no face was found in it and none was set by hand."""
        query = _faces_where(sa.select(labels_table.c.name, sa.func.count(faces_table.c.id)), no_face=True)
        with self.engine.connect() as conn:
            counts = dict(conn.execute(query.group_by(labels_table.c.name)).all())
        return {label: counts.get(label, 0) for label in self.labels()}

    def groups_spanning_classes(self) -> int:
        """Near-duplicate groups holding faces of more than one class."""
        spanning = (sa.select(photos_table.c.dup_group).select_from(photos_table.join(faces_table))
                    .group_by(photos_table.c.dup_group)
                    .having(sa.func.count(sa.distinct(faces_table.c.label_id)) > 1).subquery())
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(spanning)).scalar_one()

    def face(self, face_id: int) -> FaceRecord:
        """One face, or a StoreError when there is none with that id (deleted meanwhile)."""
        found = self.faces(ids=[face_id])
        if not found:
            raise StoreError(f"No face with id {face_id}: it has been deleted.")
        return found[0]

    def faces_of_photo(self, sha256: str) -> list[FaceRecord]:
        """The faces of the photo whose file has this SHA-256 (none when the dataset holds no such file)."""
        query = (sa.select(faces_table.c.id).select_from(faces_table.join(photos_table))
                 .where(photos_table.c.sha256 == sha256))
        with self.engine.connect() as conn:
            ids = list(conn.execute(query).scalars())
        return self.faces(ids=ids) if ids else []

    def relabel(self, face_ids: Iterable[int], label: str) -> int:
        """Move faces to an existing label; returns how many were moved (ids deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, label)
            return conn.execute(faces_table.update().where(faces_table.c.id.in_(list(face_ids)))
                                .values(label_id=label_id)).rowcount

    def delete_faces(self, face_ids: Iterable[int]) -> int:
        """Delete faces, and the photos (rows and files) left with none; returns how many faces were deleted (ids
        deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            deleted, files = self._delete_rows(conn, list(face_ids))
        self._remove_files(files)
        return deleted

    def _delete_rows(self, conn, face_ids: list[int]) -> tuple[int, list[str]]:
        """Delete the faces' rows and those of the photos they leave with no face; how many faces were deleted, and
        the files of those photos."""
        photo_ids = list(conn.execute(sa.select(faces_table.c.photo_id).distinct()
                                      .where(faces_table.c.id.in_(face_ids))).scalars())
        conn.execute(manual_boxes_table.delete().where(manual_boxes_table.c.face_id.in_(face_ids)))
        deleted = conn.execute(faces_table.delete().where(faces_table.c.id.in_(face_ids))).rowcount
        empty = (sa.select(photos_table.c.id, photos_table.c.file).where(photos_table.c.id.in_(photo_ids))
                 .where(~sa.exists().where(faces_table.c.photo_id == photos_table.c.id)))
        emptied = conn.execute(empty).all()
        conn.execute(photos_table.delete().where(photos_table.c.id.in_([row.id for row in emptied])))
        return deleted, [row.file for row in emptied]
