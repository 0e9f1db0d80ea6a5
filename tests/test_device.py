"""The training device setting: its choices, the sentence refusing 'cuda' without a CUDA GPU, and the torch device
and onnxruntime providers each choice resolves to. Nothing here runs on a GPU: a GPU is only ever pretended."""

from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from maskdet.serving.classifier import CPU_PROVIDERS
from maskdet.training.config import CHOSEN, DEVICES, TrainConfig
from maskdet.training.device import Device, resolve_device

NO_GPU = not torch.cuda.is_available()
CPU = Device(torch.device("cpu"), ("CPUExecutionProvider",))


def pretend_gpu(monkeypatch, onnx_cuda: bool) -> None:
    """PyTorch finds a CUDA GPU, and onnxruntime offers its CUDA provider when `onnx_cuda` (nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    providers = ["CUDAExecutionProvider", *CPU_PROVIDERS] if onnx_cuda else list(CPU_PROVIDERS)
    monkeypatch.setattr(ort, "get_available_providers", lambda: providers)


def test_the_setting_offers_auto_cpu_and_cuda_with_cpu_the_default():
    assert DEVICES == ("auto", "cpu", "cuda") and CHOSEN["device"].metadata["choices"] == DEVICES
    assert TrainConfig().device == "cpu"
    assert CHOSEN["device"].metadata["help"].endswith(".")
    for device in ("auto", "cpu"):
        assert TrainConfig.from_dict({"device": device}).device == device
    readme = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert f"`device` cpu (one of {', '.join(DEVICES)};" in readme


@pytest.mark.parametrize("value, shown", [("tpu", '"tpu"'), ("CUDA", '"CUDA"'), (None, "null"), (0, "0")])
def test_an_unknown_device_is_refused_with_a_sentence(value, shown):
    with pytest.raises(ValueError) as error:
        TrainConfig.from_dict({"device": value})
    assert str(error.value) == f"Training setting 'device' must be one of auto, cpu, cuda, got {shown}."


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU that PyTorch can use")
def test_cuda_on_this_machine_without_a_gpu_is_refused_with_a_sentence():
    for ask in (lambda: TrainConfig(device="cuda"), lambda: TrainConfig.from_dict({"device": "cuda"}),
                lambda: resolve_device("cuda")):
        with pytest.raises(ValueError) as error:
            ask()
        message = str(error.value)
        assert message.startswith("Training device 'cuda' was asked for, but this machine has no CUDA GPU that "
                                  f"PyTorch can use (torch {torch.__version__.split('+')[0]}, ")
        assert message.endswith("): choose auto or cpu.") and "\n" not in message


@pytest.mark.parametrize("build, says", [(None, "a CPU build"), ("12.4", "built for CUDA 12.4, finds no GPU")])
def test_the_refusal_says_which_torch_build_found_no_gpu(monkeypatch, build, says):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", build)
    with pytest.raises(ValueError, match=rf"\(torch [0-9.]+, {says}\): choose auto or cpu\.$"):
        TrainConfig(device="cuda")


def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == CPU


@pytest.mark.skipif(not NO_GPU, reason="this machine has a CUDA GPU that PyTorch can use")
def test_auto_resolves_to_the_cpu_on_this_machine():
    assert resolve_device("auto") == CPU


@pytest.mark.parametrize("onnx_cuda, providers", [(True, ("CUDAExecutionProvider", "CPUExecutionProvider")),
                                                  (False, ("CPUExecutionProvider",))])
def test_with_a_gpu_cuda_and_auto_resolve_to_it_and_to_onnxruntime_cuda_where_installed(monkeypatch, onnx_cuda,
                                                                                         providers):
    pretend_gpu(monkeypatch, onnx_cuda)
    assert TrainConfig(device="cuda").device == "cuda"  # accepted
    assert resolve_device("cuda") == resolve_device("auto") == Device(torch.device("cuda"), providers)
    assert resolve_device("cpu") == CPU  # cpu stays on the CPU even with a GPU
