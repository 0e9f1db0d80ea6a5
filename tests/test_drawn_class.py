"""A class made of drawings only: an empty mask_incorrect class trained from masks drawn worn wrongly on without_mask
faces, measured on drawings in validation and test, exported with its name to ONNX, the bundle and the Metrics page."""

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from maskdet.core.settings import load_settings
from maskdet.data.store import Store
from maskdet.runs.active import model_path, set_active_run
from maskdet.runs.edits import misclassified_faces
from maskdet.runs.execute import execute_run
from maskdet.serving.bundle import bundle_zip
from maskdet.serving.classifier import load_classifier
from maskdet.training.config import TrainConfig
from maskdet.vision.synth import WRONG_PLACEMENTS
from tests.conftest import data_home, photo_pairs

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["with_mask", "without_mask", "mask_incorrect"]


@pytest.fixture(scope="module")
def drawn_home(tmp_path_factory, shared_data, backbone_weights, detector) -> SimpleNamespace:
    """40 masks-small photo pairs and an empty mask_incorrect class, trained with the automatic rules."""
    root = tmp_path_factory.mktemp("drawn")
    for name in photo_pairs(shared_data)[40:80]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (root / "photos" / label).mkdir(parents=True, exist_ok=True)
            (root / "photos" / label / file).write_bytes((shared_data / label / file).read_bytes())
    with data_home(root) as env:
        store = Store(load_settings())
        store.import_folder(root / "photos", detector)
        store.add_label("mask_incorrect")
        config = TrainConfig(views_per_image=2, quantize=False, backbone_weights=str(backbone_weights))
        metrics = execute_run(store, config, store.settings.models_dir)
        run = set_active_run(store, metrics["run_id"])
    return SimpleNamespace(root=root, env=env, store=store, run=run, metrics=metrics, model=model_path(store, run))


def predictions(home) -> list[dict]:
    with open(home.model.parent / "predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_the_drawn_class_trains_from_without_mask_faces(drawn_home):
    metrics = drawn_home.metrics
    assert metrics["labels"] == LABELS
    right, wrong, twin = metrics["synthetic_masks"]["rules"]
    assert (right["target"], right["worn"], wrong["target"], wrong["worn"]) == (
        "with_mask", "right", "mask_incorrect", "wrong")
    assert (twin["target"], twin["worn"], twin["mask_from"]) == ("mask_incorrect", "wrong", "twin")
    assert wrong["views"] > 0 and wrong["source_faces_with_landmarks"] > 0
    twins = sum(1 for r in drawn_home.store.faces(split="train") if r.label == "without_mask")
    assert 0.5 * twins * 2 <= twin["views"] <= twins * 2  # most bare faces have their twin: one moved mask a round
    assert metrics["split_counts"]["train"]["mask_incorrect"] == 0  # training draws them; no real faces


def test_validation_and_test_faces_of_the_drawn_class_are_drawings(drawn_home):
    drawn = drawn_home.metrics["synthetic_masks"]["drawn_faces"]
    rows = predictions(drawn_home)
    bare = [row for row in rows if row["true"] == "without_mask"]
    drawings = [row for row in rows if row["drawn"]]
    assert drawn["test"] == {"mask_incorrect": len(drawings)} and len(drawings) == len(bare) > 0
    assert drawn["val"]["mask_incorrect"] > 0
    assert all(row["true"] == "mask_incorrect" and row["drawn"] in WRONG_PLACEMENTS for row in drawings)
    assert {row["image_id"] for row in drawings} == {row["image_id"] for row in bare}  # the same faces, drawn on
    assert {row["drawn_from"] for row in drawings} == {"drawing", "twin"}  # the class's two wrong-worn rules in turn
    for row in drawings:  # the face's name says how its mask came
        said = "(its masked twin's real mask moved, " if row["drawn_from"] == "twin" else "(mask drawn "
        assert said in row["source_name"], row
    assert all(not row["drawn_from"] for row in rows if not row["drawn"])
    assert drawn_home.metrics["split_counts"]["test"]["mask_incorrect"] == len(drawings)
    recall = sum(row["predicted"] == "mask_incorrect" for row in drawings) / len(drawings)
    called_bare = sum(row["predicted"] == "without_mask" for row in drawings) / len(drawings)
    assert recall >= 0.4 and called_bare <= 0.25, (recall, called_bare)  # told apart from bare faces (by a model
    # trained on 40 photos: its seeded run found 4 of 7, calling none bare)


def test_drawn_mistakes_show_their_drawing_and_cannot_be_relabelled(drawn_home):
    rows = predictions(drawn_home)
    drawn_wrong = [i for i, row in enumerate(rows) if row["drawn"] and row["predicted"] != row["true"]]
    mistakes = {m.name: m for m in misclassified_faces(drawn_home.store, drawn_home.run)}
    for index in drawn_wrong:
        mistake = mistakes.get(rows[index]["source_name"])
        if mistake:  # among the most confident mistakes shown
            assert mistake.image_id is None and mistake.crop.shape == (160, 160, 3)
            assert "not a photo to relabel" in mistake.note


def test_the_onnx_model_and_the_bundle_name_the_drawn_class(drawn_home, shared_data, tmp_path):
    classifier = load_classifier(drawn_home.model)
    assert classifier.labels == LABELS
    with zipfile.ZipFile(io.BytesIO(bundle_zip(drawn_home.model.parent))) as archive:
        archive.extractall(tmp_path / "bundle")
    photo = shared_data / "without_mask" / f"{photo_pairs(shared_data)[0]}.jpg"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "predict_onnx.py", str(photo)], cwd=tmp_path / "bundle",
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["labels"] == LABELS
    face = output["images"][0]["faces"][0]
    assert set(face["probabilities"]) == set(LABELS) and face["label"] in [*LABELS, "uncertain"]
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3


def test_the_model_card_names_the_rules(drawn_home):
    card = (drawn_home.model.parent / "MODEL_CARD.md").read_text()
    assert "trained as 'with_mask'" in card and "worn right" in card
    assert "trained as 'mask_incorrect'" in card and "worn wrongly" in card
    assert "faces with their masked twin's real mask moved, worn wrongly (under the nose" in card


def test_the_metrics_page_says_the_drawn_class_was_measured_on_drawings(drawn_home, monkeypatch):
    for key, value in drawn_home.env.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(ROOT / "pages" / "3_Metrics.py"), default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    count = drawn_home.metrics["synthetic_masks"]["drawn_faces"]["test"]["mask_incorrect"]
    assert any(w.value.startswith(f"mask_incorrect: measured on drawings, not on real faces. Its {count} test faces")
               for w in at.tabs[0].warning)
    per_class = next(frame.value for frame in at.tabs[0].dataframe if "f1" in frame.value.columns)
    assert dict(zip(per_class["class"], per_class["measured on"])) == {
        "with_mask": "real faces", "without_mask": "real faces", "mask_incorrect": "drawings, not real faces",
        "macro average": "both"}
