"""`python -m maskdet ...` driven as a user would: real subprocesses, each home with its own data and models dir.

Every CLI process spends several seconds importing torch, so the module trains one tiny random-init model once
(`trained`), commands that do not depend on each other run at the same time, and a few journeys chain the
commands a user would type one after the other.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from maskdet.cli import main, mask_rule_flag
from maskdet.core.settings import Settings
from maskdet.data.store import Store
from maskdet.runs.active import set_active_run
from maskdet.serving.classifier import load_classifier
from maskdet.training.config import TrainConfig
from maskdet.vision.mask_rules import MaskRule
from tests.conftest import encode, make_old_home, pattern_image, write_dataset

ROOT = Path(__file__).resolve().parents[1]
TRAIN_FAST = ["--random-init", "--views-per-image", "1", "--epochs", "10", "--input-size", "96", "--no-int8"]


def cli_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKDET_")}
    env.update(MASKDET_HOME=str(home / "data"), MASKDET_MODELS=str(home / "models"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def cli(home: Path, *args, as_json: bool = True) -> subprocess.CompletedProcess:
    """`python -m maskdet [--json] args...` with its data under `home`, run from `home`."""
    command = [sys.executable, "-m", "maskdet", *(["--json"] if as_json else []), *map(str, args)]
    return subprocess.run(command, cwd=home, env=cli_env(home), capture_output=True, text=True, timeout=600)


def concurrently(*thunks) -> list:
    """Call independent zero-argument functions (CLI runs) at the same time; their results in order."""
    with ThreadPoolExecutor(len(thunks)) as pool:
        return [future.result() for future in [pool.submit(thunk) for thunk in thunks]]


def succeeded(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The `error: ...` message on stderr (tqdm bars write \\r-separated segments there too)."""
    segments = [s.strip() for s in re.split(r"[\r\n]", result.stderr) if s.strip()]
    errors = [s[s.index("error:"):] for s in segments if "error:" in s]
    assert len(errors) == 1, result.stderr
    assert segments[-1].endswith(errors[0]), result.stderr  # the last thing printed
    return errors[0]


def refused(result: subprocess.CompletedProcess, *phrases: str) -> str:
    """A clean failure: exit 2, no traceback, nothing on stdout, one `error:` message naming the phrases."""
    assert result.returncode == 2, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""
    message = error_line(result)
    for phrase in phrases:
        assert phrase in message
    return message


def image_files(home: Path) -> list[Path]:
    return [p for p in (home / "data" / "images").rglob("*") if p.is_file()]


