"""The live benchmarks run, with tiny settings: benchmarks/live_webrtc.py (real WebRTC through the Live page's frame
callback) and benchmarks/live_soak.py. They prove the scripts work; they measure nothing (no speed assertions)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskdet.core.contract import Preprocess
from maskdet.training import export
from maskdet.training.model import MaskNet
from maskdet.vision.faces import CropRule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A small maskdet model with random weights: the scripts load it instead of exporting their own."""
    path = tmp_path_factory.mktemp("benchmark-model") / "model.onnx"
    preprocess = Preprocess(input_size=64)
    return export.export_classifier(MaskNet(2, preprocess).eval(), path, ["with_mask", "without_mask"], preprocess,
                                    CropRule(1.25, 64))


def run_script(name: str, *args: str) -> list[dict]:
    """The script's JSON lines (stdout)."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_webrtc_benchmark_one_line_per_stream_count(model_file, shared_data):
    """Viewers beyond the capacity are refused, as the Live page refuses them: 3 viewers, 2 served."""
    lines = run_script("live_webrtc.py", "--model", str(model_file), "--data", str(shared_data), "--streams", "1", "3",
                       "--capacity", "2", "--seconds", "2", "--warmup", "1", "--clip-frames", "25")
    assert [(line["streams"], line["served"], line["refused"]) for line in lines] == [(1, 1, 0), (3, 2, 1)]
    for line in lines:
        assert line["codecs"] == ["VP8"] and line["browser_receiver"] == "marker bit"
        assert line["targets"] is not None and isinstance(line["targets_met"], bool)
        assert len(line["per_stream"]) == line["served"]
        for stream in line["per_stream"]:
            assert stream["frames_delivered"] > 0 and stream["delivered_fps"] > 0
            assert 0 < stream["latency_ms"]["p50"] <= stream["latency_ms"]["p95"] <= stream["latency_ms"]["max"]
            assert stream["frames_sent"] > 0 and stream["frames_processed"] > 0
            assert stream["detect_every_at_end"] >= 3 and stream["dropped_by_pipeline"] >= 0
            assert stream["overlay_fps_mean"] > 0 and isinstance(stream["overlay_fps_error_pct"], float)


@pytest.mark.parametrize("mode", [[], ["--webrtc"]], ids=["pipeline", "webrtc"])
def test_soak_samples_rss_and_fps_and_reports_the_growth(model_file, shared_data, mode):
    lines = run_script("live_soak.py", "--model", str(model_file), "--data", str(shared_data), *mode,
                       "--minutes", "0.05", "--sample-seconds", "1", "--clip-frames", "25")
    *samples, summary = lines
    assert len(samples) == summary["samples"] == 3 and summary["per_sample"] == samples
    assert summary["mode"] == ("webrtc" if mode else "pipeline")
    assert all(sample["rss_mb"] > 0 and sample["fps"] > 0 for sample in samples)
    assert summary["baseline_minute"] == samples[0]["minute"]  # a short run: from the first sample
    assert summary["rss_growth_pct"] == pytest.approx(
        (samples[-1]["rss_mb"] - samples[0]["rss_mb"]) / samples[0]["rss_mb"] * 100, abs=0.01)
    assert isinstance(summary["rss_growth_ok"], bool)
    if mode:
        assert all(sample["delivered_fps"] > 0 and sample["latency_ms"]["p50"] > 0 for sample in samples)
