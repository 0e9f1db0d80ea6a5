"""The Models page (Streamlit AppTest) on a data home with one tiny trained run (int8 on) and a copy of it:
downloads with their bytes, the bundle's predict_onnx.py run on its own, the active model, deleting a run."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from maskdet.core.settings import load_settings
from maskdet.core.timing import Timing
from maskdet.data.store import Store
from maskdet.runs.active import active_run
from maskdet.runs.execute import execute_run
from maskdet.runs.lifecycle import delete_run
from maskdet.serving.classifier import TIMING_ROUNDS
from maskdet.training.config import TrainConfig
from tests.conftest import data_home, page_in_app, write_dataset
from tests.test_bundle import BUNDLE_FILES as BUNDLE_WITHOUT_INT8

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "4_Models.py")
BUNDLE_FILES = BUNDLE_WITHOUT_INT8 | {"model.int8.onnx"}


@pytest.fixture(scope="module")
def home(tmp_path_factory, detector):
    """One trained run with its int8 variant; environment restored after the module."""
    root = tmp_path_factory.mktemp("models-page")
    with data_home(root) as env:
        store = Store(load_settings())
        store.import_folder(write_dataset(root / "data", 12), detector)
        config = TrainConfig(random_init=True, views_per_image=1, epochs=5, input_size=96)
        run_id = execute_run(store, config, store.settings.models_dir)["run_id"]
        yield SimpleNamespace(root=root, store=store, run_id=run_id, config=config,
                              env=env)


def copy_of_run(home, test_accuracy: float | None = None) -> str:
    """A second succeeded run: a registry row and folder copied from the trained one (no second training), with
    another test accuracy when given."""
    store, original = home.store, home.store.run(home.run_id)
    run_id = store.create_run(home.config.to_dict())
    folder = store.settings.models_dir / run_id
    shutil.copytree(store.settings.models_dir / home.run_id, folder)
    metrics = original["metrics"]
    if test_accuracy is not None:
        metrics = {**metrics, "test": {**metrics["test"], "accuracy": test_accuracy}}
    store.update_run(run_id, status="succeeded", started_at=original["started_at"],
                     finished_at=original["finished_at"], metrics=metrics, artefact_dir=str(folder))
    return run_id


@pytest.fixture
def deferred(monkeypatch) -> dict[str, tuple[str, object]]:
    """What the page's download buttons would hand over when clicked (data given as a callable), by placeholder id."""
    files = {}
    original = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        file_id = original(self, data_callable, mimetype, coordinates, file_name, **kwargs)
        files[file_id] = (file_name, data_callable)
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return files


def clicked(at: AppTest, deferred: dict) -> dict[str, tuple[str, bytes]]:
    """{button label: (file name, bytes)} for every download button on the page, as a click would hand them over."""
    return {button.label: (deferred[button.proto.deferred_file_id][0], deferred[button.proto.deferred_file_id][1]())
            for button in at.download_button}


@pytest.fixture
def page(home, monkeypatch, downloads, deferred):
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(PAGE, default_timeout=60).run()


