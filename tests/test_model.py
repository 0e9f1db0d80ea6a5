"""Tests for maskdet.training.model: backbone weights loading, freezing, BatchNorm handling and in-graph
normalisation."""

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models import mobilenet_v2

from maskdet.core.contract import Preprocess
from maskdet.training.config import NUM_BLOCKS
from maskdet.training.model import (FEATURE_DIM, BackboneWeightsError, MaskNet, build_model, set_trainable_blocks,
                                    train_mode_with_frozen_batchnorm)
from tests.conftest import pattern_image

IMAGENET_MASK_CLASSES = [570, 643, 691, 796]  # gasmask, mask, oxygen mask, ski mask


def random_images(count: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8))


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def parameter_names(module: nn.Module, prefix: str) -> set[str]:
    return {f"{prefix}.{name}" for name, _ in module.named_parameters()}


def first_line(error: pytest.ExceptionInfo) -> str:
    """The message, which must be one short line a user can read."""
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.fixture(scope="module")
def pretrained(backbone_weights):
    model, source = build_model(2, backbone_weights)
    return model.eval(), source


def load_photo(path, size: int = 224) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR))


# ---- real ImageNet weights ------------------------------------------------------------------------

def test_shared_weights_load_strictly_into_the_backbone(pretrained, backbone_weights):
    model, source = pretrained
    assert source == f"file:{backbone_weights.name}"
    state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    features = model.features.state_dict()
    assert {f"features.{key}" for key in features} == {k for k in state if k.startswith("features.")}
    for key, value in features.items():
        assert torch.equal(value, state[f"features.{key}"]), key


def test_embedding_matches_torchvision_mobilenet_v2_on_the_same_weights(pretrained, backbone_weights):
    """MaskNet.embed + the file's ImageNet classifier == torchvision's own model with its standard preprocessing."""
    model, _ = pretrained
    reference = mobilenet_v2()
    reference.load_state_dict(torch.load(backbone_weights, map_location="cpu", weights_only=True))
    reference.eval()
    images = random_images(3, 96)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        embedding = model.embed(images)
        expected = reference((images.permute(0, 3, 1, 2).float() / 255 - mean) / std)
        logits = reference.classifier[1](embedding)
    assert embedding.shape == (3, FEATURE_DIM)
    assert embedding.min() >= 0 and embedding.max() <= 6  # pooled ReLU6 activations
    torch.testing.assert_close(logits, expected, atol=1e-3, rtol=1e-4)


def test_imagenet_head_on_the_embedding_sees_masks_on_masked_faces(pretrained, backbone_weights, shared_data):
    """A sanity check that the weights are really ImageNet ones: the ImageNet classes 'mask', 'gasmask',
    'oxygen mask' and 'ski mask' take much more probability on masked photos than on the same faces unmasked."""
    model, _ = pretrained
    classifier = nn.Linear(FEATURE_DIM, 1000)
    state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    classifier.load_state_dict({"weight": state["classifier.1.weight"], "bias": state["classifier.1.bias"]})
    numbers = [n for n in range(60) if (shared_data / "with_mask" / f"{n}-with-mask.jpg").exists()
               and (shared_data / "without_mask" / f"{n}.jpg").exists()][:10]
    assert len(numbers) >= 8
    masked = np.stack([load_photo(shared_data / "with_mask" / f"{n}-with-mask.jpg") for n in numbers])
    bare = np.stack([load_photo(shared_data / "without_mask" / f"{n}.jpg") for n in numbers])
    with torch.no_grad():
        mass = {name: torch.softmax(classifier(model.embed(torch.from_numpy(images))), 1)[:, IMAGENET_MASK_CLASSES]
                .sum(1) for name, images in (("masked", masked), ("bare", bare))}
    assert mass["masked"].mean() > 0.3 and mass["bare"].mean() < 0.1
    assert (mass["masked"] > mass["bare"]).float().mean() >= 0.8  # per pair, the masked photo looks more "mask"


def test_random_init_needs_no_weights_file(tmp_path):
    model, source = build_model(3, tmp_path / "does-not-exist.pth", random_init=True)
    assert source == "random-init"
    assert isinstance(model, MaskNet) and model.head[1].out_features == 3


# ---- weights errors -------------------------------------------------------------------------------

