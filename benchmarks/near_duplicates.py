"""Importing into a large dataset: the import rate of the same photos with N photos stored already, one JSON line per N.

    python benchmarks/near_duplicates.py [--stored 1000 100000] [--photos 200]

The stored photos are registry rows only (no files): the perceptual hashes of 400 other masks-small photos with 5 to
25% of their bits flipped (other photos to the near-duplicate search, as a large dataset's are), each in a group of
its own.
Then `--photos` masks-small photos (pasted-mask pairs) are imported through Store.import_folder, MTCNN included, and
the rate is photos a second of that import. The near-duplicate search (maskdet/vision/near_duplicates.py) is the
part of an import that grows with the photos stored; the rate at 100,000 should stay within 20% of the rate at 1,000."""

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from home import add_shared_arguments, fresh_home

from maskdet.core.imageio import decode_image
from maskdet.core.settings import load_settings
from maskdet.core.text import now
from maskdet.data.database import photos_table
from maskdet.data.importer import perceptual_hash
from maskdet.data.store import Store
from maskdet.vision.faces import FaceDetector


def stored_rows(hashes: np.ndarray, count: int, seed: int) -> list[dict]:
    """`count` photo rows whose hashes are variants of `hashes`, each its own group (files that do not exist)."""
    rng = np.random.default_rng(seed)
    rows = hashes[rng.integers(0, len(hashes), count)]
    rows ^= np.packbits(rng.random((count, 256)) < rng.uniform(0.05, 0.25, (count, 1)), axis=1)
    created = now()
    return [dict(sha256=f"{index:064x}", file=f"00/{index:064x}", source_name=f"stored-{index}.jpg",
                 width=160, height=160, phash=row.tobytes().hex(), dup_group=index + 1, created_at=created)
            for index, row in enumerate(rows)]


def measure(stored: int, photos: list[Path], hashes: np.ndarray, detector: FaceDetector, folder: Path) -> dict:
    workdir = fresh_home("maskdet-near-duplicates-")
    try:
        store = Store(load_settings())
        with store.engine.begin() as conn:
            rows = stored_rows(hashes, stored, seed=stored)
            for start in range(0, len(rows), 5000):
                conn.execute(photos_table.insert(), rows[start:start + 5000])
        started = time.perf_counter()
        report = store.import_folder(folder, detector)
        seconds = time.perf_counter() - started
        return {"stored": stored, "imported": len(report.added), "seconds": round(seconds, 2),
                "photos_per_second": round(len(photos) / seconds, 1)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--photos", type=int, default=200, help="photos imported at each N (pairs: an even number)")
    add_shared_arguments(parser)
    args = parser.parse_args()
    data = Path(args.data)
    names = sorted(p.stem for p in (data / "without_mask").glob("*.jpg")
                   if p.stem.isdigit() and (data / "with_mask" / f"{p.stem}-with-mask.jpg").exists())[:args.photos // 2]
    folder = Path(fresh_home("maskdet-near-duplicates-photos-")) / "photos"
    photos = []
    for name in names:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (folder / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data / label / file, folder / label / file)
            photos.append(folder / label / file)
    others = [p for p in sorted(data.rglob("*.jpg")) if p.stem.removesuffix("-with-mask") not in names][:400]
    hashes = np.array([np.frombuffer(bytes.fromhex(perceptual_hash(decode_image(p.read_bytes(), 40_000_000))), np.uint8)
                       for p in others])  # of photos not imported: the stored ones are other photos to the search
    detector = FaceDetector()
    detector.detect([decode_image(photos[0].read_bytes(), 40_000_000)])  # MTCNN built before the clock starts
    try:
        for stored in args.stored:
            print(json.dumps(measure(stored, photos, hashes, detector, folder)), flush=True)
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
