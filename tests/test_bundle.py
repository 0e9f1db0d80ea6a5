"""The model bundle zip: predict_onnx.py, unzipped alone and run without maskdet, finds and classifies the same faces
as `maskdet predict` on real photos (masks-small, and masks-real-dev as a measuring set)."""

import ast
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from maskdet.bundle.mtcnn_cascade import NETWORK_FILES
from maskdet.serving.bundle import bundle_zip
from maskdet.serving.classifier import load_classifier
from maskdet.serving.predict import predict_image
from maskdet.vision.faces import FaceDetector, box_iou
from maskdet.vision.mtcnn import facenet_networks

BUNDLE_FILES = {"README.md", "predict_onnx.py", "mtcnn_cascade.py", "crop_rule.py", "pixels.py", "mtcnn_pnet.onnx",
                "mtcnn_rnet.onnx", "mtcnn_onet.onnx", "model.onnx", "labels.json", "preprocessing.json",
                "MODEL_CARD.md", "metrics.json"}  # the trained_home run has no int8 model
SMALL = {  # masks-small: portraits, groups of two and three, padded-retry close-ups, one without a face
    "with_mask": ["augmented_image_51.jpg", "augmented_image_118.jpg", "195-with-mask.jpg", "108-with-mask.jpg",
                  "10-with-mask.jpg", "127-with-mask.jpg", "92-with-mask.jpg", "441-with-mask.jpg",
                  "109-with-mask.jpg", "212-with-mask.jpg"],
    "without_mask": ["0.jpg", "1.jpg", "100.jpg", "110.jpg", "108.jpg", "195.jpg", "229.jpg", "349.jpg", "441.jpg",
                     "augmented_image_1.jpg"],
}
REAL_DEV = [  # masks-real-dev: masked close-ups found only by the padded retry, crowds, large photos, RGBA PNGs
    "with_mask/04c5967c3aa2dbbd.jpg", "with_mask/09296603417e0ee5.png", "with_mask/4bf1f2664349e99d.jpg",
    "with_mask/ba8fec8cbce8ff42.png", "without_mask/4507d258c593b8f3.jpg", "with_mask/cb8ca13638064d06.jpg",
    "with_mask/2529c5df94363420.jpeg", "with_mask/553ed48eac77be64.jpg", "with_mask/904a8df6ac870a9e.jpeg",
    "with_mask/2bc5789e01e6bc4e.png", "without_mask/2ac87a1527f8ef9d.jpg",
]
THRESHOLD = 0.6


@pytest.fixture(scope="module")
def bundle(trained_home, tmp_path_factory) -> Path:
    """The trained run's bundle, unzipped into a folder of its own."""
    folder = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(io.BytesIO(bundle_zip(trained_home.model.parent))) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture(scope="module")
def run_script(bundle, shared_data, real_dev_data, tmp_path_factory):
    """predict_onnx.py on a folder of masks-small photos, masks-real-dev photos and a text file named .jpg."""
    work = tmp_path_factory.mktemp("photos")
    for label, names in SMALL.items():
        (work / "small" / label).mkdir(parents=True)
        for name in names:
            shutil.copyfile(shared_data / label / name, work / "small" / label / name)
    (work / "notes.jpg").write_text("not a photo")
    os.mkfifo(work / "pipe.jpg")  # hostile files, round two (B): the bundle's script reads regular files only
    arguments = [str(work / "small"), *(str(real_dev_data / name) for name in REAL_DEV), str(work / "pipe.jpg"),
                 str(work / "notes.jpg")]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no maskdet to import
    return subprocess.run([sys.executable, "predict_onnx.py", "--threshold", str(THRESHOLD), *arguments],
                          cwd=bundle, env=environment, capture_output=True, text=True, timeout=300)


def test_bundle_holds_the_networks_and_every_module_its_script_imports(bundle):
    assert {path.name for path in bundle.iterdir()} == BUNDLE_FILES
    for name, network in zip(NETWORK_FILES, facenet_networks(), strict=True):  # the set its model's settings name
        assert (bundle / name).read_bytes() == network
    allowed = sys.stdlib_module_names | {"numpy", "onnxruntime", "PIL"} | {p.stem for p in bundle.glob("*.py")}
    for script in bundle.glob("*.py"):
        for node in ast.walk(ast.parse(script.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            assert all(name.split(".")[0] in allowed for name in names), (script.name, names)
    contract = json.loads((bundle / "preprocessing.json").read_text())
    assert contract["crop_rule"] == {"margin": 1.25, "size": 160, "square": True, "clamp_to_image": True,
                                     "resize": "bilinear"}


def test_bundle_script_finds_and_classifies_the_faces_maskdet_predict_does(run_script, trained_home):
    assert run_script.returncode == 0, run_script.stderr
    output = json.loads(run_script.stdout)
    classifier = load_classifier(trained_home.model)
    assert output["labels"] == classifier.labels and output["model"].endswith("model.onnx")
    detector = FaceDetector(detect_side=640)
    entries = [entry for entry in output["images"] if "faces" in entry]
    assert len(entries) == sum(map(len, SMALL.values())) + len(REAL_DEV)
    faces = ious = 0
    for entry in entries:
        _, expected = predict_image(Path(entry["image"]).read_bytes(), detector, classifier, 40_000_000, THRESHOLD)
        assert len(entry["faces"]) == len(expected), entry["image"]
        for face, reference in zip(entry["faces"], expected):
            iou = box_iou(face["box"], reference.box)
            assert iou >= 0.9 and face["label"] == reference.label, (entry["image"], face, reference)
            assert abs(face["face_probability"] - reference.face_probability) < 0.01
            assert max(abs(p - reference.probabilities[label]) for label, p in face["probabilities"].items()) < 0.01
            assert set(face) == set(reference.to_dict())
            faces, ious = faces + 1, ious + iou
    assert faces >= 45 and ious / faces > 0.99
    assert sum(not entry["faces"] for entry in entries) == 1  # with_mask/109-with-mask.jpg has no face MTCNN finds


def test_a_file_that_is_not_an_image_gets_an_error_entry(run_script):
    assert run_script.returncode == 0 and "Traceback" not in run_script.stderr
    fifo, entry = json.loads(run_script.stdout)["images"][-2:]
    assert entry["image"].endswith("notes.jpg") and set(entry) == {"image", "error"}
    assert "not a readable image" in entry["error"]
    assert fifo["image"].endswith("pipe.jpg")
    assert fifo["error"] == "not a readable image (not a regular file (a FIFO, device or socket))"
