"""Scoring a run's model on an uploaded zip of class folders, and importing the photos it scored."""

import io
import zipfile
from collections import Counter
from pathlib import Path

from maskdet.bundle.pixels import IMAGE_SUFFIXES
from maskdet.core.errors import StoreError
from maskdet.data.importer import ImportReport
from maskdet.data.sources import open_zip, path_parts, zip_candidates
from maskdet.data.store import Store
from maskdet.runs.active import model_path
from maskdet.serving.classifier import load_classifier
from maskdet.serving.predict import evaluate_candidates, import_evaluated


def open_upload(data: bytes) -> zipfile.ZipFile:
    """An uploaded zip, read in place (no copy of its bytes); one that is not a zip is a StoreError sentence."""
    try:
        return open_zip(io.BytesIO(data))
    except StoreError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StoreError("The upload is not a readable zip archive. Zip a folder of class folders "
                         "(for example with_mask/ and without_mask/) and upload that.") from None


def evaluate_zip(store: Store, run_id: str, data: bytes, detector, progress=None, int8: bool = False) -> dict:
    """Score a run's model on a zip of class folders (with_mask/..., without_mask/...).

    The zip is read with the store's import rules (hostile entries rejected) and scored like
    `maskdet evaluate`: largest face per photo, the model's crop rule. Files that are not images, and images
    in folders that are not the model's classes, are skipped and listed in rejected_files (skipped_classes
    counts the latter); when no image is left that is an error."""
    run = store.run(run_id)
    if run["status"] != "succeeded":
        raise StoreError(f"Run {run_id} {run['status']}: choose a succeeded run to evaluate.")
    with open_upload(data) as archive:
        candidates, rejected = zip_candidates(archive)
        classifier = load_classifier(model_path(store, run, int8))
        kept, unknown = [], Counter()
        for candidate in candidates:
            parts = path_parts(candidate.name)
            if any(part.startswith(".") for part in parts):
                continue  # hidden files and folders (._name, .git/), as a folder import skips them
            if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
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
