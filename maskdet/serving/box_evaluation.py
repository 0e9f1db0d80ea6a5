"""Scoring a model on photos with every face boxed and labelled (PASCAL VOC, YOLO or COCO): find every face, classify
it, and match found faces to annotated ones (core/box_scores.py) at IoU 0.4 and 0.5."""

from maskdet.core.box_scores import FoundFace, TruthFace, score_boxes
from maskdet.core.classes import WITHOUT_MASK, WORN_WRONG, class_meaning, class_of_meaning
from maskdet.core.errors import StoreError
from maskdet.data.annotations import AnnotatedSet
from maskdet.data.sources import fill_batch
from maskdet.serving.classifier import OnnxClassifier
from maskdet.serving.predict import classify_faces, read_for_scoring
from maskdet.vision.faces import FaceDetector

IOUS = (0.4, 0.5)  # annotated boxes are drawn around the head, often taller than MTCNN's: 0.4 as well as VOC's 0.5


def default_counts_as(set_classes: list[str], model_classes: list[str]) -> dict[str, str]:
    """A set's classes the model lacks, counted as one of its classes where the meaning is plain: a mask worn wrongly
    (mask_incorrect, mask_weared_incorrect, ...) counts as the model's worn-wrong class; a model without one has it
    count as without_mask (it is not compliant)."""
    target = class_of_meaning(model_classes, WORN_WRONG) or class_of_meaning(model_classes, WITHOUT_MASK)
    if target is None:
        return {}
    return {name: target for name in set_classes if name not in model_classes and class_meaning(name) == WORN_WRONG}


def evaluate_boxes(annotated: AnnotatedSet, classifier: OnnxClassifier, max_pixels: int,
                   counts_as: dict[str, str] | None = None, progress=None,
                   detector: FaceDetector | None = None) -> dict:
    """The box report at each of IOUS (see core/box_scores.py), with the photos scored: for each, its name, its
    annotated faces (box, label) and the faces found (box, face probability, label, probability), which the galleries
    of missed and misclassified faces read. Photos that cannot be read join `rejected_files`. Faces are found as the
    model's detector settings say (`detector`: the same detector made already, or another for a benchmark)."""
    if counts_as is None:
        counts_as = default_counts_as(annotated.classes, classifier.labels)
    detector = detector or FaceDetector.for_photos(classifier.detector)
    rejected = list(annotated.problems)
    scored, photos, left_out = [], [], []
    done = 0
    while done < len(annotated.photos):
        batch, taken = fill_batch(annotated.photos[done:done + 32],
                                  lambda photo: read_for_scoring(photo, photo.candidate, max_pixels, rejected))
        done += taken
        found = detector.detect([image for _, image, _ in batch], [size for _, _, size in batch])
        for (photo, image, _), faces in zip(batch, found):
            boxes, problems = photo.boxes(image.shape[1], image.shape[0])
            left_out += [(photo.candidate.name, problem) for problem in problems]
            predictions = classify_faces(image, faces[:classifier.detector.max_faces], classifier)
            truths = [TruthFace(box.box, box.label) for box in boxes]
            founds = [FoundFace(p.box, p.face_probability, p.probabilities) for p in predictions]
            scored.append((truths, founds))
            photos.append({"name": photo.candidate.name,
                           "truth": [{"box": [round(v, 1) for v in t.box], "label": t.label} for t in truths],
                           "found": [p.to_dict() for p in predictions]})
        if progress:
            progress(done, len(annotated.photos))
    if not scored:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in rejected[:3])
        raise StoreError(f"None of the set's photos could be scored ({reasons}).")
    unknown = sorted({t.label for truths, _ in scored for t in truths} - set(classifier.labels) - set(counts_as))
    if unknown:
        raise StoreError(f"The set has faces of {', '.join(unknown)}, which the model ({', '.join(classifier.labels)})"
                         f" lacks: say how they count, for example --count-as {unknown[0]}=without_mask.")
    try:
        scores = {f"iou_{iou}": score_boxes(scored, classifier.labels, counts_as, iou).to_dict() for iou in IOUS}
    except ValueError as error:
        raise StoreError(f"{error}") from None
    faces = sum(len(truths) for truths, _ in scored)
    return {"format": annotated.format, "photos_scored": len(scored), "faces": faces, "labels": classifier.labels,
            "counts_as": counts_as, "detector": classifier.detector.to_dict(),
            **scores, "photos": photos, "rejected_files": [{"name": n, "reason": r} for n, r in rejected],
            "left_out_boxes": [{"name": n, "reason": r} for n, r in left_out]}


def photos_with_errors(report: dict, iou: float = IOUS[0]) -> set[str]:
    """The names of the photos with a face missed or misclassified at `iou`."""
    scores = report[f"iou_{iou}"]
    return {report["photos"][item["photo"]]["name"] for item in scores["misses"] + scores["wrongs"]}
