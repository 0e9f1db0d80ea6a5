"""Hostile files replayed through the real code paths, one child process each: peak memory and CPU per file.

    python benchmarks/hostile_inputs.py [--quick] [--only NAME,...] [--data DIR] [--postgres URL]

Each file (at most 2 MB) is written to a temporary folder and handed to a fresh child process doing what a user
does with it: `python -m maskdet import` (zips, folders, photos), scoring a run on an uploaded zip
(evaluate_zip, the Metrics page), `python -m maskdet predict` (photos), annotating an uploaded video
(media.annotate_video, the Live page), keeping and using an uploaded model (media.save_uploaded_model, the Live
page) or `python -m maskdet restore` (backups). Peak RSS and CPU seconds (user + system) come from wait4. Each kind
of child also handles a small valid input first: its baseline, so that the cost the file adds is visible. After each
child, the database it used (if any) goes through maskdet's integrity check. One JSON line per run, then a summary
line: whether every file cost at most 1 GiB and 30 s of CPU beyond its baseline, and whether every database stayed
intact. --data (masks-small) puts real faces in the longest allowed video. --postgres (a server's URL, as
MASKDET_TEST_POSTGRES_URL) also replays the backups into a new database on it, dropped after. --quick makes every
file tiny: a check that the benchmark works, not a measurement.
"""

import argparse
import bz2
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from home import ROOT, add_shared_arguments
from PIL import Image

LIMIT_BYTES, LIMIT_CPU = 2**30, 30.0  # the target: what a file of at most 2 MB may cost beyond the baseline
KILL_BYTES = 6 * 2**30  # a child above this is stopped (the machine is shared); its figure then reads "killed"
KINDS = ("import", "evaluate", "predict", "video", "model", "restore")


@dataclass
class Case:
    name: str
    kind: str  # one of KINDS
    make: Callable[[Path, bool], Path]  # (folder, quick) -> the file (or folder) written


# ---- writing hostile files ---------------------------------------------------------------------------------------

def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: Image.Image, quality: int = 75, optimize: bool = False) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=optimize)
    return buffer.getvalue()


def photo(seed: int = 0, size=(96, 80)) -> Image.Image:
    """A smooth random picture (no face): the trivial valid input."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 200, (5, 6, 3)).astype(np.uint8)).resize(size, Image.BICUBIC)


def deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def zip_of(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand from (name, stored payload, method, crc, declared size) entries, so that it can lie."""
    body, directory = b"", b""
    for name, payload, method, crc, size in entries:
        encoded = name.encode()
        fields = (20, 0, method, 0, 0x21, crc, len(payload), size, len(encoded), 0)
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + encoded + payload
    return body + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                                          len(directory), len(body), 0)


def entry(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, deflated(data), 8, zlib.crc32(data), len(data)


def write(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


def blank_pngs(folder: Path, quick: bool) -> Path:
    """32 blank 6324x6324 (40-megapixel) greyscale PNGs, each a different grey."""
    side = 64 if quick else 6324
    return write(folder, "blank-pngs.zip", zip_of([entry(f"with_mask/{i}.png", png(Image.new("L", (side, side), i)))
                                                   for i in range(32)]))


def sparse_photos(folder: Path, quick: bool) -> Path:
    """3 greyscale 40-megapixel PNGs with just enough noise (about 70 pixels a byte) to pass the bomb guard."""
    side, rng = 64 if quick else 6324, np.random.default_rng(0)
    images = []
    for index in range(3):
        grey = np.full((side, side), 100 + 28 * index, np.uint8)
        noise = rng.random((side, side)) < 0.002
        grey[noise] = rng.integers(0, 256, noise.sum())
        images.append(entry(f"with_mask/{index}.png", png(Image.fromarray(grey))))
    return write(folder, "sparse-40mp.zip", zip_of(images))


def overlapping(name: str, count: int, size: int) -> bytes:
    """`count` directory records of one entry of `size` zeros: every record unpacks the same compressed bytes."""
    one = zip_of([entry(f"with_mask/{name}.jpg", bytes(size))])
    start, end = one.index(b"PK\x01\x02"), one.rindex(b"PK\x05\x06")
    directory = one[start:end] * count
    return one[:start] + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory),
                                                 start, 0)


