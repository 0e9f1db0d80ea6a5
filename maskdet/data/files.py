"""Content-addressed photo files under the data home: written before their rows commit, removed when a rollback or a
delete leaves them unreferenced."""

import os
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from maskdet.core.imageio import decode_image
from maskdet.data.catalog import FaceRecord
from maskdet.data.database import photos_table, write_lock

ORPHAN_AGE_SECONDS = 600  # an unreferenced image file this old was left by a killed import (no batch lasts this long)


class PhotoFiles:
    """The photo files of a data home, named by their content's SHA-256."""

    def image_path(self, record: FaceRecord) -> Path:
        return self.images_dir / record.file

    def load_image(self, record: FaceRecord) -> np.ndarray:
        return decode_image(self.image_path(record).read_bytes(), self.settings.max_pixels)

    def _remove_files(self, files: list[str]) -> None:
        for name in files:
            (self.images_dir / name).unlink(missing_ok=True)

    def write_file(self, sha: str, data: bytes, written: list[Path]) -> str:
        """Write bytes content-addressed (temporary name, then rename), noting a new file in `written`; return the
        relative file name."""
        name = f"{sha[:2]}/{sha}"
        path = self.images_dir / name
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            temporary = path.with_name(f".{sha}.{uuid.uuid4().hex}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            written.append(path)
        return name

    @contextmanager
    def rolled_back_files_removed(self, written: list[Path]):
        """When the block fails, remove the files it wrote that no row refers to."""
        try:
            yield
        except BaseException:
            self._remove_unreferenced(written)
            raise

    def _remove_unreferenced(self, paths: Iterable[Path]) -> None:
        """Delete those image files that no row refers to. Holds the import lock, so that no batch of an import
        running at the same time is between writing a file and committing its row."""
        paths = {f"{path.parent.name}/{path.name}": path for path in paths}
        if not paths:
            return
        with self.engine.begin() as conn:
            write_lock(conn)
            names = list(paths)
            referenced = {file for chunk in range(0, len(names), 500) for file in conn.execute(
                sa.select(photos_table.c.file).where(photos_table.c.file.in_(names[chunk:chunk + 500]))).scalars()}
            for name, path in paths.items():
                if name not in referenced:
                    path.unlink(missing_ok=True)