def home_store(home: Path) -> Store:
    """The registry of a CLI home, opened in this process."""
    return Store(Settings(home=home / "data", models_dir=home / "models", backbone_weights=None,
                          database_url=f"sqlite:///{home / 'data' / 'maskdet.db'}", max_pixels=40_000_000))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A home with 6 + 6 generated images imported through the CLI and one finished tiny training run, chosen as
    the active model (a tiny random-init model scores about chance, so it does not become active by itself)."""
    home = tmp_path_factory.mktemp("trained")
    dataset = write_dataset(home / "dataset", per_class=6)
    imported = cli(home, "import", dataset)
    training = cli(home, "train", *TRAIN_FAST) if imported.returncode == 0 else None
    result = succeeded(training) if training else None
    if result:
        set_active_run(home_store(home), result["run_id"])
    return SimpleNamespace(home=home, dataset=dataset, imported=imported, training=training, result=result)


@pytest.fixture(scope="module")
def mistakes(trained, tmp_path_factory):
    """Commands that must fail cleanly, all started at once. A fresh home is used by one process only: two
    processes creating the same new SQLite database at once can fail ("table labels already exists")."""
    other = tmp_path_factory.mktemp("other")
    (other / "me.jpg").write_bytes(encode(pattern_image(8)))
    (other / "list.json").write_text('[{"epochs": 3}]')
    write_dataset(other / "unknown_classes", per_class=1, labels=("with_mask", "mask_incorrect"))
    cases = {
        "import one image without --label": (other, "import", "me.jpg"),
        "import a missing folder": (tmp_path_factory.mktemp("typo"), "import", "nowhere/photos"),
        "predict a missing file": (trained.home, "predict", "missing.jpg"),
        "cancel an unknown run": (trained.home, "cancel", "20990101-000000-abcdef"),
        "evaluate unknown classes": (trained.home, "evaluate", other / "unknown_classes"),
        "cancel a finished run": (trained.home, "cancel", trained.result["run_id"]),
        "import a missing zip": (other, "import", "nowhere.zip"),
        "export int8 of a run without one": (trained.home, "export", "--int8", "--output", other / "x.onnx"),
        "train with epochs 0": (trained.home, "train", *TRAIN_FAST, "--epochs", "0"),
        "train with a config that is a list": (trained.home, "train", "--config", other / "list.json"),
    }
    results = concurrently(*[lambda call=call: cli(*call) for call in cases.values()])
    return SimpleNamespace(home=other, results=dict(zip(cases, results)))


# ---- import ----------------------------------------------------------------------------------------------

def test_import_folder_of_class_folders(trained):
    report = succeeded(trained.imported)
    assert {k: report[k] for k in ("added", "duplicates", "rejected", "no_face")} == \
        {"added": 12, "duplicates": 0, "rejected": 0, "no_face": 12}
    assert report["labels"] == {"with_mask": 6, "without_mask": 6}
    assert "with_mask/img0.jpg" in report["no_face_files"]  # generated pictures: kept, flagged as faceless
    assert len(image_files(trained.home)) == 12


def test_import_zip_human_readable(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            archive.writestr(f"faces/with_mask/{i}.jpg", encode(pattern_image(i)))
            archive.writestr(f"faces/without_mask/{i}.jpg", encode(pattern_image(100 + i)))
        archive.writestr("faces/mask_incorrect/a.png", encode(pattern_image(200), "PNG"))
        archive.writestr("readme.jpg", encode(pattern_image(300)))
    (tmp_path / "faces.zip").write_bytes(buffer.getvalue())

    result = cli(tmp_path, "import", "faces.zip", as_json=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "added: 5, faces: 5, duplicates: 0, rejected: 1, no_face: 5, left_out: 0",
        "  rejected readme.jpg: not inside a class folder",
        "labels: with_mask 2, without_mask 2, mask_incorrect 1",
    ]
    assert len(image_files(tmp_path)) == 5


def test_import_one_image_without_label_is_a_one_line_error(mistakes):
    result = mistakes.results["import one image without --label"]
    refused(result, "Importing a single image needs --label")
    assert result.stderr == "error: Importing a single image needs --label.\n"
    assert image_files(mistakes.home) == []


def test_one_image_with_label_then_training_one_class_fails(tmp_path):
    """A new user: imports one photo, cannot train on one class, the failed run is listed, and there is no
    model to predict with."""
    (tmp_path / "me.png").write_bytes(encode(pattern_image(7, size=(120, 100)), "PNG"))
    report = succeeded(cli(tmp_path, "import", "me.png", "--label", "mask_incorrect"))
    assert (report["added"], report["no_face"], report["rejected"]) == (1, 1, 0)
    assert report["labels"] == {"with_mask": 0, "without_mask": 0, "mask_incorrect": 1}
    assert len(image_files(tmp_path)) == 1

    refused(cli(tmp_path, "train", *TRAIN_FAST), "at least two classes")
    runs, predict = concurrently(lambda: cli(tmp_path, "runs", as_json=False),
                                 lambda: cli(tmp_path, "predict", "me.png"))
    assert runs.returncode == 0
    run_id, status, *error = runs.stdout.strip().split()
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id) and status == "failed"
    assert "at least two classes" in " ".join(error)
    assert not (tmp_path / "models" / run_id).exists()
    refused(predict, "No trained model yet", "maskdet train")  # a failed run is not a model


# ---- labels ----------------------------------------------------------------------------------------------

def test_labels_add_rename_delete_and_list_counts(trained, tmp_path):
    shutil.copytree(trained.home / "data", tmp_path / "data")
    before = image_files(tmp_path)
    after = succeeded(cli(tmp_path, "labels", "--add", "mask_incorrect", "--rename", "with_mask", "masked",
                          "--delete", "without_mask"))
    assert list(after["labels"].items()) == [("masked", 6), ("mask_incorrect", 0)]
    assert after["no_face"] == 6
    assert len(before) == 12 and sum(p.exists() for p in before) == 6  # the deleted class's files are gone


# ---- train and runs --------------------------------------------------------------------------------------

def test_train_prints_run_id_accuracy_and_parity(trained):
    result = trained.result
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", result["run_id"])
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["macro_f1"] <= 1.0
    assert result["parity"]["same_argmax"] is True and result["parity"]["images"] >= 2
    assert result["parity"]["max_probability_difference"] < 1e-4
    artefacts = Path(result["artefact_dir"])
    assert artefacts == trained.home / "models" / result["run_id"]
    assert {"model.onnx", "metrics.json", "MODEL_CARD.md", "predictions.csv"} <= {p.name for p in artefacts.iterdir()}
    assert not (artefacts / "model.int8.onnx").exists()  # --no-int8
    assert "RANDOM INIT" in (artefacts / "MODEL_CARD.md").read_text()
    if result["accuracy"] > 0.5:  # above chance: the active model by itself
        assert result["active_model"] == result["run_id"] and result["not_active_because"] is None
    else:
        assert result["active_model"] is None
        assert result["not_active_because"].startswith(f"Run {result['run_id']} was not made the active model: its "
                                                       f"test accuracy {result['accuracy']:.3f} is no better than")
    assert (trained.home / "models" / ".logs" / f"{result['run_id']}.log").is_file()


def test_mask_rule_flags_become_the_rules_of_the_setting():
    flags = ["without_mask=with_mask", "without_mask=mask_incorrect:wrong:0.5",
             "without_mask=mask_incorrect:wrong:1:twin"]
    rules = TrainConfig.from_dict({"synthetic_masks": [mask_rule_flag(flag) for flag in flags]}).synthetic_masks
    assert rules == [MaskRule("without_mask", "with_mask"), MaskRule("without_mask", "mask_incorrect", "wrong", 0.5),
                     MaskRule("without_mask", "mask_incorrect", "wrong", 1.0, mask_from="twin")]
    with pytest.raises(ValueError, match="the probability must be a number from 0 to 1"):
        mask_rule_flag("a=b:wrong:often")
    with pytest.raises(ValueError, match="write SOURCE=TARGET, optionally followed by :right or :wrong"):
        mask_rule_flag("a=b:wrong:1:twin:more")
    with pytest.raises(ValueError, match="mask_from must be one of drawing, twin"):
        TrainConfig.from_dict({"synthetic_masks": [mask_rule_flag("a=b:wrong:1:photo")]})


def test_runs_lists_the_run_as_succeeded(trained):
    as_json, human = concurrently(lambda: cli(trained.home, "runs"), lambda: cli(trained.home, "runs", as_json=False))
    runs = succeeded(as_json)["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["id"] == trained.result["run_id"] and run["status"] == "succeeded" and run["error"] is None
    assert run["accuracy"] == pytest.approx(trained.result["accuracy"])
    assert human.returncode == 0
    assert human.stdout.splitlines() == [f"{run['id']}  succeeded acc {run['accuracy']:.4f} F1 {run['macro_f1']:.4f}"]


# ---- predict, export, evaluate ---------------------------------------------------------------------------

def test_predict_images_and_folders_with_annotations(trained):
    home = trained.home
    (home / "inputs" / "sub").mkdir(parents=True)
    pictures = {"inputs/a.png": pattern_image(41, size=(150, 120)), "inputs/b.jpg": pattern_image(42),
                "inputs/sub/c.jpg": pattern_image(43), "single.png": pattern_image(44, size=(64, 64))}
    for name, picture in pictures.items():
        (home / name).write_bytes(encode(picture, "PNG" if name.endswith(".png") else "JPEG"))
    truncated = encode(pattern_image(45))
    (home / "inputs" / "broken.jpg").write_bytes(truncated[: len(truncated) // 2])
    (home / "inputs" / "notes.txt").write_text("not an image suffix: skipped")

    result = succeeded(cli(home, "predict", "inputs", "single.png", "--annotate", "annotated"))
    assert result["model"] == str(Path(trained.result["artefact_dir"]) / "model.onnx")
    assert result["labels"] == ["with_mask", "without_mask"]
    entries = {entry["image"]: entry for entry in result["images"]}
    assert list(entries) == ["inputs/a.png", "inputs/b.jpg", "inputs/broken.jpg", "inputs/sub/c.jpg", "single.png"]
    assert "corrupt or truncated" in entries["inputs/broken.jpg"]["error"]
    assert "faces" not in entries["inputs/broken.jpg"]
    for name in pictures:
        entry = entries[name]
        assert entry["faces"] == []  # generated pictures have no faces
        annotated = home / entry["annotated"]
        assert annotated.parent == home / "annotated" and annotated.suffix == ".png"
        original = np.asarray(Image.open(home / name).convert("RGB"))
        assert np.array_equal(np.asarray(Image.open(annotated)), original)  # nothing to draw on
    assert len(list((home / "annotated").iterdir())) == 4


def test_predict_reads_only_regular_files_in_folders_or_named(trained):
    """Hostile files, round two (B): a FIFO named pipe.jpg hung predict, a link to /dev/zero filled the memory."""
    home = trained.home
    folder = home / "special"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zeros.jpg").symlink_to("/dev/zero")
    (folder / "face.png").write_bytes(encode(pattern_image(46), "PNG"))
    result = succeeded(cli(home, "predict", "special", "special/zeros.jpg"))
    entries = [(entry["image"], entry.get("error")) for entry in result["images"]]
    assert entries == [("special/face.png", None),
                       ("special/pipe.jpg", "not a regular file (a FIFO, device or socket)"),
                       ("special/zeros.jpg", "not a regular file (a FIFO, device or socket)"),
                       ("special/zeros.jpg", "not a regular file (a FIFO, device or socket)")]


def test_export_writes_an_onnx_file_that_loads(trained):
    result = succeeded(cli(trained.home, "export", "--output", "x.onnx"))
    target = trained.home / "x.onnx"
    assert result["output"] == "x.onnx" and result["bytes"] == target.stat().st_size > 100_000
    assert result["labels"] == ["with_mask", "without_mask"] and result["preprocess"]["input_size"] == 96
    assert target.read_bytes() == (Path(trained.result["artefact_dir"]) / "model.onnx").read_bytes()
    classifier = load_classifier(target)
    assert classifier.labels == ["with_mask", "without_mask"]
    assert classifier.preprocess.input_size == 96 and classifier.rule.size == 96
    probabilities = classifier.predict(np.zeros((3, 96, 96, 3), np.uint8))
    assert probabilities.shape == (3, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)


def test_predict_starts_from_the_threshold_saved_with_the_run(trained, shared_data):
    """The threshold chosen on the Metrics page (runs.set_threshold) is predict's default; --threshold still wins."""
    from maskdet.runs.active import set_threshold
    from maskdet.serving.predict import predict_image
    from maskdet.vision.faces import FaceDetector

    home = trained.home
    shutil.copyfile(shared_data / "without_mask" / "100.jpg", home / "face.jpg")
    model = Path(trained.result["artefact_dir"]) / "model.onnx"
    _, [face] = predict_image((home / "face.jpg").read_bytes(), FaceDetector(detect_side=640), load_classifier(model),
                              40_000_000)
    assert face.probability < 0.97  # a tiny random-init model: there is room above its answer
    chosen = round((face.probability + 1) / 2, 2)
    set_threshold(home_store(home), trained.result["run_id"], chosen)
    default, explicit = concurrently(lambda: succeeded(cli(home, "predict", "face.jpg")),
                                     lambda: succeeded(cli(home, "predict", "face.jpg", "--threshold", "0.5")))
    assert default["threshold"] == chosen
    [said] = default["images"][0]["faces"]
    assert said["label"] == "uncertain" and said["probability"] == pytest.approx(face.probability, abs=1e-4)
    assert explicit["threshold"] == 0.5 and explicit["images"][0]["faces"][0]["label"] == face.label


