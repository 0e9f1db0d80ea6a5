"""What the benchmarks that build a data home of their own share: the shared photos and weights as default
arguments, and a fresh temporary data home. Importing it also puts the project on sys.path."""

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_path(variable: str, fallback: str) -> str:
    """The environment variable's path, else the fallback relative to the project."""
    return os.environ.get(variable) or str((ROOT / fallback).resolve())


def add_shared_arguments(parser: argparse.ArgumentParser) -> None:
    """--data (masks-small) and --weights (ImageNet MobileNetV2), defaulting to the environment, then ../shared."""
    parser.add_argument("--data", default=default_path("MASKDET_TEST_DATA", "../shared/datasets/masks-small"))
    parser.add_argument("--weights", default=default_path("MASKDET_BACKBONE_WEIGHTS",
                                                          "../shared/weights/mobilenet_v2_imagenet.pth"))


def fresh_home(prefix: str) -> Path:
    """A new temporary folder that MASKDET_HOME and MASKDET_MODELS point into (call before maskdet reads them)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MASKDET_HOME"] = str(workdir / "home")
    os.environ["MASKDET_MODELS"] = str(workdir / "models")
    return workdir