def overlapping_entries(folder: Path, quick: bool) -> Path:
    """The zip bomb found: 1,000 records of one 60 MiB entry, 58.6 GiB declared."""
    count, size = (10, 2**20) if quick else (1000, 60 * 2**20)
    return write(folder, "overlapping-entries.zip", overlapping("bomb", count, size))


def overlapping_under_cap(folder: Path, quick: bool) -> Path:
    """The same bomb kept under the declared-size cap: 250 records of 60 MiB, 14.6 GiB."""
    count, size = (10, 2**20) if quick else (250, 60 * 2**20)
    return write(folder, "overlapping-under-cap.zip", overlapping("bomb", count, size))


def lying_sizes(folder: Path, quick: bool) -> Path:
    """30 entries declaring 1 KB each that unpack to 60 MiB of zeros."""
    size = 2**20 if quick else 60 * 2**20
    entries = [(name, payload, 8, crc, 1024) for name, payload, _, crc, _ in
               [entry(f"with_mask/{i}.jpg", bytes(size) + bytes([i])) for i in range(30)]]
    return write(folder, "lying-sizes.zip", zip_of(entries))


def huge_declared_total(folder: Path, quick: bool) -> Path:
    """20 small entries declaring 1 GiB each: 20 GiB in all."""
    entries = [(name, payload, 8, crc, 2**30) for name, payload, _, crc, _ in
               [entry(f"with_mask/{i}.jpg", jpeg(photo(i))) for i in range(20)]]
    return write(folder, "huge-declared-total.zip", zip_of(entries))


def bzip2_bomb(folder: Path, quick: bool) -> Path:
    """A bzip2 entry declaring 100 bytes whose data unpacks to 1 GiB (zipfile would unpack it in one call)."""
    packer, chunk = bz2.BZ2Compressor(9), bytes(2**20 if quick else 64 * 2**20)
    payload = b"".join(packer.compress(chunk) for _ in range(1 if quick else 16)) + packer.flush()
    return write(folder, "bzip2-bomb.zip", zip_of([("with_mask/bomb.jpg", payload, 12, 0, 100),
                                                  entry("with_mask/ok.jpg", jpeg(photo(1)))]))


def broken_entries(folder: Path, quick: bool) -> Path:
    """A good photo, an entry in Deflate64 (method 9) and one with corrupt deflate data."""
    good, other = jpeg(photo(2)), jpeg(photo(3))
    name, payload, _, crc, size = entry("with_mask/corrupt.jpg", other)
    corrupt = payload[:20] + bytes(40) + payload[60:]
    return write(folder, "deflate64-and-corrupt.zip", zip_of([
        entry("with_mask/ok.jpg", good), ("with_mask/deflate64.jpg", deflated(other), 9, crc, size),
        (name, corrupt, 8, crc, size)]))


def many_flat_photos(folder: Path, quick: bool, side: int = 300, mode: str = "RGB") -> Path:
    """As many distinct flat side x side JPEGs as fit in 2 MB: 16 shades, each copy made distinct by a JPEG comment
    (the per-photo cost of decoding, face search and scoring). Greyscale ones are the smallest JPEGs Pillow writes."""
    shades = [jpeg(Image.new(mode, (side, side), (index * 16, 255 - index * 16, index * 7 % 256)[:len(mode)]),
                   optimize=mode == "L") for index in range(16)]
    entries, total, index = [], 0, 0
    while total < (20_000 if quick else 1_950_000):
        comment = str(index).encode()
        data = shades[index % 16]
        distinct = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
        entries.append(entry(f"with_mask/{index}.jpg", distinct))
        total += len(entries[-1][1]) + 110
        index += 1
    return write(folder, f"many-flat-{side}px-{mode.lower()}-photos.zip", zip_of(entries))


def many_entries(folder: Path, quick: bool) -> Path:
    """As many empty entries as fit in 2 MB."""
    count = 100 if quick else 20_000
    return write(folder, "many-empty-entries.zip", zip_of([entry(f"m/{i}.jpg", b"") for i in range(count)]))