def test_evaluate_a_folder_of_class_folders(trained):
    folder = write_dataset(trained.home / "eval", per_class=3, start=500)
    (folder / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    report = succeeded(cli(trained.home, "evaluate", folder))
    assert report["num_samples"] == 6 and report["no_face"] == 6
    assert report["labels"] == ["with_mask", "without_mask"]
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum(axis=1).tolist() == [3, 3]
    assert report["accuracy"] == pytest.approx(np.trace(matrix) / 6)
    assert [c["support"] for c in report["per_class"]] == [3, 3]
    assert "roc_curves" not in report  # only with --curves
    assert [r["name"] for r in report["rejected_files"]] == ["with_mask/broken.jpg"]


def test_evaluate_imports_the_misclassified_then_all_photos(trained, tmp_path):
    """A copy of one with_mask photo filed under without_mask: whatever the model says of the two copies, one is
    misclassified. 7 photos, 6 different files."""
    shutil.copytree(trained.home / "data", tmp_path / "data")  # the run's model stays where it was trained
    folder = write_dataset(tmp_path / "eval", per_class=3, start=500)
    (folder / "without_mask" / "twin.jpg").write_bytes((folder / "with_mask" / "img500.jpg").read_bytes())
    report = succeeded(cli(tmp_path, "evaluate", folder, "--import-errors"))
    wrong = sorted(m["name"] for m in report["misclassified"])
    assert report["num_samples"] == 7 and wrong and "names" not in report
    imported = report["imported"]
    assert (imported["added"], imported["duplicates"], imported["rejected"]) == (len(wrong), 0, 0)
    assert sorted(imported["no_face_files"]) == wrong  # generated pictures: added, used whole
    store = home_store(tmp_path)
    assert imported["labels"] == store.label_counts() and sum(store.label_counts().values()) == 12 + len(wrong)
    assert sorted((r.source_name, r.label) for r in store.faces() if r.source_name in wrong) == sorted(
        (m["name"], m["true"]) for m in report["misclassified"])

    again = succeeded(cli(tmp_path, "evaluate", folder, "--import-all"))["imported"]
    assert (again["added"], again["duplicates"], again["rejected"]) == (6 - len(wrong), len(wrong) + 1, 0)
    assert sum(store.label_counts().values()) == 12 + 6  # the twin is one file


def test_evaluate_imports_one_kind_of_photos_at_a_time(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "photos/", "--import-errors", "--import-all"])
    assert "not allowed with argument --import-errors" in capsys.readouterr().err


