"""An hour without a leak: the Live pipeline on the generated clip for a long run, sampling RSS and fps.

    python benchmarks/live_soak.py --minutes 60 [--webrtc] [--int8] [--model RUN_ID|file.onnx]

Without --webrtc, one LivePipeline processes the clip (benchmarks/live_webrtc.py's: 640x480, one to four faces, in a
loop) frame after frame, as fast as it can. With --webrtc, one stream runs through live_webrtc.py's loop instead: a
browser peer sends the clip at 30 fps over VP8, the Live page's frame callback (streamlit-webrtc's WebRtcWorker)
annotates it and sends it back, so aiortc, PyAV and streamlit-webrtc are soaked too.

Every --sample-seconds (a minute by default) one JSON line: the process's resident memory (VmRSS), fps (frames
processed, and with --webrtc distinct frames delivered back and their latency), and the detection interval. At the
end one JSON line with all samples and the growth of RSS from the sample at the end of minute --baseline-minute
(5: the first minutes warm caches and allocator pools up) to the last sample, with fps at both ends; the target is
a growth of at most 5% and a steady fps. Short runs (the test suite) take the first sample as the baseline.
"""

import argparse
import asyncio
import json
import time
from pathlib import Path

import live_webrtc
import numpy as np
from live_webrtc import Stream, close_streams, open_streams

from maskdet.serving.live import LivePipeline, LiveSettings
from maskdet.vision.clip import clip_photos, make_clip

RSS_GROWTH_TARGET_PCT = 5.0


def rss_mb() -> float:
    """This process's resident memory (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import psutil  # not Linux: psutil, when installed

    return psutil.Process().memory_info().rss / 2**20


def report(samples: list[dict], args: argparse.Namespace, mode: str, model: str) -> dict:
    minutes = [sample["minute"] for sample in samples]
    wanted = [i for i, minute in enumerate(minutes) if minute >= args.baseline_minute - 1e-6]
    base = wanted[0] if wanted and wanted[0] < len(samples) - 1 else 0
    first, last = samples[base], samples[-1]
    growth = (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"] * 100
    fps_key = "delivered_fps" if mode == "webrtc" else "fps"
    after = [sample[fps_key] for sample in samples[base:]]
    return {
        "mode": mode, "model": model, "minutes": round(minutes[-1], 2), "samples": len(samples),
        "baseline_minute": first["minute"],
        "rss_mb": {"baseline": first["rss_mb"], "end": last["rss_mb"], "max": max(s["rss_mb"] for s in samples)},
        "rss_growth_pct": round(growth, 2), "rss_growth_target_pct": RSS_GROWTH_TARGET_PCT,
        "rss_growth_ok": growth <= RSS_GROWTH_TARGET_PCT,
        "fps": {"baseline": first[fps_key], "end": last[fps_key], "min": min(after), "max": max(after)},
        "per_sample": samples,
    }


def soak_pipeline(pipeline: LivePipeline, clip: list[np.ndarray], args: argparse.Namespace) -> list[dict]:
    samples, began, index = [], time.monotonic(), 0
    while len(samples) < args.count:
        frames, detections, mark = pipeline.counters.frames, pipeline.counters.detections, time.monotonic()
        while time.monotonic() < began + (len(samples) + 1) * args.sample_seconds:
            pipeline.process(clip[index % len(clip)])
            index += 1
        counters, now = pipeline.snapshot(), time.monotonic()
        samples.append({"sample": len(samples) + 1, "minute": round((now - began) / 60, 3),
                        "rss_mb": round(rss_mb(), 1), "fps": round((counters.frames - frames) / (now - mark), 1),
                        "detections": counters.detections - detections, "detect_every": counters.detect_every})
        print(json.dumps(samples[-1]), flush=True)
    return samples


async def soak_webrtc(clip: list[np.ndarray], classifier, args: argparse.Namespace) -> list[dict]:
    streams = await open_streams(1, clip, classifier, LiveSettings(), 1, args.fps)
    stream: Stream = streams[0]
    grace = min(live_webrtc.GRACE_SECONDS, args.sample_seconds / 2)  # frames captured since may still be on their way
    try:
        await asyncio.sleep(grace)
        samples, began = [], time.monotonic()
        since, before = began - grace, stream.totals()
        while len(samples) < args.count:
            await asyncio.sleep(began + (len(samples) + 1) * args.sample_seconds - time.monotonic())
            now, totals = time.monotonic(), stream.totals()
            until = now - grace
            latencies = [latency * 1000 for _, latency in stream.take(since, until)]
            samples.append({
                "sample": len(samples) + 1, "minute": round((now - began) / 60, 3), "rss_mb": round(rss_mb(), 1),
                "delivered_fps": round(len(latencies) / (until - since), 1),
                "latency_ms": {"p50": live_webrtc.percentile(latencies, 50),
                               "p95": live_webrtc.percentile(latencies, 95)},
                "fps": round((totals["processed"] - before["processed"]) / args.sample_seconds, 1),
                "dropped_by_pipeline": totals["dropped"] - before["dropped"],
                "detect_every": totals["detect_every"], "skipping": totals["skipping"]})
            print(json.dumps(samples[-1]), flush=True)
            since, before = until, totals
    finally:
        await close_streams(streams)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    live_webrtc.add_arguments(parser)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--webrtc", action="store_true", help="one stream through the loopback WebRTC loop")
    parser.add_argument("--sample-seconds", type=float, default=60, help="seconds between two samples")
    parser.add_argument("--baseline-minute", type=float, default=5, help="RSS growth is measured from this minute")
    args = parser.parse_args()
    args.count = max(1, round(args.minutes * 60 / args.sample_seconds))
    live_webrtc.quiet_logs()
    clip = make_clip(clip_photos(Path(args.data)), args.clip_frames)
    classifier = live_webrtc.load_or_make_classifier(args.model, args.int8, clip)
    if args.webrtc:
        samples = asyncio.run(soak_webrtc(clip, classifier, args))
    else:
        samples = soak_pipeline(LivePipeline(classifier), clip, args)
    print(json.dumps(report(samples, args, "webrtc" if args.webrtc else "pipeline", classifier.path.name)))


if __name__ == "__main__":
    main()
