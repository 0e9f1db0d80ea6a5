"""The training settings (TrainConfig): each numeric setting's range and help, each worded one's choices, as field
metadata that the checks, the CLI's flags and the Train page are built from. Importable without torch."""

import json
from dataclasses import Field, asdict, dataclass, field, fields

from maskdet.bundle.mtcnn_cascade import NETWORK_SETS
from maskdet.core.contract import CROP_MARGINS, INPUT_SIZES
from maskdet.data.splits import checked_split
from maskdet.vision.augment import AugmentConfig
from maskdet.vision.mask_rules import MaskRule, rules_from_setting

NUM_BLOCKS = 17  # inverted-residual blocks in MobileNetV2.features[1:18]
DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when PyTorch has a CUDA GPU, else the CPU


def check_device(setting: str) -> None:
    """Refuse 'cuda' on a machine without a CUDA GPU with a sentence saying what to choose instead."""
    if setting != "cuda":
        return
    import torch  # here, not at the top: the config is read where torch is not loaded (the CLI, the pages)

    if not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}, finds no GPU" if torch.version.cuda else "a CPU build"
        raise ValueError("Training device 'cuda' was asked for, but this machine has no CUDA GPU that PyTorch can use "
                         f"(torch {torch.__version__.split('+')[0]}, {build}): choose auto or cpu.")


def ranged(default: int | float, low: int | float, high: int | float, help: str, label: str, step=None,
           shown: str | None = None, more: bool = False):
    """A numeric setting's field: its default, its allowed range, the help the CLI and the Train page show, and how the
    page shows it: label, step, number format (shown), and whether it waits under "More settings"."""
    return field(default=default, metadata={"range": (low, high), "help": help, "label": label, "step": step,
                                            "format": shown, "more": more})


def choice(default: str, choices: tuple[str, ...], help: str, label: str, more: bool = False):
    """A setting's field that takes one of a few words: its default, the words, the help and the Train page's label
    (see CHOSEN)."""
    return field(default=default, metadata={"choices": choices, "help": help, "label": label, "more": more})


