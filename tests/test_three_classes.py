"""A real three-class model (with_mask, without_mask and mask_incorrect, the last simply masks-small photos imported
under that class) through everything that serves it: its ONNX metadata, `maskdet predict`, the bundle's script, the
threshold figures, scoring a set with face boxes whose worn-wrong class it names otherwise, and the Metrics and Live
pages."""

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from itertools import product
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pyarrow as pa
import pytest
import streamlit_webrtc.component
from streamlit.testing.v1 import AppTest

from maskdet.core.imageio import decode_image
from maskdet.core.settings import load_settings
from maskdet.core.threshold import ALL_FACES
from maskdet.data.annotations import read_annotated_folder
from maskdet.data.store import Store
from maskdet.runs.active import model_path, set_active_run, threshold_scores
from maskdet.runs.execute import execute_run
from maskdet.serving.box_evaluation import evaluate_boxes
from maskdet.serving.bundle import bundle_zip
from maskdet.serving.classifier import load_classifier
from maskdet.training.config import TrainConfig
from maskdet.vision.faces import FaceDetector
from tests.conftest import data_home, photo_pairs
from tests.test_annotations import voc
from tests.test_cli import cli
from tests.test_page_live import legend_items

CLASSES = {"with_mask", "without_mask", "mask_incorrect"}
PAGES = Path(__file__).resolve().parents[1] / "pages"
PHOTOS = 8  # a class
MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def three(tmp_path_factory, shared_data, backbone_weights, detector) -> SimpleNamespace:
    """A data home whose active model is a three-class one, trained on 8 photos a class with no augmented views and
    no drawn masks. Has root, env, store, run, model (its path), classifier and photos ({class: [paths]})."""
    root = tmp_path_factory.mktemp("three-classes")
    names = photo_pairs(shared_data)[-PHOTOS:]
    sources = {"with_mask": [shared_data / "with_mask" / f"{name}-with-mask.jpg" for name in names],
               "without_mask": [shared_data / "without_mask" / f"{name}.jpg" for name in names],
               "mask_incorrect": sorted((shared_data / "with_mask").glob("augmented_image_*.jpg"))[:PHOTOS]}
    photos = {}
    for label, paths in sources.items():
        (root / "photos" / label).mkdir(parents=True)
        photos[label] = [Path(shutil.copyfile(path, root / "photos" / label / path.name)) for path in paths]
    with data_home(root) as env:
        store = Store(load_settings())
        store.import_folder(root / "photos", detector)
        config = TrainConfig.from_dict({"views_per_image": 0, "epochs": 20, "quantize": False,
                                        "backbone_weights": str(backbone_weights),
                                        "synthetic_masks": {"enabled": False}})
        run = set_active_run(store, execute_run(store, config, store.settings.models_dir)["run_id"])
        model = model_path(store, run)
        yield SimpleNamespace(root=root, env=env, store=store, run=run, model=model, classifier=load_classifier(model),
                              photos=photos)


@pytest.fixture
def env(three, monkeypatch):
    """The module's data home for a page test; streamlit-webrtc made to render under AppTest, no ICE servers."""
    for key, value in three.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)
    monkeypatch.delenv("MASKDET_ICE_SERVERS", raising=False)
    return three


def test_the_model_file_names_the_three_classes_in_the_order_of_its_output(three):
    metadata = {prop.key: prop.value for prop in onnx.load(str(three.model)).metadata_props}
    labels = json.loads(metadata["labels"])
    assert set(labels) == CLASSES and len(labels) == 3
    assert three.classifier.labels == labels
    size = three.classifier.rule.size
    probabilities = three.classifier.predict(np.zeros((2, size, size, 3), np.uint8))
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def faces_of(output: dict) -> list[dict]:
    """The faces of `maskdet predict`'s JSON (the bundle script's too), each checked: three probabilities, and the
    top class as its label unless that is below the threshold."""
    faces = [face for image in output["images"] for face in image["faces"]]
    for face in faces:
        probabilities = face["probabilities"]
        assert set(probabilities) == CLASSES and sum(probabilities.values()) == pytest.approx(1, abs=1e-3)
        assert face["probability"] == max(probabilities.values())
        top = max(probabilities, key=probabilities.get)
        assert face["label"] == (top if face["probability"] >= output["threshold"] else "uncertain")
    return faces


def test_predict_gives_one_of_the_three_classes_with_three_probabilities(three, tmp_path):
    photo = three.photos["mask_incorrect"][0]
    done = cli(tmp_path, "predict", photo, "--model", three.model, "--annotate", tmp_path / "annotated")
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["labels"] == three.classifier.labels
    assert len(faces_of(output)) == 1
    assert Path(output["images"][0]["annotated"]).is_file()


