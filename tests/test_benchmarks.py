"""Benchmarks that can run on tiny settings: they still work (a check of the script, not of any figure)."""

import json
import subprocess
import sys
from pathlib import Path

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