@dataclass
class TrainConfig:
    """The training settings. Numeric ones carry their range and help as field metadata (see RANGED), those of a few
    words their choices and help (see CHOSEN): the checks in __post_init__, the CLI's flags and the Train page's
    inputs are all built from it."""

    epochs: int = ranged(100, 1, 1000, "Head epochs on cached features; early stopping on the validation loss usually "
                                       "ends training much sooner.", "Epochs")
    batch_size: int = ranged(64, 1, 1024, "Training images per optimiser step (at most 32 when fine-tuning).",
                             "Batch size")
    learning_rate: float = ranged(1e-3, 1e-5, 1.0, "Learning rate of the head (AdamW).", "Learning rate",
                                  1e-4, "%.5f")
    weight_decay: float = ranged(1e-3, 0.0, 1.0, "AdamW weight decay.", "Weight decay", 1e-4, "%.5f", more=True)
    label_smoothing: float = ranged(0.1, 0.0, 0.5, "Share of each target spread over the other classes.",
                                    "Label smoothing", 0.05, "%.2f", more=True)
    views_per_image: int = ranged(4, 0, 32, "Augmented copies of each training face, besides the clean one.",
                                  "Augmented views per image")
    finetune_blocks: int = ranged(0, 0, NUM_BLOCKS, "Last MobileNetV2 blocks to fine-tune after the head "
                                                    "(0: head only; slower, rarely better).",
                                  "Fine-tune blocks (0 = head only)")
    finetune_epochs: int = ranged(4, 1, 100, "Fine-tuning epochs (when fine-tune blocks is above 0).",
                                  "Fine-tune epochs", more=True)
    finetune_learning_rate: float = ranged(1e-4, 1e-6, 1.0, "Learning rate of the fine-tuned blocks and the head.",
                                           "Fine-tune learning rate", 1e-5, "%.6f", more=True)
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = ranged(0, 0, 2**31 - 1, "Same seed and data, same split and same model.", "Seed")
    patience: int = ranged(10, 1, 1000, "Epochs without a better validation loss before stopping.",
                           "Early-stopping patience", more=True)
    class_weights: bool = True
    input_size: int = ranged(160, *INPUT_SIZES, "Side of the square face crop the model sees, in pixels.",
                             "Input size (px)", 16, more=True)
    crop_margin: float = ranged(1.25, *CROP_MARGINS, "Crop side as a multiple of the face box's longer side.",
                                "Crop margin", 0.05, "%.2f", more=True)
    labels: list[str] | None = None  # None: every label that has images
    backbone_weights: str | None = None
    random_init: bool = False
    quantize: bool = True
    device: str = choice("cpu", DEVICES, "Where training computes: cpu, the default; cuda insists on a CUDA GPU; "
                                         "auto takes one when PyTorch finds it, else the CPU. Feature extraction uses "
                                         "the GPU only with onnxruntime-gpu installed.", "Device", more=True)
    detector_networks: str = choice("facenet", NETWORK_SETS, "The face detector's networks, stored with the model so "
                                                              "that predict, Live and its bundle find faces with them: "
                                                              "facenet-pytorch's, the default, or maskdet's fine-tuned "
                                                              "on masked faces (more masked faces found in real "
                                                              "scenes, fewer bare and small ones).",
                                    "Face detector networks", more=True)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic_masks: list[MaskRule] | None = None  # None: the rules the class names suggest (automatic_rules)

    def __post_init__(self):
        """Refuse a setting that makes no sense with a sentence naming it and what it must be."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            requirement = _requirement(spec, value)
            if requirement:
                raise ValueError(f"Training setting '{spec.name}' must be {requirement}, got "
                                 f"{json.dumps(value, default=repr)}.")
            if spec.type is float:
                setattr(self, spec.name, float(value))
        check_device(self.device)
        self.split = checked_split(self.split)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise ValueError("A training config must be a JSON object of settings, like {\"epochs\": 20}; got "
                             f"{json.dumps(data, default=repr)[:60]}.")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        data = dict(data)
        if not isinstance(data.get("augment", {}), dict):
            raise ValueError("Training setting 'augment' must be an object of augmentations such as "
                             f"{{\"flip\": {{\"enabled\": false}}}}, got {json.dumps(data['augment'], default=repr)}.")
        augment = AugmentConfig.from_dict(data.pop("augment", {}))
        synthetic_masks = rules_from_setting(data.pop("synthetic_masks", None))
        return cls(**data, augment=augment, synthetic_masks=synthetic_masks)


RANGED = {spec.name: spec for spec in fields(TrainConfig) if "range" in spec.metadata}  # name: Field
CHOSEN = {spec.name: spec for spec in fields(TrainConfig) if "choices" in spec.metadata}  # name: Field


def number_text(value: int | float) -> str:
    """A setting's number as messages and the CLI's help write it (whole numbers in full)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _requirement(spec: Field, value) -> str | None:
    """What a setting must be, when `value` is not that (None when it is fine)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if "range" in spec.metadata:
        low, high = spec.metadata["range"]
        whole = spec.type is int
        if is_number and (isinstance(value, int) or not whole) and low <= value <= high:
            return None
        return f"{'a whole number' if whole else 'a number'} from {number_text(low)} to {number_text(high)}"
    if "choices" in spec.metadata:
        return None if value in spec.metadata["choices"] else f"one of {', '.join(spec.metadata['choices'])}"
    if spec.type is bool:
        return None if isinstance(value, bool) else "true or false"
    if spec.name == "split":
        shares = isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(share, (int, float)) and not isinstance(share, bool) for share in value)
        return None if shares else "three shares [train, validation, test] that add up to 1"
    if spec.name == "labels":
        names = value is None or isinstance(value, list) and len(value) >= 2 and len(set(value)) == len(value) and all(
            isinstance(name, str) and name.strip() for name in value)
        return None if names else "null (every class with images) or a list of two or more different class names"
    if spec.name == "backbone_weights":
        return None if value is None or isinstance(value, str) and value else "a weights file path or null"
    return None
