"""Benchmarks that can run on tiny settings: they still work (a check of the script, not of any figure)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import encode, pattern_image

ROOT = Path(__file__).resolve().parents[1]


def test_hostile_inputs_replays_each_file_in_a_child_and_reports_its_cost():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hostile_inputs.py"), "--quick",
                          "--only", "overlapping-entries,huge-crop", "--kinds", "import,model"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["baseline"] for line in lines[:2]] == ["import", "model"]
    assert lines[0]["outcome"].startswith("added: 1") and lines[1]["outcome"].startswith("kept model.onnx")
    files = {line["file"]: line for line in lines if "file" in line}
    assert files["overlapping-entries.zip"]["outcome"].startswith("error: The zip's entries overlap one another")
    assert files["huge-crop.onnx"]["outcome"].startswith("error: huge-crop.onnx declares 100000-pixel inputs")
    assert all(line["peak_rss_mb"] > 0 and line["cpu_s"] > 0 and line["within_target"] for line in files.values())
    assert lines[-1]["files"] == 2 and lines[-1]["all_within_1_GiB_and_30_s"] is True


def test_near_duplicates_benchmark_imports_beside_stored_photos(shared_data):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "near_duplicates.py"), "--stored", "50", "3000",
                          "--photos", "4", "--data", str(shared_data)], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(line["stored"], line["imported"]) for line in lines] == [(50, 4), (3000, 4)]
    assert all(line["photos_per_second"] > 0 for line in lines)


def test_scale_benchmark_makes_imports_and_trains_its_photos_and_loads_the_pages(shared_data, backbone_weights,
                                                                                  tmp_path):
    photos = tmp_path / "photos"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--photos", "200", "--data",
                          str(shared_data), "--weights", str(backbone_weights), "--photos-dir", str(photos),
                          "--config", json.dumps({"epochs": 2, "views_per_image": 1, "quantize": False})],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.splitlines()[-1])
    made = sorted(path.relative_to(photos).as_posix() for path in photos.glob("*/*.jpg"))
    assert len(made) == 200 and all(name.endswith("__v000.jpg") for name in made)  # 200 of 1,376: no variants
    assert 190 <= figures["stored"] <= 200 and 0 < figures["groups"] <= figures["stored"]  # exact copies are skipped
    assert figures["train"]["epochs"] == {"head": 2, "finetune": 0} and figures["train"]["test_accuracy"] > 0.5
    for step in ("import", "train"):
        assert figures[step]["seconds"] > 0 and 0.2 < figures[step]["peak_rss_gb"] < 4
    assert set(figures["pages_s"]) == {"Dataset", "Train", "Metrics"}
    assert all(0 < load["first"] < 60 and 0 < load["again"] < 60 for load in figures["pages_s"].values())


def test_scale_benchmark_variants_are_reproducible_and_join_their_source_group(tmp_path, shared_data, store,
                                                                             detector):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale

    first = scale.make_photos(shared_data, 1400, 3, tmp_path / "a")
    second = scale.make_photos(shared_data, 1400, 3, tmp_path / "b")
    names = sorted(path.relative_to(first).as_posix() for path in first.glob("*/*.jpg"))
    variants = [name for name in names if not name.endswith("__v000.jpg")]
    assert len(names) == 1400 and len(variants) == 24 and all(name.endswith("__v001.jpg") for name in variants)
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in variants)
    original = first / variants[0].replace("__v001", "__v000")
    assert (first / variants[0]).read_bytes() != original.read_bytes()

    folder = tmp_path / "import" / "with_mask"  # a photo and an unlike variant of it, and another photo
    folder.mkdir(parents=True)
    for name, seed in (("a__v000", 1), ("a__v001", 2), ("b__v000", 3)):
        (folder / f"{name}.jpg").write_bytes(encode(pattern_image(seed, (120, 120))))
    store.import_folder(tmp_path / "import", detector)
    assert len({record.dup_group for record in store.faces()}) == 3
    assert scale.join_variant_groups(store) == 2
    groups = {record.source_name: record.dup_group for record in store.faces()}
    assert groups["with_mask/a__v000.jpg"] == groups["with_mask/a__v001.jpg"] != groups["with_mask/b__v000.jpg"]


def test_scenes_benchmark_trains_and_scores_a_boxed_set(tmp_path, shared_data, backbone_weights):
    from tests.test_annotated_import import scenes_sample

    data = tmp_path / "data"
    for label in ("with_mask", "without_mask"):
        (data / label).mkdir(parents=True)
        for path in sorted((shared_data / label).glob("*.jpg"))[:10]:
            (data / label / path.name).write_bytes(path.read_bytes())
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scenes.py"), "--data", str(data), "--weights",
                          str(backbone_weights), "--scenes", str(scenes_sample(tmp_path, 4)), "--tiny", "3"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.splitlines()[-1])
    assert figures["photos"] == 3 and figures["faces"] > 0
    assert set(figures["networks"]) == {"masked", "facenet"}
    for networks in figures["networks"].values():
        assert networks["live"]["model"] == "model.int8.onnx" and networks["live"]["frames"] == 20
        assert networks["live"]["fps"] > 0
        for key in ("iou_0.4", "iou_0.5"):
            scores = networks[key]
            assert scores["faces"] == figures["faces"] and 0 <= scores["found"] <= scores["faces"]
            assert set(scores["ap"]) == {"with_mask", "without_mask"} and set(scores["by_size"]) == {
                "< 20 px", "20-32 px", ">= 32 px"}
    three = figures["three_classes"]
    rules = [(rule["target"], rule["mask_from"]) for rule in three["rules"]]  # the twin rule where a twin is in train
    assert rules[:2] == [("with_mask", "drawing"), ("mask_incorrect", "drawing")] and rules[2:] in (
        [], [("mask_incorrect", "twin")])
    assert [(rule["target"], rule["mask_from"]) for rule in three["drawn_rules_only"]["rules"]] == rules[:2]
    for model in (three, three["drawn_rules_only"]):
        scores = model["iou_0.4"]
        assert scores["classes"] == ["with_mask", "without_mask", "mask_incorrect"]
        assert len(scores["confusion"]) == 3 and all(len(row) == 3 for row in scores["confusion"])
        assert set(scores["per_class"]) == set(scores["classes"])
    assert three["two_class_on_the_same_faces"]["classes"] == ["with_mask", "without_mask"]
