"""The Train page's preview of synthetic masks: source-class faces with a mask drawn as training draws them."""

import numpy as np

from maskdet.core.errors import TrainingError
from maskdet.data.store import Store
from maskdet.training.views import crop_landmarks
from maskdet.vision.faces import CropRule, FaceDetector, crop_face
from maskdet.vision.mask_rules import MaskRule
from maskdet.vision.synth import PLACEMENTS, draw_mask


def synthetic_preview(store: Store, mask_rule: MaskRule, rule: CropRule, count: int = 8,
                      seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Face crops of the rule's source class with a drawn mask, its styles and placements in turn, as training draws
    them; a rule whose classes are missing or whose source has no face with landmarks is refused in a sentence."""
    labels = store.labels()
    missing = [name for name in (mask_rule.source, mask_rule.target) if name not in labels]
    if missing:
        raise TrainingError(f"The rule {mask_rule.text()} names the class {missing[0]!r}, which the dataset does not "
                            "have.")
    ids = store.face_ids(label=mask_rule.source, no_face=False)
    chosen = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:count * 3]]
    if store.without_landmarks(chosen):
        store.fill_landmarks(FaceDetector(), chosen)
    chosen = [r for r in store.faces(ids=chosen) if r.face.landmarks][:count]
    if not chosen:
        raise TrainingError(f"No photo of {mask_rule.source!r} has a face with landmarks to draw a mask on: import "
                            "photos with visible faces.")
    previews = []
    for index, record in enumerate(chosen):
        style = mask_rule.styles[index % len(mask_rule.styles)]
        placement = mask_rule.placements[index % len(mask_rule.placements)]
        crop = crop_face(store.load_image(record), record.face.box, rule)
        drawn = draw_mask(crop, crop_landmarks(record, rule), style, np.random.default_rng([seed, index]), placement)
        previews.append((drawn, f"{style}, {PLACEMENTS[placement].lower()}: {record.source_name}"))
    return previews
