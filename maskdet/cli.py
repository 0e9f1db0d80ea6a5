"""`python -m maskdet ...`: the same library functions the dashboard uses, headless."""

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import fields, replace
from pathlib import Path

from PIL import Image

from maskdet.bundle.pixels import image_files
from maskdet.console import failure, stage_bars, stderr_logged, tqdm_progress
from maskdet.core.errors import Cancelled, MaskdetError, TrainingError
from maskdet.core.imageio import BadImage
from maskdet.core.json_text import parse_json
from maskdet.core.settings import load_settings
from maskdet.core.threshold import DEFAULT_THRESHOLD
from maskdet.data.annotations import FORMATS
from maskdet.data.database import ACTIVE_STATUSES
from maskdet.data.dataset_export import EXPORT_FORMATS, export_dataset
from maskdet.data.importer import annotated_source
from maskdet.data.sources import folder_candidates, read_photo_file
from maskdet.data.store import Store
from maskdet.runs.active import active_run, model_path, run_summary
from maskdet.runs.backup import backup, restore
from maskdet.runs.launch import start_training
from maskdet.runs.lifecycle import active_training, cancel_training, log_path, new_run, stored_config
from maskdet.runs.views import RunRecord, finished_runs
from maskdet.serving.box_evaluation import evaluate_boxes, photos_with_errors
from maskdet.serving.classifier import load_classifier
from maskdet.serving.predict import annotate, evaluate_folder, import_evaluated, predict_image
from maskdet.training.config import CHOSEN, RANGED, TrainConfig, number_text
from maskdet.training.progress import Progress
from maskdet.vision.faces import FaceDetector


class UsageError(MaskdetError):
    """A mistake in the command line; printed as one line."""


def resolve_model(store: Store, spec: str | None, int8: bool = False) -> Path:
    """A path to an .onnx file, a run id, or (None) the active model chosen on the Models page."""
    if spec and spec.endswith(".onnx"):
        return Path(spec)
    runs = [r for r in finished_runs(store) if r["id"] == spec] if spec else [run for run in [active_run(store)] if run]
    if not runs and spec:
        raise UsageError(f"No finished run '{spec}'.")
    if not runs and finished_runs(store):
        raise UsageError("No active model: no finished run beats chance on its test split (see `python -m maskdet "
                         "runs`). Pass --model RUN_ID to use one anyway, or train again.")
    if not runs:
        raise UsageError("No trained model yet: run `python -m maskdet train`.")
    path = model_path(store, runs[0], int8)
    if int8 and not path.exists():
        raise UsageError(f"Run {runs[0]['id']} has no int8 model (it was trained with --no-int8).")
    return path


def cmd_import(store: Store, args) -> dict:
    source = Path(args.path)
    mapping = class_mapping(args.map)
    if source.is_dir() or source.suffix.lower() == ".zip":
        if args.label:
            raise UsageError("--label is for single image files; a folder's class sub-folders or its annotations "
                             "name the labels.")
        read = store.import_folder if source.is_dir() else store.import_zip
        report = read(source, FaceDetector(), tqdm_progress("import"), mapping, args.format)
    elif source.is_file():
        if not args.label:
            raise UsageError("Importing a single image needs --label.")
        report = store.add_image(read_photo_file(source), args.label, source.name, FaceDetector())
    else:
        raise UsageError(f"No such file or folder: {source}.")
    return {**report.to_dict(), "labels": store.label_counts()}


def class_mapping(pairs: list[str] | None) -> dict[str, str | None]:
    """--map SRC=DST pairs: an annotated set's class SRC imported as the dataset class DST (SRC= : skipped)."""
    mapping = {}
    for pair in pairs or []:
        source, equals, target = pair.partition("=")
        if not equals or not source.strip():
            raise UsageError(f"--map {pair}: write SET_CLASS=DATASET_CLASS (or SET_CLASS= to skip that class).")
        mapping[source.strip()] = target.strip() or None
    return mapping


def cmd_export_dataset(store: Store, args) -> dict:
    return export_dataset(store, args.format, Path(args.file), tqdm_progress("export"))


