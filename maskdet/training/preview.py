"""The Train page's preview of synthetic masks: source-class faces with a mask drawn, or a twin's mask moved, as
training makes them."""

import numpy as np

from maskdet.core.errors import TrainingError
from maskdet.data.store import Store
from maskdet.training.views import DrawRule, crop_landmarks, draw_view, twin_candidates, twin_class_name
from maskdet.vision.faces import CropRule, FaceDetector, crop_face
from maskdet.vision.mask_rules import MaskRule
from maskdet.vision.synth import PLACEMENTS, draw_mask, twin_mask_alpha


def synthetic_preview(store: Store, mask_rule: MaskRule, rule: CropRule, count: int = 8,
                      seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Face crops of the rule's source class with a drawn mask (its styles and placements in turn), or their masked
    twin's mask moved, as training makes them; a rule whose classes are missing or whose source has no face to draw
    on is refused in a sentence."""
    labels = store.labels()
    missing = [name for name in (mask_rule.source, mask_rule.target) if name not in labels]
    if missing:
        raise TrainingError(f"The rule {mask_rule.text()} names the class {missing[0]!r}, which the dataset does not "
                            "have.")
    twins = twin_faces(store, mask_rule, labels) if mask_rule.mask_from == "twin" else None
    ids = store.face_ids(label=mask_rule.source, no_face=False) if twins is None else list(twins)
    chosen = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:count * 3]]
    if store.without_landmarks(chosen):
        store.fill_landmarks(FaceDetector(), chosen)
    previews, twin_rule = [], DrawRule(0, 0, mask_rule.placements, 1.0, mask_rule.styles, "twin")
    for index, record in enumerate(r for r in store.faces(ids=chosen) if r.face.landmarks):
        if len(previews) == count:
            break
        placement = mask_rule.placements[index % len(mask_rule.placements)]
        crop, landmarks = crop_face(store.load_image(record), record.face.box, rule), crop_landmarks(record, rule)
        rng = np.random.default_rng([seed, index])
        if twins is None:
            style = mask_rule.styles[index % len(mask_rule.styles)]
            previews.append((draw_mask(crop, landmarks, style, rng, placement),
                             f"{style}, {PLACEMENTS[placement].lower()}: {record.source_name}"))
            continue
        twin = crop_face(store.load_image(twins[record.id]), record.face.box, rule)
        if twin_mask_alpha(crop, twin, landmarks) is not None:  # as training: a placement that shows too little of
            moved, placement = draw_view(crop, landmarks, twin_rule, index, rng, twin)  # the mask gives way
            previews.append((moved, f"twin's mask, {PLACEMENTS[placement].lower()}: {record.source_name}"))
    if not previews and twins is not None:
        raise TrainingError(f"No photo of {mask_rule.source!r} has a masked twin (the same photo with a mask on, in "
                            "the with_mask class).")
    if not previews:
        raise TrainingError(f"No photo of {mask_rule.source!r} has a face with landmarks to draw a mask on: import "
                            "photos with visible faces.")
    return previews


def twin_faces(store: Store, mask_rule: MaskRule, labels: list[str]) -> dict:
    """Per face id of the rule's source class, the photo that may be its masked twin (views.twin_candidates)."""
    twin_label = twin_class_name(labels)
    records = store.faces(label=mask_rule.source, no_face=False) + (store.faces(label=twin_label) if twin_label else [])
    return twin_candidates(records, twin_label)