def no_crash(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# ---- empty home --------------------------------------------------------------------------------------------

def test_empty_home_says_so_and_points_to_training(settings):
    at = page_in_app("pages/4_Models.py")
    assert not at.exception
    assert at.title[0].value == "Models"
    assert "No models yet" in at.info[0].value
    assert [link.proto.label for link in at.main.get("page_link")] == ["Train a model"]
    assert not at.download_button and not at.selectbox


# ---- downloads ---------------------------------------------------------------------------------------------

def test_downloads_hold_the_model_files_and_show_size_parity_and_metrics(page, home, downloads, deferred):
    """Nothing is put at Streamlit's media URLs, which answer without the sign-in, until a button is clicked."""
    no_crash(page)
    assert not any(str(name).endswith((".onnx", ".zip")) for name, _ in downloads.values())
    assert page.download_button and all(not button.proto.url for button in page.download_button)
    folder = home.store.settings.models_dir / home.run_id
    data = clicked(page, deferred)
    assert set(data) == {"Download model.onnx", "Download model.int8.onnx", "Download bundle"}
    assert data["Download model.onnx"] == (f"maskdet-{home.run_id}-model.onnx", (folder / "model.onnx").read_bytes())
    assert data["Download model.int8.onnx"][1] == (folder / "model.int8.onnx").read_bytes()
    assert data["Download bundle"][0] == f"maskdet-{home.run_id}.zip" and len(data["Download bundle"][1]) > 1000
    text = " ".join(m.value for m in page.markdown)
    metrics = home.store.run(home.run_id)["metrics"]
    assert f"{(folder / 'model.onnx').stat().st_size / 2**20:.1f} MB" in text
    assert text.count("Same class as PyTorch on all") + text.count("Differs from PyTorch") == 2
    assert f"Test accuracy {metrics['test']['accuracy']:.3f}" in text
    assert f"Test accuracy {metrics['int8']['test_accuracy']:.3f}" in text and "against float32" in text
    assert "MTCNN's three face-finding networks" in text and "finds every face in your photos" in text
    # each file's ms per face as measured: the median of its rounds with their range (and "measured while busy" when
    # other work used the machine); int8 against float32, timed side by side, only as far as the ranges say
    for name in ("onnx", "int8"):
        timing = Timing.of_model(metrics[name])
        assert timing.text() in text and f"median of {TIMING_ROUNDS}" in timing.text()
    assert re.search(r"(\d\.\dx|\d+%) (faster|slower) than float32|as fast as float32 within measurement noise", text)


def test_an_older_runs_single_timing_is_shown_as_one_measurement(home, monkeypatch):
    """A run trained before timings were taken in rounds kept one figure a file: shown as such, and int8 is not
    called faster or slower than float32 on it."""
    old = copy_of_run(home)
    metrics = home.store.run(old)["metrics"]
    older = {name: {key: value for key, value in metrics[name].items() if key != "timing"} | {"ms_per_image_batch1": ms}
             for name, ms in (("onnx", 2.3), ("int8", 10.5))}  # the figures
    home.store.update_run(old, metrics={**metrics, **older})
    try:
        for key, value in home.env.items():
            monkeypatch.setenv(key, value)
        at = AppTest.from_file(PAGE, default_timeout=60).run()
        at.selectbox(key="download-run").set_value(old).run()
        no_crash(at)
        text = " ".join(m.value for m in at.markdown)
        assert "2.3 ms per face (one measurement)" in text and "10.5 ms per face (one measurement)" in text
        assert "than float32" not in text and "within measurement noise" not in text
    finally:
        delete_run(home.store, old)


def test_bundle_contents_and_its_predict_script_run_alone(page, home, deferred, tmp_path):
    """The script alone (no maskdet on its path), with the int8 model, on a photo and a folder (faces and their
    agreement with `maskdet predict` on real photos: test_bundle.py)."""
    bundle = clicked(page, deferred)["Download bundle"][1]
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        assert set(archive.namelist()) == BUNDLE_FILES
        archive.extractall(tmp_path / "bundle")
    labels = json.loads((tmp_path / "bundle" / "labels.json").read_text())
    contract = json.loads((tmp_path / "bundle" / "preprocessing.json").read_text())
    assert labels == ["with_mask", "without_mask"] and contract["input"]["input_size"] == 96
    assert contract["crop_rule"]["size"] == 96
    record = home.store.faces(split="test")[0]
    (tmp_path / "photos").mkdir()
    Image.fromarray(home.store.load_image(record)).save(tmp_path / "photos" / "one.png")
    shutil.copyfile(tmp_path / "photos" / "one.png", tmp_path / "two.png")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "predict_onnx.py", "--model", "model.int8.onnx", str(tmp_path / "two.png"),
                             str(tmp_path / "photos")], cwd=tmp_path / "bundle", env=environment, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["model"] == "model.int8.onnx" and output["labels"] == labels
    assert [entry["image"] for entry in output["images"]] == [str(tmp_path / "two.png"),
                                                              str(tmp_path / "photos" / "one.png")]
    assert all(set(face["probabilities"]) == set(labels) for entry in output["images"] for face in entry["faces"])
    missing = subprocess.run([sys.executable, "predict_onnx.py", str(tmp_path / "none.jpg")], cwd=tmp_path / "bundle",
                             env=environment, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "No such file" in missing.stderr


# ---- the active model --------------------------------------------------------------------------------------

def test_choosing_the_active_model_persists_in_the_store(page, home):
    other = copy_of_run(home, test_accuracy=1.0)
    try:
        page.run()
        no_crash(page)
        assert "No model chosen" in page.info[0].value and other in page.info[0].value  # latest beating chance
        page.selectbox(key="active-choice").set_value(home.run_id)
        page.button(key="active-set").click().run()
        no_crash(page)
        assert home.store.get_setting("active_run") == home.run_id
        assert active_run(home.store)["id"] == home.run_id
        assert any(home.run_id in s.value and "live page uses" in s.value for s in page.success)
        fresh = AppTest.from_file(PAGE, default_timeout=60).run()  # another tab reads the registry
        assert fresh.selectbox(key="active-choice").value == home.run_id
        assert fresh.selectbox(key="download-run").value == home.run_id
    finally:
        delete_run(home.store, other)


# ---- deleting a run ------------------------------------------------------------------------------------------

def test_delete_needs_confirmation_then_removes_folder_and_registry_row(page, home):
    doomed = copy_of_run(home)
    folder = home.store.settings.models_dir / doomed
    page.run()
    page.selectbox(key="delete-run").set_value(doomed).run()
    no_crash(page)
    assert page.button(key="delete-start").disabled  # not confirmed yet
    assert any("cannot be undone" in w.value for w in page.warning)
    page.checkbox(key=f"delete-confirm-{doomed}").check().run()
    assert not page.button(key="delete-start").disabled
    page.button(key="delete-start").click().run()
    no_crash(page)
    assert not folder.exists()
    assert [run["id"] for run in home.store.runs()] == [home.run_id]
    assert any(f"Run {doomed} and its files were deleted." == s.value for s in page.success)
    assert (home.store.settings.models_dir / home.run_id / "model.onnx").exists()  # the other run is untouched


def test_a_failed_run_shows_its_error_and_can_be_deleted(page, home):
    failed = home.store.create_run(home.config.to_dict())
    home.store.update_run(failed, status="failed", error="Training needs at least two classes with images.")
    page.run()
    table = next(frame.value for frame in page.dataframe if "note" in frame.value.columns).set_index("run")
    assert table.loc[failed, "status"] == "failed"
    assert table.loc[failed, "note"] == "Training needs at least two classes with images."
    page.selectbox(key="delete-run").set_value(failed).run()
    page.checkbox(key=f"delete-confirm-{failed}").check().run()
    page.button(key="delete-start").click().run()
    no_crash(page)
    assert [run["id"] for run in home.store.runs()] == [home.run_id]