def cmd_labels(store: Store, args) -> dict:
    if args.add:
        store.add_label(args.add)
    if args.rename:
        store.rename_label(*args.rename)
    if args.delete:
        store.delete_label(args.delete)
    return {"labels": store.label_counts(), "no_face": store.count_faces(no_face=True)}


def train_config(args):
    data = read_config_file(Path(args.config)) if args.config else {}
    for name in (*RANGED, *CHOSEN):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    if args.split:
        data["split"] = args.split
    if args.labels:
        data["labels"] = args.labels
    if args.random_init:
        data["random_init"] = True
    if args.no_int8:
        data["quantize"] = False
    if args.mask_rule:
        data["synthetic_masks"] = [mask_rule_flag(text) for text in args.mask_rule]
    if args.no_synthetic_masks:
        data["synthetic_masks"] = []
    weights = args.backbone_weights or load_settings().backbone_weights
    if weights:
        data["backbone_weights"] = str(weights)
    return TrainConfig.from_dict(data)


def mask_rule_flag(text: str) -> dict:
    """A --mask-rule SRC=DST[:WORN[:PROBABILITY[:FROM]]] as the rule object of the synthetic_masks setting."""
    classes, *rest = text.split(":")
    source, equals, target = classes.partition("=")
    if not equals or len(rest) > 3:
        raise ValueError(f"--mask-rule {text!r}: write SOURCE=TARGET, optionally followed by :right or :wrong, "
                         ":PROBABILITY and :drawing or :twin, as in without_mask=mask_incorrect:wrong:0.25.")
    rule = {"source": source, "target": target, **({"worn": rest[0]} if rest else {})}
    if len(rest) >= 2:
        try:
            rule["probability"] = float(rest[1])
        except ValueError:
            raise ValueError(f"--mask-rule {text!r}: the probability must be a number from 0 to 1.") from None
    if len(rest) == 3:
        rule["mask_from"] = rest[2]
    return rule


