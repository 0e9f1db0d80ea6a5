"""torchvision MobileNetV2 with a new head; normalisation lives inside the network (uint8 RGB NHWC in)."""

from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from maskdet.core.contract import Preprocess
from maskdet.core.errors import MaskdetError
from maskdet.training.config import NUM_BLOCKS

FEATURE_DIM = 1280


class BackboneWeightsError(MaskdetError):
    """Backbone weights could not be found or read; the message says how to fix it."""


class MaskNet(nn.Module):
    """uint8 RGB images (N, H, W, 3) -> class logits; embed() gives the pooled 1280-d features."""

    def __init__(self, num_classes: int, preprocess: Preprocess = Preprocess(), dropout: float = 0.2):
        super().__init__()
        self.features = mobilenet_v2().features
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1) * 255)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        x = self.features(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))


class Embedder(nn.Module):
    """The frozen backbone alone, for feature extraction."""

    def __init__(self, model: MaskNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


class WithSoftmax(nn.Module):
    """The exported form: uint8 images -> class probabilities."""

    def __init__(self, model: MaskNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(images), dim=1)


def backbone_state_dict(weights_path: Path | None) -> tuple[dict, str]:
    """ImageNet weights from a local file if given, else torchvision's IMAGENET1K_V1 (downloaded once)."""
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise BackboneWeightsError(f"Backbone weights file not found: {path}.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise BackboneWeightsError(f"{path} is not a PyTorch state_dict file ({type(error).__name__}).") from None
        if not isinstance(state, dict):
            raise BackboneWeightsError(f"{path} does not hold a state_dict (found {type(state).__name__}).")
        return state, f"file:{path.name}"
    try:
        state = MobileNet_V2_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as error:
        raise BackboneWeightsError(
            "Could not get ImageNet MobileNetV2 weights from torchvision "
            f"({type(error).__name__}). Either connect to the internet once (they are cached), or point "
            "MASKDET_BACKBONE_WEIGHTS (or --backbone-weights) at a torchvision mobilenet_v2 state_dict file, "
            "or pass --random-init to train without pretrained weights (much worse results)."
        ) from None
    return state, "torchvision:IMAGENET1K_V1"


def build_model(num_classes: int, weights_path: Path | None = None, random_init: bool = False,
                preprocess: Preprocess = Preprocess()) -> tuple[MaskNet, str]:
    """A MaskNet with ImageNet backbone weights (or random ones when asked); returns it and the weights source."""
    model = MaskNet(num_classes, preprocess)
    if random_init:
        return model, "random-init"
    state, source = backbone_state_dict(weights_path)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    expected = model.features.state_dict()
    missing = sorted(set(expected) - set(features))
    unexpected = sorted(set(features) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(features)
                        if not isinstance(features[k], torch.Tensor) or features[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        problems = [f"{len(names)} {kind} (e.g. {', '.join('features.' + n for n in names[:3])})"
                    for kind, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
                    if names]
        raise BackboneWeightsError(f"The backbone weights ({source}) do not fit torchvision's mobilenet_v2: "
                                   f"{'; '.join(problems)} tensors.")
    model.features.load_state_dict(features, strict=True)
    return model, source


def calibrate_batchnorm(model: MaskNet, images, batch_size: int = 32) -> None:
    """Estimate BatchNorm statistics from uint8 images (rows of an array or a DiskArray): a randomly initialised
    backbone is useless without them."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model.embed(torch.from_numpy(images[start:start + batch_size]))
    model.eval()


def set_trainable_blocks(model: MaskNet, blocks: int) -> list[nn.Parameter]:
    """Freeze the backbone except its last `blocks` inverted-residual blocks and final conv; return trainable params."""
    for parameter in model.features.parameters():
        parameter.requires_grad = False
    if blocks > 0:
        for module in list(model.features)[NUM_BLOCKS + 1 - min(blocks, NUM_BLOCKS):]:
            for parameter in module.parameters():
                parameter.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def train_mode_with_frozen_batchnorm(model: MaskNet) -> None:
    """Train mode (dropout on) but every BatchNorm keeps its stored statistics."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
