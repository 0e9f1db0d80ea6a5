"""maskdet.training.export and maskdet.serving.classifier on a small random MaskNet: metadata, loading, refusing
foreign or hostile files, parity, int8."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from maskdet import __version__
from maskdet.bundle.mtcnn_cascade import DetectorSettings
from maskdet.core.contract import MAX_MACS_PER_CROP, OPSET, Preprocess
from maskdet.serving import classifier as classifier_module
from maskdet.serving.classifier import (MAX_RUN_BYTES, NotAMaskdetModel, load_classifier, macs_per_crop, parity,
                                        weights_problem)
from maskdet.training import export
from maskdet.training.export import quantize
from maskdet.training.model import MaskNet
from maskdet.vision.faces import CropRule

SIZE = 64
LABELS = ["with_mask", "without_mask", "mask_incorrect"]
PREPROCESS = Preprocess(input_size=SIZE)
RULE = CropRule(1.5, SIZE)


def crops(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def lively_random_model() -> MaskNet:
    """A random MaskNet whose output depends on its input: BatchNorm statistics measured on random crops
    (with torchvision's initial mean 0 / var 1 the eval-mode embedding is nearly constant), head scaled up."""
    torch.manual_seed(0)
    model = MaskNet(len(LABELS), PREPROCESS)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model.embed(torch.from_numpy(crops(32, seed=1)))
        model.head[1].weight.mul_(20)
    return model.eval()


def torch_probabilities(model: MaskNet, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(images)), 1).numpy()


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith(".") and len(message) < 300, message
    assert message[0].isupper() or message.split(" ")[0].endswith(".onnx"), message


