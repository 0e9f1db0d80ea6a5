"""What the dashboard tells a user about the dataset: counts, warnings before training, thumbnails."""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from maskdet.data.catalog import FaceRecord
from maskdet.data.store import Store

MIN_IMAGES_PER_CLASS = 20
IMBALANCE_RATIO = 3.0
NO_FACE_SHARE = 0.2


@dataclass(frozen=True)
class DatasetSummary:
    counts: dict[str, int]
    no_face: dict[str, int]
    groups_spanning_classes: int
    warnings: list[str]


def summarize(store: Store) -> DatasetSummary:
    """Per-class counts, photos without a face, and the warnings a user needs before training."""
    counts, no_face, spanning = store.label_counts(), store.no_face_counts(), store.groups_spanning_classes()
    return DatasetSummary(counts, no_face, spanning, dataset_warnings(counts, no_face, spanning))


def preview_photo(store: Store, index: int) -> FaceRecord | None:
    """The index-th photo (counting round) of the training split's faces, else of all faces, else of all photos;
    None in an empty dataset. Two small queries, however large the dataset."""
    for filters in ({"no_face": False, "split": "train"}, {"no_face": False}, {}):
        count = store.count_faces(**filters)
        if count:
            found = store.faces(**filters, offset=index % count, limit=1)
            return found[0] if found else None
    return None


def dataset_warnings(counts: dict[str, int], no_face: dict[str, int], spanning: int) -> list[str]:
    warnings = []
    populated = {label: n for label, n in counts.items() if n > 0}
    if len(populated) < 2:
        warnings.append("Training needs images in at least two classes.")
    few = [f"{label} ({n})" for label, n in counts.items() if n < MIN_IMAGES_PER_CLASS]
    if few:
        warnings.append(f"Few images in {', '.join(few)}: aim for at least {MIN_IMAGES_PER_CLASS} per class, "
                        "ideally a few hundred.")
    if len(populated) >= 2 and max(populated.values()) > IMBALANCE_RATIO * min(populated.values()):
        warnings.append(f"Classes are imbalanced ({max(populated.values())} vs {min(populated.values())} images): "
                        "training weights classes to compensate, but more images of the small class help most.")
    total_no_face = sum(no_face.values())
    if total_no_face > NO_FACE_SHARE * max(1, sum(counts.values())):
        warnings.append(f"No face was found in {total_no_face} photos; they are used whole, which the live page "
                        "never sees. Check them with the 'no face found' filter.")
    if spanning:
        groups = "1 near-duplicate group contains" if spanning == 1 else f"{spanning} near-duplicate groups contain"
        warnings.append(f"{groups} photos of different classes (for example the "
                        "same face with and without a mask): expected for pasted-mask datasets, each group stays "
                        "on one side of the split; otherwise check for mislabelled copies.")
    return warnings


def thumbnail(store: Store, record: FaceRecord, size: int = 160) -> np.ndarray:
    """The photo with its face box drawn, fitted into size x size."""
    image = Image.fromarray(store.load_image(record))
    if record.face:
        width = max(2, round(max(image.size) / 100))
        ImageDraw.Draw(image).rectangle(record.face.box, outline=(46, 160, 67), width=width)
    image.thumbnail((size, size))
    return np.asarray(image)
