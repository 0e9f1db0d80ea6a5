"""The Train page's preview of synthetic masks: source-class faces with a mask drawn as training draws them."""

import numpy as np

from maskdet.core.errors import TrainingError
from maskdet.data.store import Store
from maskdet.training.views import crop_landmarks, resolve_synthesis
from maskdet.vision.faces import CropRule, FaceDetector, crop_face
from maskdet.vision.synth import SyntheticMasks, draw_mask


def synthetic_preview(store: Store, masks: SyntheticMasks, rule: CropRule, count: int = 8,
                      seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Face crops of source-class photos with a drawn mask, one style after another, as training draws them."""
    labels = [name for name, number in store.label_counts().items() if number > 0]
    synthesis = resolve_synthesis(masks, labels)
    if synthesis is None:
        raise TrainingError("Synthetic masks are off: turn them on, or pick a source and a target class "
                            "(automatic needs classes named without_mask and with_mask).")
    source = labels[synthesis.source]
    ids = store.face_ids(label=source, no_face=False)
    chosen = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))[:count * 3]]
    if store.without_landmarks(chosen):
        store.fill_landmarks(FaceDetector(), chosen)
    chosen = [r for r in store.faces(ids=chosen) if r.face.landmarks][:count]
    if not chosen:
        raise TrainingError(f"No photo of '{source}' has a face with landmarks to draw a mask on: import photos with "
                            "visible faces.")
    previews = []
    for index, record in enumerate(chosen):
        style = synthesis.styles[index % len(synthesis.styles)]
        crop = crop_face(store.load_image(record), record.face.box, rule)
        drawn = draw_mask(crop, crop_landmarks(record, rule), style, np.random.default_rng([seed, index]))
        previews.append((drawn, f"{style}: {record.source_name}"))
    return previews
