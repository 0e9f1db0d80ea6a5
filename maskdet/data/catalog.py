"""The catalog: labels and the photos stored under them, with the face box each one trains on."""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from maskdet.core.contract import UNCERTAIN
from maskdet.core.errors import StoreError
from maskdet.core.text import now
from maskdet.data.database import (FACE_COLUMNS, dialect_insert, images_table, labels_table, manual_face_of_image,
                                   manual_faces_table)
from maskdet.vision.faces import Face


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    file: str
    label: str
    source_name: str
    width: int
    height: int
    face: Face | None  # the box training uses
    dup_group: int
    split: str | None
    face_source: str  # "detected" (by MTCNN at import; face None: none found) or "manual" (set on the Dataset page)


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


_faceless = sa.and_(images_table.c.face_x1.is_(None), manual_faces_table.c.sha256.is_(None))


def _images_where(query: sa.Select, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                  ids: Iterable[int] | None = None) -> sa.Select:
    """A query over the images, their labels and the faces set by hand, kept to the images matching the filters."""
    query = query.select_from(images_table.join(labels_table).outerjoin(manual_faces_table, manual_face_of_image))
    if label is not None:
        query = query.where(labels_table.c.name == label)
    if split is not None:
        query = query.where(images_table.c.split == split)
    if no_face is not None:
        query = query.where(_faceless if no_face else sa.not_(_faceless))
    if ids is not None:
        query = query.where(images_table.c.id.in_(list(ids)))
    return query


def image_id_of(conn, sha: str) -> int | None:
    """The id of the photo with this SHA-256 (one lookup of the unique index), or None when the dataset has none."""
    return conn.execute(sa.select(images_table.c.id).where(images_table.c.sha256 == sha)).scalar()


def _record(row) -> ImageRecord:
    """A record from an image row joined with its label and its manual_faces row (as manual_* columns, NULL if none)."""
    source = "manual" if row["manual_face_x1"] is not None else "detected"
    columns = {name: row[f"manual_{name}" if source == "manual" else name] for name in FACE_COLUMNS}
    face = None
    if columns["face_x1"] is not None:
        points = json.loads(columns["landmarks"]) if columns["landmarks"] else None
        face = Face((columns["face_x1"], columns["face_y1"], columns["face_x2"], columns["face_y2"]),
                    columns["face_probability"], tuple((x, y) for x, y in points) if points else None)
    return ImageRecord(row["id"], row["sha256"], row["file"], row["label"], row["source_name"], row["width"],
                       row["height"], face, row["dup_group"], row["split"], source)


class Catalog:
    """Labels and photos: listing, counting, relabelling and deleting them."""

    def labels(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(labels_table.c.name).order_by(labels_table.c.id)).scalars())

    def label_counts(self) -> dict[str, int]:
        query = (sa.select(labels_table.c.name, sa.func.count(images_table.c.id))
                 .select_from(labels_table.outerjoin(images_table))
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
            raise StoreError(f"A label named '{new}' already exists; relabel its images instead.") from None

    def delete_label(self, name: str) -> int:
        """Delete a label and all its images; returns how many images went with it."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, name)
            ids = list(conn.execute(sa.select(images_table.c.id).where(images_table.c.label_id == label_id)).scalars())
            files = self._delete_rows(conn, ids)
            conn.execute(labels_table.delete().where(labels_table.c.id == label_id))
        self._remove_files(files)
        return len(ids)

    def images(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
               ids: Iterable[int] | None = None, offset: int = 0, limit: int | None = None) -> list[ImageRecord]:
        """Images with the face box training uses: the one set by hand where there is one, else the detected one;
        `limit` of them from the `offset`-th on, in the order they were stored."""
        manual = manual_faces_table
        query = (sa.select(images_table, labels_table.c.name.label("label"),
                           *(manual.c[name].label(f"manual_{name}") for name in FACE_COLUMNS))
                 .order_by(images_table.c.id).offset(offset).limit(limit))
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(_images_where(query, label, split, no_face, ids)).mappings()]

    def image_ids(self, label: str | None = None, split: str | None = None, no_face: bool | None = None) -> list[int]:
        """The ids of the images images() with these filters returns, in the same order."""
        query = _images_where(sa.select(images_table.c.id).order_by(images_table.c.id), label, split, no_face)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def count_images(self, label: str | None = None, split: str | None = None, no_face: bool | None = None,
                     ids: Iterable[int] | None = None) -> int:
        """How many images images() with these filters returns."""
        query = _images_where(sa.select(sa.func.count(images_table.c.id)), label, split, no_face, ids)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def no_face_counts(self) -> dict[str, int]:
        """Per label, the photos where no face was found and none was set by hand."""
        query = _images_where(sa.select(labels_table.c.name, sa.func.count(images_table.c.id)), no_face=True)
        with self.engine.connect() as conn:
            counts = dict(conn.execute(query.group_by(labels_table.c.name)).all())
        return {label: counts.get(label, 0) for label in self.labels()}

    def groups_spanning_classes(self) -> int:
        """Near-duplicate groups holding photos of more than one class."""
        spanning = (sa.select(images_table.c.dup_group).group_by(images_table.c.dup_group)
                    .having(sa.func.count(sa.distinct(images_table.c.label_id)) > 1).subquery())
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(spanning)).scalar_one()

    def image(self, image_id: int) -> ImageRecord:
        """One image, or a StoreError when there is none with that id (deleted meanwhile)."""
        found = self.images(ids=[image_id])
        if not found:
            raise StoreError(f"No photo with id {image_id}: it has been deleted.")
        return found[0]

    def image_with_sha256(self, sha256: str) -> ImageRecord | None:
        """The image whose file has this SHA-256, or None when the dataset holds no such file."""
        with self.engine.connect() as conn:
            image_id = image_id_of(conn, sha256)
        found = self.images(ids=[image_id]) if image_id is not None else []
        return found[0] if found else None

    def relabel(self, image_ids: Iterable[int], label: str) -> int:
        """Move images to an existing label; returns how many were moved (ids deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            label_id = self._label_id(conn, label)
            return conn.execute(images_table.update().where(images_table.c.id.in_(list(image_ids)))
                                .values(label_id=label_id)).rowcount

    def delete_images(self, image_ids: Iterable[int]) -> int:
        """Delete images; returns how many were deleted (ids deleted meanwhile are skipped)."""
        with self.engine.begin() as conn:
            files = self._delete_rows(conn, list(image_ids))
        self._remove_files(files)
        return len(files)

    def _delete_rows(self, conn, ids: list[int]) -> list[str]:
        files = list(conn.execute(sa.select(images_table.c.file).where(images_table.c.id.in_(ids))).scalars())
        conn.execute(images_table.delete().where(images_table.c.id.in_(ids)))
        return files
