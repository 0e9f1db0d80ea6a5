"""The Train page (pages/2_Train.py) through Streamlit's AppTest, with real training subprocesses and a real registry.

Each test has its own data home (the `settings` fixture); the training process started by the page inherits it.
Runs use a tiny random-init config set through the page's widgets, so one takes seconds, mostly importing torch.
"""

import base64
import io
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from maskdet.core.text import now
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.store import Store
from maskdet.runs.active import active_run
from maskdet.runs.execute import execute_run
from maskdet.runs.lifecycle import active_training, log_path
from maskdet.training.config import CHOSEN, RANGED, TrainConfig
from maskdet.vision.augment import AUGMENTATIONS
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.synth import MASK_STYLES, PLACEMENTS, WRONG_PLACEMENTS
from tests.conftest import photo_pairs, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "2_Train.py"
RUN_TIMEOUT = 120


def page() -> AppTest:
    return AppTest.from_file(str(PAGE), default_timeout=60)


def shown(at: AppTest) -> str:
    """Every text the page shows (messages, markdown, captions, progress bars), one per line."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "toast"):
        parts += [element.value for element in at.get(kind)]
    parts += [element.proto.text for element in at.get("progress")]
    return "\n".join(str(part) for part in parts)


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert "Traceback" not in shown(at)


def decode(urls: list[str]) -> list[np.ndarray]:
    """The pictures of an st.image list (the page sends them inline as data URIs)."""
    prefix = "data:image/jpeg;base64,"
    assert all(url.startswith(prefix) for url in urls)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))) for url in urls]


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def set_tiny(at: AppTest) -> AppTest:
    """A config that trains in seconds on generated pictures: random init, 1 view, 5 epochs, 64 px, no int8."""
    at.checkbox(key="random_init").check()
    at.number_input(key="views_per_image").set_value(1)
    at.number_input(key="epochs").set_value(5)
    at.number_input(key="input_size").set_value(64)
    at.toggle(key="quantize").set_value(False)
    return at.run()


def wait_until_finished(store: Store, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    """Poll the registry until the run leaves queued/running (a dead process is marked failed on the way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active_training(store)
        run = store.run(run_id)
        if run["status"] not in ACTIVE_STATUSES:
            return run
        time.sleep(0.5)
    log = log_path(store.settings, run_id)
    pytest.fail(f"run {run_id} still {store.run(run_id)['status']} after {timeout} s; log:\n"
                f"{log.read_text()[-3000:] if log.exists() else '(none)'}")


@pytest.fixture
def home(settings, tmp_path, detector) -> Store:
    """A data home with 6 generated pictures per class (no faces in them: training uses them whole)."""
    store = Store(settings)
    store.import_folder(write_dataset(tmp_path / "photos", 6), detector)
    yield store
    stop_training(store)


def process_alive(pid: int) -> bool:
    """Whether the process exists (a finished but unreaped child counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def stop_training(store: Store) -> None:
    """Teardown: end a training process a failed test left behind (only ours, by its pid)."""
    for run in store.runs():
        if run["status"] in ACTIVE_STATUSES and run["pid"] != os.getpid() and process_alive(run["pid"]):
            os.kill(run["pid"], signal.SIGTERM)


# ---- without a training process ------------------------------------------------------------------

def test_empty_home_says_to_import_images_first(settings):
    at = page().run()
    no_failure(at)
    assert "No images yet" in at.info[0].value and "Dataset" in at.info[0].value
    assert not at.button  # no settings and no Start without images
    # Opened as a page of the app, the hint is a link to the Dataset page (once that page exists).
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).switch_page("pages/2_Train.py").run()
    no_failure(at)
    links = [link.proto.label for link in at.main.get("page_link")]
    if (ROOT / "pages" / "1_Dataset.py").exists():
        assert links == ["Open the Dataset page"]
    else:
        assert "Open the **Dataset** page from the sidebar." in shown(at)


def test_form_shows_the_defaults_and_the_weights_in_use(home, monkeypatch, tmp_path):
    monkeypatch.delenv("MASKDET_BACKBONE_WEIGHTS", raising=False)
    at = page().run()
    no_failure(at)
    defaults = TrainConfig()
    for name in ("epochs", "batch_size", "learning_rate", "views_per_image", "finetune_blocks", "seed",
                 "finetune_epochs", "finetune_learning_rate", "patience", "weight_decay", "label_smoothing",
                 "input_size", "crop_margin"):
        assert at.number_input(key=name).value == pytest.approx(getattr(defaults, name)), name
    assert [at.number_input(key=f"split_{s}").value for s in ("train", "val", "test")] == pytest.approx(defaults.split)
    assert at.toggle(key="class_weights").value is defaults.class_weights
    assert at.toggle(key="quantize").value is defaults.quantize
    assert at.checkbox(key="random_init").value is False
    for name in AUGMENTATIONS:  # one row per augmentation of the table
        default = getattr(defaults.augment, name)
        assert at.toggle(key=f"aug_{name}_enabled").value is default.enabled
        assert at.slider(key=f"aug_{name}_probability").value == pytest.approx(default.probability)
        assert at.slider(key=f"aug_{name}_strength").value == pytest.approx(default.strength)
    assert "torchvision's ImageNet MobileNetV2 weights" in shown(at)
    assert "Few images in with_mask (6)" in shown(at)  # the dataset warnings come before training
    at.checkbox(key="random_init").check().run()  # the backbone caption says what the run will train from
    assert "Backbone: random weights, no pretrained ones" in shown(at) and "ImageNet" not in shown(at)
    at.checkbox(key="random_init").uncheck().run()
    assert "No training runs yet" in shown(at)

    at.number_input(key="epochs").set_value(7).run()  # settings can be put back to the defaults
    at.toggle(key="aug_blur_enabled").set_value(False).run()
    at.button(key="reset").click().run()
    assert at.number_input(key="epochs").value == defaults.epochs
    assert at.toggle(key="aug_blur_enabled").value is True

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"x")
    monkeypatch.setenv("MASKDET_BACKBONE_WEIGHTS", str(weights))
    assert str(weights) in shown(page().run())


def test_start_says_where_runs_train_when_a_cluster_is_set(home, monkeypatch):
    assert "cluster" not in shown(page().run())
    monkeypatch.setenv("MASKDET_CLUSTER", "tcp://trainers.example:8786")
    at = page().run()
    no_failure(at)
    assert "Runs train on the cluster at `tcp://trainers.example:8786` (`MASKDET_CLUSTER`)" in shown(at)


def test_number_inputs_take_their_range_and_help_from_the_config(home):
    at = page().run()
    no_failure(at)
    for name, spec in RANGED.items():
        widget = at.number_input(key=name)
        assert (widget.min, widget.max) == pytest.approx(spec.metadata["range"]), name
        assert widget.help == spec.metadata["help"], name
    assert (at.number_input(key="epochs").min, at.number_input(key="epochs").max) == (1, 1000)


def test_a_finished_run_at_chance_says_it_was_not_made_active(home):
    run_id = home.create_run(TrainConfig().to_dict())
    test = {"accuracy": 0.5, "macro_f1": 0.5, "num_samples": 4, "labels": ["with_mask", "without_mask"]}
    home.update_run(run_id, status="succeeded", started_at="2026-01-01T00:00:00+00:00",
                    finished_at="2026-01-01T00:00:30+00:00", metrics={"test": test, "labels": test["labels"]})
    (home.settings.models_dir / run_id).mkdir(parents=True)
    (home.settings.models_dir / run_id / "model.onnx").write_bytes(b"a model file")
    at = page().run()
    no_failure(at)
    assert at.success[0].value.startswith(f"Run {run_id} finished in 30 s: test accuracy 0.500")
    assert (f"Run {run_id} was not made the active model: its test accuracy 0.500 is no better than chance (0.500 "
            "with 2 classes).") in [w.value for w in at.warning]
    at.button(key=f"make-active-{run_id}").click().run()
    no_failure(at)
    assert (f"Run {run_id} is now the active model: Live, predict and evaluate use it by default."
            in [s.value for s in at.success])
    assert not [w for w in at.warning if "not made the active" in w.value] and active_run(home)["id"] == run_id


def test_augmentation_table_shows_each_row_with_its_label_help_and_sliders(home):
    at = page().run()
    no_failure(at)
    toggles = [t for t in at.toggle if t.key.startswith("aug_")]
    assert [t.label for t in toggles] == [spec.label for spec in AUGMENTATIONS.values()]
    assert [t.help for t in toggles] == [spec.help for spec in AUGMENTATIONS.values()]
    for label in ("Motion blur", "Low resolution", "JPEG compression"):  # the real-photo degradations
        assert label in [t.label for t in toggles]
    assert at.toggle(key="aug_jpeg_enabled").value is True
    assert at.slider(key="aug_jpeg_probability").value == pytest.approx(0.3)
    assert at.slider(key="aug_jpeg_strength").value == pytest.approx(1.0)
    assert "quality 30–70 at strength 1" in at.toggle(key="aug_jpeg_enabled").help
    assert at.slider(key="aug_downscale_strength").value == pytest.approx(1.0)
    assert at.slider(key="aug_motion_blur_probability").value == pytest.approx(0.25)
    for name, spec in AUGMENTATIONS.items():  # strength only where it applies (and the augmentation is on)
        strength = at.slider(key=f"aug_{name}_strength")
        assert strength.label == "Strength", name
        assert strength.disabled is not (spec.has_strength and spec.default.enabled), name
    assert at.slider(key="aug_flip_strength").help == "Only on/off and probability matter for this one."

    at.toggle(key="aug_downscale_enabled").set_value(False).run()  # off: its sliders are greyed out
    assert at.slider(key="aug_downscale_probability").disabled and at.slider(key="aug_downscale_strength").disabled
    assert not at.slider(key="aug_jpeg_probability").disabled


def test_preview_shows_the_crop_and_eight_augmented_views(home):
    at = page().run()
    no_failure(at)
    [images] = at.image
    assert images.captions == ["face crop"] + [f"view {i}" for i in range(1, 9)]
    pictures = decode(images.value)
    assert len(pictures) == 9 and all(p.shape == (160, 160, 3) for p in pictures)  # the default input size
    assert any(not np.array_equal(pictures[0], view) for view in pictures[1:])  # augmented
    first = next(c.value for c in at.caption if "training uses the whole photo" in c.value)

    at.button(key="next_face").click().run()  # a different face
    no_failure(at)
    second = next(c.value for c in at.caption if "training uses the whole photo" in c.value)
    assert second.split(" ")[0] != first.split(" ")[0]
    assert len(at.image[0].value) == 9

    for name in AUGMENTATIONS:  # every augmentation off: the eight views are the crop itself
        at.toggle(key=f"aug_{name}_enabled").set_value(False)
    at.number_input(key="input_size").set_value(96)
    at.run()
    no_failure(at)
    pictures = decode(at.image[0].value)
    assert len(pictures) == 9 and pictures[0].shape == (96, 96, 3)
    assert all(np.array_equal(pictures[0], view) for view in pictures[1:])


def rule_key(row: int, name: str) -> str:
    return f"synthetic_rule_{row}_{name}"


def test_synthetic_masks_block_shows_its_rules_and_says_why_there_is_no_preview(home):
    """Generated pictures have no faces: the drawn-mask preview says so in a sentence, not a traceback."""
    at = page().run()
    no_failure(at)
    assert "Synthetic masks" in [header.value for header in at.subheader]
    assert at.toggle(key="synthetic_enabled").label == "Draw masks on faces"
    assert at.toggle(key="synthetic_enabled").value is True
    # one rule suggested by the class names: masks worn right drawn on without_mask faces, trained as with_mask
    assert at.selectbox(key=rule_key(0, "source")).value == "without_mask"
    assert at.selectbox(key=rule_key(0, "target")).value == "with_mask"
    assert at.selectbox(key=rule_key(0, "worn")).value == "right"
    assert at.selectbox(key=rule_key(0, "source")).options == ["with_mask", "without_mask"]
    assert at.slider(key=rule_key(0, "probability")).value == pytest.approx(0.25)
    styles = at.multiselect(key=rule_key(0, "styles"))
    assert styles.value == list(MASK_STYLES)  # short names in their chips (a long one is cut), each style in the help
    assert styles.options == ["Surgical", "Fitted cloth", "N95 / KN95 cup", "Bandana", "Neck gaiter"]
    assert all(name in styles.help for name in MASK_STYLES.values())
    assert not [key for key in ("source", "target") if rule_key(1, key) in [box.key for box in at.selectbox]]
    assert "Drawn masks: without_mask → with_mask, mask worn right" in [header.value for header in at.subheader]
    assert [e.value for e in at.error] == ["No photo of 'without_mask' has a face with landmarks to draw a mask on: "
                                           "import photos with visible faces."]
    assert len(at.image) == 1  # only the augmentation preview

    at.selectbox(key=rule_key(0, "target")).set_value("without_mask").run()
    no_failure(at)
    assert any("rule 1: the source and target classes must differ" in e.value for e in at.error)

    at.toggle(key="synthetic_enabled").set_value(False).run()  # off: no rules, no preview, no message
    no_failure(at)
    assert rule_key(0, "source") not in [box.key for box in at.selectbox]
    assert not [header.value for header in at.subheader if header.value.startswith("Drawn masks")] and not at.error


def test_drawn_mask_preview_shows_eight_source_faces_with_their_style(settings, tmp_path, shared_data, detector):
    """Real photos, whose faces have landmarks: eight unmasked faces of the source class with a mask drawn on; an
    empty mask_incorrect class adds a rule of masks worn wrongly, with its own preview."""
    for name in photo_pairs(shared_data)[:10]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (tmp_path / "photos" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "photos" / label / file).write_bytes((shared_data / label / file).read_bytes())
    store = Store(settings)
    store.import_folder(tmp_path / "photos", detector)
    at = page().run()
    no_failure(at)
    assert not at.error
    augmented, drawn = at.image
    styles = list(MASK_STYLES)
    assert [c.split(", ")[0] for c in drawn.captions] == [styles[i % len(styles)] for i in range(8)]
    assert all(", worn right: " in c for c in drawn.captions)
    assert "without_mask faces with a drawn mask, as training adds them to with_mask." in shown(at)
    records = {r.source_name: r for r in store.faces(label="without_mask")}
    for caption, picture in zip(drawn.captions, decode(drawn.value)):
        record = records[caption.split(": ")[1]]  # a photo of the source class, without_mask
        crop = crop_face(store.load_image(record), record.face.box, CropRule(1.25, 160)).astype(int)
        assert picture.shape == (160, 160, 3)
        assert np.abs(picture[:40] - crop[:40]).mean() < 5, caption  # the eyes and forehead as they were...
        assert np.abs(picture[100:] - crop[100:]).mean() > 10, caption  # ...and a mask over the mouth and chin

    at.multiselect(key=rule_key(0, "styles")).set_value(["n95"]).run()  # the chosen styles only
    no_failure(at)
    assert {c.split(", ")[0] for c in at.image[1].captions} == {"n95"}

    store.add_label("mask_incorrect")
    at = page().run()
    no_failure(at)
    assert at.selectbox(key=rule_key(1, "target")).value == "mask_incorrect"
    assert at.selectbox(key=rule_key(1, "worn")).value == "wrong"
    assert "Drawn masks: without_mask → mask_incorrect, mask worn wrongly" in [h.value for h in at.subheader]
    wrong = at.image[2]
    placements = [c.split(", ")[1].split(": ")[0] for c in wrong.captions]
    assert placements[:4] == [PLACEMENTS[name].lower() for name in WRONG_PLACEMENTS]
    # and a rule moving the real masks of the bare faces' masked twins (the pasted-mask photos) into mask_incorrect
    assert at.selectbox(key=rule_key(2, "mask_from")).value == "twin"
    assert at.multiselect(key=rule_key(2, "styles")).disabled
    assert ("Moved masks: without_mask → mask_incorrect, mask worn wrongly, the twin's real mask"
            in [h.value for h in at.subheader])
    assert "without_mask faces with their masked twin’s own mask moved, as training adds them to mask_incorrect." in (
        shown(at))
    moved = at.image[3]
    assert 5 <= len(moved.captions) <= 8 and all(c.startswith("twin's mask, ") for c in moved.captions)
    for caption, picture in zip(moved.captions, decode(moved.value)):
        record = records[caption.split(": ")[1]]
        crop = crop_face(store.load_image(record), record.face.box, CropRule(1.25, 160)).astype(int)
        assert np.abs(picture[:40] - crop[:40]).mean() < 5, caption  # the eyes and forehead as they were
        assert np.abs(picture[60:] - crop[60:]).mean() > 5, caption  # the twin's mask somewhere below


def test_synthetic_mask_rules_reach_the_run_config(home):
    home.add_label("mask_incorrect")
    at = set_tiny(page().run())
    assert at.selectbox(key=rule_key(1, "target")).value == "mask_incorrect"  # suggested by the class name
    at.button(key=rule_key(0, "remove")).click().run()  # rule 1 goes; the worn-wrong one stays
    at.slider(key=rule_key(1, "probability")).set_value(0.5)
    at.multiselect(key=rule_key(1, "styles")).unselect("bandana").unselect("gaiter")
    at.button(key="add_rule").click().run()
    at.selectbox(key=rule_key(3, "source")).set_value("without_mask")
    at.selectbox(key=rule_key(3, "target")).set_value("with_mask")
    at.button(key="start").click().run()
    no_failure(at)
    [run] = home.runs()
    assert run["config"]["synthetic_masks"] == [
        {"source": "without_mask", "target": "mask_incorrect", "worn": "wrong", "probability": 0.5,
         "styles": ["surgical", "cloth", "n95"], "mask_from": "drawing"},
        {"source": "without_mask", "target": "mask_incorrect", "worn": "wrong", "probability": 1.0,
         "styles": list(MASK_STYLES), "mask_from": "twin"},
        {"source": "without_mask", "target": "with_mask", "worn": "right", "probability": 0.25,
         "styles": list(MASK_STYLES), "mask_from": "drawing"}]
    assert f"Run {run['id']}" in shown(at)


def test_same_source_and_target_class_is_refused_before_starting(home):
    at = page().run()
    at.selectbox(key=rule_key(0, "target")).set_value("without_mask")
    at.button(key="start").click().run()
    no_failure(at)
    assert "the source and target classes must differ" in shown(at)


def test_split_that_does_not_add_up_is_refused_before_starting(home):
    at = page().run()
    at.number_input(key="split_train").set_value(0.9)
    at.button(key="start").click().run()
    no_failure(at)
    assert "add up to 1.20" in at.error[0].value
    assert home.runs() == []


def test_device_select_box_takes_its_choices_and_help_from_the_config_and_resets(home):
    at = page().run()
    no_failure(at)
    box = at.selectbox(key="device")
    assert (box.value, box.options, box.help) == ("cpu", list(CHOSEN["device"].metadata["choices"]),
                                                  CHOSEN["device"].metadata["help"])
    box.set_value("auto").run()
    at.button(key="reset").click().run()
    assert at.selectbox(key="device").value == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU that PyTorch can use")
def test_cuda_without_a_gpu_is_refused_before_starting(home):
    at = page().run()
    at.selectbox(key="device").set_value("cuda")
    at.button(key="start").click().run()
    no_failure(at)
    assert "Training device 'cuda' was asked for, but this machine has no CUDA GPU that PyTorch can use" in \
        at.error[0].value and "choose auto or cpu." in at.error[0].value
    assert home.runs() == []


def test_the_export_stage_names_its_task_and_the_start_button_an_estimate(home):
    """Before Start: an estimate of the whole run (no run yet: from the benchmark's throughput); while exporting:
    the task under way, not "0/1"."""
    at = page().run()
    no_failure(at)
    [estimate] = [caption for caption in at.caption if caption.value.startswith("About ")]
    assert estimate.value.endswith(", a first guess")  # no run has timed this machine yet
    assert "maskdet's benchmark on a 2-core CPU, as no run has timed this machine yet" in estimate.proto.help
    assert "From the click to the end" in estimate.proto.help
    run_id = home.create_run(TrainConfig().to_dict())
    home.update_run(run_id, status="running", pid=os.getpid(), started_at=now(), heartbeat_at=now(),
                    progress={"stage": "export", "step": 2, "steps": 5, "task": "quantising to int8",
                              "eta_seconds": 9.0, "left_seconds": 9.0})  # as the training process forecast it
    [bar] = page().run().get("progress")
    assert f"Run {run_id}, stage 5 of 5: exporting the ONNX models — quantising to int8 (3/5)" in bar.proto.text
    assert "about 9 s left in this stage, about 9 s left in all" in bar.proto.text
    assert bar.proto.value == 40  # the bar moves with the export's tasks


def test_live_progress_curves_and_cancel_button_read_the_registry(home):
    """A running run as the training process leaves it in the registry: progress bar, ETA, curves, cancel."""
    run_id = home.create_run(TrainConfig().to_dict())
    history = [{"stage": "head", "epoch": e, "loss": 0.6 - 0.1 * e, "accuracy": 0.6 + 0.1 * e,
                "val_loss": 0.7 - 0.1 * e, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]
    progress = {"stage": "head", "step": 3, "steps": 100, "epoch": 3, "epochs": 100, "loss": 0.4, "accuracy": 0.8,
                "eta_seconds": 42.0, "soonest_seconds": 6.0, "history": history}
    home.update_run(run_id, status="running", pid=os.getpid(), started_at="2026-01-01T00:00:00+00:00",
                    heartbeat_at=now(), progress=progress)
    at = page().run()
    no_failure(at)
    [bar] = at.get("progress")
    assert bar.proto.value == 3
    assert f"Run {run_id}, stage 3 of 5: training the classifier head" in bar.proto.text
    assert "epoch 3/100" in bar.proto.text
    assert "6 s to 42 s left in this stage (it stops early once validation loss stops improving)" in bar.proto.text
    assert "about 42 s left in all" in bar.proto.text  # started long ago: the estimate is spent, the stage is not
    assert charts(at) == 2  # loss and accuracy per epoch
    loss_chart = at.get("vega_lite_chart")[0].proto
    assert json.loads(loss_chart.spec)["title"] == "loss"
    points = pa.ipc.open_stream(loss_chart.datasets[0].data.data).read_all().to_pylist()
    assert {(p["split"], p["epoch"], round(p["value"], 2)) for p in points} == {
        ("train", 1, 0.5), ("train", 2, 0.4), ("train", 3, 0.3),
        ("validation", 1, 0.6), ("validation", 2, 0.5), ("validation", 3, 0.4)}

    at.button(key="cancel").click().run()
    no_failure(at)
    assert home.run(run_id)["cancel_requested"]
    assert at.button(key="cancelling").disabled


def test_execute_run_keeps_the_epoch_history_in_the_registry_while_training(store, settings, tmp_path, detector):
    """The progress stored in the registry carries the per-epoch curve so far, and the whole of it at the end."""
    store.import_folder(write_dataset(tmp_path / "photos", 4), detector)
    config = TrainConfig(random_init=True, views_per_image=1, epochs=4, patience=100, input_size=64, quantize=False)
    run_id = store.create_run(config.to_dict())
    seen = []

    def on_progress(progress):
        if progress.stage == "head":
            seen.append((progress.epoch, (store.run(run_id)["progress"] or {}).get("history")))
            if progress.epoch == 2:
                time.sleep(1.1)  # registry writes are throttled to one a second: let epoch 2's write through

    execute_run(store, config, settings.models_dir, run_id, on_progress)
    stored_at_epoch_3 = dict(seen)[3]
    assert [(p["stage"], p["epoch"]) for p in stored_at_epoch_3] == [("head", 1), ("head", 2)]
    final = store.run(run_id)["progress"]
    assert final["stage"] == "done"
    assert [p["epoch"] for p in final["history"]] == [1, 2, 3, 4]
    assert all(set(p) == {"stage", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"} for p in final["history"])
    assert final["history"] == json.loads((settings.models_dir / run_id / "history.json").read_text())


# ---- real training processes -------------------------------------------------------------------------

def test_start_trains_in_the_background_and_shows_the_result(home):
    at = set_tiny(page().run())
    at.toggle(key="aug_downscale_enabled").set_value(False)
    at.slider(key="aug_jpeg_strength").set_value(0.4)
    at.slider(key="aug_motion_blur_probability").set_value(0.6)
    at.button(key="start").click().run()
    no_failure(at)
    [run] = home.runs()
    assert run["config"]["random_init"] is True and run["config"]["views_per_image"] == 1
    assert run["config"]["epochs"] == 5 and run["config"]["input_size"] == 64 and run["config"]["quantize"] is False
    augment = run["config"]["augment"]
    assert list(augment) == list(AUGMENTATIONS)
    assert augment["downscale"] == {"enabled": False, "probability": 0.3, "strength": 1.0}
    assert augment["jpeg"] == {"enabled": True, "probability": 0.3, "strength": 0.4}
    assert augment["motion_blur"] == {"enabled": True, "probability": 0.6, "strength": 0.5}
    assert f"Run {run['id']}" in shown(at)  # the progress bar of the new run

    at.button(key="start").click().run()  # one training at a time
    no_failure(at)
    assert any(f"Training run {run['id']} is still in progress" in e.value for e in at.error)
    assert len(home.runs()) == 1

    reloaded = page().run()  # another session (a reload) finds the running training in the registry
    no_failure(reloaded)
    assert f"Run {run['id']}" in shown(reloaded) and reloaded.button(key="cancel")

    finished = wait_until_finished(home, run["id"])
    assert finished["status"] == "succeeded", finished["error"]
    at.run()
    no_failure(at)
    [message] = at.success
    accuracy = finished["metrics"]["test"]["accuracy"]
    assert message.value.startswith(f"Run {run['id']} finished in ")
    assert f"test accuracy {accuracy:.3f}" in message.value
    assert "random weights" in shown(at)
    assert charts(at) == 2
    assert len(finished["progress"]["history"]) == sum(finished["metrics"]["epochs_trained"].values())
    [estimate] = [caption for caption in at.caption if caption.value.startswith("About ")]  # the next run's
    assert not estimate.value.endswith("a first guess")  # this machine has been timed now
    assert f"throughput of run {run['id']} on this machine." in estimate.proto.help


def test_cancel_stops_the_training_process(home):
    at = set_tiny(page().run())
    at.button(key="start").click().run()
    [run] = home.runs()
    at.button(key="cancel").click().run()
    no_failure(at)
    finished = wait_until_finished(home, run["id"])
    assert finished["status"] == "cancelled"
    deadline = time.monotonic() + 20
    while process_alive(finished["pid"]) and time.monotonic() < deadline:  # it exits right after saying so
        time.sleep(0.2)
    assert not process_alive(finished["pid"])
    assert "training cancelled" in log_path(home.settings, run["id"]).read_text()
    at.run()
    no_failure(at)
    assert f"Run {run['id']} was cancelled" in at.warning[-1].value
    assert at.button(key="start")  # ready for the next run


def test_failed_run_shows_its_error_in_words(settings, tmp_path, detector):
    store = Store(settings)
    store.import_folder(write_dataset(tmp_path / "photos", 4, labels=("with_mask",)), detector)
    try:
        at = set_tiny(page().run())
        assert "Training needs images in at least two classes." in shown(at)
        at.button(key="start").click().run()
        [run] = store.runs()
        finished = wait_until_finished(store, run["id"])
        assert finished["status"] == "failed"
        at.run()
        no_failure(at)
        [error] = [e for e in at.error if e.value.startswith("Run ")]
        assert error.value == f"Run {run['id']} failed: {finished['error']}"
        assert "at least two classes" in error.value
    finally:
        stop_training(store)


def test_a_finished_run_can_be_tried_on_a_photo_right_here(trained_home, shared_data, monkeypatch):
    """The latest finished run's model annotates a dropped photo: the picture, its numbered faces, a download; a
    file that is not a photo gets a sentence."""
    for key, value in trained_home.env.items():
        monkeypatch.setenv(key, value)
    at = page().run()
    no_failure(at)
    uploader = at.get("file_uploader")
    label = f"Try run {trained_home.run_id} on a photo"
    assert [u.proto.label for u in uploader] == [label]
    photo = (shared_data / "with_mask" / "451-with-mask.jpg").read_bytes()
    at.file_uploader(key=f"try-photo-{trained_home.run_id}").set_value(("mine.jpg", photo, "image/jpeg")).run()
    no_failure(at)
    assert ["mine.jpg, annotated"] in [image.captions for image in at.image]
    [table] = [frame.value for frame in at.dataframe if "probability" in frame.value.columns]
    assert list(table["face"]) == [1] and table["label"][0] in ("with_mask", "without_mask", "uncertain")
    assert 0.5 <= table["probability"][0] <= 1
    assert [b.proto.label for b in at.get("download_button")] == ["Download the annotated photo"]
    at.file_uploader(key=f"try-photo-{trained_home.run_id}").set_value(("notes.jpg", b"not a photo", "image/jpeg")).run()
    assert [e.value for e in at.error] == ["not an image file (JPEG, PNG, BMP, WebP, GIF or TIFF expected)"]