def test_missing_weights_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(BackboneWeightsError) as error:
        build_model(2, path)
    assert str(error.value) == f"Backbone weights file not found: {path}."


def test_weights_file_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "random.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(BackboneWeightsError) as error:
        build_model(2, path)
    assert first_line(error).startswith(f"{path} is not a PyTorch state_dict file (")
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_weights_file_that_is_not_a_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3), torch.ones(2)], path)
    with pytest.raises(BackboneWeightsError) as error:
        build_model(2, path)
    assert str(error.value) == f"{path} does not hold a state_dict (found list)."


@pytest.mark.parametrize("state, problem", [
    pytest.param(lambda: mobilenet_v2(width_mult=0.5).state_dict(), "wrong shape (e.g. features.0.0.weight",
                 id="wrong-shapes"),
    pytest.param(lambda: {"features.0.0.weight": torch.zeros(32, 3, 3, 3)}, "311 missing", id="missing-keys"),
    pytest.param(lambda: {"conv1.weight": torch.zeros(64, 3, 7, 7)}, "312 missing", id="other-network"),
])
def test_state_dict_that_does_not_fit_mobilenet_v2(tmp_path, state, problem):
    path = tmp_path / "other.pth"
    torch.save(state(), path)
    with pytest.raises(BackboneWeightsError) as error:
        build_model(2, path)
    message = first_line(error)
    assert message.startswith("The backbone weights (file:other.pth) do not fit torchvision's mobilenet_v2: ")
    assert problem in message


# ---- freezing and BatchNorm ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return MaskNet(2, Preprocess(input_size=64))


@pytest.mark.parametrize("blocks", [0, 1, 3, NUM_BLOCKS, NUM_BLOCKS + 5])
def test_set_trainable_blocks_unfreezes_exactly_the_tail(random_model, blocks):
    model = random_model
    for parameter in model.parameters():
        parameter.requires_grad = True  # start from everything trainable: the call must freeze the rest
    returned = set_trainable_blocks(model, blocks)
    n = min(blocks, NUM_BLOCKS)
    expected = parameter_names(model.head, "head")
    for index in ([*range(NUM_BLOCKS + 1 - n, NUM_BLOCKS + 1), NUM_BLOCKS + 1] if n else []):
        expected |= parameter_names(model.features[index], f"features.{index}")
    assert trainable_names(model) == expected
    assert {id(p) for p in returned} == {id(p) for name, p in model.named_parameters() if name in expected}
    if n:
        assert f"features.{NUM_BLOCKS + 1}.0.weight" in expected  # the final 1x1 conv to 1280 channels
        assert f"features.{NUM_BLOCKS + 1 - n}.conv.0.0.weight" in expected
        assert f"features.{NUM_BLOCKS - n}.conv.0.0.weight" not in expected
    assert not any(p.requires_grad for p in model.features[0].parameters())  # the stem always stays frozen


def test_train_mode_with_frozen_batchnorm_keeps_running_stats(random_model):
    model = random_model
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batchnorms) > 30
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    train_mode_with_frozen_batchnorm(model)
    assert model.training and model.head[0].training  # dropout is active
    assert not any(bn.training for bn in batchnorms)
    model(random_images(4, 64, seed=1))
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    model.train()  # contrast: plain train mode does update the statistics
    model(random_images(4, 64, seed=2))
    assert not torch.equal(before["features.0.1.running_mean"], model.state_dict()["features.0.1.running_mean"])
    model.load_state_dict({**model.state_dict(), **before})
    model.eval()


# ---- input contract -----------------------------------------------------------------------------

def test_masknet_takes_uint8_nhwc_and_normalises_like_torchvision(random_model):
    model = random_model.eval()
    images = np.stack([pattern_image(seed, size=(64, 64)) for seed in range(3)])
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    manual = torch.from_numpy(((images.astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        expected = model.head(torch.flatten(nn.functional.adaptive_avg_pool2d(model.features(manual), 1), 1))
        logits = model(torch.from_numpy(images))
        embedding = model.embed(torch.from_numpy(images))
    assert logits.shape == (3, 2) and embedding.shape == (3, FEATURE_DIM)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.head(embedding), logits)
    custom = MaskNet(2, Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert torch.allclose(custom.mean.flatten(), torch.tensor([127.5] * 3))
    assert torch.allclose(custom.std.flatten(), torch.tensor([63.75] * 3))
