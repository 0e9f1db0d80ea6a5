"""Where training computes: the `device` setting resolved to a torch device and onnxruntime's execution providers."""

from dataclasses import dataclass

import onnxruntime as ort
import torch

from maskdet.serving.classifier import CPU_PROVIDERS
from maskdet.training.config import check_device


@dataclass(frozen=True)
class Device:
    torch: torch.device  # PyTorch's modules and tensors (the head, fine-tuning)
    providers: tuple[str, ...]  # onnxruntime's execution providers, best first (feature extraction, the frozen front)


def resolve_device(setting: str) -> Device:
    """The device a setting trains on: CUDA for 'cuda', and for 'auto' where there is one; onnxruntime's CUDA
    provider where it is installed (onnxruntime-gpu), its CPU provider otherwise."""
    check_device(setting)
    if setting == "cpu" or not torch.cuda.is_available():
        return Device(torch.device("cpu"), CPU_PROVIDERS)
    gpu = ("CUDAExecutionProvider",) if "CUDAExecutionProvider" in ort.get_available_providers() else ()
    return Device(torch.device("cuda"), gpu + CPU_PROVIDERS)