def save_model(path, graph_input_type=TensorProto.FLOAT, metadata: dict | None = None) -> None:
    """A tiny valid ONNX model (Identity), optionally carrying metadata."""
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["probabilities"])], "tiny",
                              [helper.make_tensor_value_info("images", graph_input_type, [None, 3])],
                              [helper.make_tensor_value_info("probabilities", graph_input_type, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = lively_random_model()
    path = export.export_classifier(model, folder / "model.onnx", LABELS, PREPROCESS, RULE)
    int8 = quantize(path, folder / "model.int8.onnx", crops(24, seed=2))
    return model, path, int8, folder


# ---- what a maskdet export carries --------------------------------------------------------------

def test_export_writes_one_file_with_the_contract_in_metadata(exported):
    _, path, int8, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["model.int8.onnx", "model.onnx"]  # no .tmp, .pre, .data
    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(meta) == {"maskdet_version", "labels", "preprocess", "crop_rule", "detector", "opset"}
    assert json.loads(meta["detector"]) == {"search_side": 640, "min_face_size": 20, "thresholds": [0.6, 0.7, 0.7],
                                            "min_probability": 0.0, "max_faces": 200, "pad_fraction": 0.25,
                                            "networks": "facenet"}
    assert json.loads(meta["labels"]) == LABELS
    assert json.loads(meta["preprocess"]) == {"input_size": SIZE, "mean": [0.485, 0.456, 0.406],
                                              "std": [0.229, 0.224, 0.225], "color_order": "RGB",
                                              "layout": "NHWC", "dtype": "uint8"}
    assert json.loads(meta["crop_rule"]) == {"margin": 1.5, "size": SIZE, "square": True, "clamp": True}
    assert meta["opset"] == str(OPSET) == "17" and meta["maskdet_version"] == __version__
    assert {o.domain: o.version for o in proto.opset_import}[""] == OPSET
    assert proto.producer_name == "maskdet" and "uint8 RGB face crops" in proto.doc_string
    [graph_input], [graph_output] = proto.graph.input, proto.graph.output
    assert graph_input.name == "images" and graph_input.type.tensor_type.elem_type == TensorProto.UINT8
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]
    assert graph_output.name == "probabilities"


def test_load_classifier_reads_the_contract_back(exported):
    _, path, _, _ = exported
    classifier = load_classifier(path)
    assert classifier.labels == LABELS and classifier.preprocess == PREPROCESS and classifier.rule == RULE
    assert classifier.path == path and classifier.detector == DetectorSettings()


def with_detector(source, target, value: str | None):
    """A copy of a model whose detector metadata is `value` (None: none at all)."""
    proto = onnx.load(str(source))
    kept = [prop for prop in proto.metadata_props if prop.key != "detector"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if value is not None:
        proto.metadata_props.add(key="detector", value=value)
    onnx.save(proto, str(target))
    return target


def test_detector_settings_travel_in_the_metadata_and_default_when_absent(exported, tmp_path):
    _, path, _, _ = exported
    older = load_classifier(with_detector(path, tmp_path / "older.onnx", None))
    assert older.detector == DetectorSettings()  # exported before models carried them
    crowd = load_classifier(with_detector(path, tmp_path / "crowd.onnx", '{"max_faces": 500, "min_face_size": 12}'))
    assert crowd.detector == DetectorSettings(max_faces=500, min_face_size=12)
    assert DetectorSettings.from_dict(crowd.detector.to_dict()) == crowd.detector


@pytest.mark.parametrize("value, phrase", [
    ('{"max_faces": 0}', "max_faces is 0"),
    ('{"search_side": 100000}', "search_side is 100000"),
    ('{"thresholds": [0.6, 0.7]}', "thresholds are (0.6, 0.7)"),
    ('{"min_face_size": 8}', "min_face_size is 8"),
    ('{"networks": "yolo"}', "networks is 'yolo', not one of facenet, masked"),
    ('{"colour": "red"}', "must be an object"),
    ("[1, 2]", "must be an object"),
    ('{"thresholds": 3}', "has detector settings maskdet cannot use"),
    ("[" * 100_000, "has detector settings maskdet cannot use"),  # nested too deep to parse: a sentence
])
def test_bad_detector_settings_make_the_model_refused_in_a_sentence(exported, tmp_path, value, phrase):
    _, path, _, _ = exported
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(with_detector(path, tmp_path / "bad.onnx", value))
    assert phrase in str(error.value)
    assert_one_sentence(str(error.value))


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_onnx_matches_torch_for_any_batch_size(exported, batch):
    model, path, _, _ = exported
    images = crops(batch, seed=10 + batch)
    probabilities = load_classifier(path).predict(images)
    assert probabilities.shape == (batch, len(LABELS))
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(probabilities, torch_probabilities(model, images), atol=1e-4)


def test_predict_of_no_crops_is_empty(exported):
    assert load_classifier(exported[1]).predict(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, len(LABELS))


# ---- parity ---------------------------------------------------------------------------------------

def test_parity_numbers(exported):
    model, path, _, _ = exported
    classifier = load_classifier(path)
    images = crops(12, seed=3)
    reference = torch_probabilities(model, images)
    assert len(set(reference.argmax(1))) > 1  # the model really distinguishes inputs
    same = parity(classifier, images, reference)
    assert same["images"] == 12 and same["same_argmax"] is True and same["argmax_disagreements"] == 0
    assert 0 <= same["max_probability_difference"] < 1e-4
    rolled = np.roll(reference, 1, axis=1)  # every argmax moves to another class
    different = parity(classifier, images, rolled)
    assert different["same_argmax"] is False and different["argmax_disagreements"] == 12
    assert different["max_probability_difference"] == pytest.approx(np.abs(classifier.predict(images) - rolled).max())
    assert parity(classifier, images[:0], reference[:0]) == {"images": 0, "same_argmax": True,
                                                             "max_probability_difference": 0.0}
    assert json.dumps(same) and json.dumps(different)  # plain JSON types for metrics.json


# ---- int8 -----------------------------------------------------------------------------------------

def test_quantize_makes_a_smaller_model_with_the_metadata(exported):
    _, path, int8, _ = exported
    assert int8.stat().st_size < 0.5 * path.stat().st_size
    original = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    quantized_proto = onnx.load(str(int8))
    quantized = {p.key: p.value for p in quantized_proto.metadata_props}
    assert quantized == {**original, "quantization": "int8 static QDQ per-channel"}
    assert any(node.op_type == "QuantizeLinear" for node in quantized_proto.graph.node)
    classifier = load_classifier(int8)
    assert classifier.labels == LABELS and classifier.preprocess == PREPROCESS and classifier.rule == RULE
    images = crops(8, seed=4)
    probabilities = classifier.predict(images)
    # the softmax stays in float (excluded from quantisation), so probabilities still sum to 1
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert probabilities.shape == (8, len(LABELS)) and (probabilities >= 0).all()


# ---- refusing files that are not maskdet models -----------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(tmp_path / "nothing.onnx")
    assert str(error.value) == f"Model file not found: {tmp_path / 'nothing.onnx'}."
    assert isinstance(error.value, ValueError)


def test_text_file_renamed_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a model\n" * 20)
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(path)
    message = str(error.value)
    assert message.startswith("notes.onnx is not a readable ONNX model (")
    assert_one_sentence(message)
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_valid_onnx_that_is_not_from_maskdet(tmp_path):
    path = tmp_path / "identity.onnx"
    save_model(path)
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(path)
    assert str(error.value) == ("identity.onnx is an ONNX model but not one exported by maskdet "
                                "(its labels and preprocessing metadata are missing).")
    assert_one_sentence(str(error.value))


@pytest.mark.parametrize("labels", ["not json", json.dumps(LABELS), "[" * 100_000],
                         ids=["not-json", "no-crop-rule", "nested-100000-deep"])
def test_broken_or_partial_maskdet_metadata(tmp_path, labels):
    path = tmp_path / "partial.onnx"
    save_model(path, metadata={"labels": labels, "preprocess": "{}"})  # no crop_rule
    with pytest.raises(NotAMaskdetModel, match="not one exported by maskdet"):
        load_classifier(path)


def test_maskdet_metadata_on_a_model_with_the_wrong_signature(tmp_path, exported):
    path = tmp_path / "float-input.onnx"
    original = {p.key: p.value for p in onnx.load(str(exported[1])).metadata_props}
    save_model(path, TensorProto.FLOAT, metadata=original)
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(path)
    assert str(error.value) == "float-input.onnx does not have maskdet's input/output signature."


# ---- metadata checked against the graph, and the size cap, before anything is built ---------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    """benchmarks/hostile_inputs.py's maker of small models with maskdet's signature and metadata: the hostile
    models the benchmark replays are made the same way here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from hostile_inputs import tiny_model

    return tiny_model


def test_a_tiny_model_with_maskdets_contract_loads_and_predicts(tmp_path, tiny_model):
    tiny_model(tmp_path / "tiny.onnx")
    assert load_classifier(tmp_path / "tiny.onnx").predict(crops(3)).shape == (3, 2)


@pytest.mark.parametrize("settings, message", [
    ({"side": 100_000}, "declares 100000-pixel inputs, 100000-pixel crops and a crop margin of 1.25; maskdet's "
                        "models take 32-512 pixels, the same for both, with a margin of 1-3."),
    ({"graph_side": 96}, "declares 64-pixel crops but its graph takes [96, 96, 3]."),
    ({"labels": LABELS}, "names 3 classes but its graph gives 2 probabilities."),
    ({"labels": ["with_mask", "with_mask"]}, "has no list of two or more distinct class names in its metadata."),
    ({"labels": {"a": 1}}, "has no list of two or more distinct class names in its metadata."),
    ({"bomb": 25 * 10**9}, "uses operators maskdet's models do not (ConstantOfShape, ReduceSum)."),  # 100 GB folded
    # Hostile files, round two: sparse weights (C: three of 2 GB once dense, in a 600-byte file) and compute (D: ten
    # 64-channel convolutions at 512 px, each tensor within the per-crop bound).
    ({"sparse": 3}, "holds sparse weights, which maskdet's models do not."),
    ({"convs": 10, "side": 512},
     "takes 87.4 billion multiply-adds a face crop; maskdet's models take at most 4 billion."),
], ids=["huge-crop", "graph-size", "label-count", "same-labels", "labels-not-a-list", "constant-bomb", "sparse-weights",
        "heavy-compute"])
def test_metadata_that_does_not_fit_the_graph_is_refused_before_a_session(tmp_path, settings, message, tiny_model):
    path = tmp_path / "hostile.onnx"
    tiny_model(path, **settings)
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(path)
    assert str(error.value) == f"hostile.onnx {message}"
    assert_one_sentence(str(error.value))


def test_a_model_of_large_tensors_runs_a_few_crops_at_a_time(tmp_path, tiny_model):
    """Hostile files, round two (D): the bounds held one crop's tensors, but batches hold 32 crops; now a run of the
    model holds at most MAX_RUN_BYTES in its largest tensor (here 64 channels at 512 px: 64 MiB a crop)."""
    classifier = load_classifier(tiny_model(tmp_path / "wide.onnx", side=512, convs=1))
    assert classifier.crops_per_run == MAX_RUN_BYTES // (512 * 512 * 64 * 4) == 4
    images = np.random.default_rng(3).integers(0, 256, (9, 512, 512, 3), dtype=np.uint8)
    together = classifier.predict(images)
    assert together.shape == (9, 2)
    np.testing.assert_allclose(together, np.concatenate([classifier.predict(image[None]) for image in images]),
                               rtol=1e-5)


def test_maskdets_own_models_are_well_inside_the_weight_and_compute_bounds(exported):
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(exported[1])), strict_mode=True).graph
    assert weights_problem(graph) is None and macs_per_crop(graph) < MAX_MACS_PER_CROP / 10


