"""Scale: N distinct photos made from masks-small are imported and trained; prints import and training time, the peak
memory of each, and the Dataset, Train and Metrics pages' load time, as one JSON line.

    python benchmarks/scale.py --photos 100000 [--data DIR] [--weights FILE] [--config JSON] [--photos-dir DIR]

Photos: photo i is a variant of masks-small photo i mod 1,376 (in a seeded order), variant 0 being the photo itself.
A variant takes 80-100% of each side at a random place, is mirrored half the time, has its brightness, contrast and
colour scaled by 0.8-1.2 and its size by 0.6-1.0, and is saved as a JPEG of quality 90: the same seed makes the same
photos. Variants of a photo are joined to its near-duplicate group after the import (a mirror changes the perceptual
hash), so the split keeps every variant of a face on one side, as it keeps near-duplicates.

Import and training run as `python -m maskdet import` and `python -m maskdet train` (default settings, or --config)
in child processes; the peak memory of each is the child's maximum resident set size. Each page is then loaded
twice in Streamlit's AppTest (the script's run, without a browser): `first` after the other pages' modules are
imported, `again` a second load. The photos go to --photos-dir (kept, and reused by a later run of the same N and
seed), the data home and models to a temporary folder that is removed unless --keep."""

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from home import ROOT, add_shared_arguments, fresh_home
from PIL import Image, ImageEnhance

PAGES = ("1_Dataset", "2_Train", "3_Metrics")


