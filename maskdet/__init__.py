"""maskdet: face-mask detection studio (dataset store, training, evaluation, ONNX export)."""

__version__ = "0.1.0"