def test_a_model_file_above_the_size_cap_is_refused_unread(exported, monkeypatch):
    monkeypatch.setattr(classifier_module, "MAX_MODEL_BYTES", 2**20)
    with pytest.raises(NotAMaskdetModel) as error:
        load_classifier(exported[1])
    assert re.fullmatch(r"model\.onnx is [89] MB; a maskdet model is at most 1 MB\.", str(error.value))


def test_a_model_naming_the_masked_networks_gets_them_in_its_bundle(exported, tmp_path, shared_data):
    """The bundle ships the set its model names, and its script, run alone (onnxruntime, numpy, Pillow), finds with
    them the faces `maskdet predict` finds."""
    import io
    import os
    import subprocess
    import zipfile

    from maskdet.bundle.mtcnn_cascade import NETWORK_FILES
    from maskdet.serving.bundle import bundle_zip
    from maskdet.serving.predict import predict_image
    from maskdet.vision.faces import FaceDetector, box_iou
    from maskdet.vision.mtcnn import masked_networks

    folder = tmp_path / "run"
    folder.mkdir()
    with_detector(exported[1], folder / "model.onnx", json.dumps({"networks": "masked"}))
    classifier = load_classifier(folder / "model.onnx")
    assert classifier.detector.networks == "masked"
    with zipfile.ZipFile(io.BytesIO(bundle_zip(folder))) as archive:
        assert [archive.read(name) for name in NETWORK_FILES] == list(masked_networks())
        archive.extractall(tmp_path / "bundle")
    photos = [shared_data / "with_mask" / "10-with-mask.jpg", shared_data / "without_mask" / "100.jpg"]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no maskdet to import
    done = subprocess.run([sys.executable, "predict_onnx.py", *map(str, photos)], cwd=tmp_path / "bundle",
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    detector = FaceDetector.for_photos(classifier.detector)
    for entry, photo in zip(json.loads(done.stdout)["images"], photos, strict=True):
        _, expected = predict_image(photo.read_bytes(), detector, classifier, 40_000_000, 0.6)
        assert len(entry["faces"]) == len(expected) >= 1, entry
        assert all(box_iou(face["box"], reference.box) > 0.9 for face, reference in zip(entry["faces"], expected))