def source_photos(data: Path, seed: int) -> list[Path]:
    """masks-small's photos (class folder / file) in a seeded order."""
    photos = sorted(path for path in data.glob("*/*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [photos[i] for i in np.random.default_rng(seed).permutation(len(photos))]


def variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop, maybe a mirror, colour and a scale of the image, drawn from rng."""
    width, height = image.size
    keep_w, keep_h = (int(side * rng.uniform(0.8, 1.0)) for side in (width, height))
    left, top = int(rng.integers(0, width - keep_w + 1)), int(rng.integers(0, height - keep_h + 1))
    image = image.crop((left, top, left + keep_w, top + keep_h))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(rng.uniform(0.8, 1.2))
    scale = rng.uniform(0.6, 1.0)
    return image.resize((max(1, round(keep_w * scale)), max(1, round(keep_h * scale))), Image.BILINEAR)


def write_photos(task: tuple[Path, Path, list[int], int]) -> None:
    """Variants `numbers` of one source photo into folder/<class>/<stem>__v<number>.jpg."""
    source, folder, numbers, seed = task
    image = Image.open(source).convert("RGB")
    (folder / source.parent.name).mkdir(parents=True, exist_ok=True)
    for number in numbers:
        photo = image if number == 0 else variant(image, np.random.default_rng([seed, number, *source.stem.encode()]))
        photo.save(folder / source.parent.name / f"{source.stem}__v{number:03d}.jpg", quality=90)


def make_photos(data: Path, count: int, seed: int, folder: Path) -> Path:
    """`count` photos in folder (made once: a folder holding the same count and seed is reused)."""
    marker = folder / ".made"
    wanted = json.dumps({"photos": count, "seed": seed, "data": str(data)})
    if marker.exists() and marker.read_text() == wanted:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    sources = source_photos(data, seed)
    tasks = [(source, folder, list(range(0, count // len(sources) + (i < count % len(sources)))), seed)
             for i, source in enumerate(sources)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write_photos, [task for task in tasks if task[2]], chunksize=8))
    marker.write_text(wanted)
    return folder


def run_child(arguments: list[str], log: Path) -> dict:
    """Run `python -m maskdet ARGUMENTS`; its time and peak resident memory (GB), or its log's end if it fails."""
    started = time.perf_counter()
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "maskdet", *arguments], cwd=ROOT, stdout=output,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"maskdet {arguments[0]} failed:\n{log.read_text()[-2000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def join_variant_groups(store) -> int:
    """Put each photo's variants in one near-duplicate group with it (and with whatever the import joined it to);
    returns the number of groups."""
    import sqlalchemy as sa

    from maskdet.data.database import photos_table

    with store.engine.begin() as conn:
        rows = conn.execute(sa.select(photos_table.c.id, photos_table.c.source_name, photos_table.c.dup_group)).all()
        parent = {}

        def root(node):
            while parent.setdefault(node, node) != node:
                parent[node] = parent[parent[node]]
                node = parent[node]
            return node

        for row in rows:  # a photo joins its import group and its source
            parent[root(("photo", row.id))] = root(("group", row.dup_group))
            parent[root(("source", row.source_name.split("__v")[0]))] = root(("photo", row.id))
        groups, changes = {}, []
        for row in rows:
            group = groups.setdefault(root(("photo", row.id)), len(groups) + 1)
            if group != row.dup_group:
                changes.append({"row_id": row.id, "group": group})
        if changes:
            conn.execute(photos_table.update().where(photos_table.c.id == sa.bindparam("row_id"))
                         .values(dup_group=sa.bindparam("group")), changes)
    return len(groups)


def page_load_seconds() -> dict:
    """Each page's first and second load in AppTest, in seconds, once the modules pages use are imported."""
    os.environ.setdefault("STREAMLIT_SERVER_ADDRESS", "127.0.0.1")  # as `make run` serves: pages refuse other ones
    import streamlit_webrtc  # noqa: F401  (as a running dashboard has them)
    from streamlit.testing.v1 import AppTest

    import maskdet.serving.capture  # noqa: F401
    import maskdet.training.train  # noqa: F401
    import ui  # noqa: F401

    for name in list(logging.root.manager.loggerDict):  # not "missing ScriptRunContext" at each page's import
        if name.startswith("streamlit"):
            logging.getLogger(name).setLevel(logging.ERROR)
    times = {}
    for page in PAGES:
        loads = []
        for _ in range(2):
            started = time.perf_counter()
            app = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=600).run()
            loads.append(round(time.perf_counter() - started, 2))
            if app.exception:
                raise SystemExit(f"{page} failed: {app.exception[0].value}")
        times[page.split("_", 1)[1]] = {"first": loads[0], "again": loads[1]}
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shared_arguments(parser)
    parser.add_argument("--photos", type=int, required=True, help="photos to make, import and train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="{}", help="JSON object of training settings (default: the defaults)")
    parser.add_argument("--photos-dir", type=Path, help="where the photos are made (default: a folder in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the data home and models")
    args = parser.parse_args()
    photos_dir = args.photos_dir or Path("/tmp") / f"maskdet-scale-photos-{args.photos}-{args.seed}"
    started = time.perf_counter()
    make_photos(Path(args.data), args.photos, args.seed, photos_dir)
    made_seconds = time.perf_counter() - started
    workdir = fresh_home("maskdet-scale-")
    os.environ["MASKDET_BACKBONE_WEIGHTS"] = args.weights
    try:
        from maskdet.core.settings import load_settings
        from maskdet.data.store import Store

        imported = run_child(["import", str(photos_dir)], workdir / "import.log")
        store = Store(load_settings())
        stored = sum(store.label_counts().values())
        groups = join_variant_groups(store)
        config = workdir / "config.json"
        config.write_text(args.config)
        trained = run_child(["train", "--config", str(config)], workdir / "train.log")
        run = store.runs()[0]
        pages = page_load_seconds()
        test = run["metrics"]["test"] or {}
        print(json.dumps({
            "photos": args.photos, "stored": stored, "groups": groups, "photos_made_s": round(made_seconds, 1),
            "import": {**imported, "ms_per_photo": round(imported["seconds"] * 1000 / args.photos, 1)},
            "train": {**trained, "ms_per_photo": round(trained["seconds"] * 1000 / stored, 1),
                      "epochs": run["metrics"]["epochs_trained"], "test_accuracy": test.get("accuracy"),
                      "stages_s": {stage: round(seconds, 1) for stage, seconds in run["metrics"]["timings"].items()
                                   if stage not in ("features_images_per_second", "total")}},
            "pages_s": pages, "data_home": str(workdir) if args.keep else None,
            "benchmark_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