def read_config_file(path: Path) -> dict:
    """A --config file's settings: a JSON object (anything else is refused in a sentence)."""
    try:
        data = parse_json(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"No such config file: {path}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"The config file {path} is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise UsageError(f"The config file {path} must hold a JSON object of training settings, like "
                         f"{{\"epochs\": 20}}; it holds a {type(data).__name__}.")
    return data


def follow(store: Store, run_id: str) -> None:
    """Draw a run training elsewhere (on the cluster) from the registry, about once a second, until it ends; Ctrl-C
    asks it to cancel and keeps following. It ends as a local run would: returns, raises Cancelled, or raises a
    StoreError with the run's error."""
    names = [field.name for field in fields(Progress)]
    with stage_bars() as on_progress:
        while True:
            try:
                active_training(store)  # a run whose worker stopped without a word is failed here
                run = store.run(run_id)
                if run["status"] not in ACTIVE_STATUSES:
                    break
                if run["progress"]:
                    on_progress(Progress(**{name: run["progress"][name] for name in names if name in run["progress"]}))
                time.sleep(1.0)
            except KeyboardInterrupt:
                print(f"cancelling run {run_id}: waiting for it to stop", file=sys.stderr)
                try:
                    cancel_training(store, run_id)
                except TrainingError:  # it ended meanwhile: the next look says how
                    pass
    if run["status"] == "cancelled":
        raise Cancelled()
    if run["status"] == "failed":
        raise TrainingError(f"Run {run_id} failed: {run['error'] or 'no message was recorded.'}")


def cmd_train(store: Store, args) -> dict:
    from maskdet.runs.execute import execute_run  # here, for speed: it imports torch (seconds), other commands do not
    if args.run_id:  # a run queued by the dashboard carries its own config; its output already goes to its log
        config, run_id, log = stored_config(store, args.run_id), args.run_id, nullcontext()
    elif store.settings.cluster:  # queued here, trained by a cluster worker, followed from the registry
        run_id = start_training(store, train_config(args).to_dict())
        follow(store, run_id)
        return run_summary(store, run_id)
    else:
        config = train_config(args)
        run_id = new_run(store, config.to_dict())
        log = stderr_logged(log_path(store.settings, run_id))
    with log, stage_bars() as on_progress:
        execute_run(store, config, store.settings.models_dir, run_id, on_progress)
    return run_summary(store, run_id)


def cmd_evaluate(store: Store, args) -> dict:
    classifier = load_classifier(resolve_model(store, args.model, args.int8))
    with annotated_source(Path(args.folder), args.format) as annotated:
        if annotated is not None:
            return evaluate_boxed(store, args, annotated, classifier)
    if args.count_as:
        raise UsageError("--count-as is for sets with face boxes; name a class folder after a model class instead.")
    detector = FaceDetector()
    report = evaluate_folder(Path(args.folder), detector, classifier, store.settings.max_pixels,
                             tqdm_progress("evaluate"))
    if args.import_errors or args.import_all:
        candidates, _ = folder_candidates(Path(args.folder))
        imported = import_evaluated(store, candidates, report, detector, errors_only=args.import_errors,
                                    progress=tqdm_progress("import"))
        report["imported"] = {**imported.to_dict(), "labels": store.label_counts()}
    report.pop("names")  # every photo's name: the misclassified ones are listed
    if not args.curves:
        report.pop("roc_curves")
    return report


def evaluate_boxed(store: Store, args, annotated, classifier) -> dict:
    """`evaluate` on a set with face boxes; --import-errors / --import-all then import the photos with a face missed
    or misclassified (or all), with their annotated faces under the classes they counted as."""
    counts_as = class_mapping(args.count_as) if args.count_as else None
    detector = FaceDetector.for_photos(classifier.detector)
    report = evaluate_boxes(annotated, classifier, store.settings.max_pixels, counts_as, tqdm_progress("evaluate"),
                            detector)
    if args.import_errors or args.import_all:
        chosen = photos_with_errors(report) if args.import_errors else {photo["name"] for photo in report["photos"]}
        subset = replace(annotated, photos=[photo for photo in annotated.photos if photo.candidate.name in chosen],
                         problems=[])
        imported = store.import_annotated(subset, report["counts_as"], detector, tqdm_progress("import"))
        report["imported"] = {**imported.to_dict(), "labels": store.label_counts()}
    report.pop("photos")
    for key in ("iou_0.4", "iou_0.5"):
        for name in ("misses", "wrongs") if args.curves else ("misses", "wrongs", "curves"):
            report[key].pop(name)
    return report


def cmd_export(store: Store, args) -> dict:
    source = resolve_model(store, args.run, args.int8)
    classifier = load_classifier(source)
    target = Path(args.output)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return {"output": str(target), "bytes": target.stat().st_size, "labels": classifier.labels,
            "preprocess": classifier.preprocess.to_dict()}


def cmd_predict(store: Store, args) -> dict:
    classifier = load_classifier(resolve_model(store, args.model, args.int8))
    threshold = classifier.class_threshold if args.threshold is None else args.threshold
    detector = FaceDetector.for_photos(classifier.detector)  # the settings the model carries, as the bundle's
    results = []
    for index, name in enumerate(image_files(args.images)):
        try:
            image, predictions = predict_image(read_photo_file(Path(name)), detector, classifier,
                                               store.settings.max_pixels, threshold)
        except (BadImage, OSError) as error:
            results.append({"image": name, "error": str(error)})
            continue
        entry = {"image": name, "faces": [p.to_dict() for p in predictions]}
        if args.annotate:
            out = Path(args.annotate) / f"{index:04d}-{Path(name).stem}.annotated.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(annotate(image, predictions, classifier.labels)).save(out)
            entry["annotated"] = str(out)
        results.append(entry)
    return {"model": str(classifier.path), "labels": classifier.labels, "threshold": threshold, "images": results}


def cmd_landmarks(store: Store, args) -> dict:
    return {**store.fill_landmarks(FaceDetector(), progress=tqdm_progress("landmarks")),
            "images_with_face": store.count_faces(no_face=False)}


def cmd_runs(store: Store, args) -> dict:
    active_training(store)  # runs whose process stopped without a word are marked failed first
    return {"runs": [RunRecord.of(run).summary() for run in store.runs()]}


def cmd_cancel(store: Store, args) -> dict:
    cancel_training(store, args.run_id)
    return {"run_id": args.run_id, "cancel_requested": True}


def cmd_backup(store: Store, args) -> dict:
    return backup(store, Path(args.file), [] if args.no_runs else args.runs, tqdm_progress("backup", "file"))


def cmd_restore(store: Store, args) -> dict:
    return restore(store, Path(args.file), tqdm_progress("restore", "file"))


def print_human(command: str, result: dict) -> None:
    """A short readable rendering of a command's result."""
    if command == "runs":
        for run in result["runs"]:
            accuracy = f"acc {run['accuracy']:.4f} F1 {run['macro_f1']:.4f}" if run["accuracy"] is not None else ""
            print(f"{run['id']}  {run['status']:<9} {' '.join(filter(None, [accuracy, run['error']]))}".rstrip())
        if not result["runs"]:
            print("No runs yet.")
    elif command == "predict":
        for entry in result["images"]:
            faces = entry.get("faces")
            described = entry.get("error") or ", ".join(f"{f['label']} {f['probability']:.0%}" for f in faces) or "no face"
            print(f"{entry['image']}: {described}")
    elif command == "import":
        print(", ".join(f"{k}: {v}" for k, v in result.items() if isinstance(v, int)))
        for item in result["rejected_files"]:
            print(f"  rejected {item['name']}: {item['reason']}")
        for item in result["left_out_boxes"]:
            print(f"  left out of {item['name']}: {item['reason']}")
        print("labels: " + ", ".join(f"{k} {v}" for k, v in result["labels"].items()))
    elif command == "backup":
        print(f"Backed up to {result['file']} ({result['bytes'] / 2**20:.1f} MB): {result['images']} images in "
              f"{result['labels']} classes; runs: {', '.join(result['runs']) or 'none'}.")
        for item in result["skipped"]:
            print(f"  left out {item['item']}: {item['reason']}")
    elif command == "restore":
        print(f"Restored into {result['home']} ({result['database']}): {result['images']} images ("
              f"{', '.join(f'{k} {v}' for k, v in result['labels'].items())}); runs: "
              f"{', '.join(result['runs']) or 'none'}; active model: {result['active_run'] or 'none chosen'}.")
    else:
        print(json.dumps({k: v for k, v in result.items() if k not in ("misclassified", "roc_curves")}, indent=2))


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each numeric training setting and each one of a few words (--device), with its help, range or
    choices and default from TrainConfig (which imports torch, so only `train` builds them)."""
    for name, spec in RANGED.items():
        low, high = (number_text(limit) for limit in spec.metadata["range"])
        text = f"{spec.metadata['help']} From {low} to {high}; default {number_text(spec.default)}."
        parser.add_argument(f"--{name.replace('_', '-')}", type=spec.type, metavar="N" if spec.type is int else "X",
                            help=text)
    for name, spec in CHOSEN.items():
        parser.add_argument(f"--{name.replace('_', '-')}", choices=spec.metadata["choices"],
                            help=f"{spec.metadata['help']} Default {spec.default}.")


def build_parser(train_flags: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m maskdet", description="maskdet: face-mask detection studio")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("import", help="import a folder or .zip of class folders or of photos with face boxes "
                                           "(PASCAL VOC, YOLO, COCO), or one image with --label")
    p.add_argument("path")
    p.add_argument("--label")
    p.add_argument("--format", choices=FORMATS, help="the annotation format (default: recognised from the files)")
    p.add_argument("--map", nargs="+", metavar="SET_CLASS=CLASS",
                   help="import an annotated set's class as this dataset class (SET_CLASS= skips it); a class of the "
                        "same name as one of the dataset's needs none")

    p = commands.add_parser("export-dataset", help="write the dataset's photos and labelled face boxes to a zip "
                                                   "(PASCAL VOC or YOLO)")
    p.add_argument("file")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="voc")

    p = commands.add_parser("labels", help="list labels with image counts; add, rename or delete one")
    p.add_argument("--add")
    p.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"))
    p.add_argument("--delete", help="delete a label and all its images")

    p = commands.add_parser("train", help="train, evaluate and export a model")
    p.add_argument("--config", help="JSON file with TrainConfig fields (flags override it)")
    if train_flags:
        add_setting_flags(p)
    p.add_argument("--split", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--labels", nargs="+", help="train on these labels only")
    p.add_argument("--backbone-weights", help="local torchvision mobilenet_v2 state_dict (.pth)")
    p.add_argument("--random-init", action="store_true", help="no pretrained weights (for experiments only)")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 quantised variant")
    p.add_argument("--mask-rule", action="append", metavar="SRC=DST[:WORN[:P[:FROM]]]",
                   help="draw masks on SRC faces trained as DST, worn right (the default) or wrong, with probability P "
                        "(0.25), drawn (FROM drawing, the default) or the face's masked twin's real mask moved (twin);"
                        " repeat for several rules; replaces the synthetic_masks setting's automatic rules (e.g. "
                        "--mask-rule without_mask=with_mask --mask-rule without_mask=mask_incorrect:wrong --mask-rule "
                        "without_mask=mask_incorrect:wrong:1:twin)")
    p.add_argument("--no-synthetic-masks", action="store_true",
                   help="no drawn-mask views (the synthetic_masks setting: [])")
    p.add_argument("--run-id", help="execute this queued run with its stored config (used by the dashboard)")

    p = commands.add_parser("evaluate", help="score a model on a folder of class sub-folders, or on a folder or zip "
                                             "of photos with face boxes (PASCAL VOC, YOLO, COCO)")
    p.add_argument("folder")
    p.add_argument("--format", choices=FORMATS, help="the annotation format (default: recognised from the files)")
    p.add_argument("--count-as", nargs="+", metavar="SET_CLASS=CLASS",
                   help="count a set class the model lacks as one of its classes (default: a class meaning a mask "
                        "worn wrongly, such as mask_weared_incorrect, counts as the model's own worn-wrong class, "
                        "such as mask_incorrect, or as without_mask when the model has none)")
    p.add_argument("--model", help="run id or .onnx path (default: the active model)")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--curves", action="store_true", help="include ROC (or, with boxes, PR) curve points in the JSON")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--import-errors", action="store_true",
                       help="then import the misclassified photos into the dataset, under their folder's class")
    which.add_argument("--import-all", action="store_true",
                       help="then import every photo scored into the dataset, under its folder's class")

    p = commands.add_parser("export", help="write a run's ONNX model to a file")
    p.add_argument("--run", help="run id (default: the active model)")
    p.add_argument("--output", required=True)
    p.add_argument("--int8", action="store_true")

    p = commands.add_parser("predict", help="find faces in images and classify them")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", help="run id or .onnx path (default: the active model)")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--threshold", type=float, help="below this probability a face is 'uncertain' (default: the "
                   f"model's class confidence threshold, chosen on the Metrics page; {DEFAULT_THRESHOLD} until one is)")
    p.add_argument("--annotate", metavar="DIR", help="also write annotated images into DIR")

    commands.add_parser("landmarks", help="find the face landmarks of photos imported before maskdet stored them")

    p = commands.add_parser("backup", help="write the data home (database, images, runs) to one zip, safe while "
                                           "the dashboard runs")
    p.add_argument("file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--runs", nargs="+", metavar="ID",
                       help="back up these runs (default: every run not queued or running)")
    which.add_argument("--no-runs", action="store_true", help="back up the dataset only")

    p = commands.add_parser("restore", help="load a backup into an empty data home (SQLite or PostgreSQL)")
    p.add_argument("file")

    commands.add_parser("runs", help="list training runs")
    p = commands.add_parser("cancel", help="ask a running training to stop")
    p.add_argument("run_id")
    return parser


COMMANDS = {"import": cmd_import, "export-dataset": cmd_export_dataset, "labels": cmd_labels, "train": cmd_train,
            "evaluate": cmd_evaluate, "export": cmd_export, "predict": cmd_predict, "landmarks": cmd_landmarks,
            "runs": cmd_runs, "cancel": cmd_cancel, "backup": cmd_backup, "restore": cmd_restore}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(train_flags=command == "train").parse_args(argv)
    try:
        store = Store()
        result = COMMANDS[args.command](store, args)
    except (Exception, KeyboardInterrupt) as error:  # one line, no traceback
        line, code = failure(error)
        print(line, file=sys.stderr)
        return code
    try:
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_human(args.command, result)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`runs | head -1`): it took what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and the flush at exit finds no pipe
    return 0
