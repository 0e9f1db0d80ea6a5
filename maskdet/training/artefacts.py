"""What a run writes beside its model: JSON files, the test predictions, the model card."""

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from maskdet.training.config import TrainConfig
from maskdet.training.views import Split
from maskdet.vision.mask_rules import WEARINGS, MaskRule
from maskdet.vision.synth import PLACEMENTS


def synthesis_summary(rules: list[MaskRule], splits: dict[str, Split], train_rules: np.ndarray,
                      labels: list[str]) -> dict:
    """What the run's synthetic masks did, for metrics.json and the model card: per rule, its setting and the views
    it drew in training; in validation and test, the drawn faces of each class (a class measured on drawings)."""
    train = splits["train"]
    summary = []
    for number, rule in enumerate(rules):
        source = train.targets == labels.index(rule.source)
        summary.append({**asdict(rule), "source_faces": int(source.sum()),
                        "source_faces_with_landmarks": int((source & train.has_landmarks).sum()),
                        "views": int((train_rules == number).sum())})
    drawn = {name: {labels[target]: count for target, count in Counter(split.targets[~split.real].tolist()).items()}
             for name, split in splits.items() if name != "train"}
    return {"rules": summary, "drawn_faces": drawn}


def face_names(split: Split) -> list[str]:
    """Each face's name in reports: its photo's name, and how a drawn face got its mask."""
    return [record.source_name + drawn_text(drawn, drawn_from) for record, drawn, drawn_from
            in zip(split.records, split.drawn, split.drawn_from)]


def drawn_text(placement: str, drawn_from: str) -> str:
    """How training put a mask on a face, in words ("" for a real face)."""
    if not placement:
        return ""
    if drawn_from == "twin":
        return f" (its masked twin's real mask moved, {PLACEMENTS[placement].lower()})"
    return f" (mask drawn {PLACEMENTS[placement].lower()})"


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2))


def write_predictions(path: Path, split: Split, probabilities: np.ndarray, labels: list[str]) -> None:
    """The test faces' classes and probabilities; for a drawn face, `drawn` names its mask's placement and
    `drawn_from` where the mask came from (drawing, or twin: its masked twin's real mask moved)."""
    lines = ["image_id,source_name,true,predicted," + ",".join(f"p_{label}" for label in labels) + ",drawn,drawn_from"]
    for record, name, target, probs, drawn, drawn_from in zip(split.records, face_names(split), split.targets,
                                                              probabilities, split.drawn, split.drawn_from):
        name = name.replace('"', "'")
        lines.append(f'{record.id},"{name}",{labels[target]},{labels[int(probs.argmax())]},'
                     + ",".join(f"{p:.6f}" for p in probs) + f",{drawn},{drawn_from}")
    path.write_text("\n".join(lines) + "\n")


def write_drawn_mistakes(folder: Path, split: Split, report: dict | None) -> None:
    """The crops of the misclassified drawn test faces, as PNGs named by their row (the Metrics page shows them: they
    are not photos of the dataset)."""
    for item in (report or {}).get("misclassified", []):
        if split.drawn[item["index"]]:
            folder.mkdir(exist_ok=True)
            Image.fromarray(split.crops[item["index"]]).save(folder / f"{item['index']}.png")


def synthesis_line(summary: dict | None) -> str:
    rules = (summary or {}).get("rules")
    if not rules:
        return "- Synthetic masks: off"
    return "- Synthetic masks: " + "; ".join(f"{rule['views']} training views of '{rule['source']}' faces with "
                                             f"{mask_text(rule)} trained as '{rule['target']}'" for rule in rules)


def mask_text(rule: dict) -> str:
    """How a rule of a run's summary put its masks on, in words."""
    if rule.get("mask_from") == "twin":  # runs from before twins have no mask_from: all drawn
        return f"their masked twin's real mask moved, worn {WEARINGS[rule['worn']][1].removeprefix('worn ')}"
    return f"a mask drawn {WEARINGS[rule['worn']][1]} ({', '.join(rule['styles'])})"


def model_card(labels: list[str], config: TrainConfig, metrics: dict, backbone: str) -> str:
    """A short human-readable summary of what the model is, how it was made and how it scored."""
    test = metrics.get("test") or {}
    counts = metrics["split_counts"]
    lines = [
        "# maskdet model card", "",
        f"- Classes: {', '.join(labels)}",
        f"- Backbone: MobileNetV2, weights {backbone}" + (" (RANDOM INIT: not pretrained)" if config.random_init else ""),
        f"- Training: head on cached features ({config.views_per_image} augmented views per image)"
        + (f", then fine-tuned the last {config.finetune_blocks} blocks" if config.finetune_blocks else ""),
        "- Data: " + "; ".join(f"{name}: {sum(c.values())} images" for name, c in counts.items()),
        synthesis_line(metrics.get("synthetic_masks")),
        f"- Trained on: {metrics['device']} (PyTorch), {', '.join(metrics['onnx_providers'])} (onnxruntime)",
        f"- Input: face crop (square, margin {config.crop_margin}x), {config.input_size}x{config.input_size} "
        "uint8 RGB NHWC; normalisation inside the model", "",
        "## Test split", "",
    ]
    if test:
        lines += [f"- Accuracy: {test['accuracy']:.4f}", f"- Macro F1: {test['macro_f1']:.4f}",
                  f"- ROC AUC: {test['roc_auc']}" if test.get("roc_auc") is not None else "- ROC AUC: n/a"]
        lines += [f"- {c['label']}: precision {c['precision']:.3f}, recall {c['recall']:.3f}, F1 {c['f1']:.3f}"
                  for c in test["per_class"]]
    else:
        lines.append("- No test images (the split left the test set empty).")
    lines += ["", "## Limitations", "",
              "- Scores are measured on a split of the same dataset; photos from other cameras, lighting or mask",
              "  styles may score lower. Datasets with pasted-on masks overstate real-world accuracy.",
              "- The split keeps near-duplicate photos together, but different photos of one person can still",
              "  fall on both sides.",
              "- The model classifies a face crop; it relies on the face detector to find faces first."]
    return "\n".join(lines) + "\n"
