"""The one entry point to a data home: content-addressed photo files plus a SQL database (SQLite by default).

Store is a facade: each part it is made of owns one concern, in its own module."""

from maskdet.core.settings import Settings, load_settings
from maskdet.data.catalog import Catalog
from maskdet.data.database import migrate, open_database
from maskdet.data.face_boxes import FaceBoxes
from maskdet.data.files import PhotoFiles
from maskdet.data.importer import Importer
from maskdet.data.registry import RunRegistry
from maskdet.data.splits import Splits


class Store(Catalog, PhotoFiles, Importer, FaceBoxes, Splits, RunRegistry):
    """Labels, photos and their faces, near-duplicate groups, splits and training runs of one data home."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self.home = self.settings.home
        self.images_dir = self.home / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.engine = open_database(self.settings.database_url)
        migrate(self.engine, self.settings.database_url)