def noisy(side: int, density: float, top: int, dtype) -> np.ndarray:
    """A vertical gradient with sparse noise, so that it neither compresses to nothing nor fills 2 MB."""
    rng = np.random.default_rng(0)
    values = np.linspace(0, top * 0.8, side, dtype=np.float64)[:, None].repeat(side, 1)
    mask = rng.random((side, side)) < density
    values[mask] += rng.integers(0, top // 10, mask.sum())
    return values.astype(dtype)


def grey16_png(folder: Path, quick: bool) -> Path:
    """A 16-bit greyscale 40-megapixel PNG (passing the bomb guard)."""
    image = Image.fromarray(noisy(64 if quick else 6324, 0.0015, 65535, np.uint16))
    return write(folder, "grey16.png", png(image))


def float_tiff(folder: Path, quick: bool) -> Path:
    """A 32-bit float 40-megapixel TIFF (deflate, passing the bomb guard)."""
    buffer = io.BytesIO()
    Image.fromarray(noisy(64 if quick else 6324, 0.001, 1000, np.float32) / 1000).save(
        buffer, format="TIFF", compression="tiff_adobe_deflate")
    return write(folder, "float32.tif", buffer.getvalue())


def blank_photo(folder: Path, quick: bool) -> Path:
    """One blank 40-megapixel PNG."""
    side = 64 if quick else 6324
    return write(folder, "blank-40mp.png", png(Image.new("L", (side, side), 255)))


def hostile_folder(folder: Path, quick: bool) -> Path:
    """A class folder holding a FIFO, a link to /dev/zero, a photo with a non-UTF-8 name and a good photo."""
    classes = folder / "hostile-folder" / "with_mask"
    classes.mkdir(parents=True)
    os.mkfifo(classes / "pipe.jpg")
    (classes / "zeros.jpg").symlink_to("/dev/zero")
    (classes / os.fsdecode(b"caf\xe9.jpg")).write_bytes(jpeg(photo(4)))
    (classes / "ok.jpg").write_bytes(jpeg(photo(5)))
    return classes.parent


def many_scans(folder: Path, quick: bool) -> Path:
    """A greyscale progressive JPEG whose shortest scan (a band of end-of-block runs) repeats thousands of times: each
    scan is a pass over the picture (the CPU bomb of hostile files, round two: 28,967 empty scans cost 84 s)."""
    side, scans = (64, 200) if quick else (4000, 20_000)
    picture = Image.fromarray(np.random.default_rng(7).integers(96, 160, (side // 8, side // 8), dtype=np.uint8))
    buffer = io.BytesIO()
    picture.resize((side, side), Image.BILINEAR).save(buffer, "JPEG", progressive=True, quality=30)
    data = buffer.getvalue()
    starts = [index for index in range(len(data) - 1) if data[index:index + 2] == b"\xff\xda"]
    end = data.rindex(b"\xff\xd9")
    shortest = min((data[start:stop] for start, stop in zip(starts, [*starts[1:], end])), key=len)  # a band's EOB run
    return write(folder, "many-scans.jpg", data[:end] + shortest * (scans - len(starts)) + data[end:])


def special_files(folder: Path, quick: bool) -> Path:
    """What `predict` is given: a folder holding a FIFO, a link to /dev/zero and a good photo."""
    photos = folder / "special-files"
    photos.mkdir(parents=True)
    os.mkfifo(photos / "pipe.jpg")
    (photos / "zeros.jpg").symlink_to("/dev/zero")
    (photos / "ok.jpg").write_bytes(jpeg(photo(5)))
    return photos


def video(path: Path, frames, rate, size: tuple[int, int], crf: int = 23, container: str = "mp4") -> Path:
    """Encode RGB frames (an iterable) as H.264."""
    import av

    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "ultrafast"})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return path


def flat_frames(count: int, size: tuple[int, int], change_every: int = 1):
    """Frames of one flat grey each, a new grey every change_every frames."""
    for index in range(count):
        yield np.full((size[1], size[0], 3), (index // change_every * 3) % 256, np.uint8)


def huge_frames(folder: Path, quick: bool) -> Path:
    """Two 8000x8000 frames of a flat colour."""
    side = 2000 if quick else 8000
    return video(folder / "huge-frames.mp4", flat_frames(2, (side, side)), 10, (side, side))


def huge_rate(folder: Path, quick: bool) -> Path:
    """3 s at 1,000 frames a second."""
    return video(folder / "huge-rate.mp4", flat_frames(100 if quick else 3000, (640, 480), 1000), 1000, (640, 480))


def lying_duration(folder: Path, quick: bool) -> Path:
    """60 s of frames in a Matroska file whose header says 1 s."""
    path = video(folder / "lying-duration.mkv", flat_frames(60 if quick else 1800, (640, 480), 30), 30, (640, 480),
                 container="matroska")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x44\x89")  # the Segment Info's Duration element: ID, size, then a float of milliseconds
    width = data[at + 2] & 0x0F
    data[at + 3:at + 3 + width] = struct.pack(">d" if width == 8 else ">f", 1000.0)
    path.write_bytes(data)
    return path


def longest_allowed(folder: Path, quick: bool, data: Path | None) -> Path:
    """The most a user may upload: 30 s at 60 frames a second in Full HD, faces moving if --data has photos."""
    count, size = (30, (640, 360)) if quick else (1800, (1920, 1080))
    frames = flat_frames(count, size)
    if data and data.is_dir():
        from maskdet.vision.clip import clip_photos, make_clip

        loop = make_clip(clip_photos(data), 60, size=size)
        frames = (loop[index % len(loop)] for index in range(count))
    return video(folder / "longest-allowed.mp4", frames, 60, size, crf=40)


def tiny_model(path: Path, side: int = 64, labels=("with_mask", "without_mask"), graph_side: int | None = None,
               outputs: int = 2, bomb: int = 0, sparse: int = 0, convs: int = 0) -> Path:
    """A small ONNX model with maskdet's signature and metadata (uint8 crops in, softmax out): `side` in the
    metadata, `graph_side` in the graph, `outputs` probabilities; bomb > 0 adds a ConstantOfShape of that many floats
    to the output (onnxruntime folds it when it builds the session); `sparse` empty sparse weights declared
    32768 x 16384 (2 GB each once dense); `convs` 3x3 convolutions of 64 channels before the pooling (heavy compute
    within the per-crop tensor bound). tests/test_export.py uses it too."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classes = outputs
    channels, features = 3, "floats"
    nodes = [helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", ["nchw"], ["floats"], to=TensorProto.FLOAT)]
    weights = []
    for index in range(convs):
        weights.append(numpy_helper.from_array(np.full((64, channels, 3, 3), 0.01, np.float32), f"conv{index}"))
        nodes.append(helper.make_node("Conv", [features, f"conv{index}"], [f"conv{index}_out"], pads=[1, 1, 1, 1]))
        channels, features = 64, f"conv{index}_out"
    nodes += [helper.make_node("GlobalAveragePool", [features], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["scores" if bomb else "probabilities"], axis=1)]
    weights += [numpy_helper.from_array(np.ones((channels, classes), np.float32), "weight"),
                numpy_helper.from_array(np.zeros(classes, np.float32), "bias")]
    if bomb:
        weights.append(numpy_helper.from_array(np.array([bomb], np.int64), "bomb_shape"))
        nodes += [helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"],
                                   value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
                  helper.make_node("ReduceSum", ["bomb"], ["total"], keepdims=1),
                  helper.make_node("Add", ["scores", "total"], ["probabilities"])]
    graph_side = graph_side or side
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", graph_side,
                                                                                         graph_side, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])], weights)
    graph.sparse_initializer.extend(
        helper.make_sparse_tensor(helper.make_tensor(f"sparse{index}_values", TensorProto.FLOAT, [0], []),
                                  helper.make_tensor(f"sparse{index}_indices", TensorProto.INT64, [0], []),
                                  [32768, 16384]) for index in range(sparse))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"labels": json.dumps(labels), "preprocess": json.dumps({"input_size": side}),
                       "crop_rule": json.dumps({"margin": 1.25, "size": side})}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def huge_crop(folder: Path, quick: bool) -> Path:
    """Metadata and graph claiming 100,000-pixel face crops (each would take 30 GB)."""
    return tiny_model(folder / "huge-crop.onnx", side=100_000)


def constant_bomb(folder: Path, quick: bool) -> Path:
    """A valid-looking model whose graph makes a 100 GB constant."""
    return tiny_model(folder / "constant-bomb.onnx", bomb=2**20 if quick else 25 * 10**9)


def sparse_weights(folder: Path, quick: bool) -> Path:
    """Three empty sparse weights declared 32768 x 16384 (2 GB each once dense) in a file of about 600 bytes."""
    return tiny_model(folder / "sparse-weights.onnx", sparse=3)


def heavy_compute(folder: Path, quick: bool) -> Path:
    """Ten 3x3 convolutions of 64 channels at 512 px: every tensor within the per-crop bound, 87 billion
    multiply-adds a crop."""
    return tiny_model(folder / "heavy-compute.onnx", side=512, convs=10)


def deep_labels(folder: Path, quick: bool) -> Path:
    """Labels nested 100,000 deep in the metadata (a RecursionError before)."""
    path = tiny_model(folder / "deep-labels.onnx")
    import onnx

    model = onnx.load(str(path))
    next(prop for prop in model.metadata_props if prop.key == "labels").value = "[" * 100_000
    onnx.save(model, str(path))
    return path


def label_mismatch(folder: Path, quick: bool) -> Path:
    """Three labels in the metadata, two outputs in the graph."""
    return tiny_model(folder / "label-mismatch.onnx", labels=["a", "b", "c"])


def empty_backup(folder: Path) -> dict[str, bytes]:
    """The entries of a backup of a new, empty data home (its settings row and two classes)."""
    from maskdet.core.settings import Settings
    from maskdet.data.store import Store
    from maskdet.runs.backup import backup

    home = folder / "empty-home"
    backup(Store(Settings(home / "home", home / "models", f"sqlite:///{home / 'home' / 'maskdet.db'}", None,
                          40_000_000)), home / "backup.zip")
    with zipfile.ZipFile(home / "backup.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    shutil.rmtree(home)
    return entries


def backup_with_rows(folder: Path, name: str, table: str, blocks: Iterable[bytes], count: int) -> Path:
    """The empty backup with `table`'s rows replaced by these blocks of JSON lines (deflated as they come), counted by
    its manifest as an attacker who read the format would."""
    entries = empty_backup(folder)
    manifest = json.loads(entries.pop("manifest.json"))
    entries.pop(f"tables/{table}.jsonl")
    with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("manifest.json", json.dumps({**manifest, "counts": {**manifest["counts"], table: count}}))
        for entry_name, data in entries.items():
            archive.writestr(entry_name, data)
        with archive.open(f"tables/{table}.jsonl", "w", force_zip64=True) as rows:
            for block in blocks:
                rows.write(block)
    return folder / name


def empty_rows(folder: Path, quick: bool) -> Path:
    """Hostile files, round two (E): a 1.85 MB backup whose tables/meta.jsonl unpacks to 1.9 GB of `{}` lines,
    counted by its manifest (it filled memory before, counted or not)."""
    lines, block = (2**15, 2**15) if quick else (633_000_000, 2**20)
    blocks = [b"{}\n" * block] * (lines // block) + [b"{}\n" * (lines % block)]
    return backup_with_rows(folder, "empty-rows-backup.zip", "meta", blocks, lines)


def many_rows(folder: Path, quick: bool) -> Path:
    """As many distinct settings rows as fit in 2 MB (880,000): the most rows a backup of that size can bring."""
    count = 1000 if quick else 880_000
    blocks = (b"".join(b'{"key": "k%09d", "value": ""}\n' % index for index in range(start, min(start + 10_000, count)))
              for start in range(0, count, 10_000))
    return backup_with_rows(folder, "many-rows-backup.zip", "meta", blocks, count)


def padded_rows(folder: Path, quick: bool) -> Path:
    """235 failed runs whose settings are 1 MiB of one letter and 11 KB of noise each (1.9 MB): about as much row
    text (238 MiB) as the packing bound lets a backup of that size bring."""
    count, pad = (3, 10_000) if quick else (235, 2**20)
    rng = np.random.default_rng(0)
    blocks = (json.dumps({"id": f"r{index:06d}", "created_at": "2026-12-05T00:00:00.000+00:00", "status": "failed",
                          "config": "a" * pad + rng.bytes(5500).hex(), "cancel_requested": False}).encode()
              + b"\n" for index in range(count))
    return backup_with_rows(folder, "padded-rows-backup.zip", "runs", blocks, count)


def cases(data: Path | None) -> list[Case]:
    zips = [("blank-pngs", blank_pngs), ("sparse-40mp", sparse_photos), ("overlapping-entries", overlapping_entries),
            ("overlapping-under-cap", overlapping_under_cap), ("lying-sizes", lying_sizes),
            ("huge-declared-total", huge_declared_total), ("bzip2-bomb", bzip2_bomb),
            ("deflate64-and-corrupt", broken_entries), ("many-flat-photos", many_flat_photos),
            ("many-flat-256px-photos", lambda folder, quick: many_flat_photos(folder, quick, 256)),
            ("many-tiny-photos", lambda folder, quick: many_flat_photos(folder, quick, 8, "L")),
            ("many-flat-1mp-photos", lambda folder, quick: many_flat_photos(folder, quick, 1000)),
            ("many-flat-36mp-photos", lambda folder, quick: many_flat_photos(folder, quick, 6000)),
            ("many-empty-entries", many_entries)]
    photos = [("grey16", grey16_png), ("float32-tiff", float_tiff), ("blank-40mp", blank_photo),
              ("many-scans", many_scans)]
    return ([Case(name, kind, make) for name, make in zips for kind in ("import", "evaluate")]
            + [Case(name, kind, make) for name, make in photos for kind in ("import", "predict")]
            + [Case("hostile-folder", "import", hostile_folder), Case("special-files", "predict", special_files)]
            + [Case(name, "video", make) for name, make in (("huge-frames", huge_frames), ("huge-rate", huge_rate),
                                                            ("lying-duration", lying_duration))]
            + [Case("longest-allowed", "video", lambda folder, quick: longest_allowed(folder, quick, data))]
            + [Case(name, "model", make) for name, make in (("huge-crop", huge_crop), ("constant-bomb", constant_bomb),
                                                            ("label-mismatch", label_mismatch),
                                                            ("sparse-weights", sparse_weights),
                                                            ("heavy-compute", heavy_compute),
                                                            ("deep-labels", deep_labels))]
            + [Case(name, "restore", make) for name, make in (("empty-rows", empty_rows), ("many-rows", many_rows),
                                                              ("padded-rows", padded_rows))])


def baselines(folder: Path, model: Path | None) -> dict[str, Path]:
    """A small valid input for each kind of child."""
    folder.mkdir()
    one = write(folder, "one-photo.zip", zip_of([entry("with_mask/a.jpg", jpeg(photo()))]))
    files = {"import": one, "evaluate": one, "predict": write(folder, "photo.jpg", jpeg(photo()))}
    files["video"] = video(folder / "clip.mp4", flat_frames(10, (640, 480)), 10, (640, 480))
    with zipfile.ZipFile(folder / "empty-backup.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in empty_backup(folder).items():
            archive.writestr(name, data)
    files["restore"] = folder / "empty-backup.zip"
    if model:
        files["model"] = model
    return files


def real_model(folder: Path) -> Path:
    """A maskdet model with random weights at the default input size (the valid model for the other paths)."""
    from maskdet.core.contract import Preprocess
    from maskdet.training.export import export_classifier
    from maskdet.training.model import MaskNet
    from maskdet.vision.faces import CropRule

    preprocess = Preprocess()
    return export_classifier(MaskNet(2, preprocess).eval(), folder / "model.onnx", ["with_mask", "without_mask"],
                             preprocess, CropRule(size=preprocess.input_size))


# ---- replaying a file in a child -----------------------------------------------------------------------------------

def command(kind: str, path: Path, model: Path | None) -> list[str]:
    python = sys.executable
    if kind == "import":
        single = path.is_file() and path.suffix != ".zip"
        return [python, "-m", "maskdet", "import", str(path), *(["--label", "with_mask"] if single else [])]
    if kind == "predict":
        return [python, "-m", "maskdet", "predict", str(path), "--model", str(model)]
    if kind == "restore":
        return [python, "-m", "maskdet", "restore", str(path)]
    return [python, __file__, "--child", kind, str(path), "--model", str(model)]


def replay(kind: str, path: Path, model: Path | None, home: Path, timeout: float, server: str | None = None) -> dict:
    """Run one child on one file (on a new database of the PostgreSQL server, if given); its outcome line, peak RSS,
    CPU seconds, and what the integrity check says of the database it used (None: it used none)."""
    env = {**os.environ, "MASKDET_HOME": str(home / "home"), "MASKDET_MODELS": str(home / "models"),
           "PYTHONPATH": str(ROOT)}
    database = in_child("database", server) if server else None
    env.pop("MASKDET_DATABASE_URL", None)
    if database:
        env["MASKDET_DATABASE_URL"] = database
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        child = subprocess.Popen(command(kind, path, model), cwd=ROOT, env=env, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL)
        stopped = []
        threading.Thread(target=watch, args=(child, start + timeout, stopped), daemon=True).start()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        outcome = stopped[0] if stopped else summary_line(out.read().decode(errors="replace"),
                                                          err.read().decode(errors="replace"), child.returncode)
    sqlite = home / "home" / "maskdet.db"
    problems = in_child("integrity", database or f"sqlite:///{sqlite}") if database or sqlite.exists() else None
    if database:
        in_child("database", server, database)
    shutil.rmtree(home, ignore_errors=True)
    return {"outcome": outcome, "peak_rss_mb": round(usage.ru_maxrss / 1024), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "integrity": None if problems is None else "; ".join(problems) or "ok"}


def in_child(*args: str):
    """What a helper child of this script prints (as JSON): database work stays out of this process, whose memory
    its children's peak RSS would count."""
    run = subprocess.run([sys.executable, __file__, f"--{args[0]}", *args[1:]], cwd=ROOT, check=True,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(run.stdout.splitlines()[-1])


def watch(child: subprocess.Popen, deadline: float, stopped: list) -> None:
    """Stop a child that runs past the deadline or holds more than KILL_BYTES."""
    while child.returncode is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))
        except (OSError, StopIteration):  # it has ended
            return
        reason = (f"killed: over {KILL_BYTES // 2**30} GiB" if rss > KILL_BYTES
                  else "killed: over the time limit" if time.monotonic() > deadline else None)
        if reason:
            stopped.append(reason)
            child.kill()
            return
        time.sleep(0.02)


def summary_line(stdout: str, stderr: str, code: int) -> str:
    """What the user saw, in one short line: the error, or the result's first lines."""
    if code != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        return (lines[-1] if lines else f"exit code {code}")[:200]
    lines = [line.strip() for line in stdout.splitlines() if line.strip() and not line.startswith("labels:")]
    return " | ".join(lines[:2])[:200]


# ---- the child side ------------------------------------------------------------------------------------------------

def child(kind: str, path: Path, model: Path) -> None:
    """One replay in this process: the Metrics page's zip scoring, the Live page's video or model upload."""
    from maskdet.serving import media
    from maskdet.serving.classifier import load_classifier

    data = path.read_bytes()
    try:
        if kind == "evaluate":
            from maskdet.data.store import Store
            from maskdet.runs.scoring import evaluate_zip
            from maskdet.training.config import TrainConfig
            from maskdet.vision.faces import FaceDetector

            store = Store()
            run_id = store.create_run(TrainConfig().to_dict())
            folder = store.settings.models_dir / run_id
            folder.mkdir(parents=True)
            shutil.copyfile(model, folder / "model.onnx")
            store.update_run(run_id, status="succeeded", artefact_dir=str(folder))
            report = evaluate_zip(store, run_id, data, FaceDetector())
            rejected = report["rejected_files"]
            print(f"scored {report['num_samples']} photos, rejected {len(rejected)}"
                  + (f": {rejected[0]['name']}: {rejected[0]['reason']}" if rejected else ""))
        elif kind == "video":
            from maskdet.serving.live import LivePipeline

            result = media.annotate_video(data, LivePipeline(load_classifier(model)))
            print(f"annotated {result.frames} frames of {result.width}x{result.height} ({result.seconds:.1f} s)")
        else:
            from maskdet.core.settings import load_settings
            from maskdet.serving.predict import classify_faces
            from maskdet.vision.faces import Face

            kept = media.save_uploaded_model(load_settings().home, path.name, data)
            frame = np.asarray(photo(6, (640, 480)))
            faces = classify_faces(frame, [Face((250.0, 150.0, 390.0, 330.0), 0.99)], load_classifier(kept))
            print(f"kept {kept.name}; a face classified as {faces[0].label}")
    except ValueError as error:  # what the page shows: StoreError, NotAMaskdetModel, a video's refusal
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def integrity_child(url: str) -> None:
    """Print the integrity problems of the database at url, as a JSON list (empty: it is intact)."""
    from maskdet.data.database import integrity_problems, open_database

    engine = open_database(url)
    print(json.dumps(integrity_problems(engine)))
    engine.dispose()


def database_child(server: str, drop: str | None = None) -> None:
    """Make a new database on the PostgreSQL server at `server` (the URL of a database there, connected through) and
    print its URL; or drop the database at `drop`."""
    import sqlalchemy as sa

    from maskdet.data.database import open_database

    target = sa.make_url(drop) if drop else sa.make_url(server).set(database=f"maskdet_hostile_{uuid.uuid4().hex[:12]}")
    admin = open_database(server)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"DROP DATABASE {target.database} WITH (FORCE)" if drop
                             else f"CREATE DATABASE {target.database}"))
    admin.dispose()
    print(json.dumps(target.render_as_string(hide_password=False)))


# ---- main ----------------------------------------------------------------------------------------------------------

def make(workdir: Path, chosen: list[Case], quick: bool) -> dict:
    """Write the chosen files, the baselines' inputs and (when a path needs one) a model; their paths."""
    model = real_model(workdir) if any(case.kind != "import" for case in chosen) else None
    files = {}
    for case in chosen:
        files[case.name] = files.get(case.name) or str(case.make(workdir, quick))
    return {"model": str(model) if model else None, "files": files,
            "baselines": {kind: str(path) for kind, path in baselines(workdir / "baseline", model).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny files: check that the benchmark works")
    parser.add_argument("--only", help="comma-separated file names (see cases()); default: all")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated paths to replay files on")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a child may run")
    parser.add_argument("--postgres", metavar="URL", help="also replay backups into new databases on this PostgreSQL "
                                                          "server (the URL of a database there, as "
                                                          "MASKDET_TEST_POSTGRES_URL)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--integrity", help=argparse.SUPPRESS)
    parser.add_argument("--database", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--make", help=argparse.SUPPRESS)
    add_shared_arguments(parser)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.model))
    if args.integrity:
        return integrity_child(args.integrity)
    if args.database:
        return database_child(*args.database)
    chosen = [case for case in cases(Path(args.data)) if (not args.only or case.name in args.only.split(","))
              and case.kind in args.kinds.split(",")]
    if args.make:
        return print(json.dumps(make(Path(args.make), chosen, args.quick)))
    workdir = Path(tempfile.mkdtemp(prefix="maskdet-hostile-"))
    try:
        # Written by a child: a child's peak RSS counts the RSS of the process it was started from (Linux keeps the
        # high-water mark across fork and exec), so this one stays small (about 30 MB: Python, numpy, Pillow).
        written = subprocess.run([sys.executable, __file__, "--make", str(workdir), *sys.argv[1:]],
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
        made = json.loads(written.splitlines()[-1])
        model = made["model"] and Path(made["model"])
        runs = [(case, server) for case in chosen
                for server in ([None, args.postgres] if case.kind == "restore" and args.postgres else [None])]
        base, results, intact = {}, [], []
        for kind, server in sorted({(case.kind, server) for case, server in runs},
                                   key=lambda run: (KINDS.index(run[0]), run[1] is not None)):
            path = Path(made["baselines"][kind])
            base[kind, server] = replay(kind, path, model, workdir / "run", args.timeout, server)
            print(json.dumps({"baseline": path_name(kind, server), "bytes": size(path), **base[kind, server]}),
                  flush=True)
        for case, server in runs:
            path = Path(made["files"][case.name])
            result = replay(case.kind, path, model, workdir / "run", args.timeout, server)
            extra_rss = (result["peak_rss_mb"] - base[case.kind, server]["peak_rss_mb"]) * 2**20
            extra_cpu = result["cpu_s"] - base[case.kind, server]["cpu_s"]
            within = (not result["outcome"].startswith("killed") and extra_rss <= LIMIT_BYTES
                      and extra_cpu <= LIMIT_CPU)
            results.append(within)
            intact.append(result["integrity"] in ("ok", None))
            print(json.dumps({"file": path.name, "path": path_name(case.kind, server), "bytes": size(path), **result,
                              "extra_rss_mb": round(extra_rss / 2**20), "extra_cpu_s": round(extra_cpu, 1),
                              "within_target": within}), flush=True)
        print(json.dumps({"files": len(results), "within_target": sum(results),
                          "all_within_1_GiB_and_30_s": all(results), "databases_intact": all(intact),
                          "largest_file_bytes": max((size(Path(p)) for p in made["files"].values()), default=0),
                          "benchmark_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def path_name(kind: str, server: str | None) -> str:
    return f"{kind} on PostgreSQL" if server else kind


def size(path: Path) -> int:
    """Bytes of a file, or of the files of a folder (links and FIFOs not followed)."""
    if path.is_dir():
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


if __name__ == "__main__":
    main()