def test_the_bundle_script_names_the_three_classes(three, tmp_path):
    with zipfile.ZipFile(io.BytesIO(bundle_zip(three.model.parent))) as archive:
        archive.extractall(tmp_path)
    assert json.loads((tmp_path / "labels.json").read_text()) == three.classifier.labels
    photos = [str(three.photos[label][1]) for label in sorted(CLASSES)]
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no maskdet to import
    done = subprocess.run([sys.executable, "predict_onnx.py", *photos], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["labels"] == three.classifier.labels
    assert len(faces_of(output)) >= 3


def test_the_threshold_figures_have_a_row_for_each_of_the_three_classes(three):
    scores = threshold_scores(three.store, three.run)
    assert scores.probabilities.shape == (len(scores.targets), 3)
    rows = scores.at(0.6)
    assert [row["class"] for row in rows] == [*three.classifier.labels, ALL_FACES]
    assert sum(row["support"] for row in rows[:3]) == rows[3]["support"] == len(scores.targets)
    curves = scores.curves()
    assert {row["class"] for row in curves} == CLASSES
    assert min(row["threshold"] for row in curves) == 0.33  # a top probability of three classes is at least 1/3


def voc_set(folder: Path, faces: list[tuple[Path, str]]) -> Path:
    """A PASCAL VOC folder of photos whose one face each is boxed (where MTCNN finds it) as the class given."""
    detector = FaceDetector()
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
    for number, (photo, label) in enumerate(faces):
        image = decode_image(photo.read_bytes(), MAX_PIXELS)
        [face] = detector.detect([image])[0][:1]
        x1, y1, x2, y2 = (round(v) for v in face.box)
        shutil.copyfile(photo, folder / "images" / f"p{number}.jpg")
        (folder / "annotations" / f"p{number}.xml").write_text(voc((label, x1 + 1, y1 + 1, x2, y2)))
    return folder


def test_a_boxed_sets_worn_wrong_class_counts_as_the_models_worn_wrong_class(three, tmp_path):
    faces = [(three.photos["mask_incorrect"][2], "mask_weared_incorrect"),
             (three.photos["mask_incorrect"][3], "mask_weared_incorrect"),
             (three.photos["with_mask"][2], "with_mask"), (three.photos["without_mask"][2], "without_mask")]
    report = evaluate_boxes(read_annotated_folder(voc_set(tmp_path / "set", faces)), three.classifier, MAX_PIXELS)
    assert report["counts_as"] == {"mask_weared_incorrect": "mask_incorrect"}
    assert report["labels"] == three.classifier.labels and report["faces"] == 4
    scores = report["iou_0.5"]
    assert scores["by_class"]["mask_weared_incorrect"]["faces"] == 2
    assert len(scores["confusion"]) == 3 and all(len(row) == 3 for row in scores["confusion"])
    found = {label: scores["by_class"][label]["found"] for label in ("mask_weared_incorrect", "with_mask",
                                                                     "without_mask")}
    rows = dict(zip(report["labels"], map(sum, scores["confusion"])))
    assert rows == {"mask_incorrect": found["mask_weared_incorrect"], "with_mask": found["with_mask"],
                    "without_mask": found["without_mask"]}
    assert set(scores["ap"]) == CLASSES and scores["ap"]["mask_incorrect"] is not None


def chart_rows(node) -> list[list[dict]]:
    """The data rows of each Vega-Lite chart (Altair) under an element-tree node."""
    return [[row for dataset in chart.proto.datasets for row in pa.ipc.open_stream(dataset.data.data).read_all()
             .to_pylist()] for chart in node.get("vega_lite_chart")]


def test_the_metrics_page_shows_a_three_by_three_confusion_matrix_and_a_curve_per_class(env):
    at = AppTest.from_file(str(PAGES / "3_Metrics.py"), default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    tab = at.tabs[0]
    report = env.store.run(env.run["id"])["metrics"]["test"]
    [confusion] = [rows for rows in chart_rows(tab) if rows and "predicted" in rows[0]]
    labels = env.classifier.labels
    assert [(cell["true"], cell["predicted"]) for cell in confusion] == list(product(labels, labels))
    assert [cell["count"] for cell in confusion] == [n for row in report["confusion_matrix"] for n in row]
    assert sum(cell["count"] for cell in confusion) == report["num_samples"]
    per_class = next(frame.value for frame in tab.dataframe if "f1" in frame.value.columns)
    assert list(per_class["class"]) == labels + ["macro average"]
    titles = [json.loads(chart.proto.spec).get("title") for chart in tab.get("vega_lite_chart")]
    for label in labels:
        assert f"{label}: confidence" in titles and f"{label}: at each threshold" in titles
    threshold = next(frame.value for frame in tab.dataframe if "uncertain" in frame.value.columns)
    assert list(threshold["class"]) == labels + [ALL_FACES]


def test_the_live_legend_names_the_three_classes_a_mask_worn_wrongly_in_amber(env):
    at = AppTest.from_file(str(PAGES / "5_Live.py"), default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    colors = {"with_mask": (46, 160, 67), "without_mask": (214, 39, 40), "mask_incorrect": (255, 176, 0)}
    assert legend_items(at) == [[*((label, colors[label]) for label in env.classifier.labels),
                                 ("uncertain", (160, 160, 160))]]