# ---- failures --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case, phrases", [
    ("import a missing folder", ["No such file or folder", "nowhere/photos"]),
    ("predict a missing file", ["No such file: missing.jpg"]),
    ("cancel an unknown run", ["No run with id '20990101-000000-abcdef'", "maskdet runs"]),
    ("evaluate unknown classes", ["not known to the model: mask_incorrect",
                                  "The model's classes: with_mask, without_mask"]),
    ("cancel a finished run", ["is not running (status: succeeded)"]),
    ("import a missing zip", ["No such file: nowhere.zip"]),
    ("export int8 of a run without one", ["has no int8 model", "--no-int8"]),
])
def test_mistakes_exit_2_with_a_clear_message(mistakes, case, phrases):
    refused(mistakes.results[case], *phrases)


def test_training_settings_that_make_no_sense_are_refused_before_a_run_starts(mistakes, trained):
    assert refused(mistakes.results["train with epochs 0"]) == \
        "error: Training setting 'epochs' must be a whole number from 1 to 1000, got 0."
    refused(mistakes.results["train with a config that is a list"], "list.json must hold a JSON object of training "
            "settings, like {\"epochs\": 20}; it holds a list.")
    assert [run["id"] for run in succeeded(cli(trained.home, "runs"))["runs"]] == [trained.result["run_id"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU that PyTorch can use")
def test_a_device_that_cannot_train_here_is_refused_before_a_run_starts(tmp_path):
    assert cli(tmp_path, "labels").returncode == 0  # one process creates the new home
    cuda, tpu = concurrently(lambda: cli(tmp_path, "train", "--random-init", "--device", "cuda"),
                             lambda: cli(tmp_path, "train", "--device", "tpu"))
    refused(cuda, "error: Training device 'cuda' was asked for, but this machine has no CUDA GPU that PyTorch can use",
            "choose auto or cpu.")
    refused(tpu, "argument --device: invalid choice: 'tpu'", "auto", "cpu", "cuda")
    assert home_store(tmp_path).runs() == []


def test_error_after_a_progress_bar_starts_on_its_own_line(mistakes):
    result = mistakes.results["evaluate unknown classes"]
    assert any(line.startswith("error:") for line in result.stderr.splitlines()), result.stderr


def test_landmarks_command_fills_an_old_data_home(tmp_path, shared_data):
    photo = tmp_path / "face.jpg"
    photo.write_bytes((shared_data / "without_mask" / "212.jpg").read_bytes())
    assert succeeded(cli(tmp_path, "import", "face.jpg", "--label", "without_mask"))["no_face"] == 0
    make_old_home(tmp_path / "data" / "maskdet.db")
    assert succeeded(cli(tmp_path, "landmarks")) == {"filled": 1, "not_found": 0, "images_with_face": 1}
    assert succeeded(cli(tmp_path, "landmarks")) == {"filled": 0, "not_found": 0, "images_with_face": 1}


# ---- a light CLI ---------------------------------------------------------------------------------------------

LOADED = ("import json, sys\nfrom maskdet.cli import main\nfrom maskdet.vision.mtcnn import networks\n"
          "code = main(sys.argv[1:])\n"
          "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, 'mtcnn': networks.cache_info().currsize}),"
          " file=sys.stderr)")


def loaded_by(home: Path, *args) -> dict:
    """What running a command loaded: torch, MTCNN's networks (and its exit code)."""
    command = [sys.executable, "-c", LOADED, *map(str, args)]
    result = subprocess.run(command, cwd=home, env=cli_env(home), capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_commands_that_need_no_detector_load_neither_it_nor_torch(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a photo")
    cases = [("labels",), ("runs",), ("cancel", "20990101-000000-abcdef"), ("import", "notes.jpg", "--label", "x")]
    assert cli(tmp_path, "labels").returncode == 0  # one process creates the new home
    results = concurrently(*[lambda case=case: loaded_by(tmp_path, *case) for case in cases])
    assert [r["code"] for r in results] == [0, 0, 2, 2]
    assert not any(r["torch"] or r["mtcnn"] for r in results), results


def test_output_cut_short_by_the_reader_ends_quietly(tmp_path):
    result = subprocess.run(f"set -o pipefail; {sys.executable} -m maskdet labels | head -1", shell=True,
                            executable="/bin/bash", cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "{\n", "")


@pytest.mark.parametrize("url, phrase", [
    ("postgresql://maskdet:secret@127.0.0.1:1/maskdet", "Cannot open the database postgresql://maskdet:***@127.0.0.1"
                                                        ":1/maskdet (connection"),
    ("mysql://maskdet:secret@127.0.0.1/maskdet", "No driver for the database mysql://maskdet:***@127.0.0.1/maskdet"),
])
def test_an_unusable_database_is_one_sentence(tmp_path, url, phrase):
    env = {**cli_env(tmp_path), "MASKDET_DATABASE_URL": url}
    result = subprocess.run([sys.executable, "-m", "maskdet", "runs"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert refused(result, phrase).count("\n") == 0
