"""What a run writes beside its model: JSON files, the test predictions, the model card."""

import json
from pathlib import Path

import numpy as np

from maskdet.training.config import TrainConfig
from maskdet.training.views import MASKED, MaskSynthesis, Split


def synthesis_summary(synthesis: MaskSynthesis | None, labels: list[str], train: Split,
                      train_kinds: np.ndarray) -> dict | None:
    """What the run's synthetic masks did, for metrics.json and the model card."""
    if synthesis is None:
        return None
    source = train.targets == synthesis.source
    return {"source": labels[synthesis.source], "target": labels[synthesis.target],
            "probability": synthesis.probability, "styles": synthesis.styles,
            "source_faces": int(source.sum()),
            "source_faces_with_landmarks": int((source & train.has_landmarks).sum()),
            "views": int((train_kinds == MASKED).sum())}


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2))


def write_predictions(path: Path, split: Split, probabilities: np.ndarray, labels: list[str]) -> None:
    lines = ["image_id,source_name,true,predicted," + ",".join(f"p_{label}" for label in labels)]
    for record, target, probs in zip(split.records, split.targets, probabilities):
        name = record.source_name.replace('"', "'")
        lines.append(f'{record.id},"{name}",{labels[target]},{labels[int(probs.argmax())]},'
                     + ",".join(f"{p:.6f}" for p in probs))
    path.write_text("\n".join(lines) + "\n")


def synthesis_line(summary: dict | None) -> str:
    if summary is None:
        return "- Synthetic masks: off"
    return (f"- Synthetic masks: {summary['views']} training views of '{summary['source']}' faces with a drawn mask "
            f"({', '.join(summary['styles'])}) trained as '{summary['target']}'")


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
