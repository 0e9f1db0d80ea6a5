"""Dataset edits made from a run's Metrics page: its misclassified test faces, relabelled or deleted."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage
from maskdet.core.text import plural
from maskdet.data.store import Store
from maskdet.runs.views import RunRecord, read_config, read_predictions, run_dir
from maskdet.vision.faces import CropRule, crop_face


@dataclass
class Mistake:
    """A misclassified test face: what it was, what the model said, and its crop (None if the photo is gone)."""

    name: str
    true: str
    predicted: str
    score: float
    true_score: float
    image_id: int | None
    crop: np.ndarray | None
    note: str = ""
    label: str | None = None  # the photo's class in the dataset now (relabelled since?); None: no longer there


def misclassified_faces(store: Store, run: dict, limit: int = 24) -> list[Mistake]:
    """The run's misclassified test images (most confident mistakes first) with the face crop the model saw."""
    report = RunRecord.of(run).test
    if not report or not report.get("misclassified"):
        return []
    wrong = report["misclassified"][:limit]
    predictions = read_predictions(store, run)
    config = read_config(store, run)
    rule = CropRule(**{k: config["crop_rule"][k] for k in ("margin", "size")})
    by_name = {row["source_name"]: row for row in predictions}
    image_ids, drawings = {}, set()
    for item in wrong:
        row = predictions[item["index"]] if item["index"] < len(predictions) else None
        if row is None or (item.get("name") is not None and row["source_name"] != item["name"]):
            row = by_name.get(item.get("name"))  # predictions.csv rewrites quotes; fall back to the name
        drawn = bool(row and row.get("drawn"))
        if drawn:
            drawings.add(item["index"])
        image_ids[item["index"]] = int(row["image_id"]) if row and not drawn and (
            row.get("image_id") or "").isdigit() else None
    records = {r.id: r for r in store.faces(ids=[i for i in image_ids.values() if i is not None])}
    mistakes = []
    for item in wrong:
        image_id = image_ids[item["index"]]
        record = records.get(image_id)
        crop, note = None, ""
        if item["index"] in drawings:
            crop, note = drawn_crop(run_dir(store, run) / "drawn" / f"{item['index']}.png")
        elif record is None:
            note = "This photo is no longer in the dataset."
        else:
            try:
                crop = crop_face(store.load_image(record), record.face.box if record.face else None, rule)
            except (BadImage, OSError) as error:
                note = f"The photo cannot be read ({error})."
        mistakes.append(Mistake(item.get("name") or f"test image {item['index']}", item["true"], item["predicted"],
                                float(item["score"]), float(item["true_score"]), image_id, crop, note,
                                record.label if record else None))
    return mistakes


def drawn_crop(path: Path) -> tuple[np.ndarray | None, str]:
    """A drawn test face's crop, saved by its run, and the note that says it is a drawing."""
    note = "A face of the dataset with a mask put on by training (its name says how): not a photo to relabel."
    try:
        return np.asarray(Image.open(path).convert("RGB")), note
    except OSError:
        return None, note


def _gone(asked: int, done: int) -> str:
    gone = asked - done
    return f" {plural(gone, 'face')} had been deleted from the dataset meanwhile." if gone else ""


def relabel_faces(store: Store, image_ids: list[int], label: str) -> str:
    """Move dataset faces (misclassified test faces) to another class; says what happened. The run that showed
    them keeps its figures: only the next training sees the change."""
    try:
        moved = store.relabel(image_ids, label)
    except StoreError:
        raise StoreError(f"The class {label} is no longer in the dataset (deleted meanwhile?): nothing was "
                         "relabelled. Choose another class.") from None
    if not moved:
        return f"Nothing was relabelled: {_gone(len(image_ids), 0).strip()}"
    return (f"{plural(moved, 'face')} relabelled as {label}; the next training uses "
            f"{'it' if moved == 1 else 'them'} (this run's figures stay as they were).{_gone(len(image_ids), moved)}")


def delete_faces(store: Store, image_ids: list[int]) -> str:
    """Delete dataset faces (misclassified test faces; a photo goes with its last face); says what happened. The run
    keeps its figures."""
    deleted = store.delete_faces(image_ids)
    if not deleted:
        return f"Nothing was deleted: {_gone(len(image_ids), 0).strip()}"
    return (f"{plural(deleted, 'face')} deleted from the dataset; the next training goes without "
            f"{'it' if deleted == 1 else 'them'} (this run's figures stay as they were)."
            f"{_gone(len(image_ids), deleted)}")
