"""The class confidence threshold: its figures on a hand-made test split, saving it with a real run (registry and
both ONNX files, read back by the loader and the bundle's script), and refusing values outside 0-1."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from maskdet.core.errors import StoreError
from maskdet.core.settings import load_settings
from maskdet.core.threshold import ALL_FACES, Scores, check_threshold, threshold_grid
from maskdet.data.store import Store
from maskdet.runs.active import run_threshold, set_threshold, threshold_scores
from maskdet.runs.execute import execute_run
from maskdet.runs.views import RunRecord, run_dir
from maskdet.serving.bundle import bundle_zip
from maskdet.serving.classifier import NotAMaskdetModel, load_classifier, write_threshold
from maskdet.training.config import TrainConfig
from tests.conftest import data_home, encode, pattern_image, write_dataset

# Six test faces of classes a and b. Top probability and outcome: a .95 right, a .70 right, a .60 wrong (said b),
# b .80 right, b .55 wrong (said a), b .90 right.
EXAMPLE = Scores(["a", "b"], [0, 0, 0, 1, 1, 1],
                 [[0.95, 0.05], [0.70, 0.30], [0.40, 0.60], [0.20, 0.80], [0.55, 0.45], [0.10, 0.90]])
COLUMNS = ("class", "precision", "recall", "uncertain", "labelled", "support")


def table(rows: list[dict]) -> list[tuple]:
    return [tuple(row[column] for column in COLUMNS) for row in rows]


# ---- the figures -------------------------------------------------------------------------------------------

def test_precision_recall_and_uncertain_share_at_a_threshold():
    assert table(EXAMPLE.at(0.5)) == [("a", 2 / 3, 2 / 3, 0.0, 3, 3), ("b", 2 / 3, 2 / 3, 0.0, 3, 3),
                                      (ALL_FACES, 4 / 6, 4 / 6, 0.0, 6, 6)]
    # a face at exactly the threshold keeps its label (b .60, wrong); b .55 becomes uncertain
    assert table(EXAMPLE.at(0.6)) == [("a", 1.0, 2 / 3, 0.0, 2, 3), ("b", 2 / 3, 2 / 3, 1 / 3, 3, 3),
                                      (ALL_FACES, 4 / 5, 4 / 6, 1 / 6, 5, 6)]
    assert table(EXAMPLE.at(0.65)) == [("a", 1.0, 2 / 3, 1 / 3, 2, 3), ("b", 1.0, 2 / 3, 1 / 3, 2, 3),
                                       (ALL_FACES, 1.0, 4 / 6, 2 / 6, 4, 6)]
    assert table(EXAMPLE.at(0.85)) == [("a", 1.0, 1 / 3, 2 / 3, 1, 3), ("b", 1.0, 1 / 3, 2 / 3, 1, 3),
                                       (ALL_FACES, 1.0, 2 / 6, 4 / 6, 2, 6)]
    # nothing labelled: precision has no faces to be measured on
    assert table(EXAMPLE.at(0.96)) == [("a", None, 0.0, 1.0, 0, 3), ("b", None, 0.0, 1.0, 0, 3),
                                       (ALL_FACES, None, 0.0, 1.0, 0, 6)]
    assert {row["threshold"] for row in EXAMPLE.at("0.65")} == {0.65}


def test_curves_hold_every_threshold_of_the_grid_per_class():
    assert threshold_grid(2) == [step / 100 for step in range(50, 100)]
    assert threshold_grid(3)[0] == 0.33 and threshold_grid(3)[-1] == 0.99
    curves = EXAMPLE.curves()
    assert len(curves) == 50 * 2 and {row["class"] for row in curves} == {"a", "b"}
    assert [row for row in curves if row["threshold"] == 0.65] == EXAMPLE.at(0.65)[:2]
    recall_a = [row["recall"] for row in curves if row["class"] == "a"]
    assert recall_a == sorted(recall_a, reverse=True)  # a higher threshold never finds more


def test_confidence_histogram_per_class_correct_and_wrong():
    bins = EXAMPLE.histogram()
    assert len(bins) == 2 * 2 * 10  # classes x outcomes x bins of 0.05 from 0.5 to 1
    assert {(row["from"], row["to"]) for row in bins} == {(step / 20, (step + 1) / 20) for step in range(10, 20)}
    filled = sorted((row["class"], row["outcome"], row["from"], row["faces"]) for row in bins if row["faces"])
    assert filled == [("a", "correct", 0.7, 1), ("a", "correct", 0.95, 1), ("a", "wrong", 0.6, 1),
                      ("b", "correct", 0.8, 1), ("b", "correct", 0.9, 1), ("b", "wrong", 0.55, 1)]
    certain = Scores(["a", "b", "c"], [2], [[0.0, 0.0, 1.0]]).histogram()  # p = 1 lands in the last bin
    assert [(row["from"], row["faces"]) for row in certain if row["faces"]] == [(0.95, 1)]
    assert min(row["from"] for row in certain) == 0.3  # 3 classes: a top probability is at least 1/3


@pytest.mark.parametrize("value", [1.5, -0.1, "abc", 0, 1, float("nan"), None, True])
def test_a_threshold_outside_0_1_is_a_sentence(value):
    with pytest.raises(ValueError) as error:
        check_threshold(value)
    assert str(error.value) == ("The confidence threshold must be a number between 0 and 1 (not included), such as "
                                f"0.6; {value!r} is not.")
    with pytest.raises(ValueError):
        EXAMPLE.at(value)


def test_probabilities_that_do_not_fit_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"3 test faces and 2 classes need probabilities of shape \(3, 2\)"):
        Scores(["a", "b"], [0, 1, 1], [[0.5, 0.5]])


# ---- saving it with a run ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def home(tmp_path_factory, detector):
    """One tiny finished run with model.onnx and model.int8.onnx, and a failed one."""
    root = tmp_path_factory.mktemp("threshold")
    with data_home(root):
        store = Store(load_settings())
        store.import_folder(write_dataset(root / "data", 12), detector)
        config = TrainConfig(random_init=True, views_per_image=1, epochs=3, input_size=96, quantize=True)
        run_id = execute_run(store, config, store.settings.models_dir)["run_id"]
        failed = store.create_run(config.to_dict())
        store.update_run(failed, status="failed", error="Stopped.")
        folder = run_dir(store, store.run(run_id))
        yield SimpleNamespace(root=root, store=store, run_id=run_id, failed=failed, folder=folder,
                              models=[folder / "model.onnx", folder / "model.int8.onnx"])


def metadata(path) -> dict:
    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_run_starts_from_the_default(home):
    run = home.store.run(home.run_id)
    assert run_threshold(run) == 0.6 and "class_threshold" not in run["metrics"]
    assert all(path.is_file() and "class_threshold" not in metadata(path) for path in home.models)
    assert [load_classifier(path).class_threshold for path in home.models] == [0.6, 0.6]


def test_the_runs_test_split_is_read_back_as_scores(home):
    run = home.store.run(home.run_id)
    report = RunRecord.of(run).test
    scores = threshold_scores(home.store, run)
    assert scores.labels == report["labels"] == ["with_mask", "without_mask"]
    assert scores.probabilities.shape == (report["num_samples"], 2)
    assert np.bincount(scores.targets, minlength=2).tolist() == [c["support"] for c in report["per_class"]]
    np.testing.assert_allclose(scores.probabilities.sum(1), 1, atol=1e-5)


def test_set_threshold_stores_it_with_the_run_and_in_both_model_files(home):
    before = home.store.run(home.run_id)["metrics"]
    metadata_before = [metadata(path) for path in home.models]
    crops = np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    probabilities = [load_classifier(path).predict(crops) for path in home.models]

    assert set_threshold(home.store, home.run_id, 0.72) == 0.72

    run = home.store.run(home.run_id)
    assert run["metrics"] == {**before, "class_threshold": 0.72} and run_threshold(run) == 0.72
    for path, meta, expected in zip(home.models, metadata_before, probabilities):
        assert metadata(path) == {**meta, "class_threshold": "0.72"}
        classifier = load_classifier(path)
        assert classifier.class_threshold == 0.72
        np.testing.assert_array_equal(classifier.predict(crops), expected)  # the same model, only the metadata new
    assert sorted(p.name for p in home.folder.iterdir() if "tmp" in p.name) == []
    set_threshold(home.store, home.run_id, "0.7")  # a number as text, as a form may send it
    assert [load_classifier(path).class_threshold for path in home.models] == [0.7, 0.7]
    assert metadata(home.models[0])["class_threshold"] == "0.7"  # replaced, not added twice
    assert [prop.key for prop in onnx.load(str(home.models[0])).metadata_props].count("class_threshold") == 1


@pytest.mark.parametrize("value", [1.5, -0.1, "abc"])
def test_a_threshold_outside_0_1_is_refused_and_nothing_changes(home, value):
    set_threshold(home.store, home.run_id, 0.7)
    before = (home.store.run(home.run_id), [digest(path) for path in home.models])
    with pytest.raises(StoreError) as error:
        set_threshold(home.store, home.run_id, value)
    assert str(error.value) == ("The confidence threshold must be a number between 0 and 1 (not included), such as "
                                f"0.6; {value!r} is not. Run {home.run_id} keeps its threshold of 0.7.")
    assert (home.store.run(home.run_id), [digest(path) for path in home.models]) == before


def test_a_run_without_a_model_has_no_threshold_to_set(home):
    with pytest.raises(StoreError, match=f"Run {home.failed} failed: only a finished run has a model"):
        set_threshold(home.store, home.failed, 0.7)
    with pytest.raises(StoreError, match="No run with id 'nope'"):
        set_threshold(home.store, "nope", 0.7)


def test_a_model_without_the_key_loads_with_the_default_and_a_bad_key_is_refused(home, tmp_path):
    proto = onnx.load(str(home.models[0]))
    kept = [prop for prop in proto.metadata_props if prop.key != "class_threshold"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    assert load_classifier(older).class_threshold == 0.6
    for value in ("1.5", "abc", "0", "nan"):
        proto.metadata_props.add(key="class_threshold", value=value)
        onnx.save(proto, str(tmp_path / "bad.onnx"))
        with pytest.raises(NotAMaskdetModel) as error:
            load_classifier(tmp_path / "bad.onnx")
        assert str(error.value) == (f"bad.onnx declares a class confidence threshold of {value!r}; maskdet's "
                                    "thresholds are numbers between 0 and 1 (not included).")
        proto.metadata_props.pop()
    with pytest.raises(ValueError, match="1.5 is not"):
        write_threshold(older, 1.5, tmp_path / "never.onnx")
    assert not (tmp_path / "never.onnx").exists()


def test_the_bundle_script_starts_from_the_models_threshold(home, tmp_path):
    set_threshold(home.store, home.run_id, 0.8)
    with zipfile.ZipFile(io.BytesIO(bundle_zip(home.folder))) as archive:
        archive.extractall(tmp_path / "bundle")
    (tmp_path / "photo.jpg").write_bytes(encode(pattern_image(3)))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no maskdet to import

    def script(*args) -> dict:
        done = subprocess.run([sys.executable, "predict_onnx.py", *args, str(tmp_path / "photo.jpg")],
                              cwd=tmp_path / "bundle", env=environment, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert script()["threshold"] == 0.8
    assert script("--threshold", "0.5")["threshold"] == 0.5
    shutil.copyfile(tmp_path / "bundle" / "model.int8.onnx", tmp_path / "bundle" / "copy.onnx")
    assert script("--model", "copy.onnx")["threshold"] == 0.8
