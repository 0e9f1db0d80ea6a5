"""A run's model bundle: a zip with everything to use its model elsewhere (see maskdet/bundle/README.md)."""

import io
import json
import zipfile
from pathlib import Path

from maskdet.bundle.mtcnn_cascade import NETWORK_FILES
from maskdet.core.contract import INPUT_NAME
from maskdet.serving.classifier import load_classifier
from maskdet.vision.mtcnn import NETWORKS

BUNDLE_SOURCES = ("README.md", "predict_onnx.py", "mtcnn_cascade.py", "crop_rule.py", "pixels.py")  # maskdet/bundle/


def bundle_zip(run_dir: Path) -> bytes:
    """A zip with everything to use a run's model elsewhere: the ONNX files, MTCNN's three networks, labels,
    preprocessing, card, metrics, and predict_onnx.py with the modules it imports (see maskdet/bundle/README.md)."""
    run_dir = Path(run_dir)
    classifier = load_classifier(run_dir / "model.onnx")
    contract = {"input": {"name": INPUT_NAME, **classifier.preprocess.to_dict(), "shape": ["batch", "size", "size", 3]},
                "output": {"name": "probabilities", "columns": classifier.labels},
                "crop_rule": {"margin": classifier.rule.margin, "size": classifier.rule.size, "square": True,
                              "clamp_to_image": True, "resize": "bilinear"},
                "normalisation": "inside the model: feed raw uint8 RGB"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("model.onnx", "model.int8.onnx", "MODEL_CARD.md", "metrics.json"):
            if (run_dir / name).exists():
                archive.write(run_dir / name, name)
        archive.writestr("labels.json", json.dumps(classifier.labels, indent=2))
        archive.writestr("preprocessing.json", json.dumps(contract, indent=2))
        for name, network in zip(NETWORK_FILES, NETWORKS[classifier.detector.networks]()):  # the ones it finds with
            archive.writestr(name, network)
        for name in BUNDLE_SOURCES:
            archive.write(Path(__file__).parents[1] / "bundle" / name, name)
    return buffer.getvalue()
